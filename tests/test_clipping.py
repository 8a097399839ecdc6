"""The paper's math (espnet_pcc.clipping) against hand-computed values."""
import math

import pytest
import torch

from espnet_pcc.clipping import ClipMode, clip_factor, clipped_average, grad_norm


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
    rules = {m: (m.clips_each_core, m.has_fixed_bound, m.accepts_max_norm, m.splits_micro_batches,
                 m.allows_speaker_cores, m.one_utterance_per_core) for m in ClipMode}
    assert rules == {
        ClipMode.NONE: (False, False, False, True, False, False),
        ClipMode.GLOBAL: (False, False, True, False, False, False),
        ClipMode.PER_CORE: (True, True, True, True, True, False),
        ClipMode.ADAPTIVE_PER_CORE: (True, False, False, True, True, False),
        ClipMode.PER_EXAMPLE: (True, True, True, False, False, True),
    }
