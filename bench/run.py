"""`python -m bench.run`: step time and peak memory of every clipping mode vs stock ESPnet.

For each cell of the matrix (bench/cells.py) one worker process per mode (and DDP
rank) is started; all stay alive and run one optimizer step each in turn, the
order rotating every round, so load changes on a shared machine hit every mode
alike.  Warm-up steps are excluded.  Prints the ratio table and writes
bench/results/bench_train.{json,md}.

    python -m bench.run                      # default matrix, ~15 min on a 2-core CPU
    python -m bench.run --quick              # tiny model, every code path, ~1 min
    python -m bench.run --models small --reps 5
    python -m bench.run --comm --repeat 3    # DDP all-reduces, stock vs per_core, 3 runs
    python -m bench.run --device cuda        # one GPU: the conformer at batch 32 (gpu_cells)
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

from bench.cells import Cell, comm_cells, default_cells, gpu_cells, quick_cells, select
from bench.entry import serve
from bench.job import Job
from bench.report import markdown, over_runs, pool, summarise

RESULTS = Path(__file__).resolve().parent / "results"


def _context(device: str) -> mp.context.BaseContext:
    if device == "cuda":
        # ESPnet's import touches CUDA (its flash-attention probe), and CUDA cannot be
        # used again in a forked child: each worker starts a fresh interpreter.
        return mp.get_context("spawn")
    # Workers fork from a server that has imported torch + ESPnet once, but has
    # run no torch op (forking after OpenMP started is unsafe).
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["bench.worker"])
    return ctx


def _device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def run_cell(ctx, cell: Cell, threads: int, device: str, seed: int, log) -> Dict[str, Any]:
    """Runs one cell; returns per-mode step times, memory and the parameter count."""
    if device == "cuda":
        import torch

        if torch.cuda.device_count() < cell.world:
            return {"skipped": f"{cell.world} processes need {cell.world} GPUs"}
    per_proc = threads
    tmp = tempfile.mkdtemp(prefix="pccbench-")
    workers: Dict[str, List] = {}
    try:
        for mode in cell.modes:
            init = os.path.join(tmp, f"init-{mode}")
            workers[mode] = []
            for rank in range(cell.world):
                job = Job(cell.model, mode, cell.world, rank, cell.accum_grad, cell.micro_batch,
                          cell.max_seconds, per_proc, seed, init, device)
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=serve, args=(job, child), daemon=True)
                proc.start()
                workers[mode].append((proc, parent))
        for mode, ranks in workers.items():
            for _, conn in ranks:
                _expect(conn, "ready", mode)
        times: Dict[str, List[float]] = {m: [] for m in cell.modes}
        cpu: Dict[str, List[float]] = {m: [] for m in cell.modes}
        skipped: Dict[str, int] = {m: 0 for m in cell.modes}
        for rnd in range(cell.warmup + cell.reps):
            shift = rnd % len(cell.modes)
            for mode in cell.modes[shift:] + cell.modes[:shift]:
                for _, conn in workers[mode]:
                    conn.send("step")
                # A DDP step ends when its slowest rank does.
                results = [_expect(conn, "step", mode) for _, conn in workers[mode]]
                if rnd >= cell.warmup:
                    times[mode].append(max(r["seconds"] for r in results))
                    cpu[mode].append(sum(r["cpu_seconds"] for r in results))  # all ranks
                    skipped[mode] += int(max(r["skipped"] for r in results))
            log(f"  round {rnd + 1}/{cell.warmup + cell.reps}"
                f"{' (warm-up)' if rnd < cell.warmup else ''}: " + ", ".join(
                    f"{m} {times[m][-1]:.2f}s (cpu {cpu[m][-1]:.2f}s)"
                    for m in cell.modes if rnd >= cell.warmup))
        memory = {}
        for mode, ranks in workers.items():
            for _, conn in ranks:
                conn.send("stop")
            memory[mode] = [_expect(conn, "memory", mode) for _, conn in ranks][0]
        params = int(next(iter(memory.values()))["params"])
        return {"times": times, "cpu_times": cpu, "skipped_steps": skipped, "memory": memory,
                "params": params}
    finally:
        for ranks in workers.values():
            for proc, _ in ranks:
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.terminate()


def _expect(conn, kind: str, mode: str) -> Any:
    tag, value = conn.recv()
    if tag == "error":
        raise RuntimeError(f"worker {mode} failed: {value}")
    assert tag == kind, (tag, kind)
    return value


def _opcost(ctx, models: List[str], threads: int, device: str) -> Dict[str, Dict[str, float]]:
    from bench.opcost import clip_op_cost

    out = {}
    with ctx.Pool(1) as pool:
        for model in models:
            for cores in (1, 4):
                out[f"{model} K={cores}"] = pool.apply(
                    clip_op_cost, (model,), {"cores": cores, "threads": threads, "device": device})
    return out


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model smoke run")
    parser.add_argument("--comm", action="store_true",
                        help="stock DDP's all-reduce per micro-batch vs per_core's one per step "
                             "(bench/cells.py comm_cells)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the cells this many times, each in fresh processes, and "
                             "report the spread of the ratios over the runs")
    parser.add_argument("--models", nargs="+", help="only these models (small, conformer, tiny)")
    parser.add_argument("--reps", type=int, help="timed steps per mode (default per cell)")
    # One thread per process: on a shared 2-core machine, 2 OpenMP threads per process
    # spin at every barrier while the other is descheduled (measured: 10x slower steps,
    # 4x spread), which buries the few per cent under test.
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per process (DDP: per rank); default 1")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-opcost", action="store_true", help="skip the clipping-only timing")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    device = _device(args.device)
    matrix = (quick_cells() if args.quick else comm_cells() if args.comm
              else gpu_cells() if device == "cuda" else default_cells())
    cells = select(matrix, args.models, args.reps)
    if not cells:
        parser.error("no cell left: check --models")
    ctx = _context(device)
    start = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - start:6.0f}s load {os.getloadavg()[0]:.2f}] {msg}", flush=True)

    meta = {"host": platform.node(), "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "threads_per_process": args.threads, "device": device,
            "python": sys.version.split()[0], "load_start": os.getloadavg(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv[1:]}
    runs = []
    for run in range(args.repeat):
        results = []
        for cell in cells:
            log(f"{f'run {run + 1}/{args.repeat}: ' if args.repeat > 1 else ''}{cell.name}: "
                f"{', '.join(cell.modes)} (micro-batch {cell.micro_batch}, "
                f"{cell.warmup}+{cell.reps} steps)")
            try:
                raw = run_cell(ctx, cell, args.threads, device, args.seed, log)
            except Exception as e:  # one broken cell should not lose the others
                log(f"  FAILED: {e}")
                raw = {"error": str(e)}
            results.append({"cell": cell.__dict__ | {"name": cell.name,
                                                     "global_batch": cell.global_batch}, **raw})
        runs.append(results)
    results = pool(runs)
    opcost = {}
    if not args.no_opcost:
        models = sorted({c.model for c in cells})
        log(f"clipping work alone: {', '.join(models)}")
        opcost = _opcost(ctx, models, args.threads, device)
    meta.update(load_end=os.getloadavg(), minutes=round((time.time() - start) / 60, 1))
    summary = summarise(results)
    spread = over_runs([summarise(r) for r in runs]) if len(runs) > 1 else []
    report = markdown(summary, opcost, meta, spread)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_train.json").write_text(json.dumps(
        {"meta": meta, "cells": results, "summary": summary, "clip_op_ms": opcost}
        | ({"runs": runs, "over_runs": spread} if spread else {}), indent=1))
    (args.out / "bench_train.md").write_text(report)
    print(report)
    print(f"written: {args.out / 'bench_train.json'}, {args.out / 'bench_train.md'}")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
