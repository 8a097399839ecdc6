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

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

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


# ----------------------------------------------------------------------------- runs as the unit
# The second study (docs/study.md, "Pre-registered plan") compares arms over training runs:
# each run gives one value (its mean over the canaries), and a comparison permutes the arm
# labels of runs.  The canaries enter only through the bootstrap interval, which resamples
# runs within each arm and, once per resample for all runs, the canaries they share.


@dataclass(frozen=True)
class RunComparison:
    """Arm a minus arm b over training runs: the difference of the arms' mean run values,
    its two-level bootstrap interval, and the permutation test's p-value."""

    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    difference: Interval
    p_value: float  # two-sided permutation test of the arm labels
    p_floor: float  # the smallest p-value the test can return
    exact: bool  # every relabelling enumerated

    def as_dict(self) -> dict:
        d = asdict(self)
        d["difference"] = self.difference.as_dict()
        return d

    @property
    def at_floor(self) -> bool:
        return self.p_value <= self.p_floor * (1 + 1e-9)


def format_p(p: float, floor: float = 0.0) -> str:
    """``"0.034"``; ``"≤ 0.008"`` where p is the smallest value the test can give."""
    if not math.isfinite(p):
        return "n/a"
    if floor and p <= floor * (1 + 1e-9):
        return f"≤ {math.ceil(floor * 1000) / 1000:.3f}"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _run_values(values: Sequence[Sequence[float]], name: str) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name}: expected runs x units, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: values must be finite")
    return a


