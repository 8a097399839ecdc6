"""Intervals and paired tests for the memorisation study, all from ``scipy.stats``.

Every number the study compares comes with one of these:

* :func:`bootstrap_interval` — a statistic of one sample (mean exposure of the canaries inserted
  16 times, mean canary CER, ...) with a 95 % bootstrap interval over the sample's units
  (canaries). ``scipy.stats.bootstrap``, BCa; percentile where BCa is undefined (a sample whose
  resamples all give one value).
* :func:`paired_comparison` — a mode against the baseline on the *same* units (the same
  canaries, each scored by both models): the mean difference with its bootstrap interval, a
  two-sided sign-flip permutation test of "mean difference = 0" (``scipy.stats.permutation_test``
  with ``permutation_type="samples"``: under H0 the two scores of a canary are exchangeable), and
  the effect size d_z = mean(d) / sd(d) (Cohen's d for paired samples).
* :func:`ratio_interval` — a corpus-level rate (WER = edits / words) with a bootstrap interval
  over utterances (percentile).
* :func:`seed_interval` — a quantity measured once per training seed (WER of a test set): mean
  and Student-t 95 % interval over seeds (``scipy.stats.t``). With 3 seeds the interval is wide;
  that is the honest width.

All functions are pure and seeded: the same input gives the same interval.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
N_RESAMPLES = 9999
SEED = 0


@dataclass(frozen=True)
class Interval:
    """A point estimate with its two-sided interval (``low``/``high`` NaN when undefined)."""

    value: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict:
        return asdict(self)

    def fmt(self, digits: int = 2) -> str:
        """``"3.14 [2.71, 3.58]"`` — the form every table of the study uses."""
        if not math.isfinite(self.value):
            return "n/a"
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return f"{self.value:.{digits}f}"
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


@dataclass(frozen=True)
class PairedComparison:
    """Mode minus baseline on the same units: difference, interval, p-value, effect size."""

    n: int
    mean_a: float
    mean_b: float
    difference: Interval  # mean of (a - b), bootstrap interval
    p_value: float  # two-sided sign-flip permutation test of mean(a - b) = 0
    effect_size: float  # d_z = mean(a - b) / sd(a - b, ddof=1); 0 when every difference is 0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["difference"] = self.difference.as_dict()
        return d


def _clean(values: Sequence[float]) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    if a.ndim != 1:
        raise ValueError(f"expected a 1-d sample, got shape {a.shape}")
    return a


def bootstrap_interval(
    values: Sequence[float],
    statistic: Callable[[np.ndarray], float] = np.mean,
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> Interval:
    """``statistic(values)`` with a bootstrap interval over the sample's units.

    Args:
        values: one number per unit (canary, utterance). Non-finite values are kept: an
            infinite extrapolated exposure makes the mean infinite, which is what it is.
        statistic: a vectorisable reduction (``np.mean``, ``np.median``) taking ``axis``.
        confidence: two-sided level.
        n_resamples: bootstrap resamples.
        seed: seed of the resampling (intervals are reproducible).

    Returns:
        The statistic and its interval; ``low``/``high`` are NaN for fewer than 2 units, and
        equal to the value when every unit has the same value.
    """
    a = _clean(values)
    n = int(a.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    value = float(statistic(a))
    if n < 2 or not np.all(np.isfinite(a)):
        return Interval(value, math.nan, math.nan, n)
    if np.all(a == a[0]):  # no spread: every resample gives the same value
        return Interval(value, value, value, n)
    rng = np.random.default_rng(seed)
    res = stats.bootstrap((a,), statistic, confidence_level=confidence, n_resamples=n_resamples,
                          method="BCa", random_state=rng, vectorized=True)
    low, high = res.confidence_interval
    if not (np.isfinite(low) and np.isfinite(high)):
        # BCa needs a non-degenerate jackknife; fall back to the percentile interval.
        res = stats.bootstrap((a,), statistic, confidence_level=confidence,
                              n_resamples=n_resamples, method="percentile",
                              random_state=np.random.default_rng(seed), vectorized=True)
        low, high = res.confidence_interval
    return Interval(value, float(low), float(high), n)


def _ratio_of_sums(num: np.ndarray, den: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.sum(num, axis=axis) / np.sum(den, axis=axis)


def ratio_interval(
    numerators: Sequence[float],
    denominators: Sequence[float],
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> Interval:
    """sum(numerators) / sum(denominators) with a bootstrap interval over the units.

    The corpus-level error rate (edits / reference words) resampled by utterance: an
    utterance's edits and words are drawn together (``paired=True``), so long utterances
    weigh as they do in the rate itself.
    """
    num, den = _clean(numerators), _clean(denominators)
    if num.shape != den.shape:
        raise ValueError(f"numerators and denominators differ in length: {num.size} vs {den.size}")
    n = int(num.size)
    if n == 0 or den.sum() == 0:
        return Interval(math.nan, math.nan, math.nan, n)
    value = float(num.sum() / den.sum())
    ratios = num / np.where(den == 0, 1, den)
    if n < 2 or np.all(ratios == ratios[0]):
        return Interval(value, value if n >= 2 else math.nan, value if n >= 2 else math.nan, n)
    res = stats.bootstrap((num, den), _ratio_of_sums, paired=True, vectorized=True,
                          confidence_level=confidence, n_resamples=n_resamples,
                          method="percentile", random_state=np.random.default_rng(seed))
    low, high = res.confidence_interval
    return Interval(value, float(low), float(high), n)


def _mean_of_differences(d: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(d, axis=axis)


def paired_comparison(
    a: Sequence[float],
    b: Sequence[float],
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> PairedComparison:
    """Compare two measurements of the same units (``a[i]`` and ``b[i]`` are one canary).

    Args:
        a: the mode's value per unit.
        b: the baseline's value per unit, same order.
        confidence: level of the interval of the mean difference.
        n_resamples: resamples for the bootstrap and the permutation test (the test is exact
            when 2**n <= n_resamples: every sign pattern is enumerated).
        seed: seed of both.

    Returns:
        :class:`PairedComparison`; p-value 1 when every difference is 0.

    Raises:
        ValueError: the two samples differ in length, or hold a non-finite value (an infinite
            extrapolated exposure cannot be differenced: compare rank exposure instead).
    """
    x, y = _clean(a), _clean(b)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {x.size} vs {y.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("paired samples must be finite")
    n = int(x.size)
    d = x - y
    diff = bootstrap_interval(d, np.mean, confidence=confidence, n_resamples=n_resamples,
                              seed=seed)
    if n < 2 or np.all(d == 0):
        p = 1.0 if n else math.nan
        effect = 0.0 if n else math.nan
    else:
        res = stats.permutation_test((d,), _mean_of_differences, permutation_type="samples",
                                     alternative="two-sided", n_resamples=n_resamples,
                                     vectorized=True, random_state=np.random.default_rng(seed))
        p = float(res.pvalue)
        sd = float(np.std(d, ddof=1))
        effect = float(np.mean(d) / sd) if sd > 0 else math.copysign(math.inf, float(np.mean(d)))
    return PairedComparison(n=n, mean_a=float(np.mean(x)) if n else math.nan,
                            mean_b=float(np.mean(y)) if n else math.nan, difference=diff,
                            p_value=p, effect_size=effect)


def seed_interval(values: Sequence[float], *, confidence: float = CONFIDENCE) -> Interval:
    """Mean over seeds with a Student-t interval (NaN bounds for a single seed)."""
    a = _clean(values)
    n = int(a.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(np.mean(a))
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    sem = float(stats.sem(a))
    if sem == 0:
        return Interval(mean, mean, mean, n)
    low, high = stats.t.interval(confidence, df=n - 1, loc=mean, scale=sem)
    return Interval(mean, float(low), float(high), n)


def interpolate_at(levels: Sequence[float], values: Sequence[float], level: float) -> Optional[float]:
    """The value where a trajectory first reaches ``level`` (linear between two epochs).

    ``levels`` is the utility per epoch (validation loss, lower is better) in epoch order and
    ``values`` the memorisation at the same epochs. The first crossing is used: a model whose
    validation loss later rises again has *reached* the level earlier. ``None`` when the
    trajectory never gets down to ``level``; the first epoch's value when it starts below it.
    """
    lv, vv = _clean(levels), _clean(values)
    if lv.size != vv.size or lv.size == 0:
        raise ValueError(f"trajectory lengths differ or are empty: {lv.size} vs {vv.size}")
    if lv[0] <= level:
        return float(vv[0])
    for i in range(1, lv.size):
        if lv[i] <= level:
            # lv[i-1] > level >= lv[i]: interpolate linearly in the utility.
            t = (lv[i - 1] - level) / (lv[i - 1] - lv[i])
            return float(vv[i - 1] + t * (vv[i] - vv[i - 1]))
    return None
