"""The study's statistics against hand-computed values and direct scipy calls."""
import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from espnet_pcc.study import stats


def test_bootstrap_interval_contains_the_mean_and_is_reproducible():
    x = [1.0, 2.0, 3.0, 4.0, 10.0]
    a = stats.bootstrap_interval(x)
    assert a.value == pytest.approx(4.0) and a.n == 5
    assert a.low < 4.0 < a.high
    assert stats.bootstrap_interval(x) == a  # seeded


def test_bootstrap_interval_matches_scipy_bca():
    x = np.array([0.3, 1.2, 2.2, 2.9, 4.1, 5.5, 6.0, 7.7])
    ours = stats.bootstrap_interval(x, n_resamples=2000, seed=3)
    ref = sps.bootstrap((x,), np.mean, n_resamples=2000, method="BCa",
                        random_state=np.random.default_rng(3)).confidence_interval
    assert (ours.low, ours.high) == pytest.approx((ref.low, ref.high))


def test_bootstrap_interval_degenerate_samples():
    assert stats.bootstrap_interval([2.0, 2.0, 2.0]) == stats.Interval(2.0, 2.0, 2.0, 3)
    one = stats.bootstrap_interval([5.0])
    assert one.value == 5.0 and math.isnan(one.low) and math.isnan(one.high)
    assert stats.bootstrap_interval([]).n == 0
    inf = stats.bootstrap_interval([1.0, math.inf])
    assert inf.value == math.inf and math.isnan(inf.low)


def test_paired_comparison_exact_sign_flip_p_value_by_hand():
    # d = (1, 2, 3): of the 8 sign patterns only (+,+,+) and (-,-,-) give |mean| >= 2,
    # so the exact two-sided p-value is 2/8.
    res = stats.paired_comparison([2.0, 4.0, 6.0], [1.0, 2.0, 3.0])
    assert res.p_value == pytest.approx(0.25)
    assert res.difference.value == pytest.approx(2.0)
    assert res.effect_size == pytest.approx(2.0 / 1.0)  # mean 2, sd(ddof=1) 1
    assert res.mean_a == pytest.approx(4.0) and res.mean_b == pytest.approx(2.0)


def test_paired_comparison_enumerates_like_a_direct_enumeration():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=8), rng.normal(size=8)
    d = a - b
    obs = abs(d.mean())
    flips = [abs((d * np.array(s)).mean()) >= obs - 1e-12
             for s in itertools.product((1, -1), repeat=8)]
    assert stats.paired_comparison(a, b).p_value == pytest.approx(np.mean(flips))


def test_paired_comparison_no_difference_and_errors():
    res = stats.paired_comparison([1.0, 2.0], [1.0, 2.0])
    assert res.p_value == 1.0 and res.effect_size == 0.0
    with pytest.raises(ValueError, match="differ in length"):
        stats.paired_comparison([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        stats.paired_comparison([1.0, math.inf], [1.0, 2.0])


def test_seed_interval_is_students_t():
    x = [10.0, 12.0, 14.0]
    iv = stats.seed_interval(x)
    # mean 12, sem = 2 / sqrt(3), t(0.975, 2) = 4.302652...
    half = sps.t.ppf(0.975, 2) * 2.0 / math.sqrt(3)
    assert iv.value == 12.0 and iv.low == pytest.approx(12 - half) and iv.high == pytest.approx(12 + half)
    assert math.isnan(stats.seed_interval([3.0]).low)


def test_ratio_interval_is_the_pooled_rate():
    iv = stats.ratio_interval([1, 0, 2, 1], [4, 5, 4, 7])
    assert iv.value == pytest.approx(4 / 20)
    assert iv.low <= 0.2 <= iv.high


def test_interpolate_at_first_crossing():
    losses, values = [10.0, 6.0, 4.0, 5.0], [1.0, 2.0, 4.0, 9.0]
    assert stats.interpolate_at(losses, values, 8.0) == pytest.approx(1.5)  # halfway 10 -> 6
    assert stats.interpolate_at(losses, values, 4.0) == pytest.approx(4.0)
    assert stats.interpolate_at(losses, values, 11.0) == 1.0  # already below at epoch 1
    assert stats.interpolate_at(losses, values, 3.0) is None  # never reached


def test_interval_format():
    assert stats.Interval(1.234, 1.0, 1.5, 3).fmt(2) == "1.23 [1.00, 1.50]"
    assert stats.Interval(1.234, math.nan, math.nan, 1).fmt(1) == "1.2"
