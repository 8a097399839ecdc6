"""Step time of per-core clipping under Lightning against a stock Lightning step, one process.

    python -m bench.lightning_step [--steps 12] [--repeats 3] [--accumulate 2] [--quick]

The same LightningModule (a 4-layer transformer encoder, d_model 256: 3.2 M parameters, on
random 8 x 50 frames; MSE) trains with Lightning's own loop and its ``gradient_clip_val``
(`global`, the stock step) and with `PerCoreSingleDeviceStrategy` (``per_core`` and
``adaptive_per_core``, one core per accumulation micro-batch, so that both run the same forward
and backward passes and the difference is the clipping).  A step is the wall time from its
first micro-batch's ``on_train_batch_start`` to its last one's ``on_train_batch_end``; the
first two steps of every run are warm-up.  The modes alternate within each repeat, so drift of
a shared machine falls on all of them; the table gives each mode's median step over all
repeats (wall and the process's CPU time) and its ratio to the stock median.  Communication
under DDP is not timed here: tests/lightning/test_lightning_ddp.py counts it (one all-reduce
per step, as stock).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Dict, List, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.strategies import SingleDeviceStrategy

from espnet_pcc.lightning import PerCoreSingleDeviceStrategy

MAX_NORM = 1.0
WARMUP_STEPS = 2
MODES = ("global", "per_core", "adaptive_per_core")


class EncoderRegression(pl.LightningModule):
    def __init__(self, dim: int, layers: int, batches: List[tuple]):
        super().__init__()
        torch.manual_seed(0)
        layer = torch.nn.TransformerEncoderLayer(dim, 4, 4 * dim, dropout=0.0, batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = torch.nn.Linear(dim, 1)
        self.batches = batches

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.head(self.encoder(x)).squeeze(-1), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-4)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.batches, batch_size=None)


class StepTimer(Callback):
    """Wall and CPU time of each optimizer step (its micro-batches, from first start to last
    end).  The process's CPU time, with one torch thread, is what another process on a shared
    machine disturbs least."""

    def __init__(self, accumulate: int):
        self.accumulate, self.steps, self._start = accumulate, [], None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx % self.accumulate == 0:
            self._start = (time.perf_counter(), time.process_time())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if (batch_idx + 1) % self.accumulate == 0:
            wall, cpu = self._start
            self.steps.append((time.perf_counter() - wall, time.process_time() - cpu))


def _strategy(mode: str):
    if mode == "global":
        return SingleDeviceStrategy(device="cpu")
    clip_conf = {"max_norm": MAX_NORM} if mode == "per_core" else {}
    return PerCoreSingleDeviceStrategy(device="cpu", clip=mode, clip_conf=clip_conf)


def time_steps(mode: str, steps: int, accumulate: int, dim: int, layers: int,
               batch: int, frames: int) -> List[tuple]:
    """The (wall, CPU) times of the steps of one run of `mode`, warm-up left out."""
    generator = torch.Generator().manual_seed(1)
    batches = [(torch.randn(batch, frames, dim, generator=generator),
                torch.randn(batch, frames, generator=generator))
               for _ in range((steps + WARMUP_STEPS) * accumulate)]
    timer = StepTimer(accumulate)
    trainer = pl.Trainer(accelerator="cpu", devices=1, strategy=_strategy(mode), max_epochs=1,
                         accumulate_grad_batches=accumulate, logger=False,
                         gradient_clip_val=MAX_NORM if mode == "global" else None,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, callbacks=[timer])
    trainer.fit(EncoderRegression(dim, layers, batches))
    return timer.steps[WARMUP_STEPS:]


def run(steps: int, repeats: int, accumulate: int, dim: int, layers: int, batch: int,
        frames: int, threads: int) -> Dict:
    torch.set_num_threads(threads)
    times: Dict[str, List[tuple]] = {mode: [] for mode in MODES}
    for _ in range(repeats):
        for mode in MODES:
            times[mode] += time_steps(mode, steps, accumulate, dim, layers, batch, frames)
    wall = {mode: [w for w, _ in t] for mode, t in times.items()}
    cpu = {mode: [c for _, c in t] for mode, t in times.items()}
    rows = [{"mode": mode, "median_s": statistics.median(wall[mode]),
             "min_s": min(wall[mode]), "max_s": max(wall[mode]),
             "vs_stock": statistics.median(wall[mode]) / statistics.median(wall["global"]),
             "cpu_median_s": statistics.median(cpu[mode]),
             "cpu_vs_stock": statistics.median(cpu[mode]) / statistics.median(cpu["global"]),
             "steps": len(times[mode])} for mode in MODES]
    params = sum(p.numel() for p in EncoderRegression(dim, layers, []).parameters())
    return {"machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s)",
            "model_params": params, "accumulate_grad_batches": accumulate,
            "micro_batch": [batch, frames, dim], "rows": rows}


def markdown(result: Dict) -> str:
    lines = [f"Lightning step, one process: {result['model_params'] / 1e6:.1f} M parameters, "
             f"accumulate_grad_batches {result['accumulate_grad_batches']}, micro-batch "
             f"{'x'.join(map(str, result['micro_batch']))}, {result['machine']}.", "",
             "| mode | step s (median) | min–max s | × stock | CPU s (median) | CPU × stock "
             "| steps |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['mode']} | {r['median_s']:.3f} | {r['min_s']:.3f}–{r['max_s']:.3f} "
                     f"| {r['vs_stock']:.3f} | {r['cpu_median_s']:.3f} "
                     f"| {r['cpu_vs_stock']:.3f} | {r['steps']} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="timed steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs of every mode")
    parser.add_argument("--accumulate", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--quick", action="store_true", help="a tiny model, a few steps")
    parser.add_argument("--out", type=Path, help="also write lightning_step.json here")
    args = parser.parse_args(argv)
    shape = dict(dim=32, layers=1, batch=4, frames=10) if args.quick else \
        dict(dim=256, layers=4, batch=8, frames=50)
    steps, repeats = (3, 1) if args.quick else (args.steps, args.repeats)
    result = run(steps, repeats, args.accumulate, threads=args.threads, **shape)
    print(markdown(result))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "lightning_step.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
