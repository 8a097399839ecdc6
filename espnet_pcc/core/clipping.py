"""Per-core clipping, the mathematics of the paper.

Wang et al. 2024, "Efficiently Train ASR Models that Memorize Less and Perform
Better with Per-core Clipping".  A *core* k holds a shard of the global batch and
computes the gradient of its own mean loss, g_k.  With K cores and bound C:

    none               u = (1/K) Σ_k g_k
    global             u = ḡ · min(1, C/‖ḡ‖),          ḡ = (1/K) Σ_k g_k
    global_of_cores    the same ḡ and u, each g_k from its own core's forward and backward
                       (the paper's baseline: data-parallel training with global clipping)
    per_core (PCC)     u = (1/K) Σ_k g_k · min(1, C/‖g_k‖)
    adaptive_per_core  the same with C = min_k ‖g_k‖   (APCC, no hyperparameter)
    per_example        per_core with one utterance per core (DP-SGD style)

`global` and `global_of_cores` are one formula; they differ in where the cores come from.
`global` is espnet2's own loop (one forward of the whole micro-batch: K = 1 per micro-batch);
`global_of_cores` runs PCC's per-core loop, so its forwards (and BatchNorm's statistics) are
PCC's and only the clipping differs.

‖·‖ is the L2 norm over *all* parameters of the model.  Everything here works on
lists of tensors (one per parameter) and imports nothing from ESPnet.

Each mode is stated here in both forms: the reference form (:func:`clipped_average`, all K
cores at once) and the streaming form that `espnet_pcc.core.optimizers.per_core` runs, one core at a
time (:func:`step_scaling`: what a core enters the sum with, and what turns the sum into u).  A new
variant is a `ClipMode` value, its properties, and its scaling class, all in this module.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import torch

Grads = Sequence[torch.Tensor]
_TINY = torch.finfo(torch.float32).tiny


class ClipMode(str, enum.Enum):
    """The `clip:` values a training config may name."""

    NONE = "none"
    GLOBAL = "global"
    GLOBAL_OF_CORES = "global_of_cores"
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
    def clips_nothing(self) -> bool:
        """True where no gradient is clipped (none): the plain mean, or with num_cores > 1 the
        control of PCC."""
        return self is ClipMode.NONE

    @property
    def clips_mean(self) -> bool:
        """True where the averaged gradient is clipped as one vector: global (espnet2's own
        --grad_clip) and global_of_cores (the same on the average of per-core gradients)."""
        return self in (ClipMode.GLOBAL, ClipMode.GLOBAL_OF_CORES)

    @property
    def runs_stock_loop(self) -> bool:
        """True where espnet2's own training loop runs whatever the settings (global: one
        forward of each micro-batch, its --grad_clip); such a mode is not streamed and takes
        no optimizer wrapper."""
        return self is ClipMode.GLOBAL

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
    def requires_max_norm(self) -> bool:
        """True where clip_conf.max_norm must be given: C of the fixed-bound modes and of
        global_of_cores (global falls back to --grad_clip)."""
        return self.has_fixed_bound or self is ClipMode.GLOBAL_OF_CORES

    @property
    def accepts_max_norm(self) -> bool:
        """True where clip_conf.max_norm means something: C of the fixed-bound modes and of
        global_of_cores, and global's override of --grad_clip."""
        return self.requires_max_norm or self.clips_mean

    @property
    def splits_micro_batches(self) -> bool:
        """True where clip_conf.num_cores may cut a micro-batch into several cores.  `none`
        with num_cores > 1 is the control of PCC: the same per-core forwards and average,
        nothing clipped; global_of_cores the same with the average clipped."""
        return self in (ClipMode.PER_CORE, ClipMode.ADAPTIVE_PER_CORE, ClipMode.NONE,
                        ClipMode.GLOBAL_OF_CORES)

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
    ratio = max_norm / norm.clamp_min(_TINY)
    return torch.clamp(ratio, max=1.0)


