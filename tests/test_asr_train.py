"""Real ESPnet ASR training through `espnet_pcc.bin.asr_train`, every clip mode."""
import socket
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
import yaml

from espnet_pcc.bin import asr_train

CHARS = list("abcde ")
TINY_CONFIG = {
    "batch_type": "unsorted", "batch_size": 4, "max_epoch": 2, "num_workers": 0,
    "seed": 0, "num_att_plot": 0, "keep_nbest_models": 1, "log_interval": 1,
    "use_matplotlib": False,
    "best_model_criterion": [["valid", "loss", "min"]],
    "frontend_conf": {"n_fft": 256, "hop_length": 160, "n_mels": 20},
    "normalize": "utterance_mvn",
    "encoder": "transformer",
    "encoder_conf": {"output_size": 16, "attention_heads": 2, "linear_units": 32,
                     "num_blocks": 1, "input_layer": "conv2d", "dropout_rate": 0.1},
    "decoder": "transformer",
    "decoder_conf": {"attention_heads": 2, "linear_units": 32, "num_blocks": 1},
    "model_conf": {"ctc_weight": 0.3},
    "optim": "adam", "optim_conf": {"lr": 0.002},
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """8 short noisy-tone utterances with char transcripts, as a Kaldi-style dir."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    wav_scp, text, shape = [], [], []
    for i in range(8):
        n = int(16000 * rng.uniform(0.5, 0.9))
        t = np.arange(n) / 16000
        audio = 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.05 * rng.standard_normal(n)
        path = root / f"utt{i}.wav"
        soundfile.write(path, audio.astype(np.float32), 16000, subtype="PCM_16")
        utt = f"utt{i}"
        wav_scp.append(f"{utt} {path}")
        text.append(f"{utt} " + "".join(rng.choice(CHARS[:-1], 2)) + " " +
                    "".join(rng.choice(CHARS[:-1], 3)))
        shape.append(f"{utt} {n}")
    (root / "wav.scp").write_text("\n".join(wav_scp) + "\n")
    (root / "text").write_text("\n".join(text) + "\n")
    (root / "speech_shape").write_text("\n".join(shape) + "\n")
    tokens = ["<blank>", "<unk>", "<space>"] + CHARS[:-1] + ["<sos/eos>"]
    (root / "tokens.txt").write_text("\n".join(tokens) + "\n")
    return root


def train_args(corpus, out, config_overrides=None, extra=()):
    config = dict(TINY_CONFIG, **(config_overrides or {}))
    config_path = out.parent / f"{out.name}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    data = []
    for split in ("train", "valid"):
        data += [f"--{split}_data_path_and_name_and_type", f"{corpus}/wav.scp,speech,sound",
                 f"--{split}_data_path_and_name_and_type", f"{corpus}/text,text,text",
                 f"--{split}_shape_file", f"{corpus}/speech_shape"]
    return ["--config", str(config_path), "--output_dir", str(out), "--ngpu", "0",
            "--token_type", "char", "--token_list", f"{corpus}/tokens.txt", *data, *extra]


def final_params(out):
    return torch.load(out / "checkpoint.pth", weights_only=False)["model"]


def train_stats(out, epoch):
    reporter = torch.load(out / "checkpoint.pth", weights_only=False)["reporter"]
    return reporter["stats"][epoch]["train"]


@pytest.mark.parametrize("clip,clip_conf,options", [
    ("none", {}, {}),
    ("global", {"max_norm": 1.0}, {}),
    ("per_core", {"max_norm": 1.0, "num_cores": 2}, {}),
    # ESPnet's AMP scaler is CUDA-only: on CPU it is built disabled, which the
    # per-core path must go through as well; grad_noise is added after clipping.
    ("per_core", {"max_norm": 1.0, "num_cores": 2}, {"use_amp": True, "grad_noise": True}),
    ("adaptive_per_core", {"num_cores": 2}, {}),
    ("per_example", {"max_norm": 1.0}, {}),
])
def test_every_clip_mode_trains(corpus, tmp_path, clip, clip_conf, options):
    out = tmp_path / clip
    asr_train.main(train_args(corpus, out, {"clip": clip, "clip_conf": clip_conf, **options}))
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["clip"] == clip
    assert saved["clip_conf"] == clip_conf  # as in the YAML; ClipConfig fills defaults
    stats = train_stats(out, 2)
    assert np.isfinite(stats["loss"])
    if clip in ("per_core", "adaptive_per_core", "per_example"):
        assert stats["num_cores"] == (2 if clip != "per_example" else 4)
        assert stats["core_norm_min"] <= stats["core_norm_max"]
        state = torch.load(out / "checkpoint.pth", weights_only=False)["optimizers"][0]
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
    assert config["clip_conf"] == {"max_norm": None, "num_cores": 1}


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


def test_bad_clip_value_from_the_command_line_is_one_line(corpus, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "espnet_pcc.bin.asr_train",
         *train_args(corpus, tmp_path / "bad", extra=["--clip", "adaptive"])],
        capture_output=True, text=True)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "asr_train: error" in line]
    assert lines == ["asr_train: error: clip: unknown value 'adaptive'; choose one of none, "
                     "global, per_core, adaptive_per_core, per_example"]
    assert "Traceback" not in result.stderr


def test_torchrun_two_cpu_ranks(corpus, tmp_path):
    """The documented multi-process launch: torchrun + gloo on CPU, per_core."""
    out = tmp_path / "ddp"
    args = train_args(corpus, out, {"clip": "per_core", "clip_conf": {"max_norm": 1.0},
                                    "max_epoch": 1},
                      extra=["--dist_backend", "gloo", "--multiprocessing_distributed", "false"])
    with socket.socket() as s:  # a free port (torchrun's port 0 does not rendezvous)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_addr", "127.0.0.1", "--master_port", str(port),
         "-m", "espnet_pcc.bin.asr_train", *args],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    stats = train_stats(out, 1)
    # 4-utterance batches split over 2 ranks, one core each: 2 cores per step.
    assert stats["num_cores"] == 2
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["distributed"] is True


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
    saved = torch.load(killed / "checkpoint.pth", weights_only=False)
    assert saved["reporter"]["epoch"] == 1  # the kill landed mid-epoch 2
    asr_train.main(train_args(corpus, killed, conf, extra=["--resume", "true"]))

    whole = tmp_path / "whole"
    asr_train.main(train_args(corpus, whole, conf))
    a, b = final_params(whole), final_params(killed)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
