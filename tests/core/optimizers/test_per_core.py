"""PerCoreClipOptimizer (streaming) against the reference clipped_average."""
import math

import pytest
import torch

from espnet_pcc.core.clip_config import ClipConfig
from espnet_pcc.core.clipping import clipped_average
from espnet_pcc.core.noise import step_noise
from espnet_pcc.core.optimizers import CoreClippingOptimizer, PerCoreClipOptimizer, \
    implements_core_clipping
from espnet_pcc.core.quantile_bound import next_quantile_bound


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
                                           ("per_example", 1.0), ("global_of_cores", 0.5),
                                           ("global_of_cores", 1e9)])
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
                                           ("per_example", 0.5), ("global_of_cores", 0.5)])
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


@pytest.mark.parametrize("mode,max_norm", [("per_core", 0.5), ("adaptive_per_core", None),
                                           ("global_of_cores", 0.5)])
def test_loss_scale_gives_the_same_update(mode, max_norm):
    cores = core_inputs(3)
    plain, _, _ = streamed_update(make_model(), cores, mode, max_norm)
    scaled, _, _ = streamed_update(make_model(), cores, mode, max_norm, loss_scale=1024.0)
    for a, b in zip(plain, scaled):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_grad_scaler_and_scheduler_drive_the_wrapper():
    model = make_model()
    opt = wrap(torch.optim.Adam(model.parameters(), lr=1e-2), "per_core", 0.5)
    # ESPnet's warmuplr (a torch LRScheduler), written with torch's own LambdaLR.
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda e: 10 ** 0.5 * min((e + 1) ** -0.5, (e + 1) * 10 ** -1.5))
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
    ("global_of_cores", None, "clip_conf.max_norm is required for clip: global_of_cores"),
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


# -- noise (clip_conf.noise_multiplier) ---------------------------------------------------
def noisy_wrap(model, sigma, seed=5, **conf):
    config = ClipConfig.from_options("per_core", {"max_norm": 0.5, "noise_multiplier": sigma,
                                                  **conf})
    return PerCoreClipOptimizer(torch.optim.SGD(model.parameters(), lr=0.1),
                                clip_config=config, noise_seed=seed)


def step_update(model, opt, cores, loss_scale=1.0):
    for x, y in cores:
        (core_loss(model, x, y) * loss_scale).backward()
        opt.add_core(loss_scale=loss_scale)
    reduction = opt.reduce_cores()
    update = [p.grad.clone() / loss_scale for p in model.parameters() if p.grad is not None]
    opt.zero_grad()
    return update, reduction


def test_noise_is_sigma_c_over_k_times_the_step_noise():
    """u = (Σ_k f_k g_k + σC·z)/K, z the step's standard normal draw."""
    cores = core_inputs(4)
    clean, _, _ = streamed_update(make_model(), cores, "per_core", 0.5)
    model = make_model()
    noisy, reduction = step_update(model, noisy_wrap(model, 1.3), cores)
    used = [p for p in model.parameters() if p.requires_grad]
    z = [n for n, p in zip(step_noise(used, 5, 0, torch.device("cpu")), used)
         if p is not model.unused.weight and p is not model.unused.bias]
    clean = [c for c, p in zip(clean, model.parameters())
             if p is not model.unused.weight and p is not model.unused.bias]
    assert reduction.noise_std == pytest.approx(1.3 * 0.5 / 4)
    for n, c, zi in zip(noisy, clean, z):
        torch.testing.assert_close(n, c + 1.3 * 0.5 / 4 * zi, rtol=1e-5, atol=1e-6)


def test_empirical_noise_scale_matches_the_formula():
    # 10,100 coordinates of a zero-gradient model: their spread is the noise's.
    model = torch.nn.Linear(100, 100)
    opt = PerCoreClipOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), clip_config=
                               ClipConfig.from_options("per_core", {"max_norm": 2.0,
                                                                    "noise_multiplier": 0.8}))
    for _ in range(3):
        (0.0 * model(torch.ones(1, 100)).sum()).backward()
        opt.add_core()
    opt.reduce_cores()
    values = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert values.mean().item() == pytest.approx(0.0, abs=0.01)
    assert values.std().item() == pytest.approx(0.8 * 2.0 / 3, rel=0.03)