def clip_bound(core_norms: torch.Tensor, mode: ClipMode, max_norm: Optional[float]) -> torch.Tensor:
    """C of one step: `max_norm`, or min_k ‖g_k‖ for APCC, or +inf where nothing clips."""
    if mode is ClipMode.ADAPTIVE_PER_CORE:
        return core_norms.min()
    if mode.clips_nothing or max_norm is None:
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
    streaming, one core at a time, in `espnet_pcc.core.optimizers.per_core`; this form is the
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
    if mode.clips_mean:
        factors = clip_factor(grad_norm(update), bound).reshape(1)
        update = [u * factors[0] for u in update]
    return update, ClipStats(norms, bound, factors, grad_norm(update))


# -- the streaming form ----------------------------------------------------------------------


@dataclass(frozen=True)
class StepStatistics:
    """A streamed step's core norms over all cores of all ranks (`espnet_pcc.core.sums` computes
    them in one process, `espnet_pcc.core.ddp_sums` combines them over ranks)."""

    num_cores: int
    norm_sum: float  # over the finite cores
    num_over_bound: int  # cores whose factor against the C known before the step is < 1
    nonfinite: int
    norm_min: float  # over the finite cores (+inf: none)
    norm_max: float  # over the finite cores (-inf: none)
    num_at_min: int  # finite cores of norm norm_min

    @classmethod
    def of_values(cls, values: Sequence[float]) -> "StepStatistics":
        """From the seven numbers in field order (`espnet_pcc.core.sums.core_statistics`)."""
        num_cores, norm_sum, over, nonfinite, norm_min, norm_max, at_min = values
        return cls(int(num_cores), norm_sum, int(over), int(nonfinite), norm_min, norm_max,
                   int(at_min))


@dataclass(frozen=True)
class StepOutcome:
    """How a streamed step ends: its C, the factor that turns Σ into u, the clipped cores."""

    bound: float
    scale: float
    num_clipped: int


class BoundScaling:
    """The streaming form of the modes whose C is known before the step (per_core, per_example;
    none with C = +inf).  Core k enters Σ as f_k·g_k/D, f_k = min(1, C/‖g_k‖) and D the divisor
    the optimizer keeps (K̂, the previous step's core count, or Poisson's fixed denominator);
    u = Σ·D/K, or u = Σ where D is the fixed denominator."""

    #: r of adaptive_per_core (none here); kept with a checkpoint's pending cores.
    reference: Optional[torch.Tensor] = None
    #: Whether `finish` needs ‖Σ‖ (global_of_cores: the average is clipped as one vector).
    needs_sum_norm = False

    def __init__(self, bound: float, divisor: float, fixed_denominator: bool):
        self.bound, self.divisor, self.fixed_denominator = bound, divisor, fixed_denominator

    @property
    def counted_bound(self) -> float:
        """The C a core's norm is counted against in `StepStatistics.num_over_bound`."""
        return self.bound

    def resume(self, reference: torch.Tensor) -> None:
        """Takes over a checkpoint's pending cores (nothing to restore here)."""

    def factor(self, norm: torch.Tensor) -> Optional[torch.Tensor]:
        """What the core of norm ‖g_k‖ is multiplied by in Σ; None where that is 1."""
        factor = clip_factor(norm, self.bound) if math.isfinite(self.bound) else None
        if self.divisor == 1:
            return factor
        return (torch.ones_like(norm) if factor is None else factor) / self.divisor

    def finish(self, stats: StepStatistics, sum_norm: Optional[float] = None) -> StepOutcome:
        """The step's outcome from its statistics over all ranks (``sum_norm``, ‖Σ‖ in the
        cores' units, is read only where `needs_sum_norm`)."""
        if self.fixed_denominator:
            scale = 1.0  # Σ was divided by the fixed D as the cores came in
        else:
            scale = self.divisor / stats.num_cores if stats.num_cores else 0.0
        return StepOutcome(self.bound, scale, stats.num_over_bound)


