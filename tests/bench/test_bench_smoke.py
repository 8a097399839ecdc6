"""`python -m bench.run --quick` works end to end (tiny model; < 60 s on an idle 2-core CPU)."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

import pytest  # noqa: E402

from bench.report import markdown, over_runs, pool, summarise, targets  # noqa: E402


def test_quick_run_prints_table_and_writes_json(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--no-opcost", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| tiny 1p accum1 b2 | per_core |" in proc.stdout
    assert "| tiny 2p accum2 b8 | per_core |" in proc.stdout
    result = json.loads((tmp_path / "bench_train.json").read_text())
    modes = {(r["cell"], r["mode"]) for r in result["summary"]}
    assert ("tiny 1p accum1 b2", "per_example") in modes
    for row in result["summary"]:
        assert row["median_s"] > 0 and row["peak_mb"] > 0, row
        assert row["skipped_steps"] == 0, row
    assert (tmp_path / "bench_train.md").read_text().startswith("Machine:")


def _row(mode, world=1, accum=1, batch=8, med=1.0, base=1.0, per_core=1.0, delta=0.0):
    return {"cell": f"m {world}p accum{accum} b{batch}", "model": "m", "world": world,
            "accum_grad": accum, "global_batch": batch, "mode": mode,
            "vs_baseline": med / base, "vs_per_core": med / per_core,
            "cpu_vs_baseline": med / base, "cpu_vs_per_core": med / per_core,
            "peak_delta_mb": delta, "buffer_mb": 10.0}


def test_target_lines():
    lines = targets([_row("per_core", med=1.02), _row("adaptive_per_core", med=1.05),
                     _row("per_core", world=2, accum=4, med=0.9, delta=12.0),
                     _row("per_example", batch=32, med=8.5)])
    text = "\n".join(lines)
    assert "per_core ≤ 1.03× baseline, 1 process (m 1p accum1 b8): wall 1.020× (met)" in text
    assert "adaptive_per_core ≤ 1.03× baseline, 1 process (m 1p accum1 b8): wall 1.050× (MISSED)" in text
    assert "2-process DDP accum 4 (m 2p accum4 b8): wall 0.900× (met), CPU 0.900× (met)" in text
    assert "per_example ≥ 8× per_core at batch 32 (m 1p accum1 b32): wall 8.500× (met)" in text
    assert "+12 MB — MISSED" in text


def _result(times, cpu, peak):
    return {"cell": {"name": "m 2p accum4 b8", "model": "m", "world": 2, "accum_grad": 4,
                     "global_batch": 8},
            "times": times, "cpu_times": cpu, "skipped_steps": {m: 0 for m in times},
            "memory": {m: {"peak_mb": peak, "setup_mb": 1.0, "params": 10.0} for m in times},
            "params": 10}


def test_repeated_runs_pool_steps_and_keep_one_ratio_per_run():
    runs = [[_result({"baseline": [2.0, 2.2], "per_core": [1.0, 1.2]},
                     {"baseline": [4.0, 4.0], "per_core": [3.0, 3.0]}, 100.0)],
            [_result({"baseline": [2.0], "per_core": [2.0]},
                     {"baseline": [4.0], "per_core": [4.0]}, 120.0)]]
    pooled = pool(runs)[0]
    assert pooled["times"]["per_core"] == [1.0, 1.2, 2.0]
    assert pooled["memory"]["baseline"]["peak_mb"] == 120.0
    spread = {r["mode"]: r for r in over_runs([summarise(r) for r in runs])}
    assert spread["per_core"]["cpu_vs_baseline"] == [0.75, 1.0]
    assert spread["per_core"]["vs_baseline"] == pytest.approx([1.1 / 2.1, 1.0])
    assert spread["per_core"]["runs"] == 2
    assert "| m 2p accum4 b8 | per_core | 3.50 | 0.875 | 0.750–1.000 | 0.750, 1.000 |" in \
        markdown(summarise(pool(runs)), {}, {"cpus": 2, "cpu": "x", "device": "cpu",
                                             "threads_per_process": 1, "load_start": [0.0],
                                             "load_end": [0.0], "started": "-", "minutes": 0},
                 list(spread.values()))


def test_opcost_times_today_and_a_past_wrapper_alike():
    from bench.opcost import clip_op_cost

    ms = clip_op_cost("tiny", cores=2, reps=1, threads=1, against="HEAD")
    assert set(ms) == {"baseline", "per_core", "adaptive_per_core", "per_core@HEAD",
                       "adaptive_per_core@HEAD"}
    assert all(v > 0 for v in ms.values())
