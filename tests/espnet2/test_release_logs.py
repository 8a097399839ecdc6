"""What a noisy espnet2 run releases (espnet_pcc.espnet2.release): its logs and files, through
asr_train."""
import os
import stat

from unittest import mock

import espnet2.train.trainer
import pytest
import torch
from espnet2.train.reporter import Reporter

from asr_train_helpers import train_args, train_stats
from espnet_pcc.bin import asr_train
from espnet_pcc.core.release import is_released
from espnet_pcc.espnet2.checkpoints import load_checkpoint
from espnet_pcc.espnet2.release import GPU_MEMORY_KEY, ReleasedEpochReporter, ReleasedReporter

NOISY = {"clip": "per_core", "max_epoch": 1,
         "clip_conf": {"max_norm": 1.0, "num_cores": 2, "noise_multiplier": 1.0, "noise_seed": 5}}

# The tiny model with a conformer encoder, whose convolution module has a BatchNorm1d.
CONFORMER = {"encoder": "conformer", "encoder_conf": {
    "output_size": 16, "attention_heads": 2, "linear_units": 32, "num_blocks": 1,
    "input_layer": "conv2d", "use_cnn_module": True, "cnn_module_kernel": 3,
    "pos_enc_layer_type": "rel_pos", "selfattention_layer_type": "rel_selfattn",
    "rel_pos_type": "latest"}}
BATCH_NORM = "encoder.encoders.0.conv_module.norm"


def test_the_released_reporter_passes_on_only_released_keys():
    reporter = Reporter()
    with reporter.observe("train") as sub:
        released = ReleasedReporter(sub)
        for _ in released.measure_iter_time(range(3), "iter_time"):
            released.register({"loss": 1.0, "num_cores": 2.0}, 4)
            with released.measure_time("optim_step_time"):
                pass
            released.next()  # nothing registered: no row
        released.register({"grad_norm": 2.0, "clip": 50.0, "optim0_lr0": 0.1,
                           "dp_epsilon": 3.0})
        released.next()
    assert sorted(reporter.get_all_keys()) == [
        ("train", "dp_epsilon"), ("train", "grad_norm"), ("train", "optim0_lr0"),
        ("train", "time"), ("train", "total_count")]  # the last two: espnet2's own
    assert is_released("noise_std") and not is_released("core_norm_max")


# -- through asr_train ------------------------------------------------------------------------
def test_noise_with_batch_norm_is_refused_in_one_line_before_anything_is_written(
        corpus, tmp_path, capsys):
    out = tmp_path / "bn"
    with pytest.raises(SystemExit) as exit_info:
        asr_train.main(train_args(corpus, out, dict(NOISY, **CONFORMER)))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"asr_train: error: clip_conf.noise_multiplier=1 with {BATCH_NORM} "
                              "(BatchNorm1d): its running statistics would be computed"), err
    assert not out.exists()


def test_frozen_batch_norm_releases_no_statistic_of_the_data(corpus, tmp_path):
    """running_stats: freeze: the epoch's model file keeps the statistics the layer was built
    with, whatever the data; the weights did train."""
    out = tmp_path / "frozen"
    conf = dict(NOISY, **CONFORMER)
    conf["clip_conf"] = dict(conf["clip_conf"], running_stats="freeze")
    asr_train.main(train_args(corpus, out, conf))
    model = torch.load(out / "1epoch.pth", weights_only=True)
    assert torch.equal(model[f"{BATCH_NORM}.running_mean"], torch.zeros(16))
    assert torch.equal(model[f"{BATCH_NORM}.running_var"], torch.ones(16))
    assert int(model[f"{BATCH_NORM}.num_batches_tracked"]) == 0
    assert not torch.equal(model[f"{BATCH_NORM}.weight"], torch.ones(16))


STOCK_FINISH_EPOCH = Reporter.finish_epoch


def finish_epoch_on_a_gpu(self, sub_reporter):
    """espnet2's Reporter.finish_epoch as it runs where CUDA is initialised: with the
    process's peak GPU memory in the epoch's stats (a made-up value on this CPU)."""
    STOCK_FINISH_EPOCH(self, sub_reporter)
    self.stats[self.epoch][sub_reporter.key][GPU_MEMORY_KEY] = 0.75


def test_a_noisy_run_logs_only_released_keys_unless_asked(corpus, tmp_path):
    """Without clip_conf.log_train_stats: no loss, core norm, clipped fraction, core count or
    timing of the training batches, and in no phase espnet2's GPU memory peak (which follows
    the largest secret batch); epsilon, the noise, the bound, the update's norm and the
    learning rate are there.  With it: everything, as a noiseless run."""
    quiet, loud = tmp_path / "quiet", tmp_path / "loud"
    with mock.patch.object(Reporter, "finish_epoch", finish_epoch_on_a_gpu):
        asr_train.main(train_args(corpus, quiet, dict(NOISY, max_epoch=1)))
        asr_train.main(train_args(corpus, loud, dict(NOISY, clip_conf=dict(
            NOISY["clip_conf"], log_train_stats=True))))
    stats = train_stats(quiet, 1)
    assert set(stats) == {"dp_epsilon", "noise_std", "clip_bound", "grad_norm", "loss_scale",
                          "optim0_lr0", "time", "total_count"}, stats  # the last two: espnet2's
    phases = load_checkpoint(quiet / "checkpoint.pth")["reporter"]["stats"][1]
    assert not [phase for phase, values in phases.items() if GPU_MEMORY_KEY in values]
    stats = train_stats(loud, 1)
    assert {"loss", "core_norm_max", "clip", "num_cores", "forward_time", "dp_epsilon",
            GPU_MEMORY_KEY} <= set(stats)
    assert espnet2.train.trainer.Reporter is Reporter  # swapped back after each run


def test_a_resumed_reporter_drops_the_gpu_memory_peak():
    """A checkpoint's reporter that has it (written before it was left out) loses it."""
    reporter = Reporter()
    with mock.patch.object(Reporter, "finish_epoch", finish_epoch_on_a_gpu):
        with reporter.observe("train", 1) as sub:
            sub.register({"grad_norm": 1.0})
            sub.next()
    assert GPU_MEMORY_KEY in reporter.state_dict()["stats"][1]["train"]
    released = ReleasedEpochReporter()
    released.load_state_dict(reporter.state_dict())
    assert set(released.state_dict()["stats"][1]["train"]) == {"grad_norm", "time",
                                                               "total_count"}


def test_checkpoint_is_its_owners_alone_and_model_files_follow_the_umask(corpus, tmp_path):
    out = tmp_path / "mode"
    asr_train.main(train_args(corpus, out, dict(NOISY, max_epoch=1)))
    assert stat.S_IMODE(os.stat(out / "checkpoint.pth").st_mode) == 0o600
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(out / "1epoch.pth").st_mode) == 0o666 & ~umask