class MeanClipScaling(BoundScaling):
    """The streaming form of global_of_cores: cores enter Σ as they are (g_k/D, as with none),
    and the average ḡ = Σ·D/K is clipped as one vector, u = ḡ·min(1, C/‖ḡ‖).  ‖ḡ‖ needs the
    summed Σ (under DDP after the all-reduce, so every rank computes the same factor): one
    pass over Σ more than per_core's step, the pass espnet2's `clip_grad_norm_` makes."""

    needs_sum_norm = True

    def __init__(self, bound: float, divisor: float, fixed_denominator: bool):
        super().__init__(math.inf, divisor, fixed_denominator)  # no core is clipped
        self.mean_bound = bound

    def finish(self, stats: StepStatistics, sum_norm: Optional[float] = None) -> StepOutcome:
        """As `BoundScaling.finish`, times min(1, C/‖ḡ‖); a clipped average counts every core
        of the step as clipped (the `clip` telemetry reads 100 %, as espnet2's does)."""
        if sum_norm is None:
            raise ValueError("global_of_cores: finish needs the norm of the summed cores")
        average = super().finish(stats)
        mean_norm = average.scale * sum_norm
        factor = float(clip_factor(torch.tensor(mean_norm), self.mean_bound))
        clipped = stats.num_cores if factor < 1.0 else 0
        return StepOutcome(self.mean_bound, average.scale * factor, clipped)


class AdaptiveScaling:
    """The streaming form of adaptive_per_core: C = min_k ‖g_k‖ is known only at the step's end,
    but then every factor is C/‖g_k‖, so core k enters Σ as g_k·r/‖g_k‖ for a reference norm r
    and u = Σ·C/(K·r).  r is the norm of the step's first core where that core can go into Σ
    as it is (`keeps_first_core`: one process, no copy), else 1 (under DDP the ranks add their
    sums, so they share r)."""

    counted_bound = math.inf  # C is not known while the cores come in
    needs_sum_norm = False

    def __init__(self, keeps_first_core: bool, device: torch.device):
        self.reference: Optional[torch.Tensor] = (
            None if keeps_first_core else torch.ones((), device=device))

    def resume(self, reference: torch.Tensor) -> None:
        """Takes over a checkpoint's pending cores, summed with `reference` as r."""
        self.reference = reference

    def factor(self, norm: torch.Tensor) -> Optional[torch.Tensor]:
        if self.reference is None:  # the step's first core sets r and goes in as it is
            self.reference = norm.clamp_min(_TINY)
            return None
        # r/‖g_k‖ is inf for a zero core (or one below float32's range), and 0·inf = NaN
        # would skip a step whose update is 0 (C = min_k ‖g_k‖ = 0): such a core adds
        # 0 instead.  A non-finite core still poisons the step (its norm is counted).
        ratio = self.reference / norm
        return torch.where(torch.isinf(ratio), torch.zeros_like(ratio), ratio)

    def finish(self, stats: StepStatistics, sum_norm: Optional[float] = None) -> StepOutcome:
        bound = stats.norm_min
        scale = bound / (stats.num_cores * self.reference.item()) if stats.num_cores else 0.0
        # Every finite core above the minimum is scaled down to it.
        return StepOutcome(bound, scale, stats.num_cores - stats.nonfinite - stats.num_at_min)


StepScaling = Union[BoundScaling, MeanClipScaling, AdaptiveScaling]


def step_scaling(mode: ClipMode, *, max_norm: Optional[float], divisor: float,
                 fixed_denominator: bool, keeps_first_core: bool,
                 device: torch.device) -> StepScaling:
    """The streaming form of `mode` for one step (the one place a mode picks it).

    `max_norm` is the step's C; `divisor` and `fixed_denominator` are the optimizer's D (see
    `BoundScaling`); `keeps_first_core` whether the step's first core may go into Σ unscaled.
    """
    if mode is ClipMode.ADAPTIVE_PER_CORE:
        return AdaptiveScaling(keeps_first_core, device)
    if mode.runs_stock_loop:
        raise ValueError(f"clip: {mode.value} runs espnet2's own loop; it is not streamed")
    if mode.clips_mean:
        return MeanClipScaling(float(max_norm), divisor, fixed_denominator)
    bound = float(max_norm) if mode.has_fixed_bound else math.inf
    return BoundScaling(bound, divisor, fixed_denominator)
