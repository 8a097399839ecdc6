"""PerCoreClipOptimizer (streaming) against the reference clipped_average."""
import math

import pytest
import torch
from espnet2.schedulers.warmup_lr import WarmupLR

from espnet_pcc.clip_config import ClipConfig
from espnet_pcc.clipping import clipped_average
from espnet_pcc.optim import PerCoreClipOptimizer


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
        self.unused = torch.nn.Linear(2, 2)  # never in the graph: its grad stays None

    def forward(self, x):
        return self.body(x)


def wrap(optimizer, mode, max_norm=None):
    """The wrapper as the task builds it: from a validated ClipConfig."""
    config = ClipConfig.from_options(mode, {"max_norm": max_norm})
    return PerCoreClipOptimizer(optimizer, clip_config=config)


def make_model(seed=0):
    torch.manual_seed(seed)
    return TinyNet()


def core_inputs(num_cores, seed=1):
    g = torch.Generator().manual_seed(seed)
    # Different scales so that some cores are clipped and some are not.
    return [(torch.randn(4, 6, generator=g) * (k + 1), torch.randn(4, 3, generator=g))
            for k in range(num_cores)]


def core_loss(model, x, y):
    return ((model(x) - y) ** 2).mean()


def reference_update(model, cores, mode, max_norm):
    params = [p for p in model.parameters()]
    core_grads = []
    for x, y in cores:
        grads = torch.autograd.grad(core_loss(model, x, y), params, allow_unused=True)
        core_grads.append([torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)])
    update, stats = clipped_average(core_grads, mode, max_norm)
    return update, stats


def streamed_update(model, cores, mode, max_norm, loss_scale=1.0):
    opt = wrap(torch.optim.SGD(model.parameters(), lr=0.1), mode, max_norm)
    for x, y in cores:
        (core_loss(model, x, y) * loss_scale).backward()
        opt.add_core(loss_scale=loss_scale)
        assert all(p.grad is None for p in model.parameters())
    reduction = opt.reduce_cores()
    update = [p.grad.clone() / loss_scale if p.grad is not None else torch.zeros_like(p)
              for p in model.parameters()]
    return update, reduction, opt


@pytest.mark.parametrize("mode,max_norm", [("per_core", 0.5), ("per_core", 1e9),
                                           ("adaptive_per_core", None), ("none", None),
                                           ("per_example", 1.0)])
def test_streaming_matches_reference(mode, max_norm):
    model = make_model()
    cores = core_inputs(4)
    expected, stats = reference_update(model, cores, mode, max_norm)
    got, reduction, _ = streamed_update(model, cores, mode, max_norm)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-7)
    assert reduction.num_cores == 4
    assert reduction.norm_min == pytest.approx(stats.core_norms.min().item(), rel=1e-5)
    assert reduction.norm_max == pytest.approx(stats.core_norms.max().item(), rel=1e-5)
    assert reduction.norm_mean == pytest.approx(stats.core_norms.mean().item(), rel=1e-5)
    assert reduction.clipped_fraction == pytest.approx(stats.clipped_fraction.item())


@pytest.mark.parametrize("mode,max_norm", [("per_core", 0.5), ("per_core", 1e9),
                                           ("adaptive_per_core", None), ("none", None),
                                           ("per_example", 0.5)])
@pytest.mark.parametrize("num_cores", [1, 2])
def test_update_norm_is_known_for_one_core_only(mode, max_norm, num_cores):
    """With one core the step's ‖u‖ comes from the statistics (the trainer skips its pass)."""
    model = make_model()
    _, reduction, _ = streamed_update(model, core_inputs(num_cores), mode, max_norm)
    if num_cores > 1:
        assert reduction.update_norm is None
        return
    actual = torch.linalg.vector_norm(torch.stack([
        torch.linalg.vector_norm(p.grad) for p in model.parameters() if p.grad is not None]))
    assert reduction.update_norm == pytest.approx(actual.item(), rel=1e-5)


