"""Real ESPnet ASR training through `espnet_pcc.bin.asr_train`, every clip mode."""
import logging
import math
import re
import subprocess
import sys
import time
from unittest import mock

import numpy as np
import pytest
import torch
import yaml

from asr_train_helpers import TINY_CONFIG, assert_resumed_equals_whole, final_params, \
    torchrun_asr_train, torchrun_nodes_asr_train, train_args, train_stats
from espnet_pcc.bin import asr_train
from espnet_pcc.core import accounting
from espnet_pcc.core.clip_config import DEFAULT_CLIP_CONF, ClipConfig, ClipConfigError
from espnet_pcc.core.data_loader.shuffled import ShuffledBatchSampler
from espnet_pcc.core.distributed import DistTimeoutError
from espnet_pcc.espnet2.checkpoints import load_checkpoint
from espnet_pcc.espnet2.task import PCCASRTask
from espnet_pcc.espnet2.trainer import PCCTrainer
from espnet_pcc.import_noise import KNOWN_NOISE

@pytest.mark.parametrize("clip,clip_conf,options", [
    ("none", {}, {}),
    ("global", {"max_norm": 1.0}, {}),
    ("per_core", {"max_norm": 1.0, "num_cores": 2}, {}),
    # ESPnet's AMP scaler is CUDA-only: on CPU it is built disabled, which the
    # per-core path must go through as well; grad_noise is added after clipping.
    ("per_core", {"max_norm": 1.0, "num_cores": 2}, {"use_amp": True, "grad_noise": True}),
    ("adaptive_per_core", {"num_cores": 2}, {}),
    ("per_example", {"max_norm": 1.0}, {}),
    ("none", {"num_cores": 2}, {}),  # PCC's control: per-core forwards, nothing clipped
])
def test_every_clip_mode_trains(corpus, tmp_path, clip, clip_conf, options):
    out = tmp_path / clip
    with mock.patch.object(ClipConfig, "from_options", wraps=ClipConfig.from_options) as spy:
        asr_train.main(train_args(corpus, out, {"clip": clip, "clip_conf": clip_conf, **options}))
    # Parsed once (PCCASRTask.check_args), then carried to the optimizer and the trainer
    # options for both epochs.
    assert spy.call_count == 1
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["clip"] == clip
    assert saved["clip_conf"] == clip_conf  # as in the YAML; ClipConfig fills defaults
    assert "clip_config" not in saved  # not an option
    stats = train_stats(out, 2)
    assert np.isfinite(stats["loss"])
    if ClipConfig.from_options(clip, clip_conf).wraps_optimizer:
        assert stats["num_cores"] == (2 if clip != "per_example" else 4)
        assert stats["core_norm_min"] <= stats["core_norm_max"]
        state = load_checkpoint(out / "checkpoint.pth")["optimizers"][0]
        assert state["pcc"]["clip"] == clip
    else:
        assert "core_norm_min" not in stats
    assert (out / "valid.loss.best.pth").exists()


@pytest.mark.parametrize("clip,clip_conf", [
    ("per_core", {"max_norm": 1.0, "num_cores": 2}),
    ("adaptive_per_core", {"num_cores": 2}),
])
def test_resume_after_a_stop_matches_an_uninterrupted_run(corpus, tmp_path, clip, clip_conf):
    conf = {"clip": clip, "clip_conf": clip_conf, "max_epoch": 3}
    # 4 batches/epoch with accum_grad 3: epochs end mid-cycle, so the cores
    # accumulated so far must survive the checkpoint too.
    conf.update(batch_size=2, accum_grad=3)
    whole = tmp_path / "whole"
    asr_train.main(train_args(corpus, whole, conf))
    stopped = tmp_path / "stopped"
    asr_train.main(train_args(corpus, stopped, dict(conf, max_epoch=2)))
    asr_train.main(train_args(corpus, stopped, conf, extra=["--resume", "true"]))
    a, b = final_params(whole), final_params(stopped)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


def test_print_config_shows_clip_keys_with_defaults():
    result = subprocess.run([sys.executable, "-m", "espnet_pcc.bin.asr_train", "--print_config"],
                            capture_output=True, text=True, check=True)
    config = yaml.safe_load(result.stdout)
    assert config["clip"] == "global"
    assert config["clip_conf"] == DEFAULT_CLIP_CONF
    assert config["clip_conf"]["noise_multiplier"] == 0.0


