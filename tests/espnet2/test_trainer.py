"""PCCTrainer.train_one_epoch: cores, equivalences, telemetry, non-finite steps."""
import copy
from unittest import mock

import pytest
import torch

from espnet2.train.trainer import Trainer

from espnet_pcc.core.clip_config import ClipConfig
from espnet_pcc.core.optimizers import PerCoreClipOptimizer
from espnet_pcc.espnet2.trainer import PCCTrainer
from trainer_helpers import TinyASRLike, make_batches, run_epoch, trainer_options, wrapped_sgd


def params(model):
    return [p.detach().clone() for p in model.parameters()]


def assert_same_params(a, b):
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("max_norm", [0.05, 100.0])
@pytest.mark.parametrize("mode", ["per_core", "global_of_cores"])
def test_one_core_equals_stock_global_clipping(mode, max_norm):
    """With one core per step, PCC and the paper's baseline (the cores' average clipped) are
    both ESPnet's own global clipping."""
    batches = make_batches(4, 4)
    stock = TinyASRLike()
    run_epoch(Trainer, stock, torch.optim.SGD(stock.parameters(), lr=0.5, momentum=0.9),
              batches, trainer_options("global", {}, grad_clip=max_norm))
    clipped = TinyASRLike()
    run_epoch(PCCTrainer, clipped, wrapped_sgd(clipped, mode, max_norm), batches,
              trainer_options(mode, {"max_norm": max_norm}))
    assert_same_params(params(stock), params(clipped))


def test_paper_baseline_step_from_first_principles():
    """clip: global_of_cores, one step of 16 utterances in 4 cores, against the definition:
    each core of 4 utterances its own forward and backward (the control's forwards), the 4
    gradients of the cores' mean losses averaged, the average clipped to C as one vector,
    then an SGD step.  Its BatchNorm statistics are the control's (the same forwards)."""
    batch = make_batches(1, 16)
    C, lr = 0.05, 0.5
    conf = {"max_norm": C, "num_cores": 4}
    paper = TinyASRLike(batch_norm=True)
    optimizer = PerCoreClipOptimizer(torch.optim.SGD(paper.parameters(), lr=lr),
                                     clip_config=ClipConfig.from_options("global_of_cores", conf))
    stats = run_epoch(PCCTrainer, paper, optimizer, batch,
                      trainer_options("global_of_cores", conf))
    by_hand = TinyASRLike(batch_norm=True)
    weights = list(by_hand.parameters())
    fields = ("speech", "speech_lengths", "text", "text_lengths")
    grads = []
    for start in range(0, 16, 4):
        loss, _, _ = by_hand(**{k: batch[0][k][start:start + 4] for k in fields})
        grads.append(torch.autograd.grad(loss.sum(), weights))
    average = [sum(g[i] for g in grads) / 4 for i in range(len(weights))]
    norm = torch.sqrt(sum((a ** 2).sum() for a in average))
    factor = min(1.0, C / norm.item())
    assert factor < 1.0  # the step is clipped
    with torch.no_grad():
        for w, a in zip(weights, average):
            w -= lr * factor * a
    assert_same_params(params(paper), params(by_hand))
    assert stats["clip"] == 100.0 and stats["num_cores"] == 4
    assert stats["grad_norm"] == pytest.approx(C, rel=1e-5)
    assert stats["clip_bound"] == C
    control = TinyASRLike(batch_norm=True)
    run_epoch(PCCTrainer, control, wrapped_sgd(control, "none", None), batch,
              trainer_options("none", {"num_cores": 4}))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(paper.norm, name), getattr(control.norm, name))


def test_global_runs_the_stock_loop_with_clip_conf_max_norm():
    batches = make_batches(3, 4)
    stock = TinyASRLike()
    run_epoch(Trainer, stock, torch.optim.SGD(stock.parameters(), lr=0.5),
              batches, trainer_options("global", {}, grad_clip=0.1))
    ours = TinyASRLike()
    stats = run_epoch(PCCTrainer, ours, torch.optim.SGD(ours.parameters(), lr=0.5),
                      batches, trainer_options("global", {"max_norm": 0.1}, grad_clip=5.0))
    assert_same_params(params(stock), params(ours))
    assert stats["clip"] == 100.0  # every step clipped at 0.1


def test_unclipped_cores_are_per_core_with_an_unreachable_bound():
    """clip: none with num_cores is PCC's loop minus the clipping: the same update as per_core
    with a C no core reaches, and with equal cores of a mean loss, the stock loop's."""
    batches = make_batches(3, 4)
    control = TinyASRLike()
    stats = run_epoch(PCCTrainer, control, wrapped_sgd(control, "none", None), batches,
                      trainer_options("none", {"num_cores": 2}))
    assert stats["num_cores"] == 2 and stats["clip"] == 0.0
    assert stats["clip_bound"] == float("inf")
    unreachable = TinyASRLike()
    run_epoch(PCCTrainer, unreachable, wrapped_sgd(unreachable, "per_core", 1e9), batches,
              trainer_options("per_core", {"max_norm": 1e9, "num_cores": 2}))
    assert_same_params(params(control), params(unreachable))
    stock = TinyASRLike()
    run_epoch(Trainer, stock, torch.optim.SGD(stock.parameters(), lr=0.5, momentum=0.9),
              batches, trainer_options("none", {}))
    assert_same_params(params(control), params(stock))


