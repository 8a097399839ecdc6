"""The benchmarked models, built by PCCASRTask.build_model from a config dict.

`conformer` is ESPnet's egs2/librispeech_100/asr1 conformer (the same encoder/decoder
as conf/train_asr_conformer_*.yaml, 5000 BPE tokens: 34.2 M parameters); `small` is the
demo conformer of docs/design.md, 'Demo corpus' (3.4 M params, 300 tokens).  Kept here, not read
from conf/, so that the benchmark does not move when a recipe config is retuned.
"""
from __future__ import annotations

import argparse
import copy
from typing import Any, Dict

import torch

_FRONTEND = {"n_fft": 512, "win_length": 400, "hop_length": 160}
_SPECAUG = {
    "apply_time_warp": True, "time_warp_window": 5, "time_warp_mode": "bicubic",
    "apply_freq_mask": True, "freq_mask_width_range": [0, 27], "num_freq_mask": 2,
    "apply_time_mask": True, "time_mask_width_ratio_range": [0.0, 0.05], "num_time_mask": 5,
}
_CONFORMER_BLOCK = {
    "input_layer": "conv2d", "normalize_before": True, "macaron_style": True,
    "rel_pos_type": "latest", "pos_enc_layer_type": "rel_pos",
    "selfattention_layer_type": "rel_selfattn", "activation_type": "swish",
    "use_cnn_module": True,
}

MODELS: Dict[str, Dict[str, Any]] = {
    "conformer": {
        "vocab_size": 5000,
        "encoder": "conformer",
        "encoder_conf": dict(_CONFORMER_BLOCK, output_size=256, attention_heads=4,
                             linear_units=1024, num_blocks=12, cnn_module_kernel=31,
                             dropout_rate=0.1, positional_dropout_rate=0.1,
                             attention_dropout_rate=0.1),
        "decoder": "transformer",
        "decoder_conf": {"attention_heads": 4, "linear_units": 2048, "num_blocks": 6,
                         "dropout_rate": 0.1, "positional_dropout_rate": 0.1,
                         "self_attention_dropout_rate": 0.1, "src_attention_dropout_rate": 0.1},
        "model_conf": {"ctc_weight": 0.3, "lsm_weight": 0.1, "length_normalized_loss": False},
        "frontend_conf": _FRONTEND,
        "specaug": "specaug", "specaug_conf": _SPECAUG,
        "normalize": "utterance_mvn",
    },
    "small": {
        "vocab_size": 300,
        "encoder": "conformer",
        "encoder_conf": dict(_CONFORMER_BLOCK, output_size=144, attention_heads=4,
                             linear_units=576, num_blocks=4, cnn_module_kernel=15),
        "decoder": "transformer",
        "decoder_conf": {"attention_heads": 4, "linear_units": 576, "num_blocks": 2},
        "model_conf": {"ctc_weight": 0.3, "lsm_weight": 0.1, "length_normalized_loss": False},
        "frontend_conf": _FRONTEND,
        "specaug": "specaug", "specaug_conf": _SPECAUG,
        "normalize": "utterance_mvn",
    },
    # Only for the smoke test: seconds per step, not a model anyone trains.
    "tiny": {
        "vocab_size": 50,
        "encoder": "conformer",
        "encoder_conf": dict(_CONFORMER_BLOCK, output_size=32, attention_heads=2,
                             linear_units=64, num_blocks=1, cnn_module_kernel=7),
        "decoder": "transformer",
        "decoder_conf": {"attention_heads": 2, "linear_units": 64, "num_blocks": 1},
        "model_conf": {"ctc_weight": 0.3},
        "frontend_conf": _FRONTEND,
        "normalize": "utterance_mvn",
    },
}


def vocab_size(name: str) -> int:
    return MODELS[name]["vocab_size"]


def task_args(name: str) -> argparse.Namespace:
    """PCCASRTask's parsed defaults with the model's config applied (as `--config` does)."""
    from espnet_pcc.espnet2.task import PCCASRTask

    config = copy.deepcopy(MODELS[name])
    n = config.pop("vocab_size")
    args = PCCASRTask.get_parser().parse_args([])
    for key, value in config.items():
        setattr(args, key, value)
    # Token names do not matter to the model, only their number and the specials.
    args.token_list = ["<blank>", "<unk>"] + [f"t{i}" for i in range(n - 3)] + ["<sos/eos>"]
    args.optim, args.optim_conf = "adam", {"lr": 0.002, "weight_decay": 1e-6}
    return args


def build_model(name: str, seed: int = 0) -> torch.nn.Module:
    """The model, with weights from `seed` (every mode starts from the same ones)."""
    from espnet_pcc.espnet2.task import PCCASRTask

    torch.manual_seed(seed)
    return PCCASRTask.build_model(task_args(name))


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
