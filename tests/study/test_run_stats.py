"""Training runs as the unit: the permutation test of arm labels, the two-level bootstrap,
Holm, the minimum detectable effect, and their calibration on simulated studies."""
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from espnet_pcc.study import stats

# A study of the second study's size: 5 runs per arm, 50 canaries; a seed effect of sd 0.4
# bits and canary noise of sd 1.5 bits (the reviewer's simulation), canary effects of sd 1.
COMPONENTS = stats.VarianceComponents(run_sd=0.4, unit_sd=1.0, noise_sd=1.5)
RUNS, CANARIES = 5, 50


def test_exact_permutation_p_by_hand():
    # 3 vs 3 runs, completely separated: of the C(6, 3) = 20 relabellings only the observed
    # one is as extreme on its side, so p = 2 / 20, which is also the floor.
    result = stats.compare_runs([[1.0], [2.0], [3.0]], [[4.0], [5.0], [6.0]], n_resamples=999)
    assert result.exact and result.p_value == pytest.approx(0.1) and result.p_floor == 0.1
    assert result.at_floor
    assert result.difference.value == -3.0 and result.mean_a == 2.0 and result.mean_b == 5.0
    # Runs 1, 2, 4 vs 3, 5, 6: relabellings with |mean difference| >= 2 (sums <= 7 or >= 14):
    # {1,2,3}, {1,2,4} and their complements: p = 4 / 20.
    p, floor, exact = stats.permutation_p([1, 2, 4], [3, 5, 6])
    assert p == pytest.approx(0.2) and floor == 0.1 and exact


def test_permutation_p_matches_a_brute_force_enumeration():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.5, 1, 5), rng.normal(0, 1, 5)
    both = np.concatenate([a, b])
    observed = a.mean() - b.mean()
    diffs = []
    for idx in __import__("itertools").combinations(range(10), 5):
        mask = np.zeros(10, bool)
        mask[list(idx)] = True
        diffs.append(both[mask].mean() - both[~mask].mean())
    diffs = np.array(diffs)
    tol = 1e-12
    expected = 2 * min((diffs <= observed + tol).mean(), (diffs >= observed - tol).mean())
    p, floor, exact = stats.permutation_p(a, b)
    assert exact and floor == pytest.approx(2 / 252)
    assert p == pytest.approx(min(1.0, expected))


def test_two_level_bootstrap_interval():
    rng = np.random.default_rng(0)
    a, b = stats.simulate_arms(rng, RUNS, CANARIES, COMPONENTS, effect=1.0)
    result = stats.compare_runs(a, b)
    assert result.difference.value == pytest.approx(a.mean() - b.mean())
    assert result.difference.low < result.difference.value < result.difference.high
    assert stats.compare_runs(a, b) == result  # seeded
    # Resampling the canaries as well as the runs can only widen the run-level interval's
    # spread: compare with a bootstrap over runs alone of the run means.
    runs_only = scipy_stats.bootstrap((a.mean(1), b.mean(1)), lambda x, y, axis: x.mean(axis)
                                      - y.mean(axis), vectorized=True, method="percentile",
                                      random_state=np.random.default_rng(0))
    width = result.difference.high - result.difference.low
    runs_width = runs_only.confidence_interval.high - runs_only.confidence_interval.low
    assert width >= 0.9 * runs_width


def test_compare_runs_rejects_bad_shapes():
    with pytest.raises(ValueError, match="different units"):
        stats.compare_runs([[1.0, 2.0]], [[1.0]])
    with pytest.raises(ValueError, match="finite"):
        stats.compare_runs([[math.inf]], [[1.0]])


def test_holm_by_hand():
    # Sorted 0.01, 0.03, 0.04 -> 0.03, 0.06, 0.04 -> non-decreasing 0.03, 0.06, 0.06.
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_minimum_detectable_effect_matches_the_t_test_tables():
    # Two-sided alpha 0.05, power 0.8, 5 per group: d = 2.02 (G*Power; Cohen's tables).
    assert stats.minimum_detectable_effect(1.0, 5, 5) == pytest.approx(2.025, abs=0.01)
    assert stats.minimum_detectable_effect(0.5, 5, 5) == pytest.approx(2.025 / 2, abs=0.005)
    assert stats.two_sample_power(0.0, 5, 5) == pytest.approx(0.05)
    # 20 per group: d = 0.91.
    assert stats.minimum_detectable_effect(1.0, 20, 20) == pytest.approx(0.909, abs=0.01)


def test_variance_components_recover_the_simulation():
    rng = np.random.default_rng(1)
    a, _ = stats.simulate_arms(rng, 200, 200, COMPONENTS)
    est = stats.variance_components(a)
    assert est.run_sd == pytest.approx(0.4, abs=0.08)
    assert est.unit_sd == pytest.approx(1.0, abs=0.15)
    assert est.noise_sd == pytest.approx(1.5, abs=0.05)


_runs_test, _canaries_test = stats.runs_test, stats.canaries_test


