"""Per-core clipping, the mathematics of the paper.

Wang et al. 2024, "Efficiently Train ASR Models that Memorize Less and Perform
Better with Per-core Clipping".  A *core* k holds a shard of the global batch and
computes the gradient of its own mean loss, g_k.  With K cores and bound C:

    none               u = (1/K) Σ_k g_k
    global             u = ḡ · min(1, C/‖ḡ‖),          ḡ = (1/K) Σ_k g_k
    per_core (PCC)     u = (1/K) Σ_k g_k · min(1, C/‖g_k‖)
    adaptive_per_core  the same with C = min_k ‖g_k‖   (APCC, no hyperparameter)
    per_example        per_core with one utterance per core (DP-SGD style)

‖·‖ is the L2 norm over *all* parameters of the model.  Everything here works on
lists of tensors (one per parameter) and imports nothing from ESPnet.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch

Grads = Sequence[torch.Tensor]


class ClipMode(str, enum.Enum):
    """The `clip:` values a training config may name."""

    NONE = "none"
    GLOBAL = "global"
    PER_CORE = "per_core"
    ADAPTIVE_PER_CORE = "adaptive_per_core"
    PER_EXAMPLE = "per_example"

    @classmethod
    def parse(cls, value: str) -> "ClipMode":
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(m.value for m in cls)
            raise ValueError(f"clip: unknown value {value!r}; choose one of {choices}") from None

    # Which setting belongs to which mode: stated here once, read by clip_config and optim.

    @property
    def clips_each_core(self) -> bool:
        """True where every core is clipped before the average (PCC family)."""
        return self in (ClipMode.PER_CORE, ClipMode.ADAPTIVE_PER_CORE, ClipMode.PER_EXAMPLE)

    @property
    def has_fixed_bound(self) -> bool:
        """True where each core is clipped to a given C (clip_conf.max_norm required): the
        modes with a fixed sensitivity, so the only ones that noise and the quantile-adaptive
        bound apply to."""
        return self in (ClipMode.PER_CORE, ClipMode.PER_EXAMPLE)

    @property
    def accepts_max_norm(self) -> bool:
        """True where clip_conf.max_norm means something: C of the fixed-bound modes, and
        global's override of --grad_clip."""
        return self.has_fixed_bound or self is ClipMode.GLOBAL

    @property
    def splits_micro_batches(self) -> bool:
        """True where clip_conf.num_cores may cut a micro-batch into several cores.  `none`
        with num_cores > 1 is the control of PCC: the same per-core forwards and average,
        nothing clipped."""
        return self in (ClipMode.PER_CORE, ClipMode.ADAPTIVE_PER_CORE, ClipMode.NONE)

    @property
    def one_utterance_per_core(self) -> bool:
        """True where each utterance is its own core (per_example): a micro-batch is split
        per utterance, so a Poisson item is a whole micro-batch, one unit moves the sum by C
        per utterance, and noise needs no hashed cores (any sampler's batches are fine)."""
        return self is ClipMode.PER_EXAMPLE

    @property
    def allows_speaker_cores(self) -> bool:
        """True where a core may be one speaker's utterances (clip_conf.core_by: speaker)."""
        return self in (ClipMode.PER_CORE, ClipMode.ADAPTIVE_PER_CORE)


def grad_norm(grads: Grads) -> torch.Tensor:
    """‖g‖₂ over all tensors of one gradient, as a 0-dim float32 tensor."""
    if len(grads) == 0:
        return torch.zeros(())
    norms = torch._foreach_norm([g.detach() for g in grads], 2)
    return torch.linalg.vector_norm(torch.stack([n.float() for n in norms]), 2)


def clip_factor(norm: torch.Tensor, max_norm: torch.Tensor | float) -> torch.Tensor:
    """min(1, C/‖g‖); a zero gradient keeps factor 1 (nothing to clip)."""
    norm = torch.as_tensor(norm, dtype=torch.float32)
    max_norm = torch.as_tensor(max_norm, dtype=torch.float32, device=norm.device)
    ratio = max_norm / norm.clamp_min(torch.finfo(torch.float32).tiny)
    return torch.clamp(ratio, max=1.0)


def clip_bound(core_norms: torch.Tensor, mode: ClipMode, max_norm: Optional[float]) -> torch.Tensor:
    """C of one step: `max_norm`, or min_k ‖g_k‖ for APCC, or +inf where nothing clips."""
    if mode is ClipMode.ADAPTIVE_PER_CORE:
        return core_norms.min()
    if mode is ClipMode.NONE or max_norm is None:
        return torch.tensor(float("inf"), device=core_norms.device)
    return torch.tensor(float(max_norm), device=core_norms.device)


@dataclass
class ClipStats:
    """What one clipped step looked like; reported per step by the trainer."""

    core_norms: torch.Tensor  # ‖g_k‖ for k = 1..K
    bound: torch.Tensor  # C used this step
    factors: torch.Tensor  # the factor applied to each core (global: to the mean)
    update_norm: torch.Tensor  # ‖u‖ of the final update

    @property
    def clipped_fraction(self) -> torch.Tensor:
        """Fraction of cores (global: of the single mean) whose factor is < 1."""
        return (self.factors < 1.0).float().mean()


def clipped_average(core_grads: Sequence[Grads], mode: ClipMode | str,
                    max_norm: Optional[float] = None) -> tuple[List[torch.Tensor], ClipStats]:
    """The update u of one step from the K core gradients (the reference form).

    `core_grads[k][i]` is core k's gradient of parameter i.  Returns u (one tensor
    per parameter) and the step's statistics.  The trainer computes the same thing
    streaming, one core at a time, in `espnet_pcc.optim`; this form is the
    definition it is tested against.
    """
    mode = ClipMode.parse(mode) if isinstance(mode, str) else mode
    num_cores = len(core_grads)
    if num_cores == 0:
        raise ValueError("clipped_average: no core gradients")
    norms = torch.stack([grad_norm(g) for g in core_grads])
    bound = clip_bound(norms, mode, max_norm)
    if mode.clips_each_core:
        factors = clip_factor(norms, bound)
    else:
        factors = torch.ones(num_cores)
    update = [
        sum(f.to(gs[i].dtype) * gs[i] for f, gs in zip(factors, core_grads)) / num_cores
        for i in range(len(core_grads[0]))
    ]
    if mode is ClipMode.GLOBAL:
        factors = clip_factor(grad_norm(update), bound).reshape(1)
        update = [u * factors[0] for u in update]
    return update, ClipStats(norms, bound, factors, grad_norm(update))