def _difference_of_means(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def permutation_p(ya: Sequence[float], yb: Sequence[float], *, n_resamples: int = N_RESAMPLES,
                  seed: int = SEED) -> Tuple[float, float, bool]:
    """(p, floor, exact): the two-sided permutation test of the arm labels of runs with values
    ``ya`` and ``yb`` (difference of means), the smallest p it can give, and whether every
    relabelling was enumerated (C(n_a + n_b, n_a) <= n_resamples)."""
    x, y = np.asarray(ya, dtype=float), np.asarray(yb, dtype=float)
    relabellings = math.comb(x.size + y.size, x.size)
    exact = relabellings <= n_resamples
    # Two-sided: twice the one-sided floor, the observed relabelling counted (scipy's rule).
    floor = min(1.0, 2.0 / relabellings if exact else 2.0 / (n_resamples + 1))
    both = np.concatenate([x, y])
    if x.size + y.size < 3 or np.all(both == both[0]):
        return 1.0, floor, exact
    res = stats.permutation_test((x, y), _difference_of_means, permutation_type="independent",
                                 alternative="two-sided", n_resamples=n_resamples,
                                 vectorized=True, random_state=np.random.default_rng(seed))
    return float(res.pvalue), floor, exact


def compare_runs(
    a: Sequence[Sequence[float]],
    b: Sequence[Sequence[float]],
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> RunComparison:
    """Arm a against arm b, training runs as the unit.

    Args:
        a, b: one row per training run of the arm, one column per unit (canary) that every
            run of both arms measured, in the same order.  A run's value is its row mean.
        confidence: level of the interval.
        n_resamples: bootstrap resamples, and the permutation test's when it cannot enumerate
            every relabelling (it is exact when C(n_a + n_b, n_a) <= n_resamples).
        seed: seed of both.

    Returns:
        :class:`RunComparison`.  The test (``scipy.stats.permutation_test``,
        ``permutation_type="independent"``) relabels runs between the arms; the interval is
        the percentile interval of a two-level bootstrap: runs drawn with replacement within
        each arm, and the units drawn with replacement once per resample for all runs (they
        share them).
    """
    x, y = _run_values(a, "arm a"), _run_values(b, "arm b")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"the arms measured different units: {x.shape[1]} vs {y.shape[1]}")
    ya, yb = x.mean(axis=1), y.mean(axis=1)
    n_a, n_b, n_units = x.shape[0], y.shape[0], x.shape[1]
    observed = float(ya.mean() - yb.mean())
    p, floor, exact = permutation_p(ya, yb, n_resamples=n_resamples, seed=seed)
    rng = np.random.default_rng(seed)
    runs_a = rng.integers(n_a, size=(n_resamples, n_a))
    runs_b = rng.integers(n_b, size=(n_resamples, n_b))
    units = rng.integers(n_units, size=(n_resamples, n_units))
    # Resample r: mean over the drawn runs of each run's mean over the drawn units.
    unit_means_a = np.take_along_axis(x[None, :, :], units[:, None, :], axis=2).mean(axis=2)
    unit_means_b = np.take_along_axis(y[None, :, :], units[:, None, :], axis=2).mean(axis=2)
    boot = (np.take_along_axis(unit_means_a, runs_a, axis=1).mean(axis=1)
            - np.take_along_axis(unit_means_b, runs_b, axis=1).mean(axis=1))
    alpha = 1 - confidence
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return RunComparison(n_a=n_a, n_b=n_b, mean_a=float(ya.mean()), mean_b=float(yb.mean()),
                         difference=Interval(observed, float(low), float(high), n_a + n_b),
                         p_value=p, p_floor=floor, exact=exact)


def holm(p_values: Sequence[float]) -> List[float]:
    """Holm's step-down adjusted p-values (family-wise error), in the input's order
    (statsmodels' ``multipletests``; scipy has only false-discovery-rate control, a weaker
    promise)."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return []
    return multipletests(p, method="holm")[1].tolist()


def two_sample_power(effect_size: float, n_a: int, n_b: int, alpha: float = 0.05) -> float:
    """Power of the two-sided two-sample t-test (equal variances) at Cohen's d = effect_size,
    from the noncentral t distribution (``scipy.stats.nct``)."""
    df = n_a + n_b - 2
    ncp = effect_size / math.sqrt(1 / n_a + 1 / n_b)
    crit = stats.t.ppf(1 - alpha / 2, df)
    # The far tail's cdf is NaN where scipy's series underflows (a large ncp): it is 0 there.
    return float(stats.nct.sf(crit, df, ncp) + np.nan_to_num(stats.nct.cdf(-crit, df, ncp)))


def minimum_detectable_effect(sd: float, n_a: int, n_b: int, alpha: float = 0.05,
                              power: float = 0.8) -> float:
    """The difference of means that the two-sided two-sample t-test detects with ``power``,
    given the runs' standard deviation ``sd`` within an arm: d·sd, d solving
    :func:`two_sample_power` (``scipy.optimize.brentq``)."""
    from scipy.optimize import brentq

    if n_a < 2 or n_b < 2:
        raise ValueError("the minimum detectable effect needs at least 2 runs per arm")
    d = brentq(lambda e: two_sample_power(e, n_a, n_b, alpha) - power, 1e-6, 20.0)
    return float(d * sd)


def pooled_sd(*groups: Sequence[float]) -> float:
    """The pooled within-group standard deviation (ddof 1 per group)."""
    arrays = [np.asarray(g, dtype=float) for g in groups]
    dof = sum(a.size - 1 for a in arrays)
    if dof < 1:
        return math.nan
    return float(math.sqrt(sum(((a - a.mean()) ** 2).sum() for a in arrays) / dof))


@dataclass(frozen=True)
class VarianceComponents:
    """Runs x units of one arm as run effect + unit effect + noise (two-way, no interaction)."""

    run_sd: float
    unit_sd: float
    noise_sd: float


def variance_components(values: Sequence[Sequence[float]]) -> VarianceComponents:
    """Method-of-moments estimates from a two-way layout without replication: the noise
    variance from the residual mean square, the run (unit) variance from the run (unit)
    mean square less its noise share, clipped at 0."""
    x = _run_values(values, "values")
    r, c = x.shape
    if r < 2 or c < 2:
        raise ValueError(f"variance components need >= 2 runs and units, got {r} x {c}")
    grand = x.mean()
    run_means, unit_means = x.mean(axis=1), x.mean(axis=0)
    residual = x - run_means[:, None] - unit_means[None, :] + grand
    noise_var = float((residual ** 2).sum() / ((r - 1) * (c - 1)))
    run_var = max(0.0, float(c * ((run_means - grand) ** 2).sum() / (r - 1) - noise_var) / c)
    unit_var = max(0.0, float(r * ((unit_means - grand) ** 2).sum() / (c - 1) - noise_var) / r)
    return VarianceComponents(math.sqrt(run_var), math.sqrt(unit_var), math.sqrt(noise_var))


def simulate_arms(rng: np.random.Generator, n_runs: int, n_units: int,
                  components: VarianceComponents, effect: float = 0.0
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """Two arms of ``n_runs`` runs x ``n_units`` shared units: unit effects common to both
    arms, a run effect per run, noise per cell; arm a shifted by ``effect``."""
    units = rng.normal(0.0, components.unit_sd, n_units)

    def arm(shift: float) -> np.ndarray:
        runs = rng.normal(0.0, components.run_sd, (n_runs, 1))
        return shift + units[None, :] + runs + rng.normal(0.0, components.noise_sd,
                                                          (n_runs, n_units))

    return arm(effect), arm(0.0)


def rejection_rate(rng: np.random.Generator, test: Callable[[np.ndarray, np.ndarray], float],
                   n_trials: int, n_runs: int, n_units: int, components: VarianceComponents,
                   effect: float = 0.0, alpha: float = 0.05) -> float:
    """The fraction of ``n_trials`` simulated studies (:func:`simulate_arms`) in which
    ``test(a, b)`` (a p-value) is below ``alpha``: the false-positive rate at effect 0
    (an A/A comparison), the power otherwise."""
    hits = 0
    for _ in range(n_trials):
        a, b = simulate_arms(rng, n_runs, n_units, components, effect)
        hits += test(a, b) < alpha
    return hits / n_trials


def runs_test(a: np.ndarray, b: np.ndarray) -> float:
    """p of the runs-as-unit test on two runs x units arrays: each run's mean over its units,
    arm labels permuted over runs (:func:`permutation_p`)."""
    return permutation_p(a.mean(axis=1), b.mean(axis=1))[0]


def canaries_test(a: np.ndarray, b: np.ndarray) -> float:
    """p of the first study's canary-level test: each unit averaged over an arm's runs, then a
    paired sign-flip test over the units (:func:`paired_comparison`). Run-to-run variation
    is left out, so it rejects too often when runs differ."""
    return paired_comparison(a.mean(axis=0), b.mean(axis=0), n_resamples=999).p_value


def within_arm_splits(n_runs: int) -> Iterator[Tuple[List[int], List[int]]]:
    """Every split of one arm's ``n_runs`` runs into two groups of ``n_runs // 2`` and the
    rest, each partition once (the halves of an even split are not counted twice)."""
    if n_runs < 2:
        raise ValueError(f"a split needs >= 2 runs, got {n_runs}")
    k = n_runs // 2
    for first in itertools.combinations(range(n_runs), k):
        if 2 * k == n_runs and 0 not in first:
            continue
        yield list(first), [i for i in range(n_runs) if i not in first]


@dataclass(frozen=True)
class SplitCheck:
    """An A/A check on real runs: one arm's runs split every way into two groups (the
    splits share runs, so they are not independent trials), both tests applied to each."""

    splits: int
    runs_rejected: int  # splits the runs-as-unit test calls different at alpha
    runs_floor: float  # the smallest p that test can give for these group sizes
    canaries_rejected: int  # splits the canary-level test calls different at alpha


def split_check(values: Sequence[Sequence[float]], alpha: float = 0.05) -> SplitCheck:
    """:class:`SplitCheck` of one arm's runs x units ``values``."""
    x = _run_values(values, "values")
    splits = list(within_arm_splits(x.shape[0]))
    runs_p = [runs_test(x[a], x[b]) for a, b in splits]
    canaries_p = [canaries_test(x[a], x[b]) for a, b in splits]
    floor = permutation_p(x[splits[0][0]].mean(axis=1), x[splits[0][1]].mean(axis=1))[1]
    return SplitCheck(splits=len(splits), runs_rejected=sum(p < alpha for p in runs_p),
                      runs_floor=floor, canaries_rejected=sum(p < alpha for p in canaries_p))