BAD = [
    (["--clip", "perCore"], "clip: unknown value 'perCore'"),
    (["--clip", "per_core"], "clip_conf.max_norm is required for clip: per_core"),
    (["--clip", "per_core", "--clip_conf", "max_norm=0"], "clip_conf.max_norm must be > 0"),
    (["--clip", "per_example", "--clip_conf", "max_norm=-2"], "got -2"),
    (["--clip", "adaptive_per_core", "--clip_conf", "max_norm=1"],
     "clip_conf.max_norm=1 is not allowed for clip: adaptive_per_core"),
    (["--clip", "per_core", "--clip_conf", "max_norm=1", "--clip_conf", "num_cores=0"],
     "clip_conf.num_cores must be >= 1, got 0"),
    (["--clip", "global", "--clip_conf", "num_cores=2"], "num_cores=2 has no effect"),
    (["--clip", "per_core", "--clip_conf", "max_norm=1", "--clip_conf", "cores=2"],
     "unknown key(s) cores"),
    (["--clip", "per_core", "--clip_conf", "max_norm=1", "--clip_conf", "noise_multiplier=-1"],
     "clip_conf.noise_multiplier must be >= 0, got -1"),
    (["--clip", "per_core", "--clip_conf", "initial_bound=1", "--clip_conf",
      "target_quantile=1.5"], "clip_conf.target_quantile must be in [0, 1], got 1.5"),
    (["--clip", "adaptive_per_core", "--clip_conf", "noise_multiplier=1"],
     "noise_multiplier=1 is not allowed with clip: adaptive_per_core"),
    (["--clip", "per_core", "--clip_conf", "max_norm=1", "--clip_conf", "noise_multiplier=1",
      "--use_amp", "true"], "noise_multiplier=1 with --use_amp"),
    (["--clip", "per_core", "--clip_conf", "max_norm=1", "--clip_conf", "noise_seed=3"],
     "noise_seed=3 has no effect without clip_conf.noise_multiplier"),
    (["--batch_sampler", "shuffled", "--clip", "per_core", "--clip_conf", "max_norm=1",
      "--clip_conf", "core_by=speaker"], "--batch_sampler shuffled with clip_conf.core_by=speaker"),
    (["--batch_sampler", "shuffled", "--multiple_iterator", "true"],
     "--batch_sampler shuffled needs --iterator_type sequence"),
    (["--batch_sampler", "espnet", "--clip", "per_core", "--clip_conf", "max_norm=1",
      "--clip_conf", "noise_multiplier=1"],
     "noise_multiplier=1 with --batch_sampler espnet and clip: per_core: one utterance more "
     "re-cuts"),
    (["--clip", "per_example", "--clip_conf", "max_norm=1", "--clip_conf", "noise_multiplier=1",
      "--num_iters_per_epoch", "3"], "noise_multiplier=1 with --num_iters_per_epoch 3"),
    (["--batch_sampler", "poisson", "--clip", "global"],
     "--batch_sampler poisson with clip: global"),
    (["--batch_sampler", "poisson", "--clip", "per_core", "--clip_conf", "max_norm=1",
      "--num_iters_per_epoch", "3"], "--batch_sampler poisson with --num_iters_per_epoch 3"),
    (["--batch_sampler", "poisson", "--clip", "per_core", "--clip_conf", "max_norm=1",
      "--batch_size", "9"], "--batch_size 9 is larger than the 8 training utterances"),
    # With noise no choice reads a training statistic, and the unamplified average divides by
    # batch_size x accum_grad, which batches of --batch_bins are not counted in.
    (["--clip", "per_core", "--clip_conf", "max_norm=1", "--clip_conf", "noise_multiplier=1",
      "--patience", "2", "--early_stopping_criterion", "train", "loss", "min"],
     "noise_multiplier=1 with --early_stopping_criterion train loss min: it chooses by a "
     "statistic of the training data"),
    (["--clip", "per_core", "--clip_conf", "max_norm=1", "--clip_conf", "noise_multiplier=1",
      "--clip_conf", "log_train_stats=true", "--best_model_criterion", "train,acc,max"],
     "with --best_model_criterion train acc max"),
    (["--clip", "per_core", "--clip_conf", "max_norm=1", "--clip_conf", "noise_multiplier=1",
      "--scheduler", "reducelronplateau", "--val_scheduler_criterion", "train", "loss"],
     "with --val_scheduler_criterion train loss"),
    (["--batch_sampler", "espnet", "--batch_type", "numel", "--clip", "per_example",
      "--clip_conf", "max_norm=1", "--clip_conf", "noise_multiplier=1"],
     "noise_multiplier=1 with --batch_sampler espnet and --batch_type numel"),
]


@pytest.mark.parametrize("args,message", BAD)
def test_bad_clip_settings_fail_before_training(corpus, tmp_path, capsys, args, message):
    out = tmp_path / "bad"
    with pytest.raises(SystemExit) as exit_info:
        asr_train.main(train_args(corpus, out, extra=args))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("asr_train: error: ") and message in err[0], err
    assert not out.exists()


