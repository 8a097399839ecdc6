"""A tiny ESPnet ASR config and the asr_train arguments for the corpus fixture
(tests/conftest.py), shared by the end-to-end training tests."""
import socket
import sys
from typing import List, Sequence

import torch
import yaml

from espnet_pcc.espnet2.checkpoints import load_checkpoint

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


def _free_port() -> int:
    with socket.socket() as s:  # a free port (torchrun's port 0 does not rendezvous)
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_asr_train(args: Sequence[str], nproc: int = 2) -> List[str]:
    """The command that runs espnet_pcc.bin.asr_train with `args` as `nproc` torchrun ranks on
    this host (pass --dist_backend gloo --multiprocessing_distributed false in `args`)."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
            "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
            "-m", "espnet_pcc.bin.asr_train", *args]


def torchrun_nodes_asr_train(args: Sequence[str], nnodes: int = 2) -> List[List[str]]:
    """One torchrun command per node (`--nnodes N --nproc_per_node 1`) that meet through a c10d
    rendezvous on 127.0.0.1, as N nodes of a cluster would through their first node's address;
    node 0 hosts the rendezvous store."""
    endpoint = f"127.0.0.1:{_free_port()}"
    return [[sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nnodes),
             "--nproc_per_node", "1", "--rdzv_backend", "c10d", "--rdzv_endpoint", endpoint,
             "--rdzv_id", "pcc-test", "--rdzv_conf", f"is_host={int(node == 0)}",
             "--local_addr", "127.0.0.1", "--max_restarts", "0",
             "-m", "espnet_pcc.bin.asr_train", *args] for node in range(nnodes)]


def final_params(out):
    return load_checkpoint(out / "checkpoint.pth")["model"]


def assert_resumed_equals_whole(whole, resumed, why: str = "") -> None:
    """The final parameters of an uninterrupted run and of a killed-and-resumed one agree.

    Both halves must run with the same torch thread count (conftest sets one for every
    process): the attention key biases have a zero gradient up to rounding (softmax ignores
    a shift shared by all keys), and Adam turns a rounding difference there into steps of
    the learning rate's size.
    """
    a, b = final_params(whole), final_params(resumed)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=f"{key} {why}")


def train_stats(out, epoch):
    reporter = load_checkpoint(out / "checkpoint.pth")["reporter"]
    return reporter["stats"][epoch]["train"]
