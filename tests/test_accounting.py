"""espnet_pcc.accounting: the (epsilon, delta) wiring around dp-accounting's RDP accountant."""
import math

import numpy as np
import pytest

from espnet_pcc.accounting import default_delta, epsilon


def rdp_epsilon_by_hand(sigma, steps, delta):
    """q = 1: T Gaussian mechanisms have RDP T·α/(2σ²) at order α; converted to
    (ε, δ) as dp-accounting does (Balle et al. 2020), minimised over a fine grid of α."""
    alpha = np.linspace(1.01, 400, 400_000)
    rdp = steps * alpha / (2 * sigma ** 2)
    eps = rdp + np.log((alpha - 1) / alpha) - (np.log(delta) + np.log(alpha)) / (alpha - 1)
    return float(eps.min())


@pytest.mark.parametrize("sigma,steps", [(2.0, 10), (5.0, 100), (1.0, 1)])
def test_full_batch_matches_the_rdp_formula(sigma, steps):
    expected = rdp_epsilon_by_hand(sigma, steps, 1e-5)
    # The accountant's orders are a subset of the grid: at least the grid's minimum.
    assert expected <= epsilon(sigma, 1.0, steps, 1e-5) <= expected * 1.01


def test_tf_privacy_mnist_example_is_reproduced():
    # TF-Privacy's tutorial setting: N = 60,000, batch 256, σ = 1.1, 60 epochs, δ = 1e-5;
    # the newer RDP conversion gives 2.6 where the tutorial's older one printed ~3.
    assert epsilon(1.1, 256 / 60000, 60 * 60000 // 256, 1e-5) == pytest.approx(2.60, abs=0.01)


def test_epsilon_grows_with_steps_and_shrinks_with_noise():
    q = 0.01
    assert epsilon(1.0, q, 100, 1e-5) < epsilon(1.0, q, 200, 1e-5)
    assert epsilon(2.0, q, 100, 1e-5) < epsilon(1.0, q, 100, 1e-5)


def test_no_step_costs_nothing_and_no_noise_is_infinite():
    assert epsilon(1.0, 0.1, 0, 1e-5) == 0.0
    assert epsilon(0.0, 0.1, 10, 1e-5) == math.inf


def test_default_delta_is_a_hundredth_of_one_over_n():
    assert default_delta(1000) == pytest.approx(1e-5)
    with pytest.raises(ValueError, match="num_units must be >= 1, got 0"):
        default_delta(0)
