"""Ratios, target checks and the markdown table of a bench run."""
from __future__ import annotations

import statistics
from typing import Any, Dict, List, Optional

BYTES_PER_PARAM = 4  # the PCC buffer is float32


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or not b else a / b


def summarise(results: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One row per (cell, mode): median/min/max step time, ratios, memory."""
    rows = []
    for res in results:
        cell = res["cell"]
        if "times" not in res:
            rows.append({"cell": cell["name"], "mode": "-", "error":
                         res.get("error") or res.get("skipped")})
            continue
        med = {m: statistics.median(t) for m, t in res["times"].items()}
        cpu = {m: statistics.median(t) for m, t in res["cpu_times"].items()}
        peak = {m: res["memory"][m]["peak_mb"] for m in res["memory"]}
        buffer_mb = BYTES_PER_PARAM * res["params"] / 2**20
        for mode, times in res["times"].items():
            rows.append({
                "cell": cell["name"], "model": cell["model"], "world": cell["world"],
                "accum_grad": cell["accum_grad"], "global_batch": cell["global_batch"],
                "mode": mode, "params": res["params"], "reps": len(times),
                "median_s": med[mode], "min_s": min(times), "max_s": max(times),
                "vs_baseline": _ratio(med[mode], med.get("baseline")),
                "vs_per_core": _ratio(med[mode], med.get("per_core")),
                "cpu_median_s": cpu[mode],
                "cpu_vs_baseline": _ratio(cpu[mode], cpu.get("baseline")),
                "cpu_vs_per_core": _ratio(cpu[mode], cpu.get("per_core")),
                "skipped_steps": res["skipped_steps"][mode],
                "peak_mb": peak[mode],
                "peak_delta_mb": peak[mode] - peak["baseline"] if "baseline" in peak else None,
                "buffer_mb": buffer_mb,
            })
    return rows


def pool(runs: List[List[Dict[str, Any]]]) -> List[Dict[str, Any]]:
    """One result per cell from repeated runs of the same cells: every run's steps together
    (peak memory: the highest run's)."""
    pooled = []
    for per_run in zip(*runs):
        done = [r for r in per_run if "times" in r]
        if not done:
            pooled.append(per_run[0])
            continue
        modes = done[0]["times"]
        pooled.append({**done[0],
                       "times": {m: [t for r in done for t in r["times"][m]] for m in modes},
                       "cpu_times": {m: [t for r in done for t in r["cpu_times"][m]] for m in modes},
                       "skipped_steps": {m: sum(r["skipped_steps"][m] for r in done) for m in modes},
                       "memory": {m: max((r["memory"][m] for r in done), key=lambda x: x["peak_mb"])
                                  for m in modes}})
    return pooled


def over_runs(summaries: List[List[Dict[str, Any]]]) -> List[Dict[str, Any]]:
    """Each (cell, mode) over repeated runs: its ratios to baseline in every run."""
    keyed: Dict[tuple, List[Dict[str, Any]]] = {}
    for rows in summaries:
        for r in rows:
            if "error" not in r and r["vs_baseline"] is not None:
                keyed.setdefault((r["cell"], r["mode"]), []).append(r)
    return [{"cell": cell, "mode": mode, "runs": len(rs),
             "cpu_median_s": statistics.median(r["cpu_median_s"] for r in rs),
             "cpu_vs_baseline": [r["cpu_vs_baseline"] for r in rs],
             "vs_baseline": [r["vs_baseline"] for r in rs]}
            for (cell, mode), rs in keyed.items()]


def _spread(ratios: List[float]) -> str:
    return (f"{statistics.median(ratios):.3f} | {min(ratios):.3f}–{max(ratios):.3f} | "
            + ", ".join(f"{x:.3f}" for x in ratios))


def targets(rows: List[Dict[str, Any]]) -> List[str]:
    """The issue's targets, each as one line: met / missed with the measured value."""
    def find(mode: str, **where) -> List[Dict[str, Any]]:
        return [r for r in rows if r["mode"] == mode and "error" not in r
                and all(r[k] == v for k, v in where.items())]

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    def both(r: Dict[str, Any], key: str, ok) -> str:
        wall, cpu = r[key], r["cpu_" + key]
        return (f"wall {wall:.3f}× ({verdict(ok(wall))}), CPU {cpu:.3f}× ({verdict(ok(cpu))})")

    lines = []
    for mode in ("per_core", "adaptive_per_core"):
        for r in find(mode, world=1):
            if r["vs_baseline"] is not None:
                lines.append(f"{mode} ≤ 1.03× baseline, 1 process ({r['cell']}): "
                             + both(r, "vs_baseline", lambda x: x <= 1.03))
    for r in find("per_core", world=2, accum_grad=4):
        if r["vs_baseline"] is not None:
            lines.append(f"per_core ≤ 1.00× baseline, 2-process DDP accum 4 ({r['cell']}): "
                         + both(r, "vs_baseline", lambda x: x <= 1.00))
    for r in find("per_example", global_batch=32):
        lines.append(f"per_example ≥ 8× per_core at batch 32 ({r['cell']}): "
                     + both(r, "vs_per_core", lambda x: x >= 8))
    for r in find("per_core"):
        if r["peak_delta_mb"] is not None:
            lines.append(f"per_core peak ≤ baseline + buffer {r['buffer_mb']:.0f} MB "
                         f"({r['cell']}): {r['peak_delta_mb']:+.0f} MB — "
                         f"{verdict(r['peak_delta_mb'] <= r['buffer_mb'])}")
    return lines


def _f(x: Optional[float], fmt: str) -> str:
    return "—" if x is None else format(x, fmt)


def markdown(rows: List[Dict[str, Any]], opcost: Dict[str, Dict[str, float]],
             meta: Dict[str, Any], spread: Optional[List[Dict[str, Any]]] = None) -> str:
    load = f"{meta['load_start'][0]:.2f} at start, {meta['load_end'][0]:.2f} at end (1-min avg)"
    out = [f"Machine: {meta['cpus']} CPUs ({meta['cpu']}), device {meta['device']}, "
           f"{meta['threads_per_process']} torch thread(s) per process; load {load}; {meta['started']}, "
           f"{meta['minutes']} min.", "",
           "| cell | mode | wall s (median) | min–max s | × baseline | × per_core "
           "| CPU s (median) | CPU × baseline | CPU × per_core | peak MB | Δ peak vs baseline MB |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['cell']} | — | {r['error'].splitlines()[0][:80]} |" + " |" * 8)
            continue
        skipped = f" ({r['skipped_steps']} skipped)" if r["skipped_steps"] else ""
        out.append(f"| {r['cell']} | {r['mode']}{skipped} | {r['median_s']:.2f} | "
                   f"{r['min_s']:.2f}–{r['max_s']:.2f} | {_f(r['vs_baseline'], '.3f')} | "
                   f"{_f(r['vs_per_core'], '.2f')} | {r['cpu_median_s']:.2f} | "
                   f"{_f(r['cpu_vs_baseline'], '.3f')} | {_f(r['cpu_vs_per_core'], '.2f')} | "
                   f"{r['peak_mb']:.0f} | "
                   f"{_f(r['peak_delta_mb'], '+.0f')} |")
    params = {r["model"]: (r["params"], r["buffer_mb"]) for r in rows if "error" not in r}
    out += ["", "Parameters and PCC buffer (4 bytes × params): " + "; ".join(
        f"{m} {p / 1e6:.1f} M, {b:.0f} MB" for m, (p, b) in sorted(params.items())) + ".", "",
        "Targets:", ""] + [f"- {line}" for line in targets(rows)]
    if spread:
        out += ["", f"Over {max(r['runs'] for r in spread)} runs (fresh processes each; one ratio "
                "per run, of the medians of its steps; the table above pools every run's steps):",
                "", "| cell | mode | CPU s (median) | CPU × baseline, median | min–max | per run "
                "| wall × baseline, median | min–max | per run |",
                "|---|---|---:|---:|---:|---|---:|---:|---|"]
        for r in spread:
            out.append(f"| {r['cell']} | {r['mode']} | {r['cpu_median_s']:.2f} | "
                       f"{_spread(r['cpu_vs_baseline'])} | {_spread(r['vs_baseline'])} |")
    if opcost:
        out += ["", "Clipping work alone per optimizer step (ms, median; K = cores per step):", "",
                "| model | baseline clip_grad_norm_ | per_core | adaptive_per_core |",
                "|---|---:|---:|---:|"]
        for key, ms in opcost.items():
            out.append(f"| {key} | {ms['baseline']:.1f} | {ms['per_core']:.1f} | "
                       f"{ms['adaptive_per_core']:.1f} |")
    return "\n".join(out) + "\n"