def test_dist_timeout_has_its_own_error(corpus, tmp_path, capsys):
    args = PCCASRTask.get_parser().parse_args(["--dist_timeout", "0"])
    with pytest.raises(DistTimeoutError, match=r"--dist_timeout must be > 0 seconds, got 0.0") as e:
        PCCASRTask.check_args(args)
    assert not isinstance(e.value, ClipConfigError)  # not a clipping setting
    out = tmp_path / "bad"
    with pytest.raises(SystemExit) as exit_info:
        asr_train.main(train_args(corpus, out, extra=["--dist_timeout", "-1"]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["asr_train: error: --dist_timeout must be > 0 seconds, got -1.0"]
    assert not out.exists()


def test_check_args_carries_the_clip_config_outside_the_options():
    args = PCCASRTask.get_parser().parse_args(["--clip", "per_core", "--clip_conf", "max_norm=2"])
    checked = PCCASRTask.check_args(args)
    assert checked.clip_config == ClipConfig.from_options("per_core", {"max_norm": 2})
    # What espnet2 writes to config.yaml: no clip_config, the sampler as resolved (auto:
    # espnet without noise).
    assert vars(checked) == {**vars(args), "batch_sampler": "espnet"}
    assert PCCTrainer.build_options(checked).clip_config is checked.clip_config


def test_bad_clip_value_is_one_line_and_the_last_of_stderr(corpus, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "espnet_pcc.bin.asr_train",
         *train_args(corpus, tmp_path / "bad", extra=["--clip", "adaptive"])],
        capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[-1].startswith("asr_train: error: clip: unknown value 'adaptive'; choose one "
                                "of none, global, ")
    assert lines[-1].endswith(", per_example")
    assert [line for line in lines if "error" in line] == lines[-1:]
    # what espnet2's optional dependencies print at import (flash-attn, g2p_en's NLTK data)
    # is not among the lines, whether this machine has them or not
    assert not [line for line in lines for noise in KNOWN_NOISE if re.match(noise.pattern, line)]
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def test_numbers_yaml_reads_as_strings_configure_the_run_as_numbers(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("clip: per_core\nclip_conf:\n  max_norm: 1.0e9\n  num_cores: 2\n")
    checked = PCCASRTask.check_args(PCCASRTask.get_parser().parse_args(["--config",
                                                                       str(config)]))
    assert checked.clip_config.max_norm == 1e9
    assert checked.clip_conf["max_norm"] == 1e9  # what config.yaml records


def test_shuffled_batches_train_with_accum_grad_and_resume(corpus, tmp_path):
    """--batch_sampler shuffled: 8 utterances in batches of 3 (3 batches of 3, 3, 2), the
    accum_grad cycle across the epoch's end, new batches every epoch; a resume equals the
    uninterrupted run (the batches of an epoch depend on the epoch and --seed alone)."""
    conf = {"clip": "per_core", "clip_conf": {"max_norm": 1.0, "num_cores": 2},
            "batch_sampler": "shuffled", "batch_size": 3, "accum_grad": 2, "max_epoch": 2}
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    with mock.patch.object(ShuffledBatchSampler, "generate", autospec=True,
                           side_effect=ShuffledBatchSampler.generate) as generate:
        asr_train.main(train_args(corpus, whole, conf))
    # Training draws the batches of epochs 1 and 2 (seed 0 + epoch); validation keeps ESPnet's.
    assert [c.args[1] for c in generate.call_args_list] == [1, 2]
    assert len(generate.call_args_list[0].args[0]) == 3  # batches of 3, 3, 2
    asr_train.main(train_args(corpus, stopped, dict(conf, max_epoch=1)))
    asr_train.main(train_args(corpus, stopped, conf, extra=["--resume", "true"]))
    assert_resumed_equals_whole(whole, stopped)
    assert yaml.safe_load((whole / "config.yaml").read_text())["batch_sampler"] == "shuffled"


def test_torchrun_two_cpu_ranks_shuffled_batches(corpus, tmp_path):
    """--batch_sampler shuffled under DDP: each rank takes its share of every global batch,
    never an empty one: 5 utterances in batches of 2 over 2 ranks are 2 batches (3 and 2
    utterances), not 3 with a batch of 1 that leaves rank 1 nothing to collate."""
    shape = tmp_path / "speech_shape_5"
    shape.write_text("".join((corpus / "speech_shape").read_text().splitlines(True)[:5]))
    out = tmp_path / "ddp"
    args = train_args(corpus, out, {"clip": "per_core", "clip_conf": {"max_norm": 1.0},
                                    "batch_sampler": "shuffled", "batch_size": 2,
                                    "accum_grad": 2, "max_epoch": 1},
                      extra=["--dist_backend", "gloo", "--multiprocessing_distributed", "false"])
    args[args.index("--train_shape_file") + 1] = str(shape)
    _torchrun(args)
    # 2 batches, each split over the 2 ranks: one step of 2 micro-batches per rank.
    assert train_stats(out, 1)["num_cores"] == 4


def test_torchrun_two_cpu_ranks(corpus, tmp_path):
    """The documented multi-process launch: torchrun + gloo on CPU, per_core."""
    out = tmp_path / "ddp"
    args = train_args(corpus, out, {"clip": "per_core", "clip_conf": {"max_norm": 1.0},
                                    "max_epoch": 1},
                      extra=["--dist_backend", "gloo", "--multiprocessing_distributed", "false"])
    result = subprocess.run(torchrun_asr_train(args), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    stats = train_stats(out, 1)
    # 4-utterance batches split over 2 ranks, one core each: 2 cores per step.
    assert stats["num_cores"] == 2
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["distributed"] is True


# Ranks draw different dropout masks than one process does: equal parameters need none.
NO_DROPOUT = {
    "encoder_conf": dict(TINY_CONFIG["encoder_conf"], dropout_rate=0.0,
                         positional_dropout_rate=0.0, attention_dropout_rate=0.0),
    "decoder_conf": dict(TINY_CONFIG["decoder_conf"], dropout_rate=0.0,
                         positional_dropout_rate=0.0, self_attention_dropout_rate=0.0,
                         src_attention_dropout_rate=0.0),
}


def test_torchrun_two_nodes_equal_one_process_with_two_cores(corpus, tmp_path):
    """Multi-node: two torchrun nodes (`--nnodes 2 --nproc_per_node 1`) meeting through a c10d
    rendezvous on the loopback address, per_core on gloo/CPU, end with the parameters of one
    process that splits each batch into 2 cores."""
    # 2-utterance batches: one utterance per rank, as in one core of the single process.
    conf = {"clip": "per_core", "clip_conf": {"max_norm": 0.05}, "max_epoch": 1,
            "batch_size": 2, **NO_DROPOUT}
    nodes = tmp_path / "nodes"
    args = train_args(corpus, nodes, conf,
                      extra=["--dist_backend", "gloo", "--multiprocessing_distributed", "false"])
    logs = [tmp_path / f"node{node}.log" for node in range(2)]
    procs = []
    try:
        for command, log in zip(torchrun_nodes_asr_train(args, nnodes=2), logs):
            with open(log, "w") as f:
                procs.append(subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 300
        # A failed node leaves the other waiting for its exit barrier: stop at the first failure.
        while (any(proc.poll() is None for proc in procs) and time.monotonic() < deadline
               and not any(proc.poll() for proc in procs)):
            time.sleep(0.5)
        codes = [proc.poll() for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()  # torchrun passes it on to its worker
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    assert codes == [0, 0], "\n".join(log.read_text()[-3000:] for log in logs)
    assert yaml.safe_load((nodes / "config.yaml").read_text())["distributed"] is True

    single = tmp_path / "single"
    asr_train.main(train_args(corpus, single, dict(conf, clip_conf={"max_norm": 0.05,
                                                                     "num_cores": 2})))
    for out in (nodes, single):
        stats = train_stats(out, 1)
        assert stats["num_cores"] == 2
        assert stats["clip"] > 0  # the bound is active: clipping decides the update
    a, b = final_params(single), final_params(nodes)
    # atol 1e-5, not 1e-6: the attention key biases have a zero gradient up to rounding
    # (softmax ignores a shift shared by all keys), and Adam turns that rounding noise into
    # steps of ~1e-6; every other parameter agrees to 1e-6.
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-5, msg=key)


def _torchrun(args):
    result = subprocess.run(torchrun_asr_train(args), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("clip,clip_conf", [
    ("per_core", {"max_norm": 0.5}),
    ("adaptive_per_core", {}),
])
def test_torchrun_resume_inside_an_accum_cycle_after_a_step(corpus, tmp_path, clip, clip_conf):
    """2 ranks, 2-utterance batches (one utterance per rank), accum_grad 3: epoch 1 is a step
    of 6 cores and one pending core per rank.  2 epochs straight equal 1 epoch + --resume to
    2, so every rank resumes with the divisor of the checkpoint's last step."""
    conf = {"clip": clip, "clip_conf": clip_conf, "max_epoch": 2, "batch_size": 2,
            "accum_grad": 3, **NO_DROPOUT}
    ddp = ["--dist_backend", "gloo", "--multiprocessing_distributed", "false"]
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    _torchrun(train_args(corpus, whole, conf, extra=ddp))
    _torchrun(train_args(corpus, stopped, dict(conf, max_epoch=1), extra=ddp))
    pending = load_checkpoint(stopped / "checkpoint.pth")["optimizers"][0]["pcc"]
    assert pending["steps"] == 1 and pending["pending"]["divisor"] == 6
    assert len(pending["pending"]["core_norms"]) == 2  # both ranks' cores, on rank 0
    _torchrun(train_args(corpus, stopped, conf, extra=ddp + ["--resume", "true"]))
    assert train_stats(stopped, 2)["num_cores"] == train_stats(whole, 2)["num_cores"] == 8
    assert_resumed_equals_whole(whole, stopped)


@pytest.mark.parametrize("clip,clip_conf", [
    ("per_core", {"max_norm": 1.0, "num_cores": 2}),
    ("adaptive_per_core", {"num_cores": 2}),
])
def test_sigkill_mid_epoch_then_resume(corpus, tmp_path, clip, clip_conf):
    """A run killed inside epoch 2 and restarted with --resume continues from
    the epoch-1 checkpoint and ends with the uninterrupted run's parameters."""
    conf = {"clip": clip, "clip_conf": clip_conf, "max_epoch": 3, "batch_size": 1,
            "accum_grad": 3}
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "espnet_pcc.bin.asr_train",
                             *train_args(corpus, killed, conf)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        for line in proc.stderr:  # log_interval 1: one line per batch
            if "2epoch:train:2-2batch" in line:
                proc.kill()
                break
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -9
    saved = load_checkpoint(killed / "checkpoint.pth")
    assert saved["reporter"]["epoch"] == 1  # the kill landed mid-epoch 2
    asr_train.main(train_args(corpus, killed, conf, extra=["--resume", "true"]))

    whole = tmp_path / "whole"
    asr_train.main(train_args(corpus, whole, conf))
    assert_resumed_equals_whole(whole, killed)


def test_noise_reports_the_epsilon_spent_after_each_epoch(corpus, tmp_path):
    """8 utterances, Poisson batches of 4 in expectation (the default sampler with noise): 2
    steps an epoch, q = 1/2, delta = 0.01/8, sensitivity 2C (2 hashed cores that can each
    hold several utterances), the average over the 2 core slots."""
    out = tmp_path / "noisy"
    conf = {"clip": "per_core", "max_epoch": 2,
            "clip_conf": {"max_norm": 1.0, "num_cores": 2, "noise_multiplier": 1.5}}
    asr_train.main(train_args(corpus, out, conf))
    for epoch, steps in ((1, 2), (2, 4)):
        stats = train_stats(out, epoch)
        assert stats["dp_epsilon"] == pytest.approx(
            accounting.epsilon(1.5, 0.5, steps, 0.01 / 8, sensitivity=2))
        assert stats["noise_std"] == pytest.approx(1.5 * 1.0 / 2)
    assert train_stats(out, 1)["dp_epsilon"] < train_stats(out, 2)["dp_epsilon"]
    saved = load_checkpoint(out / "checkpoint.pth")
    assert saved["optimizers"][0]["pcc"]["steps"] == 4  # numbers the noise after --resume


def test_noise_is_secret_by_default_and_resumes_exactly(corpus, tmp_path):
    """Two fresh noisy runs of one config draw different noise (the seed comes from the OS,
    not from config.yaml's --seed); a resume draws what the uninterrupted run drew (the seed
    is in the checkpoint, and with it the Poisson sampler's key: the batches of epoch 2 are
    the uninterrupted run's too); clip_conf.noise_seed makes the noise reproducible."""
    conf = {"clip": "per_core", "max_epoch": 2, "batch_size": 2, "accum_grad": 3,
            "clip_conf": {"max_norm": 1.0, "noise_multiplier": 1.0}}
    first, second, stopped = tmp_path / "first", tmp_path / "second", tmp_path / "stopped"
    asr_train.main(train_args(corpus, first, conf))
    asr_train.main(train_args(corpus, second, conf))
    a, b = final_params(first), final_params(second)
    assert any(not torch.equal(a[k], b[k]) for k in a)
    seeds = [load_checkpoint(d / "checkpoint.pth")["optimizers"][0]["pcc"]
             ["noise_seed"] for d in (first, second)]
    assert seeds[0] != seeds[1]
    config_text = (first / "config.yaml").read_text()
    assert str(seeds[0]) not in config_text
    assert yaml.safe_load(config_text)["clip_conf"].get("noise_seed") is None
    # Interrupted after epoch 1 of a run whose secret is the first run's; the resuming
    # process draws another secret, and must use the checkpoint's.
    with mock.patch("secrets.randbits", side_effect=[seeds[0], 12345]):
        asr_train.main(train_args(corpus, stopped, dict(conf, max_epoch=1)))
        asr_train.main(train_args(corpus, stopped, conf, extra=["--resume", "true"]))
    assert_resumed_equals_whole(first, stopped)
    fixed = dict(conf, clip_conf=dict(conf["clip_conf"], noise_seed=7))
    again = [tmp_path / "fixed1", tmp_path / "fixed2"]
    for d in again:
        asr_train.main(train_args(corpus, d, fixed))
    x, y = (final_params(d) for d in again)
    assert all(torch.equal(x[k], y[k]) for k in x)


def test_quantile_bound_moves_per_step_and_resumes_from_the_checkpoint(corpus, tmp_path):
    out = tmp_path / "adaptive"
    conf = {"clip": "per_core", "max_epoch": 1,
            "clip_conf": {"target_quantile": 0.5, "initial_bound": 1e-4, "bound_lr": 0.5,
                          "num_cores": 2}}
    asr_train.main(train_args(corpus, out, conf))
    # Every core is above a tiny C: b = 0, so C grows by exp(0.25) each of the 2 steps and
    # the epoch's mean of the C used is that of 1e-4 and 1e-4·exp(0.25).
    assert train_stats(out, 1)["clip_bound"] == pytest.approx(1e-4 * (1 + math.exp(0.25)) / 2,
                                                              rel=1e-3)
    saved = load_checkpoint(out / "checkpoint.pth")
    assert saved["optimizers"][0]["pcc"]["max_norm"] == pytest.approx(1e-4 * math.exp(0.5))


def test_noise_without_a_shape_file_needs_an_explicit_delta():
    args = PCCASRTask.get_parser().parse_args([])
    args.clip, args.clip_conf = "per_core", {"max_norm": 1.0, "noise_multiplier": 1.0}
    args.train_shape_file = []
    with pytest.raises(ClipConfigError, match="delta = 0.01/N needs the training units"):
        PCCASRTask.check_args(args)
    args.clip_conf["delta"] = 1e-6
    # The Poisson sampler (the default with noise) reads the utterances too.
    with pytest.raises(ClipConfigError, match="--batch_sampler poisson needs --train_shape_file"):
        PCCASRTask.check_args(args)
    args.clip, args.batch_sampler = "per_example", "espnet"
    assert PCCASRTask.check_args(args).clip_config.delta == 1e-6


@pytest.mark.parametrize("overrides,message", [
    # The Poisson sampler (the default with noise) reads the shape file first.
    ({"clip": "per_core"}, "missing_shape: no such file"),
    ({"clip": "per_example", "batch_sampler": "espnet"},
     "cannot count the training units for delta = 0.01/N"),
], ids=["poisson", "espnet_sampler"])
def test_noise_without_a_readable_shape_file_is_one_line(corpus, tmp_path, capsys, overrides,
                                                         message):
    out = tmp_path / "bad"
    args = train_args(corpus, out, {**overrides, "clip_conf": {
        "max_norm": 1.0, "noise_multiplier": 1.0}})
    args[args.index(f"{corpus}/speech_shape")] = str(tmp_path / "missing_shape")
    with pytest.raises(SystemExit) as exit_info:
        asr_train.main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


# -- Poisson sampling (--batch_sampler poisson, the default with noise) ----------------------
# log_train_stats: the tests read the drawn core counts, which a noisy run does not log.
POISSON = {"clip": "per_core", "max_epoch": 2, "batch_size": 4, **NO_DROPOUT,
           "clip_conf": {"max_norm": 1.0, "num_cores": 2, "noise_multiplier": 0.5,
                         "noise_seed": 7, "log_train_stats": True}}


def test_poisson_steps_with_empty_cores_two_ranks_equal_one_process(corpus, tmp_path):
    """4 utterances a step in expectation into 4 hashed core slots (2 ranks x 2 cores, or one
    process x accum_grad 2 x 2 cores: the same slots from the same key), so about a third of
    the slots are empty; both layouts train the same model, divide by D = 4 and report the
    epsilon of q = 4/8, sensitivity 2C, delta = 0.01/8."""
    one, ddp = tmp_path / "one", tmp_path / "ddp"
    asr_train.main(train_args(corpus, one, dict(POISSON, accum_grad=2)))
    _torchrun(train_args(corpus, ddp, POISSON,
                         extra=["--dist_backend", "gloo", "--multiprocessing_distributed", "false"]))
    assert_resumed_equals_whole(one, ddp, "2 ranks against one process")
    assert yaml.safe_load((one / "config.yaml").read_text())["batch_sampler"] == "poisson"
    drawn = []
    for out in (one, ddp):
        for epoch, steps in ((1, 2), (2, 4)):
            stats = train_stats(out, epoch)
            assert stats["dp_epsilon"] == pytest.approx(
                accounting.epsilon(0.5, 0.5, steps, 0.01 / 8, sensitivity=2))
            assert stats["noise_std"] == pytest.approx(0.5 * 1.0 / 4)
            drawn.append(stats["num_cores"])
    assert drawn[:2] == drawn[2:] and min(drawn) < 4  # the same draws; empty slots


def test_per_example_noise_under_espnets_sampler_reports_the_unamplified_epsilon(corpus,
                                                                                 tmp_path):
    """Fixed batches: no amplification by sampling; each utterance once an epoch, its own
    core (sensitivity C): epsilon of `epochs` Gaussian mechanisms, under its own name."""
    out = tmp_path / "fixed"
    conf = {"clip": "per_example", "max_epoch": 2, "batch_sampler": "espnet",
            "clip_conf": {"max_norm": 1.0, "noise_multiplier": 2.0}}
    asr_train.main(train_args(corpus, out, conf))
    for epoch in (1, 2):
        stats = train_stats(out, epoch)
        assert "dp_epsilon" not in stats
        assert stats["dp_epsilon_unamplified"] == pytest.approx(
            accounting.epsilon(2.0, 1.0, epoch, 0.01 / 8))


def test_collect_stats_runs_with_a_noisy_poisson_config(corpus, tmp_path):
    """pcc_asr.sh's stage 4 runs the first config with --collect_stats, whose shape files are
    key lists (wav.scp splits): espnet2 builds the optimizers there too, but no Poisson plan
    and no accountant (nothing is trained)."""
    out = tmp_path / "stats"
    args = train_args(corpus, out, dict(POISSON, clip_conf=dict(POISSON["clip_conf"],
                                                               noise_seed=None)),
                      extra=["--collect_stats", "true"])
    args = [f"{corpus}/wav.scp" if a == f"{corpus}/speech_shape" else a for a in args]
    asr_train.main(args)
    assert (out / "train" / "feats_stats.npz").exists()


def test_per_example_on_the_poisson_sampler_is_accounted_with_sensitivity_c(corpus, tmp_path):
    """per_example: one item is a micro-batch (accum_grad 2 of them a step), split into one
    core per utterance; the average is over the expected batch (4), sensitivity C."""
    out = tmp_path / "pe"
    conf = {"clip": "per_example", "max_epoch": 1, "batch_size": 4, "accum_grad": 2,
            "clip_conf": {"max_norm": 1.0, "noise_multiplier": 0.8, "noise_seed": 1,
                          "log_train_stats": True}}
    asr_train.main(train_args(corpus, out, conf))
    stats = train_stats(out, 1)
    assert stats["dp_epsilon"] == pytest.approx(accounting.epsilon(0.8, 0.5, 2, 0.01 / 8))
    assert stats["noise_std"] == pytest.approx(0.8 * 1.0 / 4)
    assert 0 < stats["num_cores"] <= 8


# -- what a noisy run accounts: the unamplified path, resumes, empty Poisson steps -----------
def test_unamplified_noise_divides_by_the_nominal_batch_and_each_epoch_ends_on_a_step(
        corpus, tmp_path):
    """per_example with noise on shuffled batches of 3 (3, 3, 2 utterances) and accum_grad 2:
    the average divides by 6 = batch_size x accum_grad whatever a step holds (the noise's
    spread in u would tell the count), and an epoch's last batch is a step of its own, not
    the first of the next epoch's step (whose batches could hold the same utterance): one
    participation per epoch, as the unamplified epsilon assumes."""
    out = tmp_path / "unamplified"
    conf = {"clip": "per_example", "max_epoch": 2, "batch_sampler": "shuffled", "batch_size": 3,
            "accum_grad": 2, "clip_conf": {"max_norm": 1.0, "noise_multiplier": 2.0,
                                           "noise_seed": 1}}
    asr_train.main(train_args(corpus, out, conf))
    for epoch in (1, 2):
        stats = train_stats(out, epoch)
        assert stats["noise_std"] == pytest.approx(2.0 / 6)
        assert stats["dp_epsilon_unamplified"] == pytest.approx(
            accounting.epsilon(2.0, 1.0, epoch, 0.01 / 8))
    pcc = load_checkpoint(out / "checkpoint.pth")["optimizers"][0]["pcc"]
    assert pcc["steps"] == 4 and pcc["pending"] is None  # 2 steps an epoch, nothing carried


def test_a_resume_with_other_noise_reports_the_epsilon_of_what_ran(corpus, tmp_path):
    """An epoch at sigma 0.6 resumed at sigma 3.0: epoch 2's epsilon composes both (2 steps
    each, q = 1/2, 2C), not 4 steps at 3.0; a noiseless epoch resumed with noise: +inf."""
    import dp_accounting
    from dp_accounting import rdp

    conf = {"clip": "per_core", "max_epoch": 1,
            "clip_conf": {"max_norm": 1.0, "num_cores": 2, "noise_multiplier": 0.6,
                          "noise_seed": 3}}
    louder = dict(conf, max_epoch=2, clip_conf=dict(conf["clip_conf"], noise_multiplier=3.0))
    out = tmp_path / "resumed"
    asr_train.main(train_args(corpus, out, conf))
    asr_train.main(train_args(corpus, out, louder, extra=["--resume", "true"]))
    history = load_checkpoint(out / "checkpoint.pth")["optimizers"][0]["pcc"][
        "privacy_history"]
    assert [(s["noise_multiplier"], s["steps"], s["first_epoch"], s["last_epoch"])
            for s in history] == [(0.6, 2, 1, 1), (3.0, 2, 2, 2)]
    accountant = rdp.RdpAccountant()
    for sigma in (0.6, 3.0):
        accountant.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(
            0.5, dp_accounting.GaussianDpEvent(sigma / 2)), 2))
    assert train_stats(out, 2)["dp_epsilon"] == pytest.approx(accountant.get_epsilon(0.01 / 8))
    assert train_stats(out, 2)["dp_epsilon"] > 5 * accounting.epsilon(3.0, 0.5, 4, 0.01 / 8,
                                                                      sensitivity=2)
    quiet = tmp_path / "quiet"
    asr_train.main(train_args(corpus, quiet, {"clip": "per_core", "max_epoch": 1,
                                              "clip_conf": {"max_norm": 1.0, "num_cores": 2}}))
    asr_train.main(train_args(corpus, quiet, louder, extra=["--resume", "true"]))
    assert train_stats(quiet, 2)["dp_epsilon"] == math.inf


def test_a_resume_on_another_training_set_is_refused_before_anything_is_loaded(
        corpus, tmp_path, capsys):
    """An epoch over 8 utterances resumed on 7 of them: one epsilon cannot compose steps on
    two data sets (the history keeps N), so the resume stops in one line, exit 2, before
    espnet2's resume has loaded the checkpoint or an epoch has started."""
    conf = {"clip": "per_core", "max_epoch": 1,
            "clip_conf": {"max_norm": 1.0, "num_cores": 2, "noise_multiplier": 1.0,
                          "noise_seed": 3}}
    out = tmp_path / "resumed"
    asr_train.main(train_args(corpus, out, conf))
    seven = tmp_path / "seven"
    seven.mkdir()
    for name in ("wav.scp", "text", "speech_shape"):
        lines = (corpus / name).read_text().splitlines()
        (seven / name).write_text("\n".join(lines[:7]) + "\n")
    (seven / "tokens.txt").write_text((corpus / "tokens.txt").read_text())
    capsys.readouterr()
    with mock.patch.object(PCCTrainer, "resume", wraps=PCCTrainer.resume) as resume, \
            pytest.raises(SystemExit) as exit_info:
        asr_train.main(train_args(seven, out, dict(conf, max_epoch=2),
                                  extra=["--resume", "true"]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("asr_train: error: --resume: the checkpoint's noisy steps were accounted "
                       "over N = 8 utterances, this run's training set has N = 7, and one "
                       "epsilon cannot compose steps on two data sets; resume with the "
                       "checkpoint's training set or start a new run"), err
    assert not resume.called
    assert not (out / "2epoch.pth").exists()


def test_a_noisy_epoch_logs_each_step_once(corpus, tmp_path, caplog):
    """With noise only the iterations that step make a reporter row (2 Poisson slots a
    step): every log_interval = 3 items logs the rows of those items, 1-1 then 2-3, not the
    last 3 rows, which would overlap."""
    conf = {"clip": "per_core", "max_epoch": 1, "batch_size": 2, "log_interval": 3,
            "clip_conf": {"max_norm": 1.0, "num_cores": 2, "noise_multiplier": 1.0,
                          "noise_seed": 3}}
    caplog.set_level(logging.INFO)
    asr_train.main(train_args(corpus, tmp_path / "windows", conf))
    windows = [tuple(map(int, m.groups())) for m in (
        re.search(r"1epoch:train:(-?\d+)-(\d+)batch", r.getMessage()) for r in caplog.records)
        if m]
    assert windows == [(1, 1), (2, 3)]  # 8 items, steps at 2, 4, 6, 8; logs at 3 and 6


def test_the_quantile_bound_takes_a_poisson_step_without_cores(corpus, tmp_path):
    """q = 2/8 into 2 slots, no noise: with --seed 0 one of epoch 1's 4 steps draws no
    utterance; there is no clipped fraction to follow, so C stays for that step (instead of
    a division by zero) and grows by exp(0.5 x 0.5) at each of the 3 others (every core is
    above a tiny C)."""
    out = tmp_path / "empty_step"
    conf = {"clip": "per_core", "max_epoch": 1, "batch_size": 2, "batch_sampler": "poisson",
            "clip_conf": {"target_quantile": 0.5, "initial_bound": 1e-4, "bound_lr": 0.5,
                          "num_cores": 2}}
    asr_train.main(train_args(corpus, out, conf))
    saved = load_checkpoint(out / "checkpoint.pth")["optimizers"][0]["pcc"]
    assert saved["max_norm"] == pytest.approx(1e-4 * math.exp(0.75))