@pytest.mark.parametrize("clip,clip_conf,wraps", [
    ("none", {}, False), ("global", {}, False), ("per_core", {"max_norm": 1}, True),
    ("adaptive_per_core", {}, True), ("per_example", {"max_norm": 1}, True),
    ("none", {"num_cores": 4}, True),  # the control: PCC's per-core loop, nothing clipped
    ("global_of_cores", {"max_norm": 1}, True),  # the paper's baseline: PCC's per-core loop
    ("global_of_cores", {"max_norm": 1, "num_cores": 4}, True),
])
def test_wraps_optimizer_is_the_per_core_family(clip, clip_conf, wraps):
    assert ClipConfig.from_options(clip, clip_conf).wraps_optimizer is wraps


def test_trainer_options_carry_the_clip_config_and_epochs_do_not_parse_again():
    options = trainer_options("per_core", {"max_norm": 0.3, "num_cores": 2})
    assert options.clip_config == ClipConfig.from_options("per_core",
                                                          {"max_norm": 0.3, "num_cores": 2})
    model = TinyASRLike()
    optimizer = wrapped_sgd(model, "per_core", 0.3)
    with mock.patch.object(ClipConfig, "from_options", wraps=ClipConfig.from_options) as spy:
        for _ in range(2):  # two epochs
            stats = run_epoch(PCCTrainer, model, optimizer, make_batches(2, 4), options)
    assert spy.call_count == 0
    assert stats["num_cores"] == 2


def test_build_options_needs_the_tasks_clip_config():
    from espnet_pcc.espnet2.task import PCCASRTask

    args = PCCASRTask.get_parser().parse_args([])
    with pytest.raises(ValueError, match="args.clip_config is not set: PCCASRTask.check_args"):
        PCCTrainer.build_options(args)


def test_per_core_forwards_give_batch_norm_each_cores_statistics():
    """What the study's control arm shares with PCC and the baseline lacks: each core is its own
    forward, so BatchNorm (the conformer's conv module has one) normalises with the core's 4
    utterances and updates its running statistics once per core, 4 times a step."""
    batch = make_batches(1, 16)
    control = TinyASRLike(batch_norm=True)
    run_epoch(PCCTrainer, control, wrapped_sgd(control, "none", None, lr=0.0), batch,
              trainer_options("none", {"num_cores": 4}))
    by_hand = TinyASRLike(batch_norm=True)
    fields = ("speech", "speech_lengths", "text", "text_lengths")
    for start in range(0, 16, 4):
        by_hand(**{k: batch[0][k][start:start + 4] for k in fields})
    whole = TinyASRLike(batch_norm=True)
    run_epoch(Trainer, whole, torch.optim.SGD(whole.parameters(), lr=0.0), batch,
              trainer_options("none", {}))
    assert control.norm.num_batches_tracked.item() == 4
    assert whole.norm.num_batches_tracked.item() == 1
    torch.testing.assert_close(control.norm.running_var, by_hand.norm.running_var)
    torch.testing.assert_close(control.norm.running_mean, by_hand.norm.running_mean)
    assert not torch.allclose(control.norm.running_var, whole.norm.running_var, rtol=1e-3)


def test_cores_are_micro_batches_times_splits():
    """accum_grad 2 × num_cores 2 on half batches == 1 × 4 on whole batches."""
    whole = make_batches(3, 8)
    halves = [{k: v[s:s + 4] for k, v in b.items()} for b in whole for s in (0, 4)]
    a = TinyASRLike()
    run_epoch(PCCTrainer, a, wrapped_sgd(a, "per_core", 0.3), whole,
              trainer_options("per_core", {"max_norm": 0.3, "num_cores": 4}))
    b = TinyASRLike()
    run_epoch(PCCTrainer, b, wrapped_sgd(b, "per_core", 0.3), halves,
              trainer_options("per_core", {"max_norm": 0.3, "num_cores": 2}, accum_grad=2))
    assert_same_params(params(a), params(b))


def test_per_example_is_one_utterance_per_core():
    batches = make_batches(2, 4)
    a = TinyASRLike()
    stats = run_epoch(PCCTrainer, a, wrapped_sgd(a, "per_example", 0.3), batches,
                      trainer_options("per_example", {"max_norm": 0.3}))
    b = TinyASRLike()
    run_epoch(PCCTrainer, b, wrapped_sgd(b, "per_core", 0.3), batches,
              trainer_options("per_core", {"max_norm": 0.3, "num_cores": 4}))
    assert_same_params(params(a), params(b))
    assert stats["num_cores"] == 4