def test_noise_differs_between_steps_and_repeats_for_the_same_seed_and_step():
    cores = core_inputs(2)
    model = make_model()
    opt = noisy_wrap(model, 1.0)
    first, _ = step_update(model, opt, cores)
    second, _ = step_update(model, opt, cores)
    again_model = make_model()
    again, _ = step_update(again_model, noisy_wrap(again_model, 1.0), cores)
    assert not torch.allclose(first[0], second[0])
    for a, b in zip(first, again):
        assert torch.equal(a, b)


def test_resumed_wrapper_draws_the_noise_of_the_uninterrupted_run():
    cores = core_inputs(2)
    model = make_model()
    opt = noisy_wrap(model, 1.0)
    step_update(model, opt, cores)
    state = opt.state_dict()
    uninterrupted, _ = step_update(model, opt, cores)
    resumed_opt = noisy_wrap(model, 1.0)
    resumed_opt.load_state_dict(state)
    resumed, _ = step_update(model, resumed_opt, cores)
    for a, b in zip(uninterrupted, resumed):
        assert torch.equal(a, b)


def test_noise_with_a_loss_scale_gives_the_same_update():
    cores = core_inputs(3)
    plain_model, scaled_model = make_model(), make_model()
    plain, _ = step_update(plain_model, noisy_wrap(plain_model, 1.0), cores)
    scaled, _ = step_update(scaled_model, noisy_wrap(scaled_model, 1.0), cores, loss_scale=1024.0)
    for a, b in zip(plain, scaled):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_every_bit_of_the_noise_seed_changes_the_noise():
    """The seed is not cut to 32 bits (torch's CPU generator keeps only those of its seed)."""
    params = [torch.nn.Parameter(torch.zeros(4, 3)), torch.nn.Parameter(torch.zeros(2))]
    cpu = torch.device("cpu")

    def draw(seed, step=0):
        return torch.cat([z.flatten() for z in step_noise(params, seed, step, cpu)])

    base = draw(1)
    for other in (2, 1 + 2 ** 32, 1 + 2 ** 40, 1 + 2 ** 100):
        assert not torch.allclose(base, draw(other)), other
    assert not torch.allclose(base, draw(1, step=1))
    assert torch.equal(base, draw(1))


