"""Fixtures for the exposure tests: a tiny real ESPnet ASR model and a small canary dir."""
import argparse
import string

import pytest

TOKENS = ["<blank>", "<unk>", "<space>"] + list(string.ascii_lowercase) + ["'", "<sos/eos>"]


def _write_config(tmp_path, adim=32, extra=True):
    """A real ESPnet ASR config (as asr_train writes it) for a 1-block transformer, char tokens."""
    import yaml
    from espnet2.tasks.asr import ASRTask

    from espnet_pcc.core.clip_config import ClipConfig

    token_file = tmp_path / "tokens.txt"
    token_file.write_text("\n".join(TOKENS) + "\n")
    args = ASRTask.get_parser().parse_args([
        "--token_type", "char", "--token_list", str(token_file),
        "--frontend_conf", "{n_fft: 512, hop_length: 160, n_mels: 40}",
        "--encoder", "transformer",
        "--encoder_conf", f"{{output_size: {adim}, attention_heads: 2, linear_units: 64, num_blocks: 1}}",
        "--decoder", "transformer",
        "--decoder_conf", "{attention_heads: 2, linear_units: 64, num_blocks: 1}",
        "--model_conf", "{ctc_weight: 0.3, lsm_weight: 0.0}",
    ])
    conf = vars(args)
    conf["token_list"] = TOKENS
    if extra:  # keys added by espnet_pcc's task: the loader must accept them
        conf["clip"] = "per_core"
        conf["clip_conf"] = {"max_norm": 1.0, "num_cores": 4}
        # the keys the training code reads today: a renamed key fails here, not silently
        ClipConfig.from_options(conf["clip"], conf["clip_conf"])
    path = tmp_path / f"config_{adim}.yaml"
    path.write_text(yaml.safe_dump(conf))
    return path


def _build_model(cfg):
    """(model, args) built from a config file, as ESPnet's ASRTask does (random weights)."""
    import yaml
    from espnet2.tasks.asr import ASRTask

    args = argparse.Namespace(**yaml.safe_load(cfg.read_text()))
    return ASRTask.build_model(args), args


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(dir, adim=32, extra=True) -> path`` of a config.yaml written into ``dir``."""
    return _write_config


@pytest.fixture(scope="session")
def build_model():
    """``build_model(config_path) -> (model, args)``."""
    return _build_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """(config.yaml, model.pth) of an untrained tiny model (seed 0)."""
    import torch

    tmp = tmp_path_factory.mktemp("model")
    cfg = _write_config(tmp)
    torch.manual_seed(0)
    model, _ = _build_model(cfg)
    torch.save(model.state_dict(), tmp / "model.pth")
    return cfg, tmp / "model.pth"


@pytest.fixture(scope="session")
def canaries(tmp_path_factory):
    """A make_canaries dir: 2 canaries each inserted 1 and 4 times, 8 references.

    Needs espeak-ng and sox: mark the tests that use it with `needs_tts`."""
    from espnet_pcc.measurement.canary.generate import CanaryConfig, generate

    out = tmp_path_factory.mktemp("can") / "c"
    vocab = ["apple", "river", "stone", "yellow", "garden", "window", "silver", "candle", "forest"]
    generate(out, vocab, CanaryConfig(num_words=3, repeat_counts=(1, 4), canaries_per_count=2,
                                      num_references=8, speed=1.6, seed=3), nj=2)
    return out
