"""What one worker process runs; light to import (the driver never imports ESPnet)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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


def serve(job: Job, conn: Any) -> None:
    """Process target.  bench.worker is already imported in the forkserver: free here."""
    from bench.worker import serve as serve_job

    serve_job(job, conn)
