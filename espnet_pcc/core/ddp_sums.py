"""Σ under DDP: one flat buffer that a single all-reduce per step sums, statistics included.

The buffer holds, in order: Σ of every trainable parameter (a view per parameter), the
step's statistics, then one flag per parameter (whether any rank has a gradient for it).

The statistics are laid out so that the SUM combines them (:func:`encode_statistics`,
:func:`decode_statistics`): the number of cores, Σ‖g_k‖ over finite cores, cores over the
bound, non-finite cores; then one slot per rank, zero on every other rank, for what a sum
cannot combine but can gather: min_k‖g_k‖, −max_k‖g_k‖ and the number of cores at that
minimum.  A parameter's first gradient of the step is
written into its view once, scaled (`torch.mul(out=view)`); views no core of this rank
touched are zeroed before the all-reduce.  Noise is added by rank 0 alone, so that the sum
carries it once.

`gather_pending` moves every rank's pending cores (an `accum_grad` cycle that an epoch ends
inside) to rank 0, which alone writes the checkpoint.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist

from espnet_pcc.core.clipping import StepStatistics
from espnet_pcc.core.sums import AddNoise, CoreSums, LocalSums, Sums, add_rest

COUNTS = 4  # the summed counts at the head of the statistics
SLOT = 3  # the per-rank slot after them


def statistics_length(world_size: int) -> int:
    return COUNTS + SLOT * world_size


def encode_statistics(statistics: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """One rank's `core_sums.core_statistics` in the layout of the module docstring."""
    out = torch.zeros(statistics_length(world_size), dtype=torch.float64,
                      device=statistics.device)
    out[:COUNTS] = statistics[:COUNTS]
    slot = out[COUNTS + SLOT * rank:][:SLOT]
    slot.copy_(statistics[COUNTS:])
    slot[1] = -slot[1]  # −max: the minimum over the slots gives the maximum
    return out


def decode_statistics(summary: torch.Tensor) -> StepStatistics:
    """The statistics over all ranks of the SUM of every rank's :func:`encode_statistics`."""
    num_cores, norm_sum, over, nonfinite = summary[:COUNTS].tolist()
    slots = summary[COUNTS:].view(-1, SLOT)
    norm_min, norm_max = slots[:, 0].min().item(), -slots[:, 1].min().item()
    at_min = slots[slots[:, 0] == norm_min, 2].sum().item()
    return StepStatistics.of_values((num_cores, norm_sum, over, nonfinite, norm_min, norm_max,
                                     at_min))


