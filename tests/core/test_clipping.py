"""The paper's math (espnet_pcc.core.clipping) against hand-computed values."""
import math

import pytest
import torch

from espnet_pcc.core.clipping import ClipMode, StepStatistics, clip_factor, clipped_average, \
    grad_norm, step_scaling


def core(*values):
    """One core's gradient as two 'parameters' (to exercise the all-parameter norm)."""
    return [torch.tensor(values[:1], dtype=torch.float64), torch.tensor(values[1:], dtype=torch.float64)]


# ‖(3, 4)‖ = 5, ‖(0, 1)‖ = 1, ‖(6, 8)‖ = 10
CORES = [core(3.0, 4.0), core(0.0, 1.0), core(6.0, 8.0)]


def flat(update):
    return torch.cat([u.reshape(-1) for u in update])


def test_grad_norm_spans_all_parameters():
    assert grad_norm(core(3.0, 4.0)).item() == pytest.approx(5.0)
    assert grad_norm([torch.ones(2, 2), torch.ones(5)]).item() == pytest.approx(3.0)
    assert grad_norm([]).item() == 0.0


def test_clip_factor():
    assert clip_factor(torch.tensor(10.0), 2.0).item() == pytest.approx(0.2)
    assert clip_factor(torch.tensor(1.0), 2.0).item() == 1.0
    assert clip_factor(torch.tensor(0.0), 2.0).item() == 1.0  # nothing to clip


def test_per_core_hand_computed():
    # C = 2: factors 2/5, 1, 2/10 → (1/3)[(1.2,1.6) + (0,1) + (1.2,1.6)] = (0.8, 1.4)
    update, stats = clipped_average(CORES, "per_core", max_norm=2.0)
    assert torch.allclose(flat(update), torch.tensor([0.8, 1.4], dtype=torch.float64))
    assert torch.allclose(stats.factors, torch.tensor([0.4, 1.0, 0.2]))
    assert stats.clipped_fraction.item() == pytest.approx(2 / 3)
    assert stats.bound.item() == 2.0


def test_adaptive_per_core_hand_computed():
    # C = min norm = 1: every core scaled to norm 1: (0.6,0.8),(0,1),(0.6,0.8) → /3
    update, stats = clipped_average(CORES, ClipMode.ADAPTIVE_PER_CORE)
    assert torch.allclose(flat(update), torch.tensor([0.4, 2.6 / 3], dtype=torch.float64))
    assert stats.bound.item() == pytest.approx(1.0)


def test_adaptive_every_clipped_core_has_the_min_norm():
    torch.manual_seed(0)
    cores = [[torch.randn(4, 3) * s, torch.randn(7) * s] for s in (0.5, 2.0, 7.0, 1.3)]
    norms = [grad_norm(c).item() for c in cores]
    _, stats = clipped_average(cores, "adaptive_per_core")
    for c, f in zip(cores, stats.factors):
        assert grad_norm([g * f for g in c]).item() == pytest.approx(min(norms), rel=1e-5)


def test_global_clips_the_mean():
    # mean = (3, 13/3), ‖mean‖ = 5.2705; C = 2 → scaled to norm 2
    update, stats = clipped_average(CORES, "global", max_norm=2.0)
    mean = torch.tensor([3.0, 13 / 3], dtype=torch.float64)
    assert torch.allclose(flat(update), mean * 2.0 / mean.norm())
    assert stats.update_norm.item() == pytest.approx(2.0)


def test_global_of_cores_clips_the_mean_of_the_cores():
    """The paper's baseline: the cores' gradients averaged, the average clipped as one vector
    (global's formula, on cores): by hand, mean = (3, 13/3), ‖mean‖ = 5.2705."""
    mean = torch.tensor([3.0, 13 / 3], dtype=torch.float64)
    update, stats = clipped_average(CORES, "global_of_cores", max_norm=2.0)
    assert torch.allclose(flat(update), mean * 2.0 / mean.norm())
    assert stats.factors.tolist() == pytest.approx([2.0 / mean.norm().item()])
    assert stats.clipped_fraction.item() == 1.0 and stats.bound.item() == 2.0
    unclipped, stats = clipped_average(CORES, "global_of_cores", max_norm=6.0)
    assert torch.allclose(flat(unclipped), mean) and stats.clipped_fraction.item() == 0.0


