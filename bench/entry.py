"""The worker processes' target, light to import for the driver (bench.run).

The driver pickles `serve` by name, so it must not import bench.worker (torch and ESPnet,
~10 s) itself: the import happens in the worker, where the forkserver has it preloaded.
"""
from __future__ import annotations

from typing import Any

from bench.job import Job


def serve(job: Job, conn: Any) -> None:
    """Process target: bench.worker.serve (already imported in the forkserver: free here)."""
    from bench.worker import serve as serve_job

    serve_job(job, conn)
