"""What a noisy espnet2 run logs: its reporters, kept to `espnet_pcc.core.release.RELEASED_KEYS`.

With noise, unless ``clip_conf.log_train_stats: true``, train.log, tensorboard, wandb and the
checkpoint's reporter get only the released keys (`ReleasedReporter`).  espnet2's `Reporter`
adds `GPU_MEMORY_KEY` to every phase's epoch where CUDA is initialised, the process's peak GPU
memory so far, which follows the largest secret batch: the same runs leave it out
(`ReleasedEpochReporter`, the reporter espnet2's `Trainer.run` builds within
`released_epoch_reporter`).  `NoisyEpoch` is the rest of a noisy epoch besides its steps.
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Dict, Iterable, Iterator, Mapping

import espnet2.train.trainer
import torch
from espnet2.train.reporter import Reporter

from espnet_pcc.core import accounting
from espnet_pcc.core.clip_config import ClipConfig
from espnet_pcc.core.release import BufferGuard, is_released


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


__all__ = ["GPU_MEMORY_KEY", "NoisyEpoch", "ReleasedEpochReporter", "ReleasedReporter",
           "released_epoch_reporter"]
