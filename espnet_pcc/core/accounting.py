"""The (epsilon, delta) of noisy per-core clipping, from dp-accounting's RDP accountant.

What is accounted (docs/privacy.md states it for users):

- **Unit and adjacency.**  The *unit* is an utterance; a recording when the training set
  holds speed-perturbed copies (``sp<f>-`` ids: all copies of a recording are one unit); a
  speaker with ``clip_conf.core_by: speaker`` (user-level DP).  N counts units.  With the
  Poisson sampler two data sets are adjacent when one is the other with one unit added or
  removed (add/remove): each unit joins each step on a draw of its own, so no other unit's
  batches move.  With any other sampler (`dp_epsilon_unamplified`) they are adjacent when one
  is the other with one unit replaced by an *empty stand-in* that keeps its id and its length
  and adds no gradient (substitution-with-empty, the "zero-out" adjacency): adding or
  removing a unit there re-cuts every batch (``shuffled`` permutes the N sorted ids with the
  public ``--seed`` into a number of batches that depends on N; ESPnet's folded plan depends
  on every length), so the batch plan is the same on both data sets only while the unit's id
  and length stay.  That guarantee covers what a unit contributes, not whether it is in the
  training set.
- **Sensitivity** (`sensitivity`, in units of C).  Noise of standard deviation σ·C is added
  to the sum of the clipped cores.  With the Poisson sampler (`espnet_pcc.core.data_loader.poisson`)
  a unit lies in one core, drawn for it alone, so adding or removing it changes that core only: from
  one vector of norm <= C to another, 2C, when the core can hold other units (per_core, APCC's
  relatives, the control); with per_example each of the unit's at most m utterances is a core of its
  own, m·C (C for utterance units).  The accountant's noise multiplier is σ / sensitivity.  Position
  cores of fixed batches are not accounted: one utterance more re-cuts every later shard of its
  micro-batch, and ESPnet's batch plan depends on the whole data set; `espnet_pcc.espnet2.task`
  rejects noise with them.
- **Sampling.**  Poisson sampling with the sampler's q
  (`espnet_pcc.core.data_loader.poisson.PoissonPlan`): each unit joins each step independently,
  the batches are secret, and the average is over the *expected* number of cores, so the
  denominator does not depend on the data.  With any other sampler (per_example only) the bound is
  the one that holds *without amplification* and under zero-out adjacency (above): each unit takes
  part once per epoch with all its copies in the worst case in one step, each of their cores
  moving from norm <= C to the stand-in's 0 (sensitivity m·C), epochs composed; reported under its
  own name.
- **delta** defaults to 0.01 / N (`default_delta`): the expected number of units whose
  guarantee may fail is 1 %, below the weak delta = 1/N.
- The quantile-adaptive bound and APCC are not combined with noise (ClipConfig rejects it):
  their bounds read the data.
- **History.**  A run's steps are accounted with the mechanism they ran with: each noisy
  step is recorded in a *privacy history* (`record_step`: segments of one unit, N, σ,
  sensitivity, q and delta, with their steps and epochs), which the checkpoint keeps, and
  epsilon is that of the composition of every segment (`history_epsilon`).  A `--resume`
  with another σ, q or delta adds a segment (RDP composes whatever delta; epsilon is reported
  at the run's); steps the history does not hold (a noiseless run, or a checkpoint written
  before histories were kept) count as steps without noise (epsilon = +inf); a resume that
  changes the unit, or N (another training set: one epsilon cannot compose steps on two data
  sets), is refused (`check_history`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

import dp_accounting
from dp_accounting import rdp

from espnet_pcc.core.clip_config import ClipConfigError
from espnet_pcc.core.clipping import ClipMode

#: default_delta = DELTA_SHARE / N
DELTA_SHARE = 0.01


def default_delta(num_units: int) -> float:
    """delta = 0.01 / N, N the privacy units (module docstring)."""
    if num_units < 1:
        raise ValueError(f"num_units must be >= 1, got {num_units}")
    return DELTA_SHARE / num_units


def sensitivity(mode: ClipMode, max_per_unit: int = 1) -> int:
    """How far one unit moves the sum of the clipped cores, in units of C, when it lies in
    one hashed core (per_example: each of its at most `max_per_unit` utterances in a core of
    its own)."""
    if max_per_unit < 1:
        raise ValueError(f"max_per_unit must be >= 1, got {max_per_unit}")
    return max_per_unit if mode.one_utterance_per_core else 2


def dp_event(noise_multiplier: float, sampling_rate: float,
             steps: int) -> dp_accounting.DpEvent:
    """`steps` Poisson-sampled Gaussian mechanisms of noise multiplier σ (q = 1: plain)."""
    gaussian = dp_accounting.GaussianDpEvent(noise_multiplier)
    if sampling_rate < 1:
        gaussian = dp_accounting.PoissonSampledDpEvent(sampling_rate, gaussian)
    return dp_accounting.SelfComposedDpEvent(gaussian, steps)


def epsilon(noise_multiplier: float, sampling_rate: float, steps: int, delta: float,
            sensitivity: float = 1.0) -> float:
    """epsilon at `delta` after `steps` noisy steps (RDP accountant, dp-accounting), the
    noise σ·C and one unit moving the sum by `sensitivity`·C: noise multiplier σ/sensitivity.

    +inf without noise; 0 before any step.
    """
    if not 0 < sampling_rate <= 1:
        raise ValueError(f"sampling_rate must be in (0, 1], got {sampling_rate}")
    if sensitivity <= 0:
        raise ValueError(f"sensitivity must be > 0, got {sensitivity}")
    if steps == 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    accountant = rdp.RdpAccountant()
    accountant.compose(dp_event(noise_multiplier / sensitivity, sampling_rate, steps))
    return float(accountant.get_epsilon(delta))


@dataclass(frozen=True)
class PrivacyAccounting:
    """What a noisy run's epsilon is computed from, and how it is named.

    unit: utterance | recording | speaker; num_units: N.  sampling_rate: q of the Poisson
    sampler, or None for another sampler (no amplification: one participation per epoch).
    sensitivity: in units of C.  delta: of the reported (epsilon, delta).
    """

    unit: str
    num_units: int
    noise_multiplier: float
    sensitivity: float
    delta: float
    sampling_rate: Optional[float]

    @property
    def reporter_key(self) -> str:
        """dp_epsilon (Poisson sampling); dp_epsilon_unamplified (any other sampler)."""
        return "dp_epsilon" if self.sampling_rate is not None else "dp_epsilon_unamplified"

    def epsilon(self, steps: int, epochs: int) -> float:
        """After `steps` optimizer steps (Poisson) or `epochs` epochs (otherwise)."""
        if self.sampling_rate is None:
            return epsilon(self.noise_multiplier, 1.0, epochs, self.delta, self.sensitivity)
        return epsilon(self.noise_multiplier, self.sampling_rate, steps, self.delta,
                       self.sensitivity)

    @property
    def mechanism(self) -> Dict[str, Any]:
        """What one of the run's steps is, as a privacy history records it (plain values:
        the checkpoint is read with weights_only)."""
        return {"unit": self.unit, "num_units": int(self.num_units),
                "noise_multiplier": float(self.noise_multiplier),
                "sensitivity": float(self.sensitivity), "sampling_rate": None
                if self.sampling_rate is None else float(self.sampling_rate),
                "delta": float(self.delta)}

    @property
    def adjacency(self) -> str:
        """Which data sets the epsilon tells apart (module docstring, 'Unit and adjacency'):
        add/remove one unit under Poisson sampling; otherwise one unit replaced by an empty
        stand-in with its id and length, as the batch plan is the same only then."""
        if self.sampling_rate is not None:
            return f"add/remove one {self.unit}"
        return (f"one {self.unit} replaced by an empty stand-in keeping its id and length "
                "(zero-out adjacency; its presence is not protected)")

    def describe(self) -> str:
        sampler = (f"Poisson sampling q = {self.sampling_rate:.6g}" if self.sampling_rate
                   is not None else "no amplification by sampling (one participation per "
                   "epoch)")
        return (f"privacy: {self.adjacency} (N = {self.num_units}), {sampler}, "
                f"sensitivity {self.sensitivity:g}C, noise multiplier "
                f"{self.noise_multiplier:g}/{self.sensitivity:g} = "
                f"{self.noise_multiplier / self.sensitivity:.6g}, delta = {self.delta:.3g}; "
                f"reported as {self.reporter_key}")


# -- the privacy history: what ran, segment by segment ---------------------------------------
_MECHANISM_KEYS = ("unit", "num_units", "noise_multiplier", "sensitivity", "sampling_rate",
                   "delta")


def record_step(history: Sequence[Mapping[str, Any]], mechanism: Mapping[str, Any],
                epoch: int, steps_before: int) -> List[Dict[str, Any]]:
    """The history after one more step of `mechanism` (`PrivacyAccounting.mechanism`) in
    `epoch`, the run having taken `steps_before` steps before it.

    A segment is the mechanism with its ``steps`` and the epochs it ran in (``first_epoch``
    to ``last_epoch``); a step of the last segment's mechanism extends it, any other starts a
    new one.  Steps before this one that the history does not hold (a noiseless run resumed
    with noise, or a checkpoint written before histories were kept) become a segment of
    noise multiplier 0: no noise is known for them.  (A segment written before N and delta
    were recorded lacks them; the next step starts a new segment.)
    """
    segments = [dict(s) for s in history]
    recorded = sum(int(s["steps"]) for s in segments)
    if recorded < steps_before:
        segments.append({**{k: mechanism[k] for k in _MECHANISM_KEYS}, "noise_multiplier": 0.0,
                         "sensitivity": 1.0, "sampling_rate": None,
                         "steps": steps_before - recorded, "first_epoch": 0, "last_epoch": 0})
    last = segments[-1] if segments else None
    if last is not None and all(last.get(k) == mechanism[k] for k in _MECHANISM_KEYS):
        last["steps"] = int(last["steps"]) + 1
        last["last_epoch"] = max(int(last["last_epoch"]), epoch)
    else:
        segments.append({**{k: mechanism[k] for k in _MECHANISM_KEYS}, "steps": 1,
                         "first_epoch": epoch, "last_epoch": epoch})
    return segments


def check_history(history: Sequence[Mapping[str, Any]], mechanism: Mapping[str, Any]) -> None:
    """Refuses to continue a history of noisy steps accounted for another unit, or over
    another number of units N (another training set).  A change of delta is not refused:
    RDP composes the segments whatever delta, and epsilon is reported at the run's.

    Raises:
        ClipConfigError: a segment with noise has another unit or N than `mechanism` (one
            line; segments written before N was recorded are not checked for it).
    """
    noisy = [s for s in history if s["noise_multiplier"] > 0]
    other = sorted({s["unit"] for s in noisy} - {mechanism["unit"]})
    if other:
        raise ClipConfigError(
            f"--resume: the checkpoint's noisy steps were accounted per {', '.join(other)}, "
            f"this run's are per {mechanism['unit']}, and one epsilon cannot compose both; "
            "resume with the checkpoint's privacy unit or start a new run")
    sizes = sorted({int(s["num_units"]) for s in noisy if s.get("num_units") is not None}
                   - {int(mechanism["num_units"])})
    if sizes:
        raise ClipConfigError(
            f"--resume: the checkpoint's noisy steps were accounted over N = "
            f"{', '.join(map(str, sizes))} {mechanism['unit']}s, this run's training set has "
            f"N = {mechanism['num_units']}, and one epsilon cannot compose steps on two data "
            "sets; resume with the checkpoint's training set or start a new run")


def history_epsilon(history: Sequence[Mapping[str, Any]], delta: float) -> float:
    """epsilon at `delta` of every segment composed: Poisson segments as their steps of
    the subsampled Gaussian, the others (no amplification) as one Gaussian mechanism per
    epoch they ran in; +inf where a segment had no noise; 0 for an empty history."""
    if not history:
        return 0.0
    accountant = rdp.RdpAccountant()
    for segment in history:
        sigma = float(segment["noise_multiplier"])
        if sigma <= 0:
            return math.inf
        q = segment["sampling_rate"]
        count = int(segment["steps"]) if q is not None else \
            int(segment["last_epoch"]) - int(segment["first_epoch"]) + 1
        accountant.compose(dp_event(sigma / float(segment["sensitivity"]),
                                    1.0 if q is None else float(q), count))
    return float(accountant.get_epsilon(delta))
