"""PerCoreClipOptimizer: clip each core's gradient, average over cores, step.

The streaming form of `espnet_pcc.clipping.clipped_average`: cores arrive one at
a time (a virtual-core split, an `accum_grad` micro-batch, a DDP rank) and are
summed, already clipped (the algorithm is in the class docstring).  The task builds
the run's `ClipConfig` once (`PCCASRTask.check_args`) and passes it in.

Cost: a core is one read of its gradient (‖g_k‖) and one fused pass that scales it
and adds it to the sum.  Where the sum lives is a strategy chosen per step
(`espnet_pcc.core_sums`): in one process a parameter's first gradient of a step, scaled
in place, becomes the sum itself (no buffer, no copy: one core costs what
`clip_grad_norm_` costs); under DDP it is written once into the flat buffer that the
step's single all-reduce sums (`espnet_pcc.ddp_sums`).

What each mode adds a core with, and how the sum becomes u, is the mode's streaming form in
`espnet_pcc.clipping` (`step_scaling`): this module runs it, whatever the mode.  APCC needs
one sum too: with C = min_k ‖g_k‖ every factor is C/‖g_k‖, so cores are added as
g_k·r/‖g_k‖ for a reference norm r and the common C/(K·r) is applied once.

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

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Protocol, runtime_checkable

import numpy as np
import torch

from espnet_pcc.clip_config import ClipConfig, ClipConfigError
from espnet_pcc.clipping import ClipMode, StepOutcome, StepScaling, StepStatistics, grad_norm, \
    step_scaling
from espnet_pcc.core_sums import CoreSums, Sums, core_statistics
from espnet_pcc.ddp_sums import core_sums_for, sums_of_flat_buffer


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

    def as_report(self) -> Dict[str, float]:
        """Reporter keys (see README "Telemetry"); noise_std only where noise is added."""
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


def saved_privacy_history(optimizer_state: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The privacy history in an optimizer state that `PerCoreClipOptimizer.state_dict`
    wrote ([] for one without it: a plain optimizer's, or one from before histories)."""
    pcc = optimizer_state.get("pcc") or {}
    return [dict(s) for s in pcc.get("privacy_history") or []]