@pytest.mark.parametrize("mode,max_norm", [("per_core", 0.5), ("adaptive_per_core", None)])
def test_loss_scale_gives_the_same_update(mode, max_norm):
    cores = core_inputs(3)
    plain, _, _ = streamed_update(make_model(), cores, mode, max_norm)
    scaled, _, _ = streamed_update(make_model(), cores, mode, max_norm, loss_scale=1024.0)
    for a, b in zip(plain, scaled):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_grad_scaler_and_scheduler_drive_the_wrapper():
    model = make_model()
    opt = wrap(torch.optim.Adam(model.parameters(), lr=1e-2), "per_core", 0.5)
    scheduler = WarmupLR(opt, warmup_steps=10)
    scaler = torch.amp.GradScaler("cpu", init_scale=256.0)
    before = [p.detach().clone() for p in model.parameters()]
    for x, y in core_inputs(2):
        scaler.scale(core_loss(model, x, y)).backward()
        opt.add_core(loss_scale=scaler.get_scale())
    opt.reduce_cores()
    scaler.unscale_(opt)
    scaler.step(opt)
    scaler.update()
    scheduler.step()
    opt.zero_grad()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-2 * 10 ** 0.5 * 2 * 10 ** -1.5)


def test_nonfinite_core_poisons_the_update():
    model = make_model()
    opt = wrap(torch.optim.SGD(model.parameters(), lr=0.1), "per_core", 1.0)
    (x, y), (x2, y2) = core_inputs(2)
    core_loss(model, x, y).backward()
    opt.add_core()
    (core_loss(model, x2, y2) * float("inf")).backward()
    opt.add_core()
    reduction = opt.reduce_cores()
    assert reduction.nonfinite_cores == 1
    assert all(not torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    opt.zero_grad()
    # The next step starts clean.
    core_loss(model, x, y).backward()
    opt.add_core()
    assert opt.reduce_cores().nonfinite_cores == 0


def test_state_dict_round_trip_keeps_pending_cores():
    cores = core_inputs(3)
    expected, _, _ = streamed_update(make_model(), cores, "per_core", 0.5)

    model = make_model()
    opt = wrap(torch.optim.Adam(model.parameters()), "per_core", 0.5)
    for x, y in cores[:2]:
        core_loss(model, x, y).backward()
        opt.add_core()
    state = opt.state_dict()
    assert state["pcc"]["clip"] == "per_core" and state["pcc"]["pending"] is not None

    model2 = make_model()
    opt2 = wrap(torch.optim.Adam(model2.parameters()), "per_core", 0.5)
    opt2.load_state_dict(state)
    assert opt2.num_pending_cores == 2
    x, y = cores[2]
    core_loss(model2, x, y).backward()
    opt2.add_core()
    opt2.reduce_cores()
    for e, p in zip(expected, model2.parameters()):
        torch.testing.assert_close(p.grad if p.grad is not None else torch.zeros_like(p), e)


def test_loads_a_plain_optimizer_state():
    model = make_model()
    plain = torch.optim.Adam(model.parameters(), lr=3e-4)
    opt = wrap(torch.optim.Adam(model.parameters(), lr=1.0), "adaptive_per_core")
    opt.load_state_dict(plain.state_dict())
    assert opt.param_groups[0]["lr"] == 3e-4


@pytest.mark.parametrize("mode,max_norm,message", [
    ("per_core", None, "clip_conf.max_norm is required for clip: per_core"),
    ("per_core", -1.0, "must be > 0 and finite, got -1.0"),
    ("per_core", math.nan, "got nan"),
    ("adaptive_per_core", 1.0, "clip_conf.max_norm=1.0 is not allowed for clip: adaptive_per_core"),
    ("global", 1.0, "needs no wrapper"),
    ("perCore", 1.0, "unknown value 'perCore'"),
])
def test_bad_settings(mode, max_norm, message):
    with pytest.raises(ValueError, match=message):
        wrap(torch.optim.SGD(make_model().parameters(), lr=0.1), mode, max_norm)


def test_settings_are_keyword_only_and_a_clip_config():
    sgd = torch.optim.SGD(make_model().parameters(), lr=0.1)
    config = ClipConfig.from_options("per_core", {"max_norm": 0.5, "num_cores": 2})
    opt = PerCoreClipOptimizer(sgd, clip_config=config)
    assert opt.clip_config is config
    assert (opt.mode.value, opt.max_norm) == ("per_core", 0.5)
    assert opt.state_dict()["pcc"]["max_norm"] == 0.5
    with pytest.raises(TypeError):
        PerCoreClipOptimizer(sgd, config)  # positional: not accepted
    with pytest.raises(TypeError, match="clip_config must be a ClipConfig"):
        PerCoreClipOptimizer(sgd, clip_config="per_core")