def test_with_noise_a_nonfinite_core_adds_zero_and_the_step_goes_on():
    """The update of K cores, one of them non-finite: (the clipped finite cores + noise)/K,
    as if that core's gradient were 0; without noise the same step is skipped."""
    cores = core_inputs(3)
    bad = (cores[1][0] * math.inf, cores[1][1])
    model = make_model()
    noisy, reduction = step_update(model, noisy_wrap(model, 1.0), [cores[0], bad, cores[2]])
    assert reduction.nonfinite_cores == 1 and reduction.num_cores == 3
    assert all(torch.isfinite(u).all() for u in noisy)
    # The same step with the bad core's loss times 0 (a zero gradient, clip factor 1).
    zero_model = make_model()
    opt = noisy_wrap(zero_model, 1.0)
    for k, (x, y) in enumerate(cores):
        (core_loss(zero_model, x, y) * (0.0 if k == 1 else 1.0)).backward()
        opt.add_core()
    opt.reduce_cores()
    expected = [p.grad for p in zero_model.parameters() if p.grad is not None]
    for a, b in zip(noisy, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # Without noise the non-finite core still skips the step (NaN update).
    plain = make_model()
    skipped, reduction = step_update(plain, noisy_wrap(plain, 0.0), [cores[0], bad, cores[2]])
    assert reduction.nonfinite_cores == 1 and all(torch.isnan(u).all() for u in skipped)


def test_the_noise_seed_is_in_the_checkpoint():
    model = make_model()
    opt = noisy_wrap(model, 1.0, seed=123456789)
    assert opt.state_dict()["pcc"]["noise_seed"] == 123456789
    other = noisy_wrap(model, 1.0, seed=1)
    other.load_state_dict(opt.state_dict())
    assert other.noise_seed == 123456789


# -- quantile-adaptive bound (clip_conf.target_quantile) -----------------------------------
def test_next_quantile_bound_is_andrew_et_al_geometric_update():
    assert next_quantile_bound(2.0, 0.5, 0.5, 0.2) == 2.0
    assert next_quantile_bound(2.0, 1.0, 0.5, 0.2) == pytest.approx(2.0 * math.exp(-0.1))
    assert next_quantile_bound(2.0, 0.0, 0.5, 0.2) == pytest.approx(2.0 * math.exp(0.1))


def test_adaptive_bound_moves_each_step_is_used_and_is_checkpointed():
    model = make_model()
    config = ClipConfig.from_options("per_core", {"target_quantile": 0.5, "initial_bound": 1e-3,
                                                  "bound_lr": 0.5})
    opt = PerCoreClipOptimizer(torch.optim.SGD(model.parameters(), lr=0.0), clip_config=config)
    bounds = []
    for _ in range(3):
        _, reduction = step_update(model, opt, core_inputs(4))
        bounds.append(reduction.bound)
        assert reduction.clipped_fraction == 1.0  # every core is above a tiny C
    # All clipped: b = 0, so C grows by exp(0.5·0.5) each step.
    assert bounds == pytest.approx([1e-3, 1e-3 * math.exp(0.25), 1e-3 * math.exp(0.5)])
    resumed = PerCoreClipOptimizer(torch.optim.SGD(model.parameters(), lr=0.0),
                                   clip_config=config)
    resumed.load_state_dict(opt.state_dict())
    assert resumed.max_norm == pytest.approx(1e-3 * math.exp(0.75))


def test_adaptive_bound_converges_to_the_target_quantile_of_fixed_norms():
    model = make_model()
    config = ClipConfig.from_options("per_core", {"target_quantile": 0.5, "initial_bound": 100.0,
                                                  "bound_lr": 0.05})
    opt = PerCoreClipOptimizer(torch.optim.SGD(model.parameters(), lr=0.0), clip_config=config)
    cores = core_inputs(4)
    norms = sorted(streamed_update(make_model(), [c], "none", None)[1].norm_max for c in cores)
    for _ in range(400):
        step_update(model, opt, cores)
    # Between the 2nd and 3rd smallest norm of 4 (half the cores at or under C), give or
    # take one step's factor exp(η/4) ≈ 1.013 when it lands on either side.
    assert norms[1] / 1.013 <= opt.max_norm <= norms[2] * 1.013


# -- Poisson sampling (espnet_pcc.core.data_loader.poisson): the expected-core denominator
# --------------------
def poisson_wrap(model, sigma, expected_cores, seed=5):
    config = ClipConfig.from_options("per_core", {"max_norm": 0.5, "noise_multiplier": sigma})
    return PerCoreClipOptimizer(torch.optim.SGD(model.parameters(), lr=0.1),
                                clip_config=config, noise_seed=seed,
                                expected_cores=expected_cores)


@pytest.mark.parametrize("num_cores", [1, 3, 5])
def test_expected_cores_is_the_denominator_whatever_the_step_holds(num_cores):
    """u = Σ_k f_k g_k / D with D fixed: the reference average over K cores times K/D, in
    every step (no correction from the previous step's count)."""
    cores = core_inputs(num_cores)
    reference, _ = reference_update(make_model(), cores, "per_core", 0.5)
    model = make_model()
    opt = poisson_wrap(model, 0.0, expected_cores=8)
    for _ in range(2):  # the second step divides by D as well
        update, reduction = step_update(model, opt, cores)
        assert reduction.num_cores == num_cores
        for u, r in zip(update, reference):
            torch.testing.assert_close(u, r * num_cores / 8, rtol=1e-5, atol=1e-7)


def test_with_noise_every_parameter_gets_its_noise_even_without_a_gradient():
    """Whether a parameter had a gradient can depend on the data: `unused` (never in the
    graph) is noised too, with σC/D times its draw."""
    model = make_model()
    opt = poisson_wrap(model, 1.3, expected_cores=4)
    for x, y in core_inputs(2):
        core_loss(model, x, y).backward()
        opt.add_core()
    opt.reduce_cores()
    params = [p for p in model.parameters() if p.requires_grad]
    z = dict(zip(map(id, params), step_noise(params, 5, 0, torch.device("cpu"))))
    for p in (model.unused.weight, model.unused.bias):
        torch.testing.assert_close(p.grad, 1.3 * 0.5 / 4 * z[id(p)])


def test_a_step_without_cores_is_the_noise_alone_or_nothing():
    """Poisson sampling can draw no utterance for a step: its update is the noise over D, on
    every parameter; without noise it leaves every grad None (no update)."""
    model = make_model()
    opt = poisson_wrap(model, 2.0, expected_cores=4)
    reduction = opt.reduce_cores()
    assert reduction.num_cores == 0 and reduction.clipped_fraction == 0.0
    assert reduction.noise_std == pytest.approx(2.0 * 0.5 / 4)
    params = [p for p in model.parameters() if p.requires_grad]
    for p, z in zip(params, step_noise(params, 5, 0, torch.device("cpu"))):
        torch.testing.assert_close(p.grad, 2.0 * 0.5 / 4 * z)
    assert opt.steps == 1
    quiet = make_model()
    opt = poisson_wrap(quiet, 0.0, expected_cores=4)
    reduction = opt.reduce_cores()
    assert reduction.num_cores == 0 and math.isnan(reduction.norm_max)
    assert all(p.grad is None for p in quiet.parameters())


def test_expected_cores_survive_a_checkpoint_with_pending_cores():
    cores = core_inputs(3)
    model = make_model()
    opt = poisson_wrap(model, 0.0, expected_cores=6)
    core_loss(model, *cores[0]).backward()
    opt.add_core()
    state = opt.state_dict()
    resumed_model = make_model()
    resumed = poisson_wrap(resumed_model, 0.0, expected_cores=6)
    resumed.load_state_dict(state)
    for m, o in ((model, opt), (resumed_model, resumed)):
        for x, y in cores[1:]:
            core_loss(m, x, y).backward()
            o.add_core()
        o.reduce_cores()
    for a, b in zip(model.parameters(), resumed_model.parameters()):
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad)
    reference, _ = reference_update(make_model(), cores, "per_core", 0.5)
    for a, r in zip(model.parameters(), reference):
        if a.grad is not None:
            torch.testing.assert_close(a.grad, r * 3 / 6, rtol=1e-5, atol=1e-7)


