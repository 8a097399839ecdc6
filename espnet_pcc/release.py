"""What a noisy run releases besides its noisy steps, kept to what the accountant covers.

The accountant (`espnet_pcc.accounting`) covers the model parameters, each the result of noisy
steps.  A run writes more than its parameters; README "Privacy" lists what is released and
covered by epsilon, released and not covered, and not released.  With noise this module keeps
the rest out of the released files:

- **Running statistics.**  BatchNorm (and any torch norm layer with ``track_running_stats``)
  updates its running mean and variance from every training forward, without noise, and model
  files keep them.  With noise such a layer is refused before anything is written
  (`check_running_statistics`, called by `PCCASRTask.build_model`) unless
  ``clip_conf.running_stats: freeze``: the layer then always normalises with its initial
  statistics (mean 0, variance 1), which training never updates
  (`freeze_running_statistics`, after every ``model.train()`` of the per-core loop), so it is
  a learned per-channel scale and shift.  The model keeps its layers and its state-dict
  keys, so stock ESPnet loads it and decodes with what was trained.  (Opacus replaces
  BatchNorm by GroupNorm instead; a model changed so would not load into the model that
  ESPnet builds from config.yaml.)
- **Any other buffer.**  `BufferGuard`: with noise, a step after which a buffer that model
  files keep differs from its value at the epoch's start stops the run with one line,
  before the epoch's files are written (a counter of training forwards, say, counts the
  secret non-empty cores of the Poisson sampler).
- **Logs.**  `ReleasedReporter`: with noise, unless ``clip_conf.log_train_stats: true``,
  train.log, tensorboard, wandb and the checkpoint's reporter get only `RELEASED_KEYS`:
  what is private (a function of the noisy update) or does not depend on the data.  espnet2's
  `Reporter` adds `GPU_MEMORY_KEY` to every phase's epoch where CUDA is initialised, the
  process's peak GPU memory so far, which follows the largest secret batch: the same runs
  leave it out (`ReleasedEpochReporter`, the reporter espnet2's `Trainer.run` builds within
  `released_epoch_reporter`).
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Tuple

import espnet2.train.trainer
import torch
from espnet2.train.reporter import Reporter

from espnet_pcc import accounting
from espnet_pcc.clip_config import ClipConfig, ClipConfigError

#: The training keys a noisy run logs without clip_conf.log_train_stats: the norm of the
#: noisy update (post-processing of the noisy step), the fixed bound C, the noise's standard
#: deviation σC/D (D fixed), the loss scale (AMP is refused with noise: 1), epsilon, and the
#: learning rates (`optim<i>_lr<j>`, by `LR_PREFIX`).
RELEASED_KEYS = frozenset({"grad_norm", "clip_bound", "noise_std", "loss_scale", "dp_epsilon",
                           "dp_epsilon_unamplified"})
LR_PREFIX = "optim0_lr"


def is_released(key: str) -> bool:
    """Whether a noisy run without clip_conf.log_train_stats logs the training key `key`."""
    return key in RELEASED_KEYS or key.startswith(LR_PREFIX)


# -- running statistics -----------------------------------------------------------------------
def has_running_statistics(module: torch.nn.Module) -> bool:
    """A torch norm layer that updates running statistics in training (BatchNorm1d/2d/3d,
    SyncBatchNorm, their lazy forms, InstanceNorm with track_running_stats)."""
    return bool(getattr(module, "track_running_stats", False)) and isinstance(
        getattr(module, "running_mean", None), torch.Tensor)


def modules_with_running_statistics(model: torch.nn.Module) -> List[Tuple[str, torch.nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if has_running_statistics(m)]


def check_running_statistics(model: torch.nn.Module, config: ClipConfig) -> None:
    """With noise, the model's layers with running statistics need running_stats: freeze.

    Raises:
        ClipConfigError: naming the first such layer (one line).
    """
    if config.noise_multiplier <= 0 or config.running_stats == "freeze":
        return
    found = modules_with_running_statistics(model)
    if found:
        name, module = found[0]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise ClipConfigError(
            f"clip_conf.noise_multiplier={config.noise_multiplier:g} with {name} "
            f"({type(module).__name__}){more}: its running statistics would be computed from "
            "the training data without noise and saved in every model file; set "
            "clip_conf.running_stats: freeze (normalise with fixed statistics) or use a "
            "model without it")


def freeze_running_statistics(model: torch.nn.Module) -> None:
    """Every layer with running statistics in eval mode: it normalises with its stored
    statistics and does not update them.  Called after every ``model.train()``."""
    for _, module in modules_with_running_statistics(model):
        module.eval()


# -- buffers ------------------------------------------------------------------------------------
class BufferGuard:
    """The buffers that model files keep (the state dict's), as they were when built; `check`
    raises where one has changed since."""

    def __init__(self, model: torch.nn.Module):
        kept = set(model.state_dict(keep_vars=True))
        self._model = model
        self._saved = {name: b.detach().clone() for name, b in model.named_buffers()
                       if name in kept}

    def check(self, sigma: float) -> None:
        """Raises:
            ClipConfigError: a kept buffer changed in a training step (one line)."""
        for name, buffer in self._model.named_buffers():
            saved = self._saved.get(name)
            if saved is not None and not torch.equal(buffer, saved):
                raise ClipConfigError(
                    f"clip_conf.noise_multiplier={sigma:g}: the model's buffer {name} changed in "
                    "a training step; it would reach the model files without noise (a layer "
                    "with running statistics needs clip_conf.running_stats: freeze; another "
                    "buffer that training updates cannot be trained with noise)")


# -- logs ---------------------------------------------------------------------------------------
class ReleasedReporter:
    """espnet2's SubReporter for a noisy run's training epoch, passing on only the keys
    `is_released` accepts; timings are not measured (they follow the secret batch sizes, and
    an empty core of the Poisson sampler takes no time).  Everything else is the reporter's."""

    def __init__(self, reporter: Any):
        self._reporter = reporter
        self._registered = False  # in the current iteration

    def register(self, stats: Mapping[str, Any], weight: Any = None) -> None:
        released = {k: v for k, v in stats.items() if is_released(k)}
        if released:
            self._reporter.register(released, weight)
            self._registered = True

    def next(self) -> None:
        """Closes the iteration where it registered something (espnet2's reporter counts an
        iteration at its first registration, and fills NaN for its other keys at `next`)."""
        if self._registered:
            self._reporter.next()
        self._registered = False

    @contextlib.contextmanager
    def measure_time(self, name: str) -> Iterator[float]:
        yield time.perf_counter()

    def measure_iter_time(self, iterable: Iterable, name: str) -> Iterator:
        return iter(iterable)

    def __getattr__(self, name: str):
        return getattr(self.__dict__["_reporter"], name)


#: What espnet2's Reporter.finish_epoch adds to each phase's epoch where CUDA is initialised:
#: torch.cuda.max_memory_reserved, the peak of the whole process so far (in every phase, the
#: training's peak too).
GPU_MEMORY_KEY = "gpu_max_cached_mem_GB"


class ReleasedEpochReporter(Reporter):
    """espnet2's Reporter without `GPU_MEMORY_KEY` in any epoch of any phase: not in
    train.log, tensorboard, wandb, the plots or the checkpoint's reporter (also not from a
    resumed checkpoint that has it)."""

    def finish_epoch(self, sub_reporter: Any) -> None:
        super().finish_epoch(sub_reporter)
        self.stats[self.epoch][sub_reporter.key].pop(GPU_MEMORY_KEY, None)

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for phases in self.stats.values():
            for stats in phases.values():
                stats.pop(GPU_MEMORY_KEY, None)


@contextlib.contextmanager
def released_epoch_reporter(active: bool) -> Iterator[None]:
    """Within the block, where `active` (noise without clip_conf.log_train_stats), the
    reporter espnet2's `Trainer.run` builds is a `ReleasedEpochReporter` (its module's
    `Reporter` name, swapped back after; espnet2's files are not changed)."""
    if not active:
        yield
        return
    module = espnet2.train.trainer
    original = module.Reporter
    module.Reporter = ReleasedEpochReporter
    try:
        yield
    finally:
        module.Reporter = original


class NoisyEpoch:
    """A noisy run's training epoch, besides its noisy steps (`PCCTrainer.train_one_epoch`):
    its reporter (`ReleasedReporter` unless clip_conf.log_train_stats), the privacy history
    of every step (`accounting.record_step`, kept in the optimizer's state, so in the
    checkpoint), the buffer check after every step, and the epoch's epsilon.

    Raises (at construction):
        ClipConfigError: the optimizer's history is of another privacy unit or N
            (`PCCTrainer.run` checks the checkpoint's before training; this covers a wrapper
            that keeps its history elsewhere in its state).
    """

    def __init__(self, model: torch.nn.Module, optimizer: Any,
                 privacy: accounting.PrivacyAccounting, config: ClipConfig, reporter: Any):
        accounting.check_history(optimizer.privacy_history, privacy.mechanism)
        self.optimizer, self.privacy, self.sigma = optimizer, privacy, config.noise_multiplier
        self.reporter = reporter if config.log_train_stats else ReleasedReporter(reporter)
        self._buffers = BufferGuard(model)

    def after_step(self, epoch: int) -> None:
        """Records the step just taken and checks the buffers."""
        self.optimizer.privacy_history = accounting.record_step(
            self.optimizer.privacy_history, self.privacy.mechanism, epoch,
            self.optimizer.steps - 1)
        self._buffers.check(self.sigma)

    def epsilon(self) -> Dict[str, float]:
        """The reporter entry of the epsilon spent so far, every segment composed."""
        return {self.privacy.reporter_key: accounting.history_epsilon(
            self.optimizer.privacy_history, self.privacy.delta)}


__all__ = ["BufferGuard", "GPU_MEMORY_KEY", "NoisyEpoch", "RELEASED_KEYS",
           "ReleasedEpochReporter", "ReleasedReporter", "check_running_statistics",
           "freeze_running_statistics", "has_running_statistics", "is_released",
           "modules_with_running_statistics", "released_epoch_reporter"]
