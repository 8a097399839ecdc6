"""A bounded wait for DDP collectives (`--dist_timeout`).

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