def test_infinite_bound_is_the_plain_mean():
    expected = torch.tensor([3.0, 13 / 3], dtype=torch.float64)
    for mode in ("none", "per_core"):
        update, _ = clipped_average(CORES, mode, max_norm=math.inf if mode == "per_core" else None)
        assert torch.allclose(flat(update), expected)


def test_one_core_per_core_equals_global():
    torch.manual_seed(1)
    grads = [torch.randn(5, 5), torch.randn(3)]
    for c in (0.1, 1.0, 100.0):
        pcc, _ = clipped_average([grads], "per_core", max_norm=c)
        glob, _ = clipped_average([grads], "global", max_norm=c)
        assert torch.allclose(flat(pcc), flat(glob))


def test_unknown_mode_names_the_value():
    with pytest.raises(ValueError, match="unknown value 'per-core'"):
        ClipMode.parse("per-core")


def test_the_mode_rules_in_one_table():
    """Which setting belongs to which mode, as the ClipMode properties state it."""
    rules = {m: (m.clips_each_core, m.clips_mean, m.runs_stock_loop, m.has_fixed_bound,
                 m.requires_max_norm, m.accepts_max_norm, m.splits_micro_batches,
                 m.allows_speaker_cores, m.one_utterance_per_core) for m in ClipMode}
    assert rules == {
        ClipMode.NONE: (False, False, False, False, False, False, True, False, False),
        ClipMode.GLOBAL: (False, True, True, False, False, True, False, False, False),
        ClipMode.GLOBAL_OF_CORES: (False, True, False, False, True, True, True, False, False),
        ClipMode.PER_CORE: (True, False, False, True, True, True, True, True, False),
        ClipMode.ADAPTIVE_PER_CORE: (True, False, False, False, False, False, True, True, False),
        ClipMode.PER_EXAMPLE: (True, False, False, True, True, True, False, False, True),
    }


# -- the streaming form: each mode's scaling, by hand ------------------------------------------

def step_stats(num_cores, norm_min=1.0, over=0, nonfinite=0, at_min=1):
    return StepStatistics(num_cores, 0.0, over, nonfinite, norm_min, 10.0, at_min)


def test_bound_scaling_clips_and_divides_by_the_previous_count():
    scaling = step_scaling(ClipMode.PER_CORE, max_norm=2.0, divisor=4, fixed_denominator=False,
                           keeps_first_core=True, device="cpu")
    assert scaling.factor(torch.tensor(5.0)).item() == pytest.approx(0.4 / 4)
    assert scaling.factor(torch.tensor(1.0)).item() == pytest.approx(1 / 4)
    outcome = scaling.finish(step_stats(num_cores=2, over=1))
    assert (outcome.bound, outcome.scale, outcome.num_clipped) == (2.0, 2.0, 1)  # Σ·K̂/K


def test_bound_scaling_with_a_fixed_denominator_scales_by_nothing_more():
    scaling = step_scaling(ClipMode.PER_EXAMPLE, max_norm=1.0, divisor=8.0,
                           fixed_denominator=True, keeps_first_core=True, device="cpu")
    assert scaling.factor(torch.tensor(4.0)).item() == pytest.approx(0.25 / 8)
    assert scaling.finish(step_stats(num_cores=3)).scale == 1.0


def test_none_adds_cores_as_they_are():
    scaling = step_scaling(ClipMode.NONE, max_norm=None, divisor=1, fixed_denominator=False,
                           keeps_first_core=True, device="cpu")
    assert scaling.factor(torch.tensor(1e9)) is None
    assert scaling.counted_bound == math.inf
    outcome = scaling.finish(step_stats(num_cores=4))
    assert (outcome.bound, outcome.scale, outcome.num_clipped) == (math.inf, 0.25, 0)


