"""Test-only Lightning code: a tiny LightningModule and its data, a logger that records, and
the reference the per-core strategy is checked against (each step's update from
`espnet_pcc.core.clipping.clipped_average` on cores computed one by one).  A module, not a conftest,
so that the DDP test's spawned workers can import it."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers.logger import Logger

from espnet_pcc.core.clip_config import ClipConfig
from espnet_pcc.core.clipping import ClipStats, clipped_average
from espnet_pcc.lightning.batches import split_into_cores


class TinyRegression(pl.LightningModule):
    """3 -> 4 -> 1 regression; each batch is an (x, y) pair; trains on `batches` in order."""

    def __init__(self, batches: Sequence, seed: int = 0, lr: float = 0.5,
                 optimizer: str = "sgd", batch_norm: bool = False):
        super().__init__()
        torch.manual_seed(seed)
        layers = [torch.nn.Linear(3, 4)]
        if batch_norm:
            layers.append(torch.nn.BatchNorm1d(4))
        layers += [torch.nn.Tanh(), torch.nn.Linear(4, 1)]
        self.net = torch.nn.Sequential(*layers)
        self.batches = list(batches)
        self.lr, self.optimizer_name = lr, optimizer

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.mse_loss(self(x), y)

    def configure_optimizers(self):
        if self.optimizer_name == "adam":
            return torch.optim.Adam(self.parameters(), lr=self.lr)
        return torch.optim.SGD(self.parameters(), lr=self.lr)

    def train_dataloader(self):
        # batch_size=None: each item is a ready batch, in order.
        return torch.utils.data.DataLoader(self.batches, batch_size=None)


def make_batches(num_batches: int, batch_size: int, seed: int = 3) -> List[tuple]:
    """Batches whose items differ in scale, so that core norms differ and some cores clip."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(num_batches):
        x = torch.randn(batch_size, 3, generator=generator)
        x = x * torch.linspace(0.2, 3.0, batch_size).unsqueeze(1)
        y = torch.randn(batch_size, 1, generator=generator) * 2.0
        batches.append((x, y))
    return batches


class RecordingLogger(Logger):
    """Keeps every `log_metrics` call: (step, metrics)."""

    def __init__(self):
        super().__init__()
        self.rows: List[tuple] = []

    @property
    def name(self):
        return "recording"

    @property
    def version(self):
        return 0

    def log_metrics(self, metrics, step=None):
        self.rows.append((step, dict(metrics)))

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def values(self, key: str) -> List[float]:
        return [float(metrics[key]) for _, metrics in self.rows if key in metrics]


def trainer(strategy, epochs: int = 2, accumulate: int = 2, **kwargs) -> pl.Trainer:
    """A quiet CPU trainer: no checkpoints, bars, summary or validation unless asked."""
    options = dict(accelerator="cpu", devices=1, strategy=strategy, max_epochs=epochs,
                   accumulate_grad_batches=accumulate, logger=False,
                   enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=1)
    options.update(kwargs)
    return pl.Trainer(**options)


def plan_steps(batches_per_rank: Sequence[Sequence], accumulate: int, epochs: int,
               config: Optional[ClipConfig]) -> List[List]:
    """The cores of each optimizer step of a run, in Lightning's order: per epoch, cycles of
    `accumulate` micro-batches (the last one shorter where the epoch ends inside it), each
    rank's micro-batches of the cycle, each cut into its cores (`config` None: the
    micro-batch is one core)."""
    steps = []
    num_batches = len(batches_per_rank[0])
    for _ in range(epochs):
        for start in range(0, num_batches, accumulate):
            cores = []
            for batches in batches_per_rank:
                for batch in batches[start:start + accumulate]:
                    cores += [batch] if config is None else split_into_cores(batch, config)
            steps.append(cores)
    return steps


def core_gradients(module: pl.LightningModule, core) -> List[torch.Tensor]:
    """The gradient of the core's own mean loss, one tensor per parameter."""
    module.zero_grad(set_to_none=True)
    module.training_step(core, 0).backward()
    grads = [p.grad.detach().clone() for p in module.parameters()]
    module.zero_grad(set_to_none=True)
    return grads


def reference_sgd(module: pl.LightningModule, steps: List[List], mode: str,
                  max_norm: Optional[float], lr: float) -> List[ClipStats]:
    """Trains `module` in place, SGD on `clipped_average` of each step's cores; returns each
    step's statistics."""
    stats = []
    for cores in steps:
        update, step_stats = clipped_average([core_gradients(module, c) for c in cores], mode,
                                             max_norm)
        with torch.no_grad():
            for p, u in zip(module.parameters(), update):
                p.add_(u, alpha=-lr)
        stats.append(step_stats)
    return stats


def parameters(module: torch.nn.Module) -> List[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def expected_report(stats: ClipStats) -> Dict[str, float]:
    """The telemetry a per-core step should log, from the reference's statistics."""
    norms = stats.core_norms
    return {"train/num_cores": float(norms.numel()),
            "train/clip": 100.0 * float(stats.clipped_fraction),
            "train/clip_bound": float(stats.bound),
            "train/core_norm_min": float(norms.min()),
            "train/core_norm_mean": float(norms.mean()),
            "train/core_norm_max": float(norms.max())}
