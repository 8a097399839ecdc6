"""Where `PerCoreClipOptimizer` keeps the sum Σ of a step's clipped cores.

Two strategies behind one interface (:class:`CoreSums`), chosen once per step by the
optimizer: :class:`LocalSums` in one process (here), `espnet_pcc.core.ddp_sums.FlatSums` under
DDP (one flat buffer that a single all-reduce sums, the step's statistics in its tail, laid
out there).  Each process states its step's statistics as one vector
(:func:`core_statistics`); each strategy returns them over all its processes.
"""
from __future__ import annotations

import math
from typing import Callable, List, Optional, Protocol, Sequence, Tuple

import torch

from espnet_pcc.core.clipping import StepStatistics, clip_factor

Sums = List[Optional[torch.Tensor]]  # per parameter; None: no core had a gradient for it
#: Adds the step's noise to Σ: noise(sums, used), `used[i]` whether parameter i is in Σ.
#: With noise every parameter is in Σ (zeros where no core had a gradient for it): whether a
#: parameter received a gradient can depend on the data, so every one gets its noise.
AddNoise = Optional[Callable[[Sums, List[bool]], None]]


def core_statistics(norms: torch.Tensor, counted_bound: float) -> torch.Tensor:
    """This process's statistics of a step: one float64 vector of the `StepStatistics` fields,
    in their order, from its cores' norms (`counted_bound`: the C known before the step)."""
    finite = norms[torch.isfinite(norms)]
    out = torch.zeros(7, dtype=torch.float64, device=norms.device)
    out[0] = norms.numel()
    out[1] = finite.sum()
    if math.isfinite(counted_bound):
        out[2] = (clip_factor(norms, counted_bound) < 1.0).sum()
    out[3] = norms.numel() - finite.numel()
    if finite.numel():
        low = finite.min()
        out[4:].copy_(torch.stack([low, finite.max(), (finite == low).sum()]))
    else:
        out[4:].copy_(torch.tensor([math.inf, -math.inf, 0.0]))
    return out


class CoreSums(Protocol):
    """Σ of one step's clipped cores (the accumulation strategy of `PerCoreClipOptimizer`)."""

    #: Whether the step's first core goes into Σ unscaled (one process: APCC then takes its
    #: norm as the reference r); under DDP ranks add their sums, so they share r = 1.
    keeps_first_core: bool
    rank: int  # this process among the ones whose Σ is summed (0 of 1 in one process)
    world_size: int
    sums: Sums

    def start(self, params: Sequence[torch.nn.Parameter]) -> None:
        """A new step: Σ empty."""

    def add(self, used: List[int], grads: List[torch.Tensor],
            factor: Optional[torch.Tensor]) -> None:
        """Σ_i += factor·g_i for each parameter i in `used` (factor None: 1)."""

    def restore(self, sums: Sums, reference: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """Σ = a checkpoint's pending sums (on this process's device), which were summed with
        APCC's reference norm ``reference`` (None: none, or 1); returns the r this process
        goes on with (None: 1)."""

    def reduce(self, statistics: torch.Tensor, add_noise: AddNoise
               ) -> Tuple[Sums, List[bool], StepStatistics]:
        """Σ over all ranks with the step's noise, from this process's `core_statistics`:
        (Σ per parameter, which parameters it holds, the statistics over all ranks)."""

    @property
    def resumes_pending(self) -> bool:
        """Whether this process takes a checkpoint's pending cores (rank 0 writes the
        checkpoint with every rank's cores in it, so rank 0 alone resumes them)."""

    def gather(self, core_norms: List[torch.Tensor]) -> Optional[List[torch.Tensor]]:
        """Every process's pending cores into the one that writes the checkpoint: the norms
        this process now holds, or None where it gave its cores away (collective)."""


def _sum_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def at_least_float32(grad: torch.Tensor) -> torch.Tensor:
    """Accumulate in float32 at least: bf16/fp16 sums of K cores lose the update."""
    return grad if grad.dtype in (torch.float32, torch.float64) else grad.float()


def add_rest(sums: Sums, used: List[int], grads: List[torch.Tensor],
             factor: Optional[torch.Tensor]) -> List[int]:
    """Σ_i += factor·g_i where Σ_i exists (one fused pass); returns the positions j in `used`
    of the parameters with no Σ yet (their first gradient of the step)."""
    first = [j for j, i in enumerate(used) if sums[i] is None]
    rest = [j for j, i in enumerate(used) if sums[i] is not None]
    if rest:
        targets, more = [sums[used[j]] for j in rest], [grads[j] for j in rest]
        if factor is None:
            torch._foreach_add_(targets, more)
        else:
            torch._foreach_addcmul_(targets, more, [factor] * len(rest))
    return first


class LocalSums:
    """One process: Σ per parameter.  A parameter's first gradient of the step, scaled in
    place, becomes its Σ (no buffer, no copy: one core costs what `clip_grad_norm_` costs)."""

    keeps_first_core = True
    rank, world_size = 0, 1

    def __init__(self) -> None:
        self.sums: Sums = []
        self._params: Sequence[torch.nn.Parameter] = []

    def start(self, params: Sequence[torch.nn.Parameter]) -> None:
        self.sums = [None] * len(params)
        self._params = params

    def add(self, used: List[int], grads: List[torch.Tensor],
            factor: Optional[torch.Tensor]) -> None:
        first = add_rest(self.sums, used, grads, factor)
        kept = [at_least_float32(grads[j]) for j in first]
        if kept and factor is not None:
            torch._foreach_mul_(kept, factor)
        for j, s in zip(first, kept):
            self.sums[used[j]] = s

    def restore(self, sums: Sums, reference: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        for i, s in enumerate(sums):
            if s is not None:
                self.sums[i] = s.clone()
        return reference  # the first core was kept as it is: its r stays

    def reduce(self, statistics: torch.Tensor, add_noise: AddNoise
               ) -> Tuple[Sums, List[bool], StepStatistics]:
        if add_noise is not None:
            self.sums = [torch.zeros_like(p, dtype=_sum_dtype(p.dtype)) if s is None
                         else s for s, p in zip(self.sums, self._params)]
        used = [s is not None for s in self.sums]
        if add_noise is not None:
            add_noise(self.sums, used)
        return self.sums, used, StepStatistics.of_values(statistics.tolist())

    resumes_pending = True  # the one process writes and resumes the checkpoint

    def gather(self, core_norms: List[torch.Tensor]) -> Optional[List[torch.Tensor]]:
        return core_norms  # already in the process that writes the checkpoint


__all__ = ["CoreSums", "LocalSums", "add_rest", "at_least_float32", "core_statistics"]
