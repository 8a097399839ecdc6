"""PerCoreSingleDeviceStrategy in one process: every step's update is `clipped_average` of its
cores (accumulate_grad_batches > 1, micro-batches split into cores, an epoch that ends inside
a cycle), the telemetry reaches Lightning's logger, a resumed run continues exactly, and what
contradicts the mode is refused in one line."""
import copy

import pytest
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor

from espnet_pcc.core.clip_config import ClipConfigError
from espnet_pcc.core.quantile_bound import next_quantile_bound
from espnet_pcc.lightning import LightningCoreClipOptimizer, PerCoreSingleDeviceStrategy
from espnet_pcc.lightning.strategy import lightning_clip_config
from lightning_helpers import RecordingLogger, TinyRegression, expected_report, make_batches, \
    parameters, plan_steps, reference_sgd, trainer

LR = 0.5
C = 2.0
# 5 micro-batches of 4 with accumulate_grad_batches 2: steps of 2, 2 and 1 micro-batches.
BATCHES = make_batches(5, 4)

PER_CORE_CASES = [
    ("per_core", {"max_norm": C, "num_cores": 2}),
    ("adaptive_per_core", {"num_cores": 2}),
    ("per_example", {"max_norm": C}),
    ("none", {"num_cores": 2}),  # the unclipped control: PCC's cores, nothing clipped
    ("global_of_cores", {"max_norm": C, "num_cores": 2}),  # PCC's cores, the mean clipped
    ("per_core", {"max_norm": C, "num_cores": 1}),  # cores from accumulation alone
]


def _fit(clip, clip_conf, batches=BATCHES, epochs=2, logger=False, **kwargs):
    module = TinyRegression(batches, lr=LR)
    start = copy.deepcopy(module)
    strategy = PerCoreSingleDeviceStrategy(device="cpu", clip=clip, clip_conf=clip_conf)
    trainer(strategy, epochs=epochs, logger=logger, **kwargs).fit(module)
    return start, module


@pytest.mark.parametrize("clip,clip_conf", PER_CORE_CASES)
def test_update_is_clipped_average_of_the_cores(clip, clip_conf):
    logger = RecordingLogger()
    start, trained = _fit(clip, clip_conf, logger=logger)
    config = lightning_clip_config(clip, clip_conf)
    steps = plan_steps([BATCHES], accumulate=2, epochs=2, config=config)
    stats = reference_sgd(start, steps, clip, clip_conf.get("max_norm"), LR)

    for p, q in zip(trained.parameters(), start.parameters()):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-6)
    # The epoch's last step has one micro-batch's cores: the mean is over those alone.
    assert [len(cores) for cores in steps[:3]] == [2 * len(steps[2])] * 2 + [len(steps[2])]
    if clip in ("per_core", "per_example"):
        assert any(s.clipped_fraction > 0 for s in stats), "no core was clipped: vacuous"
        assert any(s.clipped_fraction < 1 for s in stats), "every core clipped: vacuous"
    # Telemetry, one row per step, through Lightning's logger.
    for key in expected_report(stats[0]):
        logged = logger.values(key)
        assert logged == pytest.approx([expected_report(s)[key] for s in stats], rel=1e-5), key
    assert logger.values("train/nonfinite_cores") == [0.0] * len(stats)


def test_the_quantile_adaptive_bound_moves_as_in_the_espnet2_path():
    """C follows the median of the core norms (clip_conf.target_quantile): each step is
    clipped_average with the C the previous steps left."""
    clip_conf = {"num_cores": 2, "target_quantile": 0.5, "initial_bound": C, "bound_lr": 0.5}
    logger = RecordingLogger()
    start, trained = _fit("per_core", clip_conf, logger=logger)
    steps = plan_steps([BATCHES], 2, 2, lightning_clip_config("per_core", clip_conf))
    bound, bounds = C, []
    for cores in steps:
        bounds.append(bound)
        stats = reference_sgd(start, [cores], "per_core", bound, LR)[0]
        bound = next_quantile_bound(bound, 1.0 - float(stats.clipped_fraction), 0.5, 0.5)
    assert logger.values("train/clip_bound") == pytest.approx(bounds, rel=1e-6)
    assert len(set(bounds)) > 2, "the bound hardly moved: vacuous"
    for p, q in zip(trained.parameters(), start.parameters()):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("clip,gradient_clip_val", [("global", C), ("none", None)])
