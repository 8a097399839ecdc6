"""espnet_pcc.core.accounting: the (epsilon, delta) wiring around dp-accounting's RDP accountant."""
import math

import numpy as np
import pytest

from espnet_pcc.core.accounting import PrivacyAccounting, default_delta, epsilon, sensitivity
from espnet_pcc.core.clipping import ClipMode


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


def direct_epsilon(sigma, q, steps, delta):
    """dp-accounting itself, without the package's wiring."""
    import dp_accounting
    from dp_accounting import rdp

    event = dp_accounting.GaussianDpEvent(sigma)
    if q < 1:
        event = dp_accounting.PoissonSampledDpEvent(q, event)
    accountant = rdp.RdpAccountant()
    accountant.compose(dp_accounting.SelfComposedDpEvent(event, steps))
    return accountant.get_epsilon(delta)


@pytest.mark.parametrize("mode,max_per_unit,expected", [
    (ClipMode.PER_CORE, 1, 2),           # a hashed core that can hold other utterances
    (ClipMode.PER_CORE, 5, 2),           # a speaker's 5 utterances, still one core
    (ClipMode.PER_EXAMPLE, 1, 1),        # the utterance is its core
    (ClipMode.PER_EXAMPLE, 3, 3),        # a recording's 3 speed-perturbed copies, 3 cores
])
def test_sensitivity_of_each_layout(mode, max_per_unit, expected):
    assert sensitivity(mode, max_per_unit) == expected


@pytest.mark.parametrize("layout,sigma,s,q", [
    ("per_core, utterances, Poisson", 1.1, 2, 256 / 60000),
    ("per_example, utterances, Poisson", 1.1, 1, 256 / 60000),
    ("per_example, recordings of 3 copies, Poisson", 3.0, 3, 0.01),
    ("per_core, speakers, Poisson", 2.0, 2, 8 / 2338),
])
def test_the_effective_multiplier_is_sigma_over_the_sensitivity(layout, sigma, s, q):
    privacy = PrivacyAccounting("utterance", 1000, sigma, s, 1e-6, q)
    assert privacy.reporter_key == "dp_epsilon"
    assert privacy.epsilon(500, 2) == pytest.approx(direct_epsilon(sigma / s, q, 500, 1e-6))
    if s > 1:
        assert privacy.epsilon(500, 2) > epsilon(sigma, q, 500, 1e-6)


def test_epsilon_grows_sevenfold_from_sensitivity_c_to_2c():
    """sigma = 1.1, q = 1/892, 8920 steps, delta = 1e-5: 0.67 with sensitivity C, 4.70 with
    the 2C of a core holding several utterances."""
    assert epsilon(1.1, 1 / 892, 8920, 1e-5) == pytest.approx(0.67, abs=0.01)
    assert epsilon(1.1, 1 / 892, 8920, 1e-5, sensitivity=2) == pytest.approx(4.70, abs=0.01)


def test_without_amplification_each_epoch_is_one_gaussian_mechanism():
    privacy = PrivacyAccounting("recording", 1000, 4.0, 3, 1e-5, None)
    assert privacy.reporter_key == "dp_epsilon_unamplified"
    assert privacy.epsilon(steps=12345, epochs=6) == pytest.approx(
        direct_epsilon(4.0 / 3, 1.0, 6, 1e-5))
    assert "no amplification" in privacy.describe()


def test_the_privacy_line_names_the_adjacency_each_sampler_supports():
    """Poisson sampling: add/remove one unit.  Without it a unit more or less re-cuts every
    batch, so the unamplified epsilon holds for a unit replaced by an empty stand-in that
    keeps its id and length (zero-out), which the line says instead."""
    poisson = PrivacyAccounting("recording", 1000, 4.0, 3, 1e-5, 0.01)
    assert poisson.describe().startswith("privacy: add/remove one recording (N = 1000), "
                                         "Poisson sampling q = 0.01,")
    unamplified = PrivacyAccounting("recording", 1000, 4.0, 3, 1e-5, None)
    assert unamplified.describe().startswith(
        "privacy: one recording replaced by an empty stand-in keeping its id and length "
        "(zero-out adjacency; its presence is not protected) (N = 1000), no amplification")
    assert "add/remove" not in unamplified.describe()


def test_bad_accounting_inputs_are_rejected():
    with pytest.raises(ValueError, match="sampling_rate must be in"):
        epsilon(1.0, 0.0, 10, 1e-5)
    with pytest.raises(ValueError, match="sensitivity must be > 0"):
        epsilon(1.0, 0.1, 10, 1e-5, sensitivity=0)
    with pytest.raises(ValueError, match="max_per_unit must be >= 1"):
        sensitivity(ClipMode.PER_CORE, 0)


