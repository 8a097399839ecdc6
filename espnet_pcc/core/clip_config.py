"""The `clip` / `clip_conf` training options, validated before training starts.

`PCCASRTask.check_args` builds the run's one `ClipConfig` from the parsed options; the trainer
options carry it (`PCCTrainerOptions.clip_config`) and the optimizer wrapper receives it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from espnet_pcc.core.clipping import ClipMode
from espnet_pcc.errors import UserError

DEFAULT_CLIP = ClipMode.GLOBAL.value
DEFAULT_CLIP_CONF = {"max_norm": None, "num_cores": 1, "noise_multiplier": 0.0, "delta": None,
                     "noise_seed": None, "target_quantile": None, "bound_lr": 0.2,
                     "initial_bound": None, "core_by": "position", "utt2spk": None,
                     "running_stats": "update", "log_train_stats": False}

#: How a micro-batch is cut into cores (clip_conf.core_by).
CORE_BY = ("position", "speaker")

#: What training does with the running statistics of BatchNorm-like layers
#: (clip_conf.running_stats): update them from the data, as torch does, or freeze them.
RUNNING_STATS = ("update", "freeze")

#: The clip_conf keys that take a real number (a numeric string is read as its number).
REAL_KEYS = ("max_norm", "noise_multiplier", "delta", "target_quantile", "bound_lr",
             "initial_bound")

# A number in decimal notation.  PyYAML, which reads ESPnet's configs, follows YAML 1.1: a
# float whose exponent has no sign (1e9, 1.0e9) or that has no dot (1e-3) is read as a string.
_DECIMAL = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


class ClipConfigError(UserError, ValueError):
    """A user error in `clip` / `clip_conf`; its message is one line."""


@dataclass(frozen=True)
class ClipConfig:
    """Validated clipping settings.

    mode:       none | global | global_of_cores | per_core | adaptive_per_core | per_example
    max_norm:   C; required for per_core, per_example and global_of_cores, optional for
                global (defaults to ESPnet's --grad_clip), forbidden for none and
                adaptive_per_core (APCC takes C = min_k ‖g_k‖).  With a
                quantile-adaptive bound: its first value (clip_conf.initial_bound).
    num_cores:  cores per micro-batch (>= 1), per_core, adaptive_per_core, none and
                global_of_cores (none with num_cores > 1: the per-core forwards and average
                of PCC with nothing clipped, its control arm; global_of_cores: the same
                average clipped to C as one vector, the paper's baseline); per_example uses
                one per utterance.
    noise_multiplier: sigma >= 0; Gaussian noise of standard deviation sigma·C is added
                to the sum of the clipped cores (per_core and per_example only: APCC's
                data-dependent bound has no fixed sensitivity).
    delta:      the delta of the (epsilon, delta) reported with noise (None: 0.01/N, N the
                privacy units: utterances, recordings or speakers; accounting.default_delta).
    noise_seed: None (the default): the noise is seeded from the operating system's CSPRNG,
                kept in the checkpoint for an exact resume and never written to config.yaml
                or the logs; an integer makes the noise reproducible from the config
                (tests only: anyone with the config and two checkpoints can subtract it).
    target_quantile, bound_lr: the quantile-adaptive bound (Andrew et al. 2021): after
                each step C <- C·exp(-bound_lr·(b - target_quantile)), b the fraction
                of the step's cores with norm <= C (per_core, per_example).
    core_by:    "position" (consecutive shards of the micro-batch) or "speaker" (one
                speaker's utterances per core, from utt2spk; per_core and APCC).
    utt2spk:    the utt2spk file of the training set (None: beside its first data file).
    running_stats: "update" (torch's BatchNorm: running statistics from the training data,
                refused with noise where the model has such layers) or "freeze" (they
                normalise with their initial statistics, never updated; the per-core loop
                only): espnet_pcc.core.release.
    log_train_stats: with noise, whether the logs get the statistics of the training batches
                (loss, accuracy, core norms, clipped fraction, core counts, timings), which
                are not private; False (the default): only what is private or
                data-independent is logged (espnet_pcc.core.release.RELEASED_KEYS).
    """

    # No defaults here: from_options fills every field from DEFAULT_CLIP_CONF, the one place
    # that states them.
    mode: ClipMode
    max_norm: Optional[float]
    num_cores: int
    noise_multiplier: float
    delta: Optional[float]
    noise_seed: Optional[int]
    target_quantile: Optional[float]
    bound_lr: float
    core_by: str
    utt2spk: Optional[str]
    running_stats: str
    log_train_stats: bool

    @classmethod
    def from_options(cls, clip: Any, clip_conf: Optional[Mapping[str, Any]]) -> "ClipConfig":
        try:
            mode = ClipMode.parse(str(clip))
        except ValueError as e:
            raise ClipConfigError(str(e)) from None
        conf = dict(DEFAULT_CLIP_CONF)
        conf.update(numeric_conf(clip_conf or {}))
        unknown = sorted(set(conf) - set(DEFAULT_CLIP_CONF))
        if unknown:
            raise ClipConfigError(f"clip_conf: unknown key(s) {', '.join(unknown)}; "
                                  f"allowed: {', '.join(DEFAULT_CLIP_CONF)}")
        quantile = _target_quantile(conf["target_quantile"], mode)
        if quantile is not None:
            if conf["max_norm"] is not None:
                raise ClipConfigError(
                    f"clip_conf.max_norm={conf['max_norm']!r} with target_quantile: the "
                    "adaptive bound starts at clip_conf.initial_bound; remove max_norm")
            if conf["initial_bound"] is None:
                raise ClipConfigError("clip_conf.target_quantile needs clip_conf.initial_bound "
                                      "(the first C, e.g. 1.0)")
            max_norm = _positive("initial_bound", conf["initial_bound"])
        else:
            if conf["initial_bound"] is not None:
                raise ClipConfigError(f"clip_conf.initial_bound={conf['initial_bound']!r} needs "
                                      "clip_conf.target_quantile (the adaptive bound); for a "
                                      "fixed C use max_norm")
            max_norm = _max_norm(conf["max_norm"], mode)
        bound_lr = _positive("bound_lr", conf["bound_lr"])
        sigma = _noise_multiplier(conf["noise_multiplier"], mode)
        if sigma > 0 and quantile is not None:
            raise ClipConfigError(
                f"clip_conf.noise_multiplier={sigma:g} with target_quantile: the adaptive "
                "bound follows the exact fraction of clipped cores, which is not private; "
                "use a fixed max_norm with noise")
        delta = conf["delta"]
        if delta is not None:
            delta = _positive("delta", delta)
            if delta >= 1:
                raise ClipConfigError(f"clip_conf.delta must be in (0, 1), got {delta!r}")
        noise_seed = conf["noise_seed"]
        if noise_seed is not None:
            if isinstance(noise_seed, bool) or not isinstance(noise_seed, int) or noise_seed < 0:
                raise ClipConfigError(f"clip_conf.noise_seed must be an integer >= 0 or null, "
                                      f"got {noise_seed!r}")
            if sigma == 0:
                raise ClipConfigError(f"clip_conf.noise_seed={noise_seed} has no effect without "
                                      "clip_conf.noise_multiplier")
        core_by = _core_by(conf["core_by"], mode)
        utt2spk = conf["utt2spk"]
        if utt2spk is not None and core_by != "speaker":
            raise ClipConfigError(f"clip_conf.utt2spk={utt2spk!r} is only read with "
                                  "core_by: speaker")
        num_cores = _num_cores(conf["num_cores"], mode)
        config = cls(mode, max_norm, num_cores, sigma, delta, noise_seed, quantile, bound_lr,
                     core_by, None if utt2spk is None else str(utt2spk),
                     running_stats=_running_stats(conf["running_stats"]),
                     log_train_stats=_log_train_stats(conf["log_train_stats"], sigma))
        if config.running_stats == "freeze" and not config.wraps_optimizer:
            raise ClipConfigError(f"clip_conf.running_stats=freeze needs the per-core loop; "
                                  f"clip: {mode.value} runs espnet2's own (use per_core, "
                                  "per_example, or none with num_cores > 1)")
        return config

    @property
    def wraps_optimizer(self) -> bool:
        """True where the optimizer is wrapped (the `--clip_wrapper` entry point, by default
        `PerCoreClipOptimizer`) and `PCCTrainer` runs its per-core loop: per_core,
        adaptive_per_core, per_example, global_of_cores, and none with num_cores > 1 (the
        unclipped control); global and plain none run espnet2's own loop with the optimizer
        as built."""
        if self.mode.runs_stock_loop:
            return False
        if self.mode.clips_nothing:
            return self.num_cores > 1
        return True

    def stock_grad_clip(self, grad_clip: float) -> float:
        """ESPnet's --grad_clip for the modes that run espnet2's own loop: +inf where nothing
        is clipped (clip_grad_norm_ then only measures); where the mean is clipped,
        clip_conf.max_norm when given, else --grad_clip as in any ESPnet config."""
        if self.mode.clips_nothing:
            return math.inf
        if self.mode.clips_mean and self.max_norm is not None:
            return self.max_norm
        return grad_clip

    @property
    def adaptive_bound(self) -> bool:
        """True where C follows a target quantile of the core norms (Andrew et al.)."""
        return self.target_quantile is not None

    def cores_per_micro_batch(self, batch_size: int) -> int:
        """How many cores a micro-batch of `batch_size` utterances is split into."""
        if self.mode.one_utterance_per_core:
            return batch_size
        return min(self.num_cores, batch_size)


def as_number(value: Any) -> Any:
    """A string in decimal notation (``'1.0e9'``, ``' 2 '``) as its float; anything else as
    it is.  ``'nan'`` and ``'inf'`` are not decimal notation: they stay strings, which the
    checks refuse (a YAML ``.inf`` or ``.nan`` is a float, refused as not finite)."""
    if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        return float(value)
    return value


def numeric_conf(clip_conf: Mapping[str, Any]) -> dict:
    """``clip_conf`` with the numeric string of each real-valued key (:data:`REAL_KEYS`)
    replaced by its number: what is validated, and what config.yaml records."""
    return {k: as_number(v) if k in REAL_KEYS else v for k, v in clip_conf.items()}


def _positive(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ClipConfigError(f"clip_conf.{key} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ClipConfigError(f"clip_conf.{key} must be > 0 and finite, got {value!r}")
    return float(value)


def _noise_multiplier(value: Any, mode: ClipMode) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ClipConfigError(f"clip_conf.noise_multiplier must be a number >= 0, got {value!r}")
    if value < 0:
        raise ClipConfigError(f"clip_conf.noise_multiplier must be >= 0, got {value!r}")
    if value > 0 and not mode.has_fixed_bound:
        # Not a fixed bound but each core clipped: the bound is chosen from the norms (APCC).
        why = ("its bound min_k ||g_k|| depends on the data, so no noise scale gives a "
               "guarantee" if mode.clips_each_core else "it has no per-core bound")
        raise ClipConfigError(f"clip_conf.noise_multiplier={value!r} is not allowed with clip: "
                              f"{mode.value} ({why}); use per_core or per_example")
    return float(value)


def _target_quantile(value: Any, mode: ClipMode) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ClipConfigError(f"clip_conf.target_quantile must be in [0, 1], got {value!r}")
    if not mode.has_fixed_bound:
        raise ClipConfigError(f"clip_conf.target_quantile={value!r} is not allowed with clip: "
                              f"{mode.value}; use per_core or per_example")
    return float(value)


def _core_by(value: Any, mode: ClipMode) -> str:
    if value not in CORE_BY:
        raise ClipConfigError(f"clip_conf.core_by must be one of {', '.join(CORE_BY)}, "
                              f"got {value!r}")
    if value == "speaker" and not mode.allows_speaker_cores:
        raise ClipConfigError(f"clip_conf.core_by=speaker is not allowed with clip: "
                              f"{mode.value}; use per_core or adaptive_per_core")
    return value


def _running_stats(value: Any) -> str:
    if value not in RUNNING_STATS:
        raise ClipConfigError(f"clip_conf.running_stats must be one of "
                              f"{', '.join(RUNNING_STATS)}, got {value!r}")
    return value


def _log_train_stats(value: Any, sigma: float) -> bool:
    if not isinstance(value, bool):
        raise ClipConfigError(f"clip_conf.log_train_stats must be true or false, got {value!r}")
    if value and sigma == 0:
        raise ClipConfigError("clip_conf.log_train_stats=true has no effect without "
                              "clip_conf.noise_multiplier (a noiseless run logs everything)")
    return value


def _max_norm(value: Any, mode: ClipMode) -> Optional[float]:
    if value is None:
        if mode.requires_max_norm:
            raise ClipConfigError(f"clip_conf.max_norm is required for clip: {mode.value} "
                                  "(e.g. clip_conf: {max_norm: 1.0})")
        return None
    if not mode.accepts_max_norm:
        why = "C = min_k ||g_k|| is chosen each step" if mode.clips_each_core \
            else "nothing is clipped"
        raise ClipConfigError(f"clip_conf.max_norm={value!r} is not allowed for clip: "
                              f"{mode.value} ({why}); remove it")
    return _positive("max_norm", value)


def _num_cores(value: Any, mode: ClipMode) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ClipConfigError(f"clip_conf.num_cores must be an integer >= 1, got {value!r}")
    if value < 1:
        raise ClipConfigError(f"clip_conf.num_cores must be >= 1, got {value!r}")
    if value != 1 and not mode.splits_micro_batches:
        choices = ", ".join(m.value for m in ClipMode if m.splits_micro_batches)
        raise ClipConfigError(f"clip_conf.num_cores={value} has no effect with clip: "
                              f"{mode.value}; use clip: {choices}")
    return value