def test_stock_modes_are_lightnings_own_loop(clip, gradient_clip_val):
    """global and plain none run Lightning's loop unchanged (its gradient_clip_val is global's
    C): on full cycles that is clipped_average over the micro-batches."""
    batches = BATCHES[:4]
    start, trained = _fit(clip, {}, batches=batches, gradient_clip_val=gradient_clip_val)
    assert not isinstance(trained.trainer.optimizers[0], LightningCoreClipOptimizer)
    stats = reference_sgd(start, plan_steps([batches], 2, 2, None), clip, gradient_clip_val, LR)
    if clip == "global":
        assert any(s.factors[0] < 1 for s in stats), "the mean was never clipped: vacuous"
    for p, q in zip(trained.parameters(), start.parameters()):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-6)


def test_a_micro_batch_split_into_cores_runs_one_backward_per_core():
    """Each core's backward is its own (hooks see one per core), and the loss Lightning logs is
    the micro-batch's mean loss."""
    calls = []

    class CountBackward(Callback):
        def on_after_backward(self, trainer, pl_module):
            calls.append(trainer.global_step)

    module = TinyRegression(BATCHES[:2], lr=LR)
    first_loss = float(module.training_step(BATCHES[0], 0).detach())
    outputs = []

    class KeepOutputs(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs_, batch, batch_idx):
            outputs.append(float(outputs_["loss"]))

    strategy = PerCoreSingleDeviceStrategy(clip="per_core", clip_conf={"max_norm": C,
                                                                        "num_cores": 2})
    trainer(strategy, epochs=1, accumulate=2,
            callbacks=[CountBackward(), KeepOutputs()]).fit(module)
    assert len(calls) == 4  # 2 micro-batches x 2 cores
    # Lightning divides the returned loss by accumulate_grad_batches, as it does stock.
    assert outputs[0] * 2 == pytest.approx(first_loss, rel=1e-6)


@pytest.mark.parametrize("clip,clip_conf", [("per_core", {"max_norm": C, "num_cores": 2}),
                                            ("adaptive_per_core", {"num_cores": 2})])
def test_resume_from_a_lightning_checkpoint_continues_exactly(tmp_path, clip, clip_conf):
    """Adam (its moments are in the checkpoint), 5 micro-batches with accumulation 2: the
    epoch's last cycle is stepped with its one micro-batch's cores, so an end-of-epoch
    checkpoint holds no pending cores; 1 epoch + resume = 2 epochs."""

    def module():
        return TinyRegression(BATCHES, lr=0.05, optimizer="adam")

    def strategy():
        return PerCoreSingleDeviceStrategy(clip=clip, clip_conf=clip_conf)

    whole = module()
    trainer(strategy(), epochs=2).fit(whole)

    first = module()
    first_trainer = trainer(strategy(), epochs=1)
    first_trainer.fit(first)
    ckpt = tmp_path / "epoch1.ckpt"
    first_trainer.save_checkpoint(ckpt)
    state = torch.load(ckpt, weights_only=False)["optimizer_states"][0]
    assert state["pcc"]["pending"] is None and state["pcc"]["steps"] == 3
    assert state["state"], "Adam's moments are in the checkpoint"

    resumed = module()  # fresh weights: the checkpoint must restore everything
    trainer(strategy(), epochs=2).fit(resumed, ckpt_path=ckpt)
    for p, q in zip(resumed.parameters(), whole.parameters()):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-6, atol=1e-7)
    # And the resume is not vacuous: one epoch is not two.
    assert not torch.allclose(parameters(first)[0], parameters(whole)[0])


