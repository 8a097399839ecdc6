"""The clipping work alone, on a model's real parameter shapes, without forward/backward.

Step times on a shared 2-core CPU jitter by more than the few per cent that PCC
adds, so this isolates what PCC adds per step: from gradients sitting in
`p.grad` to the optimizer-ready update, for
    baseline   torch.nn.utils.clip_grad_norm_ (what espnet2's Trainer calls) + zero_grad
    per_core   PerCoreClipOptimizer.add_core + reduce_cores + the trainer's update-norm
               check + zero_grad (PCCTrainer._step without optimizer.step)
K cores = K add_core calls (accum_grad micro-batches) per reduce.  The modes run in
turn, one step each, the order rotating every round, so that a change of load hits
every mode alike.

    python -m bench.opcost                        # conformer, K = 1 and 4, 1 thread
    python -m bench.opcost --against 5d2e2a4      # also the wrapper as of that commit
"""
from __future__ import annotations

import argparse
import importlib
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import types
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch

from bench.models import build_model
from espnet_pcc.core.clip_config import ClipConfig
from espnet_pcc.core.clipping import grad_norm
from espnet_pcc.core.optimizers import PerCoreClipOptimizer

ROOT = Path(__file__).resolve().parents[1]
MAX_NORM = 5.0


def _sync(device: str) -> float:
    """The clock, read after the device has finished what was queued (CUDA runs async)."""
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def _fill_grads(params: List[torch.nn.Parameter], grads: List[torch.Tensor]) -> None:
    # A fresh p.grad per core, as backward allocates it (copy: add_core releases p.grad).
    for p, g in zip(params, grads):
        p.grad = g.clone()


def _baseline(params, grads, cores: int, max_norm: float, device: str) -> float:
    for _ in range(cores):  # backward accumulates into p.grad (not timed, as for PCC)
        for p, g in zip(params, grads):
            p.grad = g.clone() if p.grad is None else p.grad.add_(g)
    tic = _sync(device)
    torch.nn.utils.clip_grad_norm_(params, max_norm)
    for p in params:
        p.grad = None
    return _sync(device) - tic


def _per_core(optimizer: PerCoreClipOptimizer, params, grads, cores: int, device: str) -> float:
    spent = 0.0
    for _ in range(cores):
        _fill_grads(params, grads)
        tic = _sync(device)
        optimizer.add_core()
        spent += _sync(device) - tic
    tic = _sync(device)
    reduction = optimizer.reduce_cores()
    # As PCCTrainer._step: one core needs no pass (a wrapper older than update_norm always does).
    if getattr(reduction, "update_norm", None) is None:
        torch.isfinite(grad_norm([p.grad for p in params if p.grad is not None]))
    optimizer.zero_grad()
    return spent + _sync(device) - tic


#: Where PerCoreClipOptimizer has lived, newest first (the package was laid out anew).
OPTIMIZER_MODULES = ("espnet_pcc.core.optimizers.per_core", "espnet_pcc.optim")


def optimizer_at(rev: str) -> Tuple[type, type]:
    """(PerCoreClipOptimizer, ClipConfig) as of git revision `rev`, importable beside today's:
    the package of that revision is imported from a copy under its own ``sys.modules``
    entries, which are swapped back for today's afterwards (its classes keep their module's
    globals, so they go on working)."""
    tree = Path(tempfile.mkdtemp(prefix="espnet_pcc_at_"))
    archive = subprocess.run(["git", "archive", rev, "espnet_pcc"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")

    def ours() -> Dict[str, types.ModuleType]:
        return {n: m for n, m in sys.modules.items()
                if n == "espnet_pcc" or n.startswith("espnet_pcc.")}

    today = ours()
    for name in today:
        del sys.modules[name]
    sys.path.insert(0, str(tree))
    try:
        for name in OPTIMIZER_MODULES:
            if (tree / (name.replace(".", "/") + ".py")).exists():
                module = importlib.import_module(name)
                return module.PerCoreClipOptimizer, module.ClipConfig
        raise ValueError(f"--against {rev}: no PerCoreClipOptimizer in {', '.join(OPTIMIZER_MODULES)}")
    finally:
        sys.path.remove(str(tree))
        for name in ours():
            del sys.modules[name]
        sys.modules.update(today)


def clip_op_cost(model_name: str, cores: int = 1, reps: int = 7, threads: int = 2,
                 against: Optional[str] = None, device: str = "cpu") -> Dict[str, float]:
    """Median milliseconds per optimizer step of the clipping work (see module doc).

    Keys: baseline, per_core, adaptive_per_core; with `against`, also
    per_core@<rev> and adaptive_per_core@<rev> (the wrapper as of that revision).
    """
    torch.set_num_threads(threads)
    model = build_model(model_name).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(p.shape, generator=g).to(device) for p in params]
    wrappers = {"": (PerCoreClipOptimizer, ClipConfig)}
    if against:
        wrappers[f"@{against}"] = optimizer_at(against)
    runs: Dict[str, Callable[[], float]] = {
        "baseline": lambda: _baseline(params, grads, cores, MAX_NORM, device)}
    for suffix, (wrapper, config) in wrappers.items():
        for mode in ("per_core", "adaptive_per_core"):
            conf = {"max_norm": MAX_NORM} if mode == "per_core" else {}
            opt = wrapper(torch.optim.SGD(params, lr=0.0),
                          clip_config=config.from_options(mode, conf))
            runs[mode + suffix] = lambda opt=opt: _per_core(opt, params, grads, cores, device)
    names = list(runs)
    for name in names:
        runs[name]()  # warm-up: buffers and the allocator
    times: Dict[str, List[float]] = {name: [] for name in names}
    for rnd in range(reps):
        shift = rnd % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(runs[name]())
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["conformer"])
    parser.add_argument("--cores", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--against", metavar="REV", help="also time the wrapper of this commit")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args(argv)
    print(f"{args.device}, threads {args.threads}, median of {args.reps}, load "
          f"{os.getloadavg()[0]:.2f} (1-min) at start", flush=True)
    for model in args.models:
        cost = {k: clip_op_cost(model, k, args.reps, args.threads, args.against, args.device)
                for k in args.cores}
        names = list(cost[args.cores[0]])
        print(f"\n{model}: ms per optimizer step (× its clip_grad_norm_)")
        print("| K | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names))
        for k, ms in cost.items():
            print(f"| {k} | " + " | ".join(
                f"{ms[n]:.1f} ({ms[n] / ms['baseline']:.2f}×)" for n in names) + " |")
        if len(cost) > 1:
            lo, hi = min(cost), max(cost)
            print(f"per extra core (K={lo}→{hi}), × clip_grad_norm_ at K={lo}: " + ", ".join(
                f"{n} {(cost[hi][n] - cost[lo][n]) / (hi - lo) / cost[lo]['baseline']:.2f}×"
                for n in names if n != "baseline"))
    print(f"load {os.getloadavg()[0]:.2f} (1-min) at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
