"""PerCoreClipOptimizer: clip each core's gradient, average over cores, step.

The streaming form of `espnet_pcc.clipping.clipped_average`: cores arrive one at
a time (a virtual-core split, an `accum_grad` micro-batch, a DDP rank) and are
summed, already clipped, into one flat buffer (the algorithm is in the class
docstring).  The task builds the run's `ClipConfig` once
(`PCCASRTask.check_args`) and passes it in.

APCC needs only one buffer because with C = min_k ‖g_k‖ every factor is C/‖g_k‖.

Mixed precision: `loss_scale` S multiplies every gradient; norms are compared
as ‖S·g_k‖ against S·C so the buffer stays in scaled units and the usual
`GradScaler.unscale_`/`step`/`update` sequence works on the result.  A core with
a non-finite norm poisons the buffer with NaN so that the step is skipped on
every rank (and, with AMP, the scaler backs off) exactly as ESPnet does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch
import torch.distributed as dist

from espnet_pcc.clip_config import ClipConfig, ClipConfigError
from espnet_pcc.clipping import ClipMode, clip_factor, grad_norm

# Tail of the flat buffer, summed over ranks together with the gradients so that
# one collective carries everything: number of cores, Σ‖g_k‖, clipped cores,
# non-finite cores.
_TAIL = 4


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

    def as_report(self) -> Dict[str, float]:
        """Reporter keys (see README "Telemetry")."""
        return {
            "clip": 100.0 * self.clipped_fraction,
            "clip_bound": self.bound,
            "core_norm_min": self.norm_min,
            "core_norm_mean": self.norm_mean,
            "core_norm_max": self.norm_max,
            "num_cores": float(self.num_cores),
        }


class PerCoreClipOptimizer(torch.optim.Optimizer):
    """Wraps any torch optimizer with per-core clipping (Opacus' DPOptimizer pattern).

    One optimizer step over K cores (all `accum_grad` micro-batches, virtual-core splits
    and DDP ranks), with C = ``clip_config.max_norm``:

    1. After each core's backward, :meth:`add_core` reads that core's gradient g_k from
       ``p.grad``, adds g_k · min(1, C/‖g_k‖) (adaptive_per_core: g_k/‖g_k‖; none: g_k)
       to one flat buffer and releases ``p.grad``.
    2. :meth:`reduce_cores` sums the buffer over DDP ranks (one all-reduce, plus a
       two-float MIN for the norm range) and writes
       u = buffer/K (adaptive_per_core: buffer · min_k‖g_k‖ / K) into ``p.grad``.
    3. :meth:`step` is the wrapped optimizer's step on u.

    The wrapper shares ``param_groups``, ``state`` and ``defaults`` with the wrapped
    optimizer, so LR schedulers and ``GradScaler`` see one optimizer; its
    :meth:`state_dict` adds the clipping settings and any cores still pending.

    Args:
        optimizer: The optimizer ESPnet built from ``optim`` / ``optim_conf``.
        clip_config: The run's validated clipping settings (keyword-only): mode none,
            per_core, adaptive_per_core or per_example; ``max_norm`` is C.
        process_group: DDP group to reduce over (keyword-only); None = the default group
            when torch.distributed is initialised, else no communication.

    Raises:
        TypeError: ``clip_config`` is not a :class:`ClipConfig`.
        ClipConfigError: ``clip_config.mode`` is global, which clips the averaged
            gradient in espnet2's own loop and needs no wrapper.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, clip_config: ClipConfig,
                 process_group: Any = None):
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
        self._buffer: Optional[torch.Tensor] = None
        self._views: List[torch.Tensor] = []
        self._core_norms: List[torch.Tensor] = []
        self._has_grad: set = set()  # indices of parameters some core gave a grad

    @property
    def mode(self) -> ClipMode:
        return self.clip_config.mode

    @property
    def max_norm(self) -> Optional[float]:
        return self.clip_config.max_norm

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
        self._buffer = None  # the parameter set changed: re-layout lazily

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
            pending = {"buffer": self._buffer.clone(), "core_norms": torch.stack(self._core_norms),
                       "has_grad": sorted(self._has_grad)}
        state["pcc"] = {"clip": self.mode.value, "max_norm": self.max_norm, "pending": pending}
        return state

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Loads our own checkpoints and plain ones (switching a run to PCC)."""
        state_dict = dict(state_dict)
        pcc = state_dict.pop("pcc", None)
        self.original_optimizer.load_state_dict(state_dict)
        self._reset_accumulation()
        if pcc is not None and pcc.get("pending") is not None:
            self._ensure_buffer()
            self._buffer.copy_(pcc["pending"]["buffer"].to(self._buffer.device))
            self._core_norms = list(pcc["pending"]["core_norms"].to(self._buffer.device))
            self._has_grad = set(pcc["pending"]["has_grad"])

    # -- per-core accumulation ----------------------------------------------------
    def _params(self) -> List[torch.nn.Parameter]:
        return [p for group in self.param_groups for p in group["params"] if p.requires_grad]

    def _ensure_buffer(self) -> None:
        if self._buffer is not None:
            return
        params = self._params()
        if not params:
            raise ValueError("PerCoreClipOptimizer: the optimizer has no trainable parameters")
        # Accumulate in float32 at least: bf16/fp16 sums of K cores lose the update.
        dtype = torch.float64 if all(p.dtype == torch.float64 for p in params) else torch.float32
        numel = sum(p.numel() for p in params)
        self._buffer = torch.zeros(numel + _TAIL, dtype=dtype, device=params[0].device)
        self._views = [v.view_as(p) for v, p in
                       zip(self._buffer[:numel].split([p.numel() for p in params]), params)]

    def _reset_accumulation(self) -> None:
        # The buffer is not zeroed here: the step's first core overwrites it.
        self._core_norms = []
        self._has_grad = set()

    @property
    def num_pending_cores(self) -> int:
        """Cores added on this rank since the last `reduce_cores()`."""
        return len(self._core_norms)

    @torch.no_grad()
    def add_core(self, loss_scale: float = 1.0) -> None:
        """Adds the core whose gradient is in `p.grad` and releases `p.grad`.

        `loss_scale` is the GradScaler's current scale S (1 without AMP): the
        gradient in `p.grad` is S·g_k, and the buffer is kept in S units.
        """
        self._ensure_buffer()
        params = self._params()
        first_core = not self._core_norms
        grads, views, unused = [], [], []
        for i, (p, view) in enumerate(zip(params, self._views)):
            if p.grad is not None:
                grads.append(p.grad)
                views.append(view)
                self._has_grad.add(i)
            else:  # an unused parameter contributes zero
                unused.append(view)
        device = self._buffer.device
        scaled_norm = grad_norm(grads).to(device)
        norm = scaled_norm / loss_scale
        clipped = torch.zeros((), device=device)
        if self.mode is ClipMode.ADAPTIVE_PER_CORE:
            # S·g_k/‖g_k‖; the common factor min_k‖g_k‖/K is applied in reduce_cores().
            factor = loss_scale / scaled_norm.clamp_min(torch.finfo(torch.float32).tiny)
        elif self.mode is ClipMode.NONE:
            factor = torch.ones((), device=device)
        else:
            factor = clip_factor(norm, self.max_norm)
            clipped = (factor < 1.0).float()
        finite = torch.isfinite(norm)
        # A NaN factor poisons the whole buffer (NaN·0 = NaN), so every rank skips.
        factor = torch.where(finite, factor, torch.full_like(factor, float("nan")))
        tail = self._buffer[-_TAIL:]
        if grads:
            # In place: p.grad is released right after, so scaling it costs no memory.
            torch._foreach_mul_(grads, factor)
        if first_core:  # overwrite instead of zero + add: two passes fewer per step
            if grads:
                torch._foreach_copy_(views, grads)
            for view in unused + [tail]:
                view.zero_()
        elif grads:
            torch._foreach_add_(views, grads)
        tail += torch.stack([torch.ones((), device=device), torch.where(finite, norm, 0.0),
                             clipped, (~finite).float()]).to(tail.dtype)
        self._core_norms.append(norm)
        for p in params:
            p.grad = None

    @torch.no_grad()
    def reduce_cores(self) -> CoreReduction:
        """Averages the accumulated cores of all ranks into `p.grad`.

        Two collectives per step, whatever `accum_grad` and `num_cores` are: a
        MIN of [min_k‖g_k‖, −max_k‖g_k‖] and a SUM of the flat buffer.  Must be
        called on every rank.  Returns the step's statistics.
        """
        if not self._core_norms:
            raise RuntimeError("reduce_cores() called before any add_core()")
        device = self._buffer.device
        norms = torch.stack(self._core_norms)
        finite = norms[torch.isfinite(norms)]
        norm_range = torch.stack([finite.min(), -finite.max()]) if finite.numel() else \
            torch.tensor([math.inf, math.inf], device=device)
        norm_range = norm_range.to(device=device, dtype=torch.float64)
        if self._distributed():
            dist.all_reduce(norm_range, op=dist.ReduceOp.MIN, group=self.process_group)
        norm_min, norm_max = norm_range[0].item(), -norm_range[1].item()
        if self.mode is ClipMode.ADAPTIVE_PER_CORE:
            # Every core above the minimum is scaled down to it.
            self._buffer[-_TAIL + 2] = (finite > norm_min).sum()
        if self._distributed():
            dist.all_reduce(self._buffer, op=dist.ReduceOp.SUM, group=self.process_group)
        num_cores, norm_sum, num_clipped, nonfinite = self._buffer[-_TAIL:].tolist()

        if self.mode is ClipMode.ADAPTIVE_PER_CORE:
            bound = norm_min
        elif self.mode is ClipMode.NONE:
            bound = math.inf
        else:
            bound = float(self.max_norm)
        scale = (bound if self.mode is ClipMode.ADAPTIVE_PER_CORE else 1.0) / num_cores
        for i, (p, view) in enumerate(zip(self._params(), self._views)):
            # A parameter no core used keeps grad None, as after a plain backward.
            if i in self._has_grad:
                if scale != 1.0:
                    view.mul_(scale)
                p.grad = view if view.dtype == p.dtype else view.to(p.dtype)
        self._core_norms = []
        # The buffer now backs p.grad until zero_grad(); the next first core overwrites it.
        return CoreReduction(
            num_cores=int(num_cores), bound=bound, norm_min=norm_min,
            norm_mean=norm_sum / max(num_cores - nonfinite, 1), norm_max=norm_max,
            clipped_fraction=num_clipped / num_cores, nonfinite_cores=int(nonfinite))

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Releases `p.grad` and starts a new step (its first core overwrites the buffer)."""
        self.original_optimizer.zero_grad(set_to_none=set_to_none)
        self._reset_accumulation()

    def _distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized() and dist.get_world_size(
            self.process_group) > 1