def test_fewer_utterances_than_num_cores():
    batches = make_batches(2, 3)
    model = TinyASRLike()
    stats = run_epoch(PCCTrainer, model, wrapped_sgd(model, "adaptive_per_core", None),
                      batches, trainer_options("adaptive_per_core", {"num_cores": 8}))
    assert stats["num_cores"] == 3


def test_telemetry_reaches_the_reporter():
    model = TinyASRLike()
    stats = run_epoch(PCCTrainer, model, wrapped_sgd(model, "adaptive_per_core", None),
                      make_batches(4, 6), trainer_options("adaptive_per_core", {"num_cores": 3}))
    for key in ("grad_norm", "clip", "clip_bound", "core_norm_min", "core_norm_mean",
                "core_norm_max", "num_cores", "loss", "forward_time", "backward_time",
                "optim_step_time", "nonfinite_cores", "optim0_lr0"):
        assert key in stats, key
    assert stats["core_norm_min"] <= stats["core_norm_mean"] <= stats["core_norm_max"]
    # APCC: C is the smallest core norm, and the update can be no longer than C.
    assert stats["clip_bound"] == pytest.approx(stats["core_norm_min"])
    assert stats["grad_norm"] <= stats["clip_bound"] + 1e-6
    assert 0 < stats["clip"] < 100  # all but the minimal core are clipped: 2 of 3
    assert stats["clip"] == pytest.approx(200 / 3)


def test_nonfinite_core_skips_the_step_and_training_goes_on():
    poisoned = make_batches(3, 4, poison=(1,))
    model = TinyASRLike()
    opt = wrapped_sgd(model, "per_core", 0.3)
    run_epoch(PCCTrainer, model, opt, poisoned[:1], trainer_options("per_core", {"max_norm": 0.3}))
    before, state_before = params(model), copy.deepcopy(opt.state_dict())
    stats = run_epoch(PCCTrainer, model, opt, poisoned[1:2],
                      trainer_options("per_core", {"max_norm": 0.3, "num_cores": 2}))
    assert stats["nonfinite_cores"] == 1
    assert_same_params(before, params(model))
    after = opt.state_dict()
    for k, v in state_before["state"].items():
        torch.testing.assert_close(after["state"][k]["momentum_buffer"], v["momentum_buffer"])
    run_epoch(PCCTrainer, model, opt, poisoned[2:], trainer_options("per_core", {"max_norm": 0.3}))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, params(model)))


def test_grad_scaler_skips_and_backs_off_on_a_nonfinite_core():
    """AMP: the poisoned step is skipped by GradScaler, whose scale halves; the
    clean steps use unscaled norms, so they match the run without a scaler."""
    clean = make_batches(2, 4)
    plain = TinyASRLike()
    run_epoch(PCCTrainer, plain, wrapped_sgd(plain, "per_core", 0.3), clean,
              trainer_options("per_core", {"max_norm": 0.3}))
    amp = TinyASRLike()
    opt = wrapped_sgd(amp, "per_core", 0.3)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    stats = run_epoch(PCCTrainer, amp, opt, clean, trainer_options("per_core", {"max_norm": 0.3}),
                      scaler=scaler)
    assert_same_params(params(plain), params(amp))
    assert stats["loss_scale"] == 2.0 ** 10
    before = params(amp)
    stats = run_epoch(PCCTrainer, amp, opt, make_batches(1, 4, poison=(0,)),
                      trainer_options("per_core", {"max_norm": 0.3}), scaler=scaler)
    assert stats["nonfinite_cores"] == 1
    assert scaler.get_scale() == 2.0 ** 9
    assert_same_params(before, params(amp))


def test_grad_noise_is_applied_after_clipping():
    batches = make_batches(2, 4)
    a, b = TinyASRLike(), TinyASRLike()
    run_epoch(PCCTrainer, a, wrapped_sgd(a, "per_core", 0.3), batches,
              trainer_options("per_core", {"max_norm": 0.3}))
    options = trainer_options("per_core", {"max_norm": 0.3})
    options.grad_noise = True
    torch.manual_seed(5)
    run_epoch(PCCTrainer, b, wrapped_sgd(b, "per_core", 0.3), batches, options)
    assert any(not torch.allclose(x, y) for x, y in zip(params(a), params(b)))


def test_the_forwards_autocast_is_torchs_own_as_espnet2_sets_it():
    """AMP in the per-core loop: torch.autocast for CUDA, bfloat16 where the GPU has it, else
    float16 (espnet2's loop), built from torch's API in both ESPnet releases; off without
    --use_amp."""
    import warnings

    from espnet_pcc.espnet2.trainer import mixed_precision

    off = mixed_precision(False)
    assert isinstance(off, torch.autocast) and off.device == "cuda"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA is not available" where it is not
        on = mixed_precision(True)
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    assert on.device == "cuda"
    assert on.fast_dtype == (torch.bfloat16 if bf16 else torch.float16)
    with off:  # usable as a context on a CPU-only machine
        assert not torch.is_autocast_enabled("cuda")
        assert torch.ones(2).sum().item() == 2.0
