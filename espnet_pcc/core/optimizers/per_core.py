"""PerCoreClipOptimizer: clip each core's gradient, average over cores, step.

The streaming form of `espnet_pcc.core.clipping.clipped_average`: cores arrive one at
a time (a virtual-core split, an `accum_grad` micro-batch, a DDP rank) and are
summed, already clipped (the algorithm is in the class docstring).  The task builds
the run's `ClipConfig` once (`PCCASRTask.check_args`) and passes it in.

Cost: a core is one read of its gradient (‖g_k‖) and one fused pass that scales it
and adds it to the sum.  Where the sum lives is a strategy chosen per step
(`espnet_pcc.core.sums`): in one process a parameter's first gradient of a step, scaled
in place, becomes the sum itself (no buffer, no copy: one core costs what
`clip_grad_norm_` costs); under DDP it is written once into the flat buffer that the
step's single all-reduce sums (`espnet_pcc.core.ddp_sums`).

What each mode adds a core with, and how the sum becomes u, is the mode's streaming form in
`espnet_pcc.core.clipping` (`step_scaling`): this module runs it, whatever the mode.  APCC needs
one sum too: with C = min_k ‖g_k‖ every factor is C/‖g_k‖, so cores are added as
g_k·r/‖g_k‖ for a reference norm r and the common C/(K·r) is applied once; r is the norm of
the step's first core in one process (that core is kept as it is) and 1 under DDP (ranks add
their sums, so they share r).  global_of_cores (the paper's baseline) adds the cores as none
does and clips their average as one vector at the step's end (one norm pass over Σ).

Mixed precision: `loss_scale` S multiplies every gradient; norms are ‖S·g_k‖/S, so
the sum stays in scaled units and the usual `GradScaler.unscale_`/`step`/`update`
sequence works on the result.  Without noise, a non-finite core (on any rank) turns the
whole update into NaN, so that the step is skipped on every rank (and, with AMP, the
scaler backs off) exactly as ESPnet does.  With noise it adds 0 instead and the step
goes on (a skip would be a release decided by one utterance, without noise).

Noise (clip_conf.noise_multiplier σ): N(0, σ²C²) per coordinate is added to the sum of
the clipped cores before the average, once per step: in one process to Σ, under DDP by
rank 0 alone into the buffer that the all-reduce sums.  It is drawn from a generator
seeded with (noise_seed, step number), so a resumed run draws what the uninterrupted
one drew, and 1 process and N ranks draw the same values.  The task draws noise_seed
from the OS (`secrets`) unless clip_conf.noise_seed gives one; the checkpoint keeps it.

Quantile-adaptive bound (clip_conf.target_quantile γ, bound_lr η; Andrew et al. 2021,
"Differentially private learning with adaptive clipping", without their noise on the
count): after each step C ← C·exp(−η(b − γ)), b the fraction of the step's finite
cores with ‖g_k‖ ≤ C.  Every rank computes it from the all-reduced counts, so all
ranks hold the same C.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

import torch

from espnet_pcc.core.clip_config import ClipConfig, ClipConfigError
from espnet_pcc.core.clipping import ClipMode, StepOutcome, StepScaling, StepStatistics, \
    grad_norm, step_scaling
from espnet_pcc.core.ddp_sums import core_sums_for
from espnet_pcc.core.noise import add_step_noise
from espnet_pcc.core.optimizers.checkpoint import PCC_KEY, pcc_entry, pending_entry, \
    read_pcc_entry, restore_pending
from espnet_pcc.core.optimizers.interface import CoreReduction
from espnet_pcc.core.optimizers.wrapper import OptimizerWrapper
from espnet_pcc.core.quantile_bound import next_quantile_bound
from espnet_pcc.core.sums import CoreSums, Sums, core_statistics


def check_wrapper_arguments(clip_config: ClipConfig, expected_cores: Optional[float]) -> None:
    """Raises what `PerCoreClipOptimizer` raises for its arguments (its docstring)."""
    if not isinstance(clip_config, ClipConfig):
        raise TypeError("clip_config must be a ClipConfig (ClipConfig.from_options), "
                        f"got {type(clip_config).__name__}")
    if clip_config.mode.runs_stock_loop:
        raise ClipConfigError(f"clip: {clip_config.mode.value} runs espnet2's own loop, "
                              "which clips the averaged gradient; it needs no wrapper")
    if expected_cores is not None and not expected_cores > 0:
        raise ValueError(f"expected_cores must be > 0, got {expected_cores!r}")


class PerCoreClipOptimizer(OptimizerWrapper):
    """Wraps any torch optimizer with per-core clipping (Opacus' DPOptimizer pattern).

    One optimizer step over K cores (all `accum_grad` micro-batches, virtual-core splits
    and DDP ranks), with C = ``clip_config.max_norm``:

    1. After each core's backward, :meth:`add_core` reads that core's gradient g_k from
       ``p.grad`` once for ‖g_k‖, adds f_k·g_k/K̂ to the sum Σ in one fused pass
       (f_k = min(1, C/‖g_k‖); none: 1; the mode's `clipping.step_scaling` gives it) and
       releases ``p.grad``.
    2. :meth:`reduce_cores`, in named stages: the step's statistics, Σ over the ranks with
       the noise (`_reduce`), the bound and the scale (`_outcome`, the mode's `finish`),
       u = scale·Σ into ``p.grad`` (`write_update`), the next step's state (`_end_step`).
    3. :meth:`step` is the wrapped optimizer's step on u.

    K̂ is the number of cores of the previous step (1 at first), so u costs no pass over
    the gradients while K stays the same (APCC and global_of_cores: module docstring).
    The wrapped optimizer's state is shared (`OptimizerWrapper`); :meth:`state_dict` adds
    the `pcc` entry (`espnet_pcc.core.optimizers.checkpoint`).

    Args:
        optimizer: The optimizer ESPnet built from ``optim`` / ``optim_conf``.
        clip_config: The run's validated clipping settings (keyword-only): mode none,
            global_of_cores, per_core, adaptive_per_core or per_example; ``max_norm`` is C.
        process_group: DDP group to reduce over (keyword-only); None = the default group
            when torch.distributed is initialised, else no communication.
        noise_seed: Seeds the noise of every step together with the step number
            (keyword-only; the task passes a secret one, or clip_conf.noise_seed).  torch's
            generator is not a cryptographically secure one (cf. Opacus' ``secure_mode``).
        expected_cores: The fixed denominator D of noisy steps (keyword-only): Poisson
            DP-SGD's expected batch (`espnet_pcc.core.data_loader.poisson`), or per_example's
            nominal batch under another sampler: u = (Σ + noise)/D whatever the step's core count,
            so that the denominator does not depend on the data.  None: K, the step's cores.

    Raises:
        TypeError: ``clip_config`` is not a :class:`ClipConfig`.
        ClipConfigError: ``clip_config.mode`` is global, which clips the averaged
            gradient in espnet2's own loop and needs no wrapper.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, clip_config: ClipConfig,
                 process_group: Any = None, noise_seed: int = 0,
                 expected_cores: Optional[float] = None):
        check_wrapper_arguments(clip_config, expected_cores)
        super().__init__(optimizer)
        self.clip_config = clip_config
        self.process_group = process_group
        self._sums: Optional[CoreSums] = None  # built at the first core
        self._core_norms: List[torch.Tensor] = []
        self._scaling: Optional[StepScaling] = None  # the mode's streaming form, per step
        self.expected_cores = None if expected_cores is None else float(expected_cores)
        # K̂: the number of cores of the last step (class docstring), or the fixed D.
        self._divisor = 1 if expected_cores is None else self.expected_cores
        self.noise_seed = int(noise_seed)
        self.steps = 0  # reduce_cores() calls so far: numbers the noise of each step
        self.privacy_history: List[Dict[str, Any]] = []
        self._bound = clip_config.max_norm  # C; moves with clip_conf.target_quantile
        self._loss_scale = 1.0  # S of the step's cores (the noise is added in S units)

    @property
    def mode(self) -> ClipMode:
        return self.clip_config.mode

    @property
    def max_norm(self) -> Optional[float]:
        """C of the current step (the adaptive bound's current value where it moves)."""
        return self._bound

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        self._sums = None  # the parameter set changed: re-layout lazily

    def __repr__(self) -> str:
        bound = "" if self.max_norm is None else f", max_norm={self.max_norm}"
        return f"PerCoreClipOptimizer(clip={self.mode.value}{bound},\n{self.original_optimizer!r})"

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Releases `p.grad` and starts a new step."""
        super().zero_grad(set_to_none=set_to_none)
        self._reset_accumulation()

    # -- checkpoints (the `pcc` entry: espnet_pcc.core.optimizers.checkpoint) -----
    def state_dict(self) -> Dict[str, Any]:
        """The wrapped optimizer's state plus the `pcc` entry: the clipping settings, the
        noise's seed and steps, the privacy history and any cores of an unfinished step (an
        epoch that ended inside an `accum_grad` cycle), so that `--resume` continues exactly."""
        state = self.original_optimizer.state_dict()
        state[PCC_KEY] = pcc_entry(
            clip=self.mode.value, max_norm=self.max_norm, steps=self.steps,
            noise_seed=self.noise_seed, privacy_history=self.privacy_history,
            pending=pending_entry(self._sums, self._core_norms, self._scaling, self._divisor))
        return state

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Loads our own checkpoints and plain ones (switching a run to PCC)."""
        state_dict, pcc = read_pcc_entry(state_dict)
        self.original_optimizer.load_state_dict(state_dict)
        self._reset_accumulation()
        if pcc is None:
            return
        self.steps = int(pcc.get("steps", 0))
        self.privacy_history = [dict(s) for s in pcc.get("privacy_history") or []]
        if pcc.get("noise_seed") is not None:
            self.noise_seed = int(pcc["noise_seed"])
        if self.clip_config.adaptive_bound and pcc.get("max_norm") is not None:
            self._bound = float(pcc["max_norm"])  # where the adaptive bound had got to
        pending = pcc.get("pending")
        if pending is None:
            return
        # K̂ divides every core of the step on every rank, so every rank restores it;
        # a checkpoint with pending cores in the flat-buffer layout was written with K̂ = 1.
        if self.expected_cores is None:
            self._divisor = pending.get("divisor", 1)
        params = self._params()
        sums = self._start_step(params)
        self._core_norms = restore_pending(pending, sums, self._scaling, params)

    # -- per-core accumulation ----------------------------------------------------
    def _params(self) -> List[torch.nn.Parameter]:
        return [p for group in self.param_groups for p in group["params"] if p.requires_grad]

    def _start_step(self, params: List[torch.nn.Parameter]) -> CoreSums:
        """Σ empty for a new step, in the strategy of this process (built once)."""
        if not params:
            raise ValueError("PerCoreClipOptimizer: the optimizer has no trainable parameters")
        if self._sums is None:
            self._sums = core_sums_for(params, self.process_group)
        self._sums.start(params)
        self._scaling = step_scaling(
            self.mode, max_norm=self.max_norm, divisor=self._divisor,
            fixed_denominator=self.expected_cores is not None,
            keeps_first_core=self._sums.keeps_first_core, device=params[0].device)
        return self._sums

    def _reset_accumulation(self) -> None:
        if self._sums is not None:
            self._sums.sums = []
        self._core_norms = []

    @property
    def num_pending_cores(self) -> int:
        """Cores added on this rank since the last `reduce_cores()`."""
        return len(self._core_norms)

    @torch.no_grad()
    def add_core(self, loss_scale: float = 1.0) -> None:
        """Adds the core whose gradient is in `p.grad` and releases `p.grad`.

        `loss_scale` is the GradScaler's current scale S (1 without AMP): the
        gradient in `p.grad` is S·g_k, and Σ is kept in S units.
        """
        params = self._params()
        sums = self._sums if self._core_norms else self._start_step(params)
        used = [i for i, p in enumerate(params) if p.grad is not None]
        grads = [params[i].grad for i in used]
        norm = grad_norm(grads).to(params[0].device) / loss_scale
        self._loss_scale = loss_scale
        # With noise, whether the step is taken must not depend on one core: a non-finite
        # core adds 0 (it is counted, and reported as nonfinite_cores) and the step goes on
        # with its noise.  Without noise it poisons the step, which every rank skips.
        if not (self.clip_config.noise_multiplier > 0 and not bool(torch.isfinite(norm))):
            sums.add(used, grads, self._scaling.factor(norm))
        self._core_norms.append(norm)
        for p in params:
            p.grad = None

    @torch.no_grad()
    def gather_pending(self) -> None:
        """Moves every rank's pending cores to rank 0 (collective; DDP only, else a no-op).

        ESPnet writes the checkpoint on rank 0 alone, so the cores of an `accum_grad` cycle
        that an epoch ends inside must all be there for `--resume` to continue the cycle:
        rank 0 ends up with the sum over ranks and every core's norm, the other ranks with
        none (`load_state_dict` gives the pending cores to rank 0 only).  Training on without
        a resume is unchanged: the next `reduce_cores` sums the same cores.  Must be called
        on every rank (`espnet_pcc.core.ddp_sums.FlatSums.gather`).
        """
        sums = self._sums if self._core_norms else self._start_step(self._params())
        norms = sums.gather(self._core_norms)
        if norms is None:
            self._reset_accumulation()
        elif norms:
            self._core_norms = norms

    # -- the step -----------------------------------------------------------------
    @torch.no_grad()
    def reduce_cores(self) -> CoreReduction:
        """Averages the accumulated cores of all ranks into `p.grad`.

        One collective per step, whatever `accum_grad` and `num_cores` are (under DDP: a
        SUM of the flat buffer, which also carries the statistics).  Must be called on
        every rank.  Returns the step's statistics.
        """
        params = self._params()
        if not self._core_norms:
            # A step may hold no core: Poisson sampling drew nothing for it (its update is
            # the noise alone), or under DDP this rank's cores went to rank 0 in
            # gather_pending (it still takes part, with zeros).
            self._start_step(params)
        stats, sums, used, noise_scale = self._reduce(params)
        outcome = self._outcome(stats, sums, used)
        write_update(params, sums, used, outcome.scale)
        # What the step reports, before `_end_step` moves K̂ on (the noise's sd: σC/D or σC/K).
        noise_std = 0.0
        if noise_scale:
            noise_std = self.clip_config.noise_multiplier * outcome.bound / (
                self._divisor if self.expected_cores is not None else stats.num_cores)
        reduction = CoreReduction.of_step(stats, outcome, noise_std=noise_std, exact_update_norm=(
            not noise_scale and self.expected_cores is None))
        self._end_step(stats, outcome)
        return reduction

    def _reduce(self, params: List[torch.nn.Parameter]):
        """Σ and the statistics over all ranks, with the step's noise in Σ."""
        norms = torch.stack(self._core_norms) if self._core_norms else \
            torch.empty(0, device=params[0].device)
        local = core_statistics(norms, self._scaling.counted_bound)
        # In Σ's units: Σ = Σ_k f_k·S·g_k/K̂, so σ·C·S/K̂ there is σ·C on the plain sum.
        noise_scale = (self.clip_config.noise_multiplier * self.max_norm * self._loss_scale
                       / self._divisor) if self.clip_config.noise_multiplier > 0 else 0.0

        def add_noise(sums: Sums, used: List[bool]) -> None:
            add_step_noise(sums, used, params, self.noise_seed, self.steps, noise_scale)

        sums, used, stats = self._sums.reduce(local, add_noise if noise_scale else None)
        return stats, sums, used, noise_scale

    def _outcome(self, stats: StepStatistics, sums: Sums, used: List[bool]) -> StepOutcome:
        """The step's C, the factor that turns Σ into u (the mode's `finish`; global_of_cores
        reads ‖Σ‖ over all ranks, in the cores' units) and its clipped cores; the factor is NaN
        where a core is non-finite and there is no noise, so that every rank skips the step."""
        sum_norm = None
        if self._scaling.needs_sum_norm:
            sum_norm = grad_norm([s for s, u in zip(sums, used) if u]).item() / self._loss_scale
        outcome = self._scaling.finish(stats, sum_norm)
        if stats.nonfinite and not self.clip_config.noise_multiplier > 0:
            return StepOutcome(outcome.bound, math.nan, outcome.num_clipped)
        return outcome

    def _end_step(self, stats: StepStatistics, outcome: StepOutcome) -> None:
        """The next step: K̂ = K, the step counter, the adaptive bound."""
        # A step may hold no core (Poisson sampling drew nothing): no fraction to follow.
        if not stats.nonfinite and self.clip_config.adaptive_bound and stats.num_cores:
            self._bound = next_quantile_bound(
                outcome.bound, (stats.num_cores - outcome.num_clipped) / stats.num_cores,
                self.clip_config.target_quantile, self.clip_config.bound_lr)
        self._reset_accumulation()
        if self.expected_cores is None and stats.num_cores:
            self._divisor = stats.num_cores
        self.steps += 1


def write_update(params: List[torch.nn.Parameter], sums: Sums, used: List[bool],
                 scale: float) -> None:
    """p.grad = scale·Σ; a parameter no core used keeps grad None, as after a plain
    backward.  Σ backs p.grad until zero_grad()."""
    grads = [s for s, u in zip(sums, used) if u]
    if grads and scale != 1.0:
        torch._foreach_mul_(grads, scale)
    for p, s, u in zip(params, sums, used):
        if u:
            p.grad = s if s.dtype == p.dtype else s.to(p.dtype)


__all__ = ["PerCoreClipOptimizer", "check_wrapper_arguments", "write_update"]