class PerCoreClipOptimizer(torch.optim.Optimizer):
    """Wraps any torch optimizer with per-core clipping (Opacus' DPOptimizer pattern).

    One optimizer step over K cores (all `accum_grad` micro-batches, virtual-core splits
    and DDP ranks), with C = ``clip_config.max_norm``:

    1. After each core's backward, :meth:`add_core` reads that core's gradient g_k from
       ``p.grad`` once for ‖g_k‖, adds f_k·g_k/K̂ to the sum Σ in one fused pass
       (f_k = min(1, C/‖g_k‖); none: 1; the mode's `clipping.step_scaling` gives it) and
       releases ``p.grad``.
    2. :meth:`reduce_cores`, in named stages: the step's statistics, Σ over the ranks with
       the noise (`_reduce`), the bound and the scale (`_outcome`, the mode's `finish`),
       u = scale·Σ into ``p.grad`` (`_write_update`), the next step's state (`_end_step`).
    3. :meth:`step` is the wrapped optimizer's step on u.

    K̂ is the number of cores of the previous step (1 at first), so u costs no pass
    over the gradients while K stays the same.  adaptive_per_core adds g_k·r/‖g_k‖
    instead and writes u = Σ·min_k‖g_k‖/(K·r), with r the norm of the step's first
    core in one process (that core is kept as it is) and 1 under DDP (ranks add their
    sums, so they share r).  global_of_cores adds the cores as none does and clips the
    average as one vector at the step's end (one norm pass over the summed Σ).

    The wrapper shares ``param_groups``, ``state`` and ``defaults`` with the wrapped
    optimizer, so LR schedulers and ``GradScaler`` see one optimizer; its
    :meth:`state_dict` adds the clipping settings and any cores still pending.

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
            DP-SGD's expected batch (`espnet_pcc.poisson`), or per_example's nominal batch
            under another sampler: u = (Σ + noise)/D whatever the step's core count, so that
            the denominator does not depend on the data.  None: K, the step's cores.

    Raises:
        TypeError: ``clip_config`` is not a :class:`ClipConfig`.
        ClipConfigError: ``clip_config.mode`` is global, which clips the averaged
            gradient in espnet2's own loop and needs no wrapper.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, clip_config: ClipConfig,
                 process_group: Any = None, noise_seed: int = 0,
                 expected_cores: Optional[float] = None):
        # torch.optim.Optimizer.__init__ is not called on purpose: all optimizer
        # state lives in the wrapped instance (the Opacus DPOptimizer pattern).
        if not isinstance(clip_config, ClipConfig):
            raise TypeError("clip_config must be a ClipConfig (ClipConfig.from_options), "
                            f"got {type(clip_config).__name__}")
        if clip_config.mode.runs_stock_loop:
            raise ClipConfigError(f"clip: {clip_config.mode.value} runs espnet2's own loop, "
                                  "which clips the averaged gradient; it needs no wrapper")
        self.original_optimizer = optimizer
        self.clip_config = clip_config
        self.process_group = process_group
        self._sums: Optional[CoreSums] = None  # built at the first core
        self._core_norms: List[torch.Tensor] = []
        self._scaling: Optional[StepScaling] = None  # the mode's streaming form, per step
        if expected_cores is not None and not expected_cores > 0:
            raise ValueError(f"expected_cores must be > 0, got {expected_cores!r}")
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

    # -- torch.optim.Optimizer surface, delegated ---------------------------------
    @property
    def param_groups(self):
        return self.original_optimizer.param_groups

    @param_groups.setter
    def param_groups(self, value):
        self.original_optimizer.param_groups = value

    @property
    def state(self):
        return self.original_optimizer.state

    @property
    def defaults(self):
        return self.original_optimizer.defaults

    def step(self, closure=None):
        return self.original_optimizer.step(closure)

    def add_param_group(self, param_group: dict) -> None:
        self.original_optimizer.add_param_group(param_group)
        self._sums = None  # the parameter set changed: re-layout lazily

    def __repr__(self) -> str:
        bound = "" if self.max_norm is None else f", max_norm={self.max_norm}"
        return f"PerCoreClipOptimizer(clip={self.mode.value}{bound},\n{self.original_optimizer!r})"

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Releases `p.grad` and starts a new step."""
        self.original_optimizer.zero_grad(set_to_none=set_to_none)
        self._reset_accumulation()

    # -- checkpoints --------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """The wrapped optimizer's state plus a `pcc` entry.

        The entry holds the clipping settings and, when an epoch ended in the
        middle of an `accum_grad` cycle, the cores accumulated so far, so that
        `--resume` continues the cycle exactly.
        """
        state = self.original_optimizer.state_dict()
        pending = None
        if self._core_norms:
            pending = {"sums": [None if s is None else s.clone() for s in self._sums.sums],
                       "core_norms": torch.stack(self._core_norms),
                       "ref": self._scaling.reference,
                       "divisor": self._divisor}
        # The noise's seed, secret unless clip_conf.noise_seed gave it: a resume draws the
        # noise the uninterrupted run would have drawn.  (So checkpoint.pth is as private as
        # the training data; the released model files hold no optimizer state.)
        state["pcc"] = {"clip": self.mode.value, "max_norm": self.max_norm, "pending": pending,
                        "steps": self.steps, "noise_seed": self.noise_seed,
                        "privacy_history": [dict(s) for s in self.privacy_history]}
        return state

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Loads our own checkpoints and plain ones (switching a run to PCC)."""
        state_dict = dict(state_dict)
        pcc = state_dict.pop("pcc", None)
        self.original_optimizer.load_state_dict(state_dict)
        self._reset_accumulation()
        if pcc is not None:
            self.steps = int(pcc.get("steps", 0))
            self.privacy_history = [dict(s) for s in pcc.get("privacy_history") or []]
            if pcc.get("noise_seed") is not None:
                self.noise_seed = int(pcc["noise_seed"])
            if self.clip_config.adaptive_bound and pcc.get("max_norm") is not None:
                self._bound = float(pcc["max_norm"])  # where the adaptive bound had got to
        pending = None if pcc is None else pcc.get("pending")
        if pending is None:
            return
        # K̂ divides every core of the step on every rank, so every rank restores it;
        # a checkpoint with pending cores in the flat-buffer layout was written with K̂ = 1.
        if self.expected_cores is None:
            self._divisor = pending.get("divisor", 1)
        params = self._params()
        sums = self._start_step(params)
        if not sums.resumes_pending:
            return  # rank 0 resumes every rank's pending cores (gather_pending)
        device = params[0].device
        if "sums" in pending:
            pending_sums, ref = pending["sums"], pending["ref"]
        else:  # the flat-buffer layout: summed with r = 1
            pending_sums, ref = sums_of_flat_buffer(pending, params), None
        ref = sums.restore([None if s is None else s.to(device) for s in pending_sums],
                           None if ref is None else ref.to(device))
        self._scaling.resume(torch.ones((), device=device) if ref is None else ref)
        self._core_norms = list(pending["core_norms"].to(device))

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
        on every rank (`espnet_pcc.ddp_sums.FlatSums.gather`).
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
        self._write_update(params, sums, used, outcome.scale)
        reduction = self._reduction(stats, outcome, noise_scale)
        self._end_step(stats, outcome)
        return reduction

    def _reduction(self, stats: StepStatistics, outcome: StepOutcome, noise_scale: float
                   ) -> CoreReduction:
        """What the step reports (before `_end_step` moves K̂ on)."""
        some = stats.num_cores > 0
        bound = outcome.bound
        return CoreReduction(
            num_cores=stats.num_cores, bound=bound,
            norm_min=stats.norm_min if some else math.nan,
            norm_mean=stats.norm_sum / max(stats.num_cores - stats.nonfinite, 1),
            norm_max=stats.norm_max if some else math.nan,
            clipped_fraction=outcome.num_clipped / max(stats.num_cores, 1),
            nonfinite_cores=stats.nonfinite,
            # One core, divided by nothing (K̂ undone by the scale): ‖u‖ = min(‖g‖, C).
            update_norm=(min(stats.norm_max, bound) if stats.num_cores == 1
                         and not stats.nonfinite and not noise_scale
                         and self.expected_cores is None else None),
            noise_std=self.clip_config.noise_multiplier * bound
            / (self._divisor if self.expected_cores is not None else stats.num_cores)
            if noise_scale else 0.0)

    def _reduce(self, params: List[torch.nn.Parameter]):
        """Σ and the statistics over all ranks, with the step's noise in Σ."""
        norms = torch.stack(self._core_norms) if self._core_norms else \
            torch.empty(0, device=params[0].device)
        local = core_statistics(norms, self._scaling.counted_bound)
        # In Σ's units: Σ = Σ_k f_k·S·g_k/K̂, so σ·C·S/K̂ there is σ·C on the plain sum.
        noise_scale = (self.clip_config.noise_multiplier * self.max_norm * self._loss_scale
                       / self._divisor) if self.clip_config.noise_multiplier > 0 else 0.0

        def add_noise(sums: Sums, used: List[bool]) -> None:
            # Drawn for every parameter, used or not, so that every process draws the same.
            for s, u, z in zip(sums, used, step_noise(params, self.noise_seed, self.steps,
                                                        params[0].device)):
                if u:
                    s.add_(z, alpha=noise_scale)

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

    def _write_update(self, params: List[torch.nn.Parameter], sums: Sums, used: List[bool],
                      scale: float) -> None:
        """p.grad = scale·Σ; a parameter no core used keeps grad None, as after a plain
        backward.  Σ backs p.grad until zero_grad()."""
        grads = [s for s, u in zip(sums, used) if u]
        if grads and scale != 1.0:
            torch._foreach_mul_(grads, scale)
        for p, s, u in zip(params, sums, used):
            if u:
                p.grad = s if s.dtype == p.dtype else s.to(p.dtype)

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