# -- the privacy history -------------------------------------------------------------------
def history_of(*runs):
    """The history of consecutive runs, each (PrivacyAccounting, steps, epoch of each step)."""
    from espnet_pcc.core.accounting import record_step

    history, steps = [], 0
    for privacy, count, epochs in runs:
        for step in range(count):
            history = record_step(history, privacy.mechanism, epochs[step], steps)
            steps += 1
    return history


def test_a_resume_with_another_sigma_composes_what_ran():
    """500 steps at sigma 0.6, then 500 at 3.0: the epsilon of both, not of 1000 at 3.0."""
    import dp_accounting
    from dp_accounting import rdp

    from espnet_pcc.core.accounting import history_epsilon

    q, delta = 0.01, 1e-5
    low, high = (PrivacyAccounting("utterance", 1000, sigma, 2, delta, q) for sigma in (0.6, 3.0))
    history = history_of((low, 500, [1 + s // 100 for s in range(500)]),
                         (high, 500, [6 + s // 100 for s in range(500)]))
    assert [(s["noise_multiplier"], s["steps"], s["first_epoch"], s["last_epoch"])
            for s in history] == [(0.6, 500, 1, 5), (3.0, 500, 6, 10)]
    accountant = rdp.RdpAccountant()
    for sigma in (0.6, 3.0):
        accountant.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(
            q, dp_accounting.GaussianDpEvent(sigma / 2)), 500))
    assert history_epsilon(history, delta) == pytest.approx(accountant.get_epsilon(delta))
    assert history_epsilon(history, delta) > 10 * high.epsilon(1000, 10)


def test_unamplified_segments_count_epochs_and_unknown_steps_count_as_noiseless():
    from espnet_pcc.core.accounting import history_epsilon, record_step

    fixed = PrivacyAccounting("utterance", 100, 2.0, 1, 1e-5, None)
    history = history_of((fixed, 6, [1, 1, 1, 2, 2, 2]))
    assert history_epsilon(history, 1e-5) == pytest.approx(fixed.epsilon(6, 2))
    assert history_epsilon([], 1e-5) == 0.0
    # 4 steps of a run the history does not hold (noiseless, or from before histories)
    resumed = record_step([], fixed.mechanism, 3, steps_before=4)
    assert resumed[0]["noise_multiplier"] == 0.0 and resumed[0]["steps"] == 4
    assert history_epsilon(resumed, 1e-5) == math.inf


def test_a_resume_with_another_unit_is_refused():
    from espnet_pcc.core.accounting import check_history
    from espnet_pcc.core.clip_config import ClipConfigError

    utterances = PrivacyAccounting("utterance", 100, 1.0, 2, 1e-5, 0.1)
    speakers = PrivacyAccounting("speaker", 10, 1.0, 2, 1e-5, 0.4)
    history = history_of((utterances, 3, [1, 1, 1]))
    check_history(history, utterances.mechanism)
    with pytest.raises(ClipConfigError, match="accounted per utterance, this run's are per "
                                              "speaker"):
        check_history(history, speakers.mechanism)


def test_a_resume_on_another_training_set_is_refused():
    """The history keeps N (and delta) with each segment: steps over 100 utterances cannot
    be composed with steps over 101 into one epsilon; another delta only adds a segment."""
    from espnet_pcc.core.accounting import check_history, history_epsilon, record_step
    from espnet_pcc.core.clip_config import ClipConfigError

    hundred = PrivacyAccounting("utterance", 100, 1.0, 2, 1e-5, 0.1)
    history = history_of((hundred, 3, [1, 1, 1]))
    assert [(s["num_units"], s["delta"]) for s in history] == [(100, 1e-5)]
    with pytest.raises(ClipConfigError, match=r"^--resume: the checkpoint's noisy steps were "
                       r"accounted over N = 100 utterances, this run's training set has N = 101"):
        check_history(history, PrivacyAccounting("utterance", 101, 1.0, 2, 1e-5, 0.1).mechanism)
    smaller_delta = PrivacyAccounting("utterance", 100, 1.0, 2, 1e-6, 0.1)
    check_history(history, smaller_delta.mechanism)
    both = history_of((hundred, 3, [1, 1, 1]), (smaller_delta, 2, [2, 2]))
    assert [(s["delta"], s["steps"]) for s in both] == [(1e-5, 3), (1e-6, 2)]
    assert history_epsilon(both, 1e-6) == pytest.approx(smaller_delta.epsilon(5, 2))
    # A segment written before N was recorded is not checked for it, and not extended.
    unrecorded = [{k: v for k, v in s.items() if k != "num_units"} for s in history]
    check_history(unrecorded, PrivacyAccounting("utterance", 101, 1.0, 2, 1e-5, 0.1).mechanism)
    assert len(record_step(unrecorded, hundred.mechanism, 2, steps_before=3)) == 2
