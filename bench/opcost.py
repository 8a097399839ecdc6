"""The clipping work alone, on a model's real parameter shapes, without forward/backward.

Step times on a shared 2-core CPU jitter by more than the few per cent that PCC
adds, so this isolates what PCC adds per step: from gradients sitting in
`p.grad` to the optimizer-ready update, for
    baseline   torch.nn.utils.clip_grad_norm_ (what espnet2's Trainer calls) + zero_grad
    per_core   PerCoreClipOptimizer.add_core + reduce_cores + the trainer's update-norm
               check + zero_grad (PCCTrainer._step without optimizer.step)
K cores = K add_core calls (accum_grad micro-batches) per reduce.
"""
from __future__ import annotations

import statistics
import time
from typing import Dict, List

import torch

from bench.models import build_model
from espnet_pcc.clip_config import ClipConfig
from espnet_pcc.clipping import grad_norm
from espnet_pcc.optim import PerCoreClipOptimizer


def _fill_grads(params: List[torch.nn.Parameter], grads: List[torch.Tensor]) -> None:
    # A fresh p.grad per core, as backward allocates it (copy: add_core releases p.grad).
    for p, g in zip(params, grads):
        p.grad = g.clone()


def _baseline(params, grads, cores: int, max_norm: float) -> float:
    for _ in range(cores):  # backward accumulates into p.grad (not timed, as for PCC)
        for p, g in zip(params, grads):
            p.grad = g.clone() if p.grad is None else p.grad.add_(g)
    tic = time.perf_counter()
    torch.nn.utils.clip_grad_norm_(params, max_norm)
    for p in params:
        p.grad = None
    return time.perf_counter() - tic


def _per_core(optimizer: PerCoreClipOptimizer, params, grads, cores: int) -> float:
    spent = 0.0
    for _ in range(cores):
        _fill_grads(params, grads)
        tic = time.perf_counter()
        optimizer.add_core()
        spent += time.perf_counter() - tic
    tic = time.perf_counter()
    optimizer.reduce_cores()
    torch.isfinite(grad_norm([p.grad for p in params if p.grad is not None]))
    optimizer.zero_grad()
    return spent + time.perf_counter() - tic


def clip_op_cost(model_name: str, cores: int = 1, reps: int = 7,
                 threads: int = 2) -> Dict[str, float]:
    """Median milliseconds per optimizer step of the clipping work (see module doc)."""
    torch.set_num_threads(threads)
    model = build_model(model_name)
    params = [p for p in model.parameters() if p.requires_grad]
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(p.shape, generator=g) for p in params]
    results: Dict[str, float] = {}
    for mode in ("baseline", "per_core", "adaptive_per_core"):
        if mode == "baseline":
            run = lambda: _baseline(params, grads, cores, 5.0)  # noqa: E731
        else:
            conf = {"max_norm": 5.0} if mode == "per_core" else {}
            opt = PerCoreClipOptimizer(torch.optim.SGD(params, lr=0.0),
                                       clip_config=ClipConfig.from_options(mode, conf))
            run = lambda opt=opt: _per_core(opt, params, grads, cores)  # noqa: E731
        run()  # warm-up: the buffer and allocator
        results[mode] = 1000 * statistics.median(run() for _ in range(reps))
    return results