def test_mean_clip_scaling_adds_cores_as_they_are_and_clips_their_average():
    # K̂ = 4, K = 2: Σ holds g_k/4, the average is Σ·4/2.  ‖Σ‖ = 1.5 gives ‖ḡ‖ = 3 > C = 2:
    # u = Σ·2·(2/3); with ‖Σ‖ = 0.5, ‖ḡ‖ = 1 <= C: the plain average.
    scaling = step_scaling(ClipMode.GLOBAL_OF_CORES, max_norm=2.0, divisor=4,
                           fixed_denominator=False, keeps_first_core=True, device="cpu")
    assert scaling.factor(torch.tensor(1e9)).item() == pytest.approx(1 / 4)  # no core clipped
    assert scaling.counted_bound == math.inf and scaling.needs_sum_norm
    clipped = scaling.finish(step_stats(num_cores=2), sum_norm=1.5)
    assert (clipped.bound, clipped.num_clipped) == (2.0, 2)  # the whole step: clip 100 %
    assert clipped.scale == pytest.approx(2 * 2 / 3)
    kept = scaling.finish(step_stats(num_cores=2), sum_norm=0.5)
    assert (kept.scale, kept.num_clipped) == (2.0, 0)
    with pytest.raises(ValueError, match="norm of the summed cores"):
        scaling.finish(step_stats(num_cores=2))


def test_adaptive_scaling_keeps_the_first_core_and_scales_the_rest_to_its_norm():
    # r = 5 (the first core, added as it is); a core of norm 10 enters as g·5/10; at the end
    # C = min = 1 over K = 2 cores: u = Σ·1/(2·5), each core then has norm 1/2 of its share.
    scaling = step_scaling(ClipMode.ADAPTIVE_PER_CORE, max_norm=None, divisor=3,
                           fixed_denominator=False, keeps_first_core=True, device="cpu")
    assert scaling.factor(torch.tensor(5.0)) is None
    assert scaling.factor(torch.tensor(10.0)).item() == pytest.approx(0.5)
    assert scaling.factor(torch.tensor(0.0)).item() == 0.0  # r/0 = inf would poison the step
    outcome = scaling.finish(step_stats(num_cores=3, norm_min=1.0, at_min=1))
    assert outcome.bound == 1.0
    assert outcome.scale == pytest.approx(1 / (3 * 5))
    assert outcome.num_clipped == 2  # every finite core above the minimum


def test_adaptive_scaling_shares_r_1_where_sums_are_added():
    scaling = step_scaling(ClipMode.ADAPTIVE_PER_CORE, max_norm=None, divisor=1,
                           fixed_denominator=False, keeps_first_core=False, device="cpu")
    assert scaling.reference.item() == 1.0
    assert scaling.factor(torch.tensor(4.0)).item() == pytest.approx(0.25)
    assert scaling.finish(step_stats(num_cores=0)).scale == 0.0  # a step with no core


def test_global_is_not_streamed():
    with pytest.raises(ValueError, match="global"):
        step_scaling(ClipMode.GLOBAL, max_norm=1.0, divisor=1, fixed_denominator=False,
                     keeps_first_core=True, device="cpu")


@pytest.mark.parametrize("mode, max_norm", [("none", None), ("per_core", 2.0),
                                            ("adaptive_per_core", None), ("per_example", 2.0),
                                            ("global_of_cores", 2.0), ("global_of_cores", 9.0)])
def test_streaming_scaling_is_the_reference_form(mode, max_norm):
    """Σ_k factor_k·g_k, then finish's scale, is clipped_average's u (one process)."""
    mode = ClipMode(mode)
    scaling = step_scaling(mode, max_norm=max_norm, divisor=1, fixed_denominator=False,
                           keeps_first_core=True, device="cpu")
    norms = torch.stack([grad_norm(c) for c in CORES]).float()
    total = None
    for c, n in zip(CORES, norms):
        f = scaling.factor(n)
        part = flat(c) if f is None else flat(c) * f.double()
        total = part if total is None else total + part
    clipped = [] if not math.isfinite(scaling.counted_bound) else \
        [n for n in norms.tolist() if n > scaling.counted_bound]
    stats = StepStatistics(3, norms.sum().item(), len(clipped), 0, norms.min().item(),
                           norms.max().item(), 1)
    outcome = scaling.finish(stats, sum_norm=total.norm().item())
    update, reference = clipped_average(CORES, mode, max_norm)
    assert torch.allclose(total * outcome.scale, flat(update))
    assert outcome.bound == pytest.approx(reference.bound.item())
    assert outcome.num_clipped == round(reference.clipped_fraction.item() * 3)
