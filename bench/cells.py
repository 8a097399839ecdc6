"""The benchmark matrix: which (model, processes, accum_grad, batch) cells run which modes.

Sizes are set so that the default run fits in ~15 minutes on a 2-core CPU: the
34 M-parameter conformer only where a target is decided (one process accum 1;
2 processes accum 4), the small model over the whole matrix, per_example at
batch 32 on the small model.  A step's cost is dominated by utterance-seconds,
so micro-batches are small; that is the *harder* case for PCC, whose extra work
(norms, one buffer) is per step, not per utterance.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import List, Tuple

ALL_MODES = ("baseline", "global", "per_core", "adaptive_per_core", "per_example")


@dataclass(frozen=True)
class Cell:
    model: str
    world: int  # DDP processes
    accum_grad: int
    micro_batch: int  # utterances per micro-batch per process
    modes: Tuple[str, ...]
    reps: int  # timed steps per mode
    warmup: int = 1  # untimed steps per mode first (allocator, Adam state, DDP buckets)
    max_seconds: float = 15.0  # longest utterance

    @property
    def name(self) -> str:
        return (f"{self.model} {self.world}p accum{self.accum_grad} "
                f"b{self.world * self.accum_grad * self.micro_batch}")

    @property
    def global_batch(self) -> int:
        return self.world * self.accum_grad * self.micro_batch


def default_cells() -> List[Cell]:
    return [
        # The targets, on the real model: PCC cost in one process, DDP traffic with accum 4.
        Cell("conformer", 1, 1, 2, ("baseline", "per_core", "adaptive_per_core"), reps=7),
        Cell("conformer", 2, 4, 1, ("baseline", "per_core"), reps=4),
        # The whole matrix on the small model.
        Cell("small", 1, 1, 2, ALL_MODES, reps=5),
        Cell("small", 1, 4, 1, ALL_MODES, reps=5),
        Cell("small", 2, 1, 1, ALL_MODES, reps=5),
        Cell("small", 2, 4, 1, ALL_MODES, reps=5),
        # per_example vs per_core at batch 32: 32 passes of one utterance vs one of 32.
        Cell("small", 1, 1, 32, ("baseline", "per_core", "per_example"), reps=3),
    ]


def quick_cells() -> List[Cell]:
    """Smoke size: the tiny model, short utterances, every code path once."""
    return [Cell("tiny", 1, 1, 2, ALL_MODES, reps=1, max_seconds=2.0),
            Cell("tiny", 2, 2, 2, ("baseline", "per_core", "per_example"), reps=1,
                 max_seconds=2.0)]


def comm_cells() -> List[Cell]:
    """Stock DDP (one all-reduce per micro-batch) against per_core (one per step).

    2 gloo ranks, accum_grad 1, 4 and 16, the 34 M conformer (131 MB of gradients per
    all-reduce).  Micro-batches of one 3-s utterance, so that accum 16 fits the run in
    ~10 minutes: the all-reduce is a larger share of such a step than of a real one.
    """
    return [Cell("conformer", 2, accum, 1, ("baseline", "per_core"), reps=3, max_seconds=3.0)
            for accum in (1, 4, 16)]


def gpu_cells() -> List[Cell]:
    """One GPU (`--device cuda`): the 34 M conformer at a realistic batch, fp32.

    32 utterances of up to 15 s per optimizer step, as one micro-batch (per_core has one
    core: the clipping alone) and as 4 micro-batches of 8 (accum_grad 4: 4 cores, the
    way a one-GPU user gets PCC).  per_example runs 32 one-utterance passes in both.
    """
    modes = ("baseline", "global", "per_core", "adaptive_per_core", "per_example")
    return [Cell("conformer", 1, 1, 32, modes, reps=8, warmup=2),
            Cell("conformer", 1, 4, 8, modes, reps=8, warmup=2)]


def select(cells: List[Cell], models: List[str] | None, reps: int | None) -> List[Cell]:
    """Keeps the cells of `models` (all if None) and overrides reps if given."""
    kept = [c for c in cells if models is None or c.model in models]
    return [replace(c, reps=reps) if reps else c for c in kept]