def step_noise(params: List[torch.nn.Parameter], seed: int, step: int,
               device: torch.device) -> Iterator[torch.Tensor]:
    """Standard normal noise shaped like each parameter, for step `step` of a run.

    Drawn from (seed, step) alone: a resumed run and every DDP layout draw the same values
    for the same step.  One parameter at a time, so that no more than one parameter's worth
    of noise is alive.  The whole seed counts: on the CPU a PCG64 generator seeded with
    ``SeedSequence([seed, step])`` (numpy), on an accelerator torch's Philox generator
    seeded with 64 bits hashed from both.  (torch's CPU generator, mt19937, keeps only the
    low 32 bits of its seed: seeded with (seed, step) packed into 64 bits it drew the same
    noise for every seed.)  Neither generator is cryptographically secure.
    """
    device = torch.device(device)
    if device.type == "cpu":
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, step])))
        for p in params:
            yield torch.from_numpy(rng.standard_normal(tuple(p.shape), dtype=np.float32))
        return
    digest = hashlib.blake2b(f"{seed}:{step}".encode(), digest_size=8).digest()
    generator = torch.Generator(device=device)
    generator.manual_seed(int.from_bytes(digest, "little"))
    for p in params:
        yield torch.randn(p.shape, generator=generator, device=device, dtype=torch.float32)


def next_quantile_bound(bound: float, unclipped_fraction: float, target_quantile: float,
                        bound_lr: float) -> float:
    """Andrew et al.'s geometric update: C·exp(−η(b − γ)).

    b > γ (more cores under C than the target): C shrinks; b < γ: C grows.  At b = γ,
    C is the γ-quantile of the core norms, which it tracks over steps.
    """
    return bound * math.exp(-bound_lr * (unclipped_fraction - target_quantile))