def distributed(group: Any = None) -> bool:
    """Whether `group` (None: the default one) spans more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def core_sums_for(params: Sequence[torch.nn.Parameter], group: Any = None) -> CoreSums:
    """The accumulation strategy of this process: the flat buffer under DDP, per-parameter
    sums in one process (the one place the two are chosen between)."""
    return FlatSums(params, group) if distributed(group) else LocalSums()


class FlatSums:
    """Σ of one rank in the flat buffer (see the module docstring)."""

    keeps_first_core = False

    @property
    def resumes_pending(self) -> bool:
        return self.rank == 0  # rank 0 writes the checkpoint, with every rank's cores

    def __init__(self, params: Sequence[torch.nn.Parameter], group: Any = None):
        self.group = group
        self.rank, self.world_size = dist.get_rank(group), dist.get_world_size(group)
        # float32 at least, as core_sums.at_least_float32.
        dtype = torch.float64 if all(p.dtype == torch.float64 for p in params) else torch.float32
        self.numel = sum(p.numel() for p in params)
        self.num_params = len(params)
        tail = statistics_length(self.world_size) + len(params)
        self.flat = torch.empty(self.numel + tail, dtype=dtype, device=params[0].device)
        self.views = [v.view_as(p) for v, p in
                      zip(self.flat[:self.numel].split([p.numel() for p in params]), params)]
        self.sums: Sums = []

    def start(self, params: Sequence[torch.nn.Parameter]) -> None:
        self.sums = [None] * len(params)

    def add(self, used: List[int], grads: List[torch.Tensor],
            factor: Optional[torch.Tensor]) -> None:
        first = add_rest(self.sums, used, grads, factor)
        for j in first:
            i = used[j]
            self.sums[i] = torch.mul(grads[j], 1.0 if factor is None else factor,
                                     out=self.views[i])

    def restore(self, sums: Sums, reference: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        for i, s in enumerate(sums):
            if s is not None:
                self.sums[i] = self.views[i].copy_(s)
        if reference is not None:
            # Ranks add their sums, so under DDP r is 1: the sums are rescaled to it.
            torch._foreach_div_([s for s in self.sums if s is not None], reference)
        return None

    def _zero_unused(self) -> None:
        for view, s in zip(self.views, self.sums):
            if s is None:  # another rank may have a gradient for it
                view.zero_()

    def reduce(self, statistics: torch.Tensor, add_noise: AddNoise
               ) -> Tuple[Sums, List[bool], StepStatistics]:
        self._zero_unused()
        if add_noise is not None and self.rank == 0:
            # Once for the step: rank 0 adds it, the all-reduce spreads it.
            add_noise(self.views, [True] * len(self.views))
        tail = self.flat[self.numel:]
        n = statistics_length(self.world_size)
        tail[:n] = encode_statistics(statistics, self.rank, self.world_size)
        tail[n:] = torch.tensor([s is not None for s in self.sums], dtype=tail.dtype)
        dist.all_reduce(self.flat, op=dist.ReduceOp.SUM, group=self.group)
        # With noise every parameter holds its noise (core_sums.AddNoise).
        used = [True] * len(self.views) if add_noise is not None else (tail[n:] > 0).tolist()
        return self.views, used, decode_statistics(tail[:n].double())

    def gather(self, core_norms: List[torch.Tensor]) -> Optional[List[torch.Tensor]]:
        """Moves every rank's pending cores to rank 0 (collective).

        Rank 0 ends with Σ over ranks and returns every core's norm; the other ranks return
        None (and hold nothing).  Costs one small all-gather when no rank has pending cores.
        """
        device = self.flat.device
        counts = [torch.zeros(1, dtype=torch.long, device=device)
                  for _ in range(self.world_size)]
        dist.all_gather(counts, torch.tensor([len(core_norms)], device=device), group=self.group)
        counts = [int(c.item()) for c in counts]
        if not any(counts):
            return [] if self.rank == 0 else None
        self._zero_unused()
        # The flags right after Σ, where the statistics go in a step (none are needed here).
        flags = self.flat[self.numel:self.numel + self.num_params]
        flags.copy_(torch.tensor([s is not None for s in self.sums], dtype=flags.dtype))
        dist.all_reduce(self.flat[:self.numel + self.num_params], op=dist.ReduceOp.SUM,
                        group=self.group)
        norms = torch.full((max(counts),), math.nan, dtype=torch.float32, device=device)
        if core_norms:
            norms[:counts[self.rank]] = torch.stack(core_norms).float()
        gathered = [torch.empty_like(norms) for _ in range(self.world_size)]
        dist.all_gather(gathered, norms, group=self.group)
        if self.rank != 0:
            self.sums = []
            return None
        self.sums = [v if u else None for v, u in zip(self.views, (flags > 0).tolist())]
        return [n for r, g in enumerate(gathered) for n in g[:counts[r]]]


def sums_of_flat_buffer(pending: Dict[str, Any],
                        params: Sequence[torch.nn.Parameter]) -> List[Optional[torch.Tensor]]:
    """Σ per parameter from a checkpoint whose pending cores are in the older layout, the
    flat buffer itself (``buffer``, ``has_grad``), which the optimizer then wrote in every
    process."""
    flat, has_grad = pending["buffer"], set(pending["has_grad"])
    parts = flat[:sum(p.numel() for p in params)].split([p.numel() for p in params])
    return [part.view_as(p) if i in has_grad else None
            for i, (part, p) in enumerate(zip(parts, params))]


__all__ = ["COUNTS", "SLOT", "FlatSums", "core_sums_for", "decode_statistics", "distributed",
           "encode_statistics", "statistics_length", "sums_of_flat_buffer"]
