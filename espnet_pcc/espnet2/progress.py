"""Progress of `PCCTrainer.run` on stderr: one line per epoch, once its checkpoint is on disk.

``[progress] <output_dir> epoch N/M loss L valid_loss V S s/epoch ETA T`` (`format_progress`);
the recipes' stage script shows these lines (it matches `PROGRESS_PREFIX`).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional, TextIO

from espnet2.train.reporter import Reporter

from espnet_pcc.espnet2.checkpoints import CHECKPOINT, stopped_early

#: Every progress line starts with this (the recipes' stage script shows these lines).
PROGRESS_PREFIX = "[progress] "


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _value(stats: dict, phase: str, key: str) -> str:
    value = stats.get(phase, {}).get(key)
    return "-" if value is None else f"{float(value):.3f}"


def format_progress(output_dir, reporter: Reporter, max_epoch: int,
                    seconds_per_epoch: Optional[float], eta: Optional[float],
                    note: str = "") -> str:
    """One progress line (no newline), e.g.::

        [progress] exp/asr_pcc epoch 3/20 loss 45.210 valid_loss 50.372 12.3 s/epoch ETA 3m29s

    `loss` / `valid_loss` are the epoch's mean train / validation loss ("-" if not
    reported); seconds per epoch and the ETA are "-" when unknown (nothing trained in this
    process); ETA = the mean seconds per epoch of this process × the epochs left.  A `note`
    is appended after "; ": "early stop" (this epoch ends the run), or, on a resume that
    trains nothing, "stopped early before: nothing to train" / "finished before: nothing to
    train".
    """
    epoch = reporter.get_epoch()
    stats = reporter.stats.get(epoch, {}) if epoch >= 1 else {}
    speed = "-" if seconds_per_epoch is None else f"{seconds_per_epoch:.1f}"
    line = (f"{PROGRESS_PREFIX}{output_dir} epoch {epoch}/{max_epoch} "
            f"loss {_value(stats, 'train', 'loss')} valid_loss {_value(stats, 'valid', 'loss')} "
            f"{speed} s/epoch ETA {'-' if eta is None else _duration(eta)}")
    return f"{line}; {note}" if note else line


class EpochProgress:
    """Prints a progress line when an epoch's checkpoint is on disk (`on_saved` hook)."""

    def __init__(self, output_dir, options, start_epoch: int, stream: Optional[TextIO] = None):
        self.output_dir = output_dir
        self.options = options
        self.start_epoch = start_epoch
        self.stream = stream
        self.started = time.perf_counter()
        self.last = self.started

    def print(self, line: str) -> None:
        print(line, file=self.stream or sys.stderr, flush=True)

    def nothing_to_train(self, reporter: Reporter, note: str) -> None:
        """The one line of a resume that trains no epoch (``note`` says why)."""
        self.print(format_progress(self.output_dir, reporter, self.options.max_epoch, None, 0,
                                   note))

    def __call__(self, obj, path: Path) -> None:
        if path.name != CHECKPOINT:
            return
        reporter = Reporter()
        reporter.load_state_dict(obj["reporter"])
        now = time.perf_counter()
        epoch, max_epoch = reporter.get_epoch(), self.options.max_epoch
        mean = (now - self.started) / max(1, epoch - self.start_epoch + 1)
        note = ""
        left = max_epoch - epoch
        if stopped_early(reporter, self.options.patience, self.options.early_stopping_criterion):
            note, left = "early stop", 0
        self.print(format_progress(self.output_dir, reporter, max_epoch, now - self.last,
                                   mean * left, note))
        self.last = now
