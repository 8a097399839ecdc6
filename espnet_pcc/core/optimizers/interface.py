"""What a trainer calls on a per-core clipping optimizer, and what one step reports.

`CoreClippingOptimizer` is the interface both trainers drive (`espnet_pcc.espnet2.trainer`,
`espnet_pcc.lightning`); `PerCoreClipOptimizer` implements it, and any wrapper registered
as the ``espnet_pcc.optimizers`` entry point that implements it trains too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Protocol, runtime_checkable

from espnet_pcc.core.clipping import StepOutcome, StepStatistics


@dataclass
class CoreReduction:
    """Statistics of one optimizer step, over all cores of all ranks."""

    num_cores: int
    bound: float  # C used (APCC: min_k ‖g_k‖; none: inf)
    norm_min: float
    norm_mean: float
    norm_max: float
    clipped_fraction: float
    nonfinite_cores: int
    #: ‖u‖ when it follows from the statistics without a pass over u: with one finite
    #: core and no noise, u = f_1·g_1 and ‖u‖ = min(‖g_1‖, C).  None otherwise.
    update_norm: Optional[float] = None
    #: Standard deviation of the noise added to each coordinate of u (σC/K); 0: none.
    noise_std: float = 0.0

    @classmethod
    def of_step(cls, stats: StepStatistics, outcome: StepOutcome, *, noise_std: float,
                exact_update_norm: bool) -> "CoreReduction":
        """The statistics of a step whose cores gave `stats` and whose bound and scale gave
        `outcome`; `exact_update_norm`: the update is the cores' sum divided by nothing but
        their count (no noise, no fixed denominator), so one finite core's ‖u‖ is min(‖g‖, C)."""
        some = stats.num_cores > 0
        return cls(
            num_cores=stats.num_cores, bound=outcome.bound,
            norm_min=stats.norm_min if some else math.nan,
            norm_mean=stats.norm_sum / max(stats.num_cores - stats.nonfinite, 1),
            norm_max=stats.norm_max if some else math.nan,
            clipped_fraction=outcome.num_clipped / max(stats.num_cores, 1),
            nonfinite_cores=stats.nonfinite,
            update_norm=(min(stats.norm_max, outcome.bound) if stats.num_cores == 1
                         and not stats.nonfinite and exact_update_norm else None),
            noise_std=noise_std)

    def as_report(self) -> Dict[str, float]:
        """Reporter keys (docs/usage.md, "Telemetry"); noise_std only where noise is added."""
        report = {
            "clip": 100.0 * self.clipped_fraction,
            "clip_bound": self.bound,
            "core_norm_min": self.norm_min,
            "core_norm_mean": self.norm_mean,
            "core_norm_max": self.norm_max,
            "num_cores": float(self.num_cores),
        }
        if self.noise_std:
            report["noise_std"] = self.noise_std
        return report


@runtime_checkable
class CoreClippingOptimizer(Protocol):
    """What `PCCTrainer` calls on the optimizer of a per-core mode: any wrapper registered as
    the `espnet_pcc.optimizers` entry point that implements this trains.  The last five are a
    torch optimizer's own (ESPnet's checkpoints, its schedulers and `GradScaler` use them);
    torch's LR schedulers also check `isinstance(optimizer, torch.optim.Optimizer)`, so a
    wrapper subclasses it as `PerCoreClipOptimizer` does."""

    #: Optimizer steps taken (`reduce_cores` calls): numbers the noise, reported as epsilon.
    steps: int
    #: The noise's seed (checkpointed): with noise, the batch sampler's key is this too.
    noise_seed: int
    #: What the noisy steps so far ran with (`accounting.record_step`; the trainer writes it,
    #: the wrapper keeps it in its state): epsilon composes it across --resume.  A resume is
    #: checked before training from `saved_privacy_history` of the checkpoint's state (as
    #: `PerCoreClipOptimizer.state_dict` lays it out), and again in the first noisy epoch.
    privacy_history: List[Dict[str, Any]]
    param_groups: List[Dict[str, Any]]

    def add_core(self, loss_scale: float = 1.0) -> None:
        """Takes the core whose gradient is in `p.grad` (scaled by `loss_scale`)."""

    def reduce_cores(self) -> CoreReduction:
        """Writes the step's update into `p.grad` (collective under DDP)."""

    def gather_pending(self) -> None:
        """At an epoch's end: the cores of an unfinished step onto rank 0 (collective)."""

    def step(self, closure: Any = None) -> Any:
        """The wrapped optimizer's step on the update in `p.grad`."""

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Releases `p.grad` and starts a new step."""

    def state_dict(self) -> Dict[str, Any]:
        """What ESPnet's checkpoint keeps of the optimizer (a pending step's cores included)."""

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restores `state_dict`'s optimizer (and a pending step's cores)."""


def implements_core_clipping(optimizer: Any) -> bool:
    """Whether ``optimizer`` has every member of `CoreClippingOptimizer`, looked up as the
    trainer will use them: a wrapper that forwards attributes to an inner optimizer through
    ``__getattr__`` counts (``isinstance`` against a runtime-checkable protocol does not see
    those from Python 3.12 on, which looks members up statically)."""
    members = [name for name in vars(CoreClippingOptimizer) if not name.startswith("_")]
    members += list(CoreClippingOptimizer.__annotations__)
    return all(hasattr(optimizer, name) for name in members)


__all__ = ["CoreClippingOptimizer", "CoreReduction", "implements_core_clipping"]
