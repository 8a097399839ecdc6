"""What one worker process runs: plain data, light to import (the driver never imports ESPnet).

The dependency runs one way: bench.run and bench.worker import this module, never the reverse.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Job:
    model: str
    mode: str
    world: int
    rank: int
    accum_grad: int
    micro_batch: int
    max_seconds: float
    threads: int
    seed: int
    init_file: str  # torch.distributed file:// rendezvous (world > 1)
    device: str  # "cpu" or "cuda"