def test_expected_cores_must_be_positive():
    with pytest.raises(ValueError, match="expected_cores must be > 0, got 0"):
        poisson_wrap(make_model(), 0.0, expected_cores=0)


def test_one_core_under_a_fixed_denominator_reports_no_shortcut_norm():
    """‖u‖ = min(‖g‖, C) holds for one core divided by nothing; over D = 4 it is a quarter of
    that, so the trainer must measure it."""
    model = make_model()
    opt = poisson_wrap(model, 0.0, expected_cores=4)
    core_loss(model, *core_inputs(1)[0]).backward()
    opt.add_core()
    assert opt.reduce_cores().update_norm is None


def test_the_wrapper_protocol_asks_for_what_the_trainer_calls():
    """PerCoreClipOptimizer is a CoreClippingOptimizer; a class with the per-core calls but
    without a torch optimizer's surface (which the trainer, ESPnet's checkpoints and the
    GradScaler also call) is not."""
    model = torch.nn.Linear(2, 2)
    wrapper = PerCoreClipOptimizer(torch.optim.SGD(model.parameters(), lr=0.1),
                                   clip_config=ClipConfig.from_options("per_core", {"max_norm": 1}))
    assert isinstance(wrapper, CoreClippingOptimizer) and implements_core_clipping(wrapper)

    class PerCoreCallsOnly:
        steps = 0

        def add_core(self, loss_scale=1.0): ...

        def reduce_cores(self): ...

        def gather_pending(self): ...

    assert not isinstance(PerCoreCallsOnly(), CoreClippingOptimizer)
    assert not implements_core_clipping(PerCoreCallsOnly())

    class Forwarding:
        """A wrapper by composition: the torch optimizer's surface through __getattr__."""

        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.__dict__["inner"], name)

    assert implements_core_clipping(Forwarding(wrapper))
    assert not implements_core_clipping(Forwarding(PerCoreCallsOnly()))
