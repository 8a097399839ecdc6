"""One benchmark worker: one (model, mode) of one cell, in its own process.

The driver (bench/run.py) starts one worker per mode and DDP rank, all alive at
once, and asks them in turn to run one optimizer step, so that a change of load
on the (shared) machine hits every mode alike.  Each mode lives in its own
process, so its peak resident memory is its own.

Imported by the forkserver before it forks workers (ESPnet's import costs
~10 s; paid once per run, not once per worker).
"""
from __future__ import annotations

import time
from typing import Any, Dict

import torch
import torch.distributed as dist
from espnet2.train.distributed_utils import DistributedOption
from espnet2.train.reporter import Reporter
from espnet2.train.trainer import Trainer

from bench.data import make_step_batches
from bench.job import Job
from bench.models import build_model, num_params, task_args, vocab_size
from espnet_pcc.core.optimizers import PerCoreClipOptimizer
from espnet_pcc.espnet2.task import PCCASRTask  # ESPnet's ASR task: ~10 s to import, once
from espnet_pcc.espnet2.trainer import PCCTrainer, PCCTrainerOptions

MAX_NORM = 5.0  # the recipes' grad_clip; C of global, per_core and per_example

# mode → (trainer class, clip, clip_conf).  `baseline` is espnet2's own Trainer.
MODES: Dict[str, tuple] = {
    "baseline": (Trainer, "global", {}),
    "global": (PCCTrainer, "global", {"max_norm": MAX_NORM}),
    "per_core": (PCCTrainer, "per_core", {"max_norm": MAX_NORM}),
    "adaptive_per_core": (PCCTrainer, "adaptive_per_core", {}),
    "per_example": (PCCTrainer, "per_example", {"max_norm": MAX_NORM}),
}


def _options(job: Job) -> PCCTrainerOptions:
    """The trainer options as asr_train builds them (ClipConfig included)."""
    _, clip, clip_conf = MODES[job.mode]
    args = task_args(job.model)
    args.clip, args.clip_conf = clip, dict(clip_conf)
    args.accum_grad, args.grad_clip = job.accum_grad, MAX_NORM
    args.log_interval = 10**9  # no log lines inside the timed region
    args.ngpu = 1 if job.device == "cuda" else 0
    return PCCTrainer.build_options(PCCASRTask.check_args(args))


def _optimizer(options: PCCTrainerOptions, model: torch.nn.Module) -> torch.optim.Optimizer:
    adam = torch.optim.Adam(model.parameters(), lr=0.002, weight_decay=1e-6)
    if options.clip_config.wraps_optimizer:
        return PerCoreClipOptimizer(adam, clip_config=options.clip_config)
    return adam


def peak_memory_mb(device: str) -> float:
    """Peak memory of this process: VmHWM (peak RSS) on CPU, the CUDA allocator's peak on GPU."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_memory_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.memory_allocated() / 2**20
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Worker:
    """Builds everything once; `step()` runs one optimizer step through train_one_epoch."""

    def __init__(self, job: Job):
        self.job = job
        torch.set_num_threads(job.threads)
        if job.device == "cuda":
            torch.cuda.set_device(job.rank)
        if job.world > 1:
            backend = "nccl" if job.device == "cuda" else "gloo"
            dist.init_process_group(backend, init_method=f"file://{job.init_file}",
                                    rank=job.rank, world_size=job.world)
        self.model = build_model(job.model, seed=job.seed).to(job.device)
        self.params = num_params(self.model)
        self.options = _options(job)
        self.optimizer = _optimizer(self.options, self.model)
        self.trainer = MODES[job.mode][0]
        self.ddp = None
        if job.world > 1:
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[job.rank] if job.device == "cuda" else None)
        # Each rank its own data; the same data for every mode (the seed names the rank).
        batches = make_step_batches(job.accum_grad, job.micro_batch, vocab_size(job.model),
                                    seed=job.seed + 1000 * (job.rank + 1),
                                    max_seconds=job.max_seconds)
        self.iterator = [([f"r{job.rank}m{i}u{j}" for j in range(job.micro_batch)], b)
                         for i, b in enumerate(batches)]
        self.setup_memory_mb = current_memory_mb(job.device)

    def step(self) -> Dict[str, float]:
        """One optimizer step (accum_grad micro-batches): wall and CPU seconds."""
        reporter = Reporter()
        reporter.set_epoch(1)
        torch.manual_seed(self.job.seed)  # dropout/SpecAugment draw alike in every mode
        self._sync()
        tic, cpu = time.perf_counter(), time.process_time()
        with reporter.observe("train", 1) as sub:
            invalid = self.trainer.train_one_epoch(
                model=self.ddp or self.model, iterator=self.iterator,
                optimizers=[self.optimizer], schedulers=[None], scaler=None, reporter=sub,
                summary_writer=None, options=self.options,
                distributed_option=DistributedOption(distributed=self.job.world > 1,
                                                     ngpu=self.options.ngpu))
        self._sync()
        # CPU time of this process, all its threads: on a shared machine it moves
        # much less than wall time when other jobs take the cores.
        return {"seconds": time.perf_counter() - tic, "cpu_seconds": time.process_time() - cpu,
                "skipped": float(invalid)}

    def memory(self) -> Dict[str, float]:
        return {"setup_mb": self.setup_memory_mb, "peak_mb": peak_memory_mb(self.job.device),
                "params": float(self.params)}

    def close(self) -> None:
        if self.job.world > 1 and dist.is_initialized():
            dist.destroy_process_group()

    def _sync(self) -> None:
        if self.job.device == "cuda":
            torch.cuda.synchronize()


def serve(job: Job, conn: Any) -> None:
    """Process entry point: answers "step" / "stop" on `conn` until "stop"."""
    try:
        worker = Worker(job)
        conn.send(("ready", None))
        while True:
            command = conn.recv()
            if command == "step":
                conn.send(("step", worker.step()))
            else:
                conn.send(("memory", worker.memory()))
                worker.close()
                return
    except BaseException as e:  # the driver reports it and stops the cell
        import traceback

        conn.send(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
        raise
