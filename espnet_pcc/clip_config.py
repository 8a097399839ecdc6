"""The `clip` / `clip_conf` training options, validated before training starts.

`PCCASRTask.check_args` builds the run's one `ClipConfig` from the parsed options; the trainer
options carry it (`PCCTrainerOptions.clip_config`) and the optimizer wrapper receives it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from espnet_pcc.clipping import ClipMode
from espnet_pcc.errors import UserError

DEFAULT_CLIP = ClipMode.GLOBAL.value
DEFAULT_CLIP_CONF = {"max_norm": None, "num_cores": 1}


class ClipConfigError(UserError, ValueError):
    """A user error in `clip` / `clip_conf`; its message is one line."""


@dataclass(frozen=True)
class ClipConfig:
    """Validated clipping settings.

    mode:       none | global | per_core | adaptive_per_core | per_example
    max_norm:   C; required for per_core and per_example, optional for global
                (defaults to ESPnet's --grad_clip), forbidden for none and
                adaptive_per_core (APCC takes C = min_k ‖g_k‖).
    num_cores:  virtual cores per micro-batch (>= 1), per_core and
                adaptive_per_core only; per_example uses one per utterance.
    """

    mode: ClipMode
    max_norm: Optional[float] = None
    num_cores: int = 1

    @classmethod
    def from_options(cls, clip: Any, clip_conf: Optional[Mapping[str, Any]]) -> "ClipConfig":
        try:
            mode = ClipMode.parse(str(clip))
        except ValueError as e:
            raise ClipConfigError(str(e)) from None
        conf = dict(DEFAULT_CLIP_CONF)
        conf.update(clip_conf or {})
        unknown = sorted(set(conf) - set(DEFAULT_CLIP_CONF))
        if unknown:
            raise ClipConfigError(f"clip_conf: unknown key(s) {', '.join(unknown)}; "
                                  f"allowed: {', '.join(DEFAULT_CLIP_CONF)}")
        max_norm = _max_norm(conf["max_norm"], mode)
        num_cores = _num_cores(conf["num_cores"], mode)
        return cls(mode, max_norm, num_cores)

    @property
    def wraps_optimizer(self) -> bool:
        """True where the optimizer is wrapped in `PerCoreClipOptimizer` and `PCCTrainer` runs
        its per-core loop (per_core, adaptive_per_core, per_example); none and global run
        espnet2's own loop with the optimizer as built."""
        return self.mode.clips_each_core

    def cores_per_micro_batch(self, batch_size: int) -> int:
        """How many cores a micro-batch of `batch_size` utterances is split into."""
        if self.mode is ClipMode.PER_EXAMPLE:
            return batch_size
        return min(self.num_cores, batch_size)


def _max_norm(value: Any, mode: ClipMode) -> Optional[float]:
    if value is None:
        if mode in (ClipMode.PER_CORE, ClipMode.PER_EXAMPLE):
            raise ClipConfigError(f"clip_conf.max_norm is required for clip: {mode.value} "
                                  "(e.g. clip_conf: {max_norm: 1.0})")
        return None
    if mode in (ClipMode.NONE, ClipMode.ADAPTIVE_PER_CORE):
        why = "C = min_k ||g_k|| is chosen each step" if mode is ClipMode.ADAPTIVE_PER_CORE \
            else "nothing is clipped"
        raise ClipConfigError(f"clip_conf.max_norm={value!r} is not allowed for clip: "
                              f"{mode.value} ({why}); remove it")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ClipConfigError(f"clip_conf.max_norm must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ClipConfigError(f"clip_conf.max_norm must be > 0 and finite, got {value!r}")
    return float(value)


def _num_cores(value: Any, mode: ClipMode) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ClipConfigError(f"clip_conf.num_cores must be an integer >= 1, got {value!r}")
    if value < 1:
        raise ClipConfigError(f"clip_conf.num_cores must be >= 1, got {value!r}")
    if value != 1 and mode not in (ClipMode.PER_CORE, ClipMode.ADAPTIVE_PER_CORE):
        raise ClipConfigError(f"clip_conf.num_cores={value} has no effect with clip: "
                              f"{mode.value}; use clip: per_core or adaptive_per_core")
    return value