def test_a_a_comparison_rejects_at_the_nominal_rate():
    """Two arms drawn from one distribution: the runs-as-unit test rejects about 5 % of the
    time; the canary-level test of the first study, on the same studies, far more often."""
    rng = np.random.default_rng(2)
    runs_rate = stats.rejection_rate(rng, _runs_test, 400, RUNS, CANARIES, COMPONENTS)
    # 400 trials at 5 %: sd 1.1 %; [1.5 %, 9 %] is 3 sd on either side.
    assert 0.015 <= runs_rate <= 0.09, runs_rate
    canary_rate = stats.rejection_rate(np.random.default_rng(2), _canaries_test, 100, RUNS,
                                       CANARIES, COMPONENTS)
    assert canary_rate > 0.2, canary_rate


def test_power_at_the_minimum_detectable_effect_is_about_80_percent():
    # The sd of a run's value: its seed effect and the mean of its canary noise (the canary
    # effects are shared by every run and cancel in the difference).
    sd = math.sqrt(COMPONENTS.run_sd ** 2 + COMPONENTS.noise_sd ** 2 / CANARIES)
    effect = stats.minimum_detectable_effect(sd, RUNS, RUNS)
    power = stats.rejection_rate(np.random.default_rng(4), _runs_test, 300, RUNS, CANARIES,
                                 COMPONENTS, effect=effect)
    # The exact permutation test is a little less powerful than the t-test it is sized by.
    assert 0.6 <= power <= 0.92, power
    assert stats.rejection_rate(np.random.default_rng(4), _runs_test, 100, RUNS, CANARIES,
                                COMPONENTS, effect=3 * effect) > 0.95


def test_format_p_names_the_floor():
    assert stats.format_p(2 / 252, 2 / 252) == "≤ 0.008"
    assert stats.format_p(0.0342, 2 / 252) == "0.034"
    assert stats.format_p(math.nan) == "n/a"


def test_within_arm_splits_give_each_partition_once():
    five = list(stats.within_arm_splits(5))
    assert len(five) == 10 and all(len(a) == 2 and len(b) == 3 for a, b in five)
    assert len({frozenset(map(frozenset, split)) for split in five}) == 10
    # an even split counts {0, 1} | {2, 3} once, not again as {2, 3} | {0, 1}
    assert list(stats.within_arm_splits(4)) == [([0, 1], [2, 3]), ([0, 2], [1, 3]),
                                                 ([0, 3], [1, 2])]
    with pytest.raises(ValueError, match="got 1"):
        list(stats.within_arm_splits(1))


def test_a_split_check_on_runs_that_differ_catches_the_canary_level_test():
    """One arm whose runs differ by a run effect much larger than the canary noise: every
    split of its 5 runs looks 'different' to the canary-level test; the runs-as-unit test
    cannot go below its floor of 2/10 with 2 vs 3 runs, and rejects none."""
    rng = np.random.default_rng(0)
    # offsets with no two groups of equal mean (pair sum s never solves s/2 = (26 - s)/3)
    values = np.array([[0.0], [1.0], [3.0], [7.0], [15.0]]) + rng.normal(0, 0.05, (5, 40))
    check = stats.split_check(values)
    assert check.splits == 10 and check.runs_rejected == 0
    assert check.runs_floor == pytest.approx(0.2)
    assert check.canaries_rejected == 10
    # identical runs: nothing to find for either test
    same = stats.split_check(np.tile(rng.normal(0, 1, 40), (5, 1)))
    assert (same.runs_rejected, same.canaries_rejected) == (0, 0)


def test_two_level_bootstrap_interval_by_hand():
    """Small enough to enumerate. Runs level: arm a's 2 runs are 1 and 3, arm b's are 0, so a
    resampled difference is 1, 2 or 3 with probabilities 1/4, 1/2, 1/4, and the 95 % percentile
    interval is [1, 3]. Canary level: every run of arm a measures 1 and 3 on its two canaries,
    arm b 0; the canaries, drawn once for all runs, give 1, 2 or 3 alike: [1, 3] again. Both
    levels (runs 1 apart around 2, canaries 1 apart around the run): the difference is
    R + U, R in {1, 2, 3} and U in {-1, 0, 1}, each with 1/4, 1/2, 1/4; P(0) = P(4) = 1/16,
    more than 2.5 %, so the interval is [0, 4]."""
    runs = stats.compare_runs([[1.0], [3.0]], [[0.0], [0.0]])
    assert (runs.difference.value, runs.difference.low, runs.difference.high) == (2.0, 1.0, 3.0)
    units = stats.compare_runs([[1.0, 3.0], [1.0, 3.0]], [[0.0, 0.0], [0.0, 0.0]])
    assert (units.difference.value, units.difference.low, units.difference.high) == (2.0, 1.0, 3.0)
    both = stats.compare_runs([[0.0, 2.0], [2.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]])
    assert (both.difference.value, both.difference.low, both.difference.high) == (2.0, 0.0, 4.0)