def test_a_mid_cycle_checkpoint_keeps_the_pending_cores(tmp_path):
    """A checkpoint written inside a cycle (here after the first of two micro-batches) holds
    that micro-batch's cores; training goes on unchanged."""
    ckpt = tmp_path / "mid.ckpt"

    class SaveMidCycle(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx == 2:
                trainer.save_checkpoint(ckpt)

    clip_conf = {"max_norm": C, "num_cores": 2}
    start, plain = _fit("per_core", clip_conf, epochs=1)
    _, saved = _fit("per_core", clip_conf, epochs=1, callbacks=[SaveMidCycle()])
    pending = torch.load(ckpt, weights_only=False)["optimizer_states"][0]["pcc"]["pending"]
    assert pending["core_norms"].numel() == 2
    for p, q in zip(saved.parameters(), plain.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_learning_rate_monitor_sees_the_wrapped_optimizer():
    """ESPnet3 adds a LearningRateMonitor: it logs the same keys as in a stock run."""
    keys = {}
    for clip, clip_conf in (("global", {}), ("per_core", {"max_norm": C})):
        logger = RecordingLogger()
        _fit(clip, clip_conf, epochs=1, logger=logger,
             callbacks=[LearningRateMonitor(logging_interval="step")])
        keys[clip] = {k for _, row in logger.rows for k in row if k.startswith("lr")}
    assert keys["per_core"] == keys["global"] == {"lr-SGD"}


def test_a_non_finite_core_skips_the_step():
    batches = [tuple(t.clone() for t in b) for b in BATCHES[:2]]
    batches[1][0][3, 0] = float("nan")  # the second micro-batch's second core
    logger = RecordingLogger()
    start, trained = _fit("per_core", {"max_norm": C, "num_cores": 2}, batches=batches,
                          epochs=1, logger=logger)
    assert logger.values("train/nonfinite_cores") == [1.0]
    for p, q in zip(trained.parameters(), start.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


# -- what is refused, in one line ------------------------------------------------------------

def _one_line(excinfo, *fragments):
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("clip,clip_conf", [("per_core", {"max_norm": C}),
                                            ("adaptive_per_core", {}), ("none", {})])
def test_gradient_clip_val_with_a_per_core_mode_is_refused(clip, clip_conf):
    strategy = PerCoreSingleDeviceStrategy(clip=clip, clip_conf=clip_conf)
    module = TinyRegression(BATCHES[:2])
    with pytest.raises(ClipConfigError) as excinfo:
        trainer(strategy, epochs=1, gradient_clip_val=5.0).fit(module)
    _one_line(excinfo, "gradient_clip_val=5", f"clip: {clip}")


@pytest.mark.parametrize("clip_conf,fragment", [
    ({"max_norm": 1.0, "noise_multiplier": 1.1}, "noise_multiplier=1.1"),
    ({"max_norm": 1.0, "core_by": "speaker"}, "core_by=speaker"),
])
def test_noise_and_speaker_cores_are_refused(clip_conf, fragment):
    with pytest.raises(ClipConfigError) as excinfo:
        PerCoreSingleDeviceStrategy(clip="per_core", clip_conf=clip_conf)
    _one_line(excinfo, fragment, "Lightning")


def test_global_with_max_norm_points_at_gradient_clip_val():
    with pytest.raises(ClipConfigError) as excinfo:
        PerCoreSingleDeviceStrategy(clip="global", clip_conf={"max_norm": 2.0})
    _one_line(excinfo, "clip_conf.max_norm=2", "gradient_clip_val: 2")


def test_manual_optimization_is_refused():
    class Manual(TinyRegression):
        def __init__(self, batches):
            super().__init__(batches)
            self.automatic_optimization = False

    strategy = PerCoreSingleDeviceStrategy(clip="per_core", clip_conf={"max_norm": C})
    with pytest.raises(ClipConfigError) as excinfo:
        trainer(strategy, epochs=1, accumulate=1).fit(Manual(BATCHES[:2]))
    _one_line(excinfo, "Manual", "automatic optimization")


def test_an_optimizer_already_wrapped_is_refused():
    """A wrapper from configure_optimizers would be used as it is: its own clip settings,
    not the strategy's, and a `zero_grad` that drops the cores Lightning zeroes after a
    cycle's first micro-batch (the run would train on nothing)."""
    from espnet_pcc.core.optimizers.per_core import PerCoreClipOptimizer

    class Wrapped(TinyRegression):
        def configure_optimizers(self):
            return PerCoreClipOptimizer(torch.optim.SGD(self.parameters(), lr=LR),
                                        clip_config=lightning_clip_config(
                                            "per_core", {"max_norm": C}))

    strategy = PerCoreSingleDeviceStrategy(clip="per_core", clip_conf={"max_norm": C})
    with pytest.raises(ClipConfigError) as excinfo:
        trainer(strategy, epochs=1, accumulate=1).fit(Wrapped(BATCHES[:2]))
    _one_line(excinfo, "PerCoreClipOptimizer", "configure_optimizers")
