"""PerCoreClipOptimizer: clip each core's gradient, average over cores, step.

The streaming form of `espnet_pcc.clipping.clipped_average`: cores arrive one at
a time (a virtual-core split, an `accum_grad` micro-batch, a DDP rank) and are
summed, already clipped (the algorithm is in the class docstring).  The task builds
the run's `ClipConfig` once (`PCCASRTask.check_args`) and passes it in.

Cost: a core is one read of its gradient (‖g_k‖) and one fused pass that scales it
and adds it to the sum.  A parameter's first gradient of a step is scaled in place
and, in one process, becomes the sum itself (no buffer, no copy: one core costs what
`clip_grad_norm_` costs); under DDP it is written once into the flat buffer that the
step's single all-reduce sums.

APCC needs one sum too: with C = min_k ‖g_k‖ every factor is C/‖g_k‖, so cores are
added as g_k·r/‖g_k‖ for a reference norm r and the common C/(K·r) is applied once.

Mixed precision: `loss_scale` S multiplies every gradient; norms are ‖S·g_k‖/S, so
the sum stays in scaled units and the usual `GradScaler.unscale_`/`step`/`update`
sequence works on the result.  A non-finite core (on any rank) turns the whole update
into NaN, so that the step is skipped on every rank (and, with AMP, the scaler backs
off) exactly as ESPnet does.

Noise (clip_conf.noise_multiplier σ): N(0, σ²C²) per coordinate is added to the sum of
the clipped cores before the average, once per step: in one process to Σ, under DDP by
rank 0 alone into the buffer that the all-reduce sums.  It is drawn from a generator
seeded with (noise_seed, step number), so a resumed run draws what the uninterrupted
one drew, and 1 process and N ranks draw the same values.

Quantile-adaptive bound (clip_conf.target_quantile γ, bound_lr η; Andrew et al. 2021,
"Differentially private learning with adaptive clipping", without their noise on the
count): after each step C ← C·exp(−η(b − γ)), b the fraction of the step's finite
cores with ‖g_k‖ ≤ C.  Every rank computes it from the all-reduced counts, so all
ranks hold the same C.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional

import torch
import torch.distributed as dist

from espnet_pcc.clip_config import ClipConfig, ClipConfigError
from espnet_pcc.clipping import ClipMode, clip_factor, grad_norm

_TINY = torch.finfo(torch.float32).tiny
# The statistics of a step, laid out so that one SUM over ranks combines them: number
# of cores, Σ‖g_k‖ over finite cores, clipped cores, non-finite cores; then one slot per
# rank, zero on every other rank, for what a sum cannot combine but can gather:
# min_k‖g_k‖, −max_k‖g_k‖ and the number of cores at that minimum.
_COUNTS = 4
_SLOT = 3


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


class PerCoreClipOptimizer(torch.optim.Optimizer):
    """Wraps any torch optimizer with per-core clipping (Opacus' DPOptimizer pattern).

    One optimizer step over K cores (all `accum_grad` micro-batches, virtual-core splits
    and DDP ranks), with C = ``clip_config.max_norm``:

    1. After each core's backward, :meth:`add_core` reads that core's gradient g_k from
       ``p.grad`` once for ‖g_k‖, adds f_k·g_k/K̂ to the sum Σ in one fused pass
       (f_k = min(1, C/‖g_k‖); none: 1) and releases ``p.grad``.  A parameter's first
       gradient of the step is scaled in place and becomes its part of Σ (under DDP:
       is written into one flat buffer).
    2. :meth:`reduce_cores` sums Σ over DDP ranks (one all-reduce, which also carries
       the statistics) and writes u = Σ·K̂/K into ``p.grad``.
    3. :meth:`step` is the wrapped optimizer's step on u.

    K̂ is the number of cores of the previous step (1 at first), so u costs no pass
    over the gradients while K stays the same.  adaptive_per_core adds g_k·r/‖g_k‖
    instead and writes u = Σ·min_k‖g_k‖/(K·r), with r the norm of the step's first
    core in one process (that core is kept as it is) and 1 under DDP (ranks add their
    sums, so they share r).

    The wrapper shares ``param_groups``, ``state`` and ``defaults`` with the wrapped
    optimizer, so LR schedulers and ``GradScaler`` see one optimizer; its
    :meth:`state_dict` adds the clipping settings and any cores still pending.

    Args:
        optimizer: The optimizer ESPnet built from ``optim`` / ``optim_conf``.
        clip_config: The run's validated clipping settings (keyword-only): mode none,
            per_core, adaptive_per_core or per_example; ``max_norm`` is C.
        process_group: DDP group to reduce over (keyword-only); None = the default group
            when torch.distributed is initialised, else no communication.
        noise_seed: Seeds the noise of every step together with the step number
            (keyword-only; the task passes the training ``--seed``).  torch's generator is
            not a cryptographically secure one (cf. Opacus' ``secure_mode``).

    Raises:
        TypeError: ``clip_config`` is not a :class:`ClipConfig`.
        ClipConfigError: ``clip_config.mode`` is global, which clips the averaged
            gradient in espnet2's own loop and needs no wrapper.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, clip_config: ClipConfig,
                 process_group: Any = None, noise_seed: int = 0):
        # torch.optim.Optimizer.__init__ is not called on purpose: all optimizer
        # state lives in the wrapped instance (the Opacus DPOptimizer pattern).
        if not isinstance(clip_config, ClipConfig):
            raise TypeError("clip_config must be a ClipConfig (ClipConfig.from_options), "
                            f"got {type(clip_config).__name__}")
        if clip_config.mode is ClipMode.GLOBAL:
            raise ClipConfigError("clip: global clips the averaged gradient; it needs no wrapper")
        self.original_optimizer = optimizer
        self.clip_config = clip_config
        self.process_group = process_group
        self._flat: Optional[torch.Tensor] = None  # DDP only: Σ and the statistics
        self._views: List[torch.Tensor] = []  # Σ's part of each parameter in _flat
        self._sums: List[Optional[torch.Tensor]] = []  # per parameter; None: no gradient yet
        self._core_norms: List[torch.Tensor] = []
        self._ref: Optional[torch.Tensor] = None  # r of adaptive_per_core
        self._divisor = 1  # K̂: the number of cores of the last step (class docstring)
        self.noise_seed = int(noise_seed)
        self.steps = 0  # reduce_cores() calls so far: numbers the noise of each step
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
        self._flat = None  # the parameter set changed: re-layout lazily

    def __repr__(self) -> str:
        bound = "" if self.max_norm is None else f", max_norm={self.max_norm}"
        return f"PerCoreClipOptimizer(clip={self.mode.value}{bound},\n{self.original_optimizer!r})"

    def state_dict(self) -> Dict[str, Any]:
        """The wrapped optimizer's state plus a `pcc` entry.

        The entry holds the clipping settings and, when an epoch ended in the
        middle of an `accum_grad` cycle, the cores accumulated so far, so that
        `--resume` continues the cycle exactly.
        """
        state = self.original_optimizer.state_dict()
        pending = None
        if self._core_norms:
            pending = {"sums": [None if s is None else s.clone() for s in self._sums],
                       "core_norms": torch.stack(self._core_norms), "ref": self._ref,
                       "divisor": self._divisor}
        state["pcc"] = {"clip": self.mode.value, "max_norm": self.max_norm, "pending": pending,
                        "steps": self.steps}
        return state

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Loads our own checkpoints and plain ones (switching a run to PCC)."""
        state_dict = dict(state_dict)
        pcc = state_dict.pop("pcc", None)
        self.original_optimizer.load_state_dict(state_dict)
        self._reset_accumulation()
        if pcc is not None:
            self.steps = int(pcc.get("steps", 0))
            if self.clip_config.adaptive_bound and pcc.get("max_norm") is not None:
                self._bound = float(pcc["max_norm"])  # where the adaptive bound had got to
        pending = None if pcc is None else pcc.get("pending")
        if pending is None:
            return
        # K̂ divides every core of the step on every rank, so every rank restores it;
        # a checkpoint with pending cores in the flat-buffer layout was written with K̂ = 1.
        self._divisor = int(pending.get("divisor", 1))
        if self._distributed() and dist.get_rank(self.process_group) != 0:
            return  # rank 0 resumes every rank's pending cores (gather_pending)
        params = self._params()
        self._start_step(params)
        device = params[0].device
        if "sums" in pending:
            sums, ref = pending["sums"], pending["ref"]
        else:  # the flat-buffer layout: APCC with r = 1
            sums = _sums_of_flat_buffer(pending, params)
            ref = torch.ones(()) if self.mode is ClipMode.ADAPTIVE_PER_CORE else None
        for i, s in enumerate(sums):
            if s is not None:
                self._sums[i] = s.to(device, copy=True) if self._flat is None \
                    else self._views[i].copy_(s)
        if ref is not None and self._flat is not None:
            # Ranks add their sums, so under DDP r is 1.
            torch._foreach_div_([s for s in self._sums if s is not None], ref.to(device))
            ref = torch.ones(())
        self._ref = None if ref is None else ref.to(device)
        self._core_norms = list(pending["core_norms"].to(device))

    # -- per-core accumulation ----------------------------------------------------
    def _params(self) -> List[torch.nn.Parameter]:
        return [p for group in self.param_groups for p in group["params"] if p.requires_grad]

    def _start_step(self, params: List[torch.nn.Parameter]) -> None:
        if not params:
            raise ValueError("PerCoreClipOptimizer: the optimizer has no trainable parameters")
        self._sums = [None] * len(params)
        self._ref = None
        if self._flat is None and self._distributed():
            # float32 at least, as _at_least_float32.
            dtype = torch.float64 if all(p.dtype == torch.float64 for p in params) \
                else torch.float32
            numel = sum(p.numel() for p in params)
            tail = _COUNTS + _SLOT * dist.get_world_size(self.process_group) + len(params)
            self._flat = torch.empty(numel + tail, dtype=dtype, device=params[0].device)
            self._views = [v.view_as(p) for v, p in
                           zip(self._flat[:numel].split([p.numel() for p in params]), params)]

    def _reset_accumulation(self) -> None:
        self._sums = []
        self._core_norms = []
        self._ref = None

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
        if not self._core_norms:
            self._start_step(params)
        used = [i for i, p in enumerate(params) if p.grad is not None]
        grads = [params[i].grad for i in used]
        norm = grad_norm(grads).to(params[0].device) / loss_scale
        self._loss_scale = loss_scale
        self._accumulate(used, grads, self._factor(norm))
        self._core_norms.append(norm)
        for p in params:
            p.grad = None

    def _factor(self, norm: torch.Tensor) -> Optional[torch.Tensor]:
        """What the core of norm ‖g_k‖ is multiplied by in Σ; None where that is 1."""
        if self.mode is ClipMode.ADAPTIVE_PER_CORE:
            if self._ref is None:  # the step's first core sets r
                if self._flat is None:
                    self._ref = norm.clamp_min(_TINY)
                    return None
                self._ref = torch.ones_like(norm)
            # r/‖g_k‖ is inf for a zero core (or one below float32's range), and 0·inf = NaN
            # would skip a step whose update is 0 (C = min_k ‖g_k‖ = 0): such a core adds
            # 0 instead.  A non-finite core still poisons the step (_summary counts it).
            ratio = self._ref / norm
            return torch.where(torch.isinf(ratio), torch.zeros_like(ratio), ratio)
        factor = None if self.mode is ClipMode.NONE else clip_factor(norm, self.max_norm)
        if self._divisor == 1:
            return factor
        return (torch.ones_like(norm) if factor is None else factor) / self._divisor

    def _accumulate(self, used: List[int], grads: List[torch.Tensor],
                    factor: Optional[torch.Tensor]) -> None:
        """Σ_i += f_k·g_k,i for every parameter i that has a gradient: one pass each."""
        first = [j for j, i in enumerate(used) if self._sums[i] is None]
        rest = [j for j, i in enumerate(used) if self._sums[i] is not None]
        if rest:
            sums, more = [self._sums[used[j]] for j in rest], [grads[j] for j in rest]
            if factor is None:
                torch._foreach_add_(sums, more)
            else:
                torch._foreach_addcmul_(sums, more, [factor] * len(rest))
        if self._flat is None:
            # The parameter's first gradient of the step, scaled in place, is its Σ.
            kept = [_at_least_float32(grads[j]) for j in first]
            if kept and factor is not None:
                torch._foreach_mul_(kept, factor)
        else:
            # Written once into the flat buffer that reduce_cores() all-reduces.
            kept = [torch.mul(grads[j], 1.0 if factor is None else factor,
                              out=self._views[used[j]]) for j in first]
        for j, s in zip(first, kept):
            self._sums[used[j]] = s

    @torch.no_grad()
    def gather_pending(self) -> None:
        """Moves every rank's pending cores to rank 0 (collective; DDP only, else a no-op).

        ESPnet writes the checkpoint on rank 0 alone, so the cores of an `accum_grad` cycle
        that an epoch ends inside must all be there for `--resume` to continue the cycle:
        rank 0 ends up with the sum over ranks and every core's norm, the other ranks with
        none (`load_state_dict` gives the pending cores to rank 0 only).  Training on without
        a resume is unchanged: the next `reduce_cores` sums the same cores.  Must be called
        on every rank; costs one small all-gather when no rank has pending cores.
        """
        if not self._distributed():
            return
        group = self.process_group
        world, rank = dist.get_world_size(group), dist.get_rank(group)
        params = self._params()
        device = params[0].device
        counts = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(world)]
        dist.all_gather(counts, torch.tensor([len(self._core_norms)], device=device), group=group)
        counts = [int(c.item()) for c in counts]
        if not any(counts):
            return
        if not self._core_norms:
            self._start_step(params)
        for view, s in zip(self._views, self._sums):
            if s is None:
                view.zero_()
        numel = sum(v.numel() for v in self._views)
        tail = self._flat[numel:numel + len(params)]
        tail.copy_(torch.tensor([s is not None for s in self._sums], dtype=tail.dtype))
        dist.all_reduce(self._flat[:numel + len(params)], op=dist.ReduceOp.SUM, group=group)
        norms = torch.full((max(counts),), math.nan, dtype=torch.float32, device=device)
        if self._core_norms:
            norms[:counts[rank]] = torch.stack(self._core_norms).float()
        gathered = [torch.empty_like(norms) for _ in range(world)]
        dist.all_gather(gathered, norms, group=group)
        if rank != 0:
            self._reset_accumulation()
            return
        used = (tail > 0).tolist()
        self._sums = [v if u else None for v, u in zip(self._views, used)]
        self._core_norms = [n for r, g in enumerate(gathered) for n in g[:counts[r]]]
        if self.mode is ClipMode.ADAPTIVE_PER_CORE:
            self._ref = torch.ones((), device=device)  # under DDP r = 1 on every rank

    @torch.no_grad()
    def reduce_cores(self) -> CoreReduction:
        """Averages the accumulated cores of all ranks into `p.grad`.

        One collective per step, whatever `accum_grad` and `num_cores` are: a SUM
        of the flat buffer, whose tail carries the statistics and which parameters
        any rank has a gradient for.  Must be called on every rank.  Returns the
        step's statistics.
        """
        params = self._params()
        if not self._core_norms:
            if not self._distributed():
                raise RuntimeError("reduce_cores() called before any add_core()")
            # Under DDP a rank may add nothing to a step (its cores went to rank 0 in
            # gather_pending): it still takes part, with zeros.
            self._start_step(params)
        norms = torch.stack(self._core_norms) if self._core_norms else \
            torch.empty(0, device=params[0].device)
        summary = self._summary(norms)
        sums, used = self._sums, [s is not None for s in self._sums]
        # In Σ's units: Σ = Σ_k f_k·S·g_k/K̂, so σ·C·S/K̂ there is σ·C on the plain sum.
        noise_scale = (self.clip_config.noise_multiplier * self.max_norm * self._loss_scale
                       / self._divisor) if self.clip_config.noise_multiplier > 0 else 0.0
        if self._flat is not None:
            for view, s in zip(self._views, self._sums):
                if s is None:  # another rank may have a gradient for it
                    view.zero_()
            if noise_scale and dist.get_rank(self.process_group) == 0:
                # Once for the step: rank 0 adds it, the all-reduce spreads it.
                self._add_noise(params, self._views, [True] * len(self._views), noise_scale)
            tail = self._flat[sum(v.numel() for v in self._views):]
            tail[:summary.numel()] = summary
            tail[summary.numel():] = torch.tensor(used, dtype=tail.dtype)
            dist.all_reduce(self._flat, op=dist.ReduceOp.SUM, group=self.process_group)
            summary = tail[:summary.numel()].double()
            sums, used = self._views, (tail[summary.numel():] > 0).tolist()
        elif noise_scale:
            self._add_noise(params, sums, used, noise_scale)

        num_cores, norm_sum, num_clipped, nonfinite = summary[:_COUNTS].tolist()
        slots = summary[_COUNTS:].view(-1, _SLOT)
        norm_min, norm_max = slots[:, 0].min().item(), -slots[:, 1].min().item()
        if self.mode is ClipMode.ADAPTIVE_PER_CORE:
            # Every finite core above the minimum is scaled down to it.
            at_min = slots[slots[:, 0] == norm_min, 2].sum().item()
            num_clipped = num_cores - nonfinite - at_min
            bound = norm_min
            scale = bound / (num_cores * self._ref.item())
        else:
            bound = math.inf if self.mode is ClipMode.NONE else float(self.max_norm)
            scale = self._divisor / num_cores
        if nonfinite:
            scale = math.nan  # every rank skips the step
        elif self.clip_config.adaptive_bound:
            self._bound = next_quantile_bound(
                bound, (num_cores - num_clipped) / num_cores, self.clip_config.target_quantile,
                self.clip_config.bound_lr)
        grads = [s for s, u in zip(sums, used) if u]
        if grads and scale != 1.0:
            torch._foreach_mul_(grads, scale)
        # A parameter no core used keeps grad None, as after a plain backward.
        for p, s, u in zip(self._params(), sums, used):
            if u:
                p.grad = s if s.dtype == p.dtype else s.to(p.dtype)
        # Σ now backs p.grad until zero_grad(); the next step starts a new one.
        self._reset_accumulation()
        self._divisor = int(num_cores)
        self.steps += 1
        return CoreReduction(
            num_cores=int(num_cores), bound=bound, norm_min=norm_min,
            norm_mean=norm_sum / max(num_cores - nonfinite, 1), norm_max=norm_max,
            clipped_fraction=num_clipped / num_cores, nonfinite_cores=int(nonfinite),
            update_norm=(min(norm_max, bound) if num_cores == 1 and not nonfinite
                         and not noise_scale else None),
            noise_std=self.clip_config.noise_multiplier * bound / num_cores if noise_scale
            else 0.0)

    def _add_noise(self, params: List[torch.nn.Parameter], sums: List[Optional[torch.Tensor]],
                   used: List[bool], scale: float) -> None:
        """Σ_i += scale·z_i, z the step's noise (drawn for every parameter, used or not,
        so that every process draws the same stream)."""
        for s, u, z in zip(sums, used, step_noise(params, self.noise_seed, self.steps,
                                                    params[0].device)):
            if u:
                s.add_(z, alpha=scale)

    def _summary(self, norms: torch.Tensor) -> torch.Tensor:
        """This rank's statistics of the step (the layout is at `_COUNTS`)."""
        finite = norms[torch.isfinite(norms)]
        rank, world = (dist.get_rank(self.process_group),
                       dist.get_world_size(self.process_group)) if self._flat is not None else (0, 1)
        summary = torch.zeros(_COUNTS + _SLOT * world, dtype=torch.float64, device=norms.device)
        summary[0] = norms.numel()
        summary[1] = finite.sum()
        if self.mode.has_fixed_bound:
            summary[2] = (clip_factor(norms, self.max_norm) < 1.0).sum()
        summary[3] = norms.numel() - finite.numel()
        slot = summary[_COUNTS + _SLOT * rank:][:_SLOT]
        if finite.numel():
            low = finite.min()
            slot.copy_(torch.stack([low, -finite.max(), (finite == low).sum()]))
        else:
            slot.copy_(torch.tensor([math.inf, math.inf, 0.0]))
        return summary

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Releases `p.grad` and starts a new step."""
        self.original_optimizer.zero_grad(set_to_none=set_to_none)
        self._reset_accumulation()

    def _distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized() and dist.get_world_size(
            self.process_group) > 1


def step_noise(params: List[torch.nn.Parameter], seed: int, step: int,
               device: torch.device) -> Iterator[torch.Tensor]:
    """Standard normal noise shaped like each parameter, for step `step` of a run.

    A generator seeded with (seed, step) alone: a resumed run and every DDP layout draw
    the same values for the same step.  One parameter at a time, so that no more than
    one parameter's worth of noise is alive.
    """
    generator = torch.Generator(device=device)
    generator.manual_seed(((seed & 0xFFFFFFFF) << 32) | (step & 0xFFFFFFFF))
    for p in params:
        yield torch.randn(p.shape, generator=generator, device=device, dtype=torch.float32)


def next_quantile_bound(bound: float, unclipped_fraction: float, target_quantile: float,
                        bound_lr: float) -> float:
    """Andrew et al.'s geometric update: C·exp(−η(b − γ)).

    b > γ (more cores under C than the target): C shrinks; b < γ: C grows.  At b = γ,
    C is the γ-quantile of the core norms, which it tracks over steps.
    """
    return bound * math.exp(-bound_lr * (unclipped_fraction - target_quantile))


def _at_least_float32(grad: torch.Tensor) -> torch.Tensor:
    """Accumulate in float32 at least: bf16/fp16 sums of K cores lose the update."""
    return grad if grad.dtype in (torch.float32, torch.float64) else grad.float()


def _sums_of_flat_buffer(pending: Dict[str, Any],
                         params: List[torch.nn.Parameter]) -> List[Optional[torch.Tensor]]:
    """Σ per parameter from a checkpoint whose pending cores are in the older flat-buffer layout."""
    flat, has_grad = pending["buffer"], set(pending["has_grad"])
    parts = flat[:sum(p.numel() for p in params)].split([p.numel() for p in params])
    return [part.view_as(p) if i in has_grad else None
            for i, (part, p) in enumerate(zip(parts, params))]
