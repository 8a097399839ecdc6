"""DDP helpers: a bounded wait for collectives (`--dist_timeout`), and buffers kept equal
across ranks (`average_buffers`).

espnet2 initialises torch.distributed without a timeout, so a rank that hangs
(rather than dies) keeps the others waiting for torch's default of 30 minutes.
With `--dist_timeout S` every collective of the run fails after S seconds with
torch's timeout error, and the launcher (torchrun / ESPnet's spawner) tears the
job down.  A rank that *dies* is detected sooner: gloo sees the closed socket,
and torchrun stops the remaining ranks.
"""
from __future__ import annotations

import argparse
import datetime
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.distributed

from espnet_pcc.errors import UserError

DEFAULT_TIMEOUT_S = 1800.0


class DistTimeoutError(UserError, ValueError):
    """A user error in `--dist_timeout`; its message is one line."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Distributed fault handling")
    group.add_argument("--dist_timeout", type=float, default=DEFAULT_TIMEOUT_S,
                       help="Seconds a DDP collective may wait for the other ranks "
                       "before the run fails (torch.distributed timeout)")


def check_timeout(seconds: float) -> float:
    """`seconds` if it is a usable `--dist_timeout` (> 0); else :class:`DistTimeoutError`."""
    if not seconds > 0:  # also rejects NaN
        raise DistTimeoutError(f"--dist_timeout must be > 0 seconds, got {seconds}")
    return seconds


@contextmanager
def default_timeout(seconds: float) -> Iterator[None]:
    """`init_process_group` calls made inside get `timeout=seconds` unless they pass one."""
    original = torch.distributed.init_process_group

    def init_process_group(*args, **kwargs):
        kwargs.setdefault("timeout", datetime.timedelta(seconds=seconds))
        return original(*args, **kwargs)

    torch.distributed.init_process_group = init_process_group
    try:
        yield
    finally:
        torch.distributed.init_process_group = original


@torch.no_grad()
def average_buffers(module: torch.nn.Module, group=None) -> None:
    """Sets every buffer of `module` to its mean over the ranks of `group` (collective).

    The per-core loop runs every forward under DDP's `no_sync`, after which DDP stops
    broadcasting buffers: without this, BatchNorm's running statistics drift apart across
    ranks, each rank validates a different model, and the checkpoint (rank 0's) keeps
    statistics of 1/world of the data.  The mean rather than stock DDP's broadcast from rank
    0: a running mean is linear in the batch means, so the mean of the ranks' running means
    is the running mean of the global batches' means, built from every rank's utterances (a
    running variance becomes the mean within-rank variance).  Constant buffers (a global MVN,
    window functions) are equal on every rank and stay exactly as they are; integer buffers
    (`num_batches_tracked`, which differs where ranks run different numbers of cores) are
    rounded.  One all-reduce of all buffers together, in float64.
    """
    buffers = [b for b in module.buffers() if b.numel() and not b.is_complex()]
    if not buffers:
        return
    flat = torch.cat([b.detach().reshape(-1).to(torch.float64) for b in buffers])
    torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM, group=group)
    flat /= torch.distributed.get_world_size(group)
    for b, mean in zip(buffers, flat.split([b.numel() for b in buffers])):
        if not b.dtype.is_floating_point:
            mean = mean.round()
        b.copy_(mean.view_as(b))
