"""Checkpoints of `PCCTrainer.run`: never half-written, completed on resume, and espnet2's
early-stopping rule applied to a resumed state.

- **Atomic saves.** While `atomic_torch_saves` is active, the `torch` that espnet2's trainer
  and `average_nbest_models` modules see is `torch` with an atomic `save`: `checkpoint.pth`,
  `<N>epoch.pth` and the averaged models are written under a hidden temp name beside the
  target, fsync'd and renamed (`espnet_pcc.fileio.atomic_path`).  A kill at any moment leaves
  the previous complete file.  `checkpoint.pth`, which holds the secret noise seed, is
  written readable by its owner only (`CHECKPOINT_MODE`).
- **Resume completion.** What a kill between two of espnet2's end-of-epoch writes left undone
  is completed (`complete_epoch_files`); stale temp files are removed (`remove_temp_files`).
- **Early stop.** `stopped_early` is espnet2's rule on the reporter's last epoch, so a
  resumed early-stopped run can end before training another epoch (`epochs_to_train`).
  espnet2's own `Trainer.run` does this from espnet 202611 on; on older releases (202511)
  `epochs_to_train` does it, so a resumed early-stopped run trains no epoch on either.

Checkpoints are read with ``weights_only=True``, as espnet2 202611's resume reads them
(`safe_torch_load`): everything the package puts in one is tensors and plain Python values.

`resumed_states`, `resumed_reporter` and `epochs_to_train` are what `PCCTrainer.run` does before
espnet2's loop.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import logging
import os
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from espnet2.train.reporter import Reporter
from espnet2.train.trainer import TrainerOptions
from packaging.version import InvalidVersion, Version

from espnet_pcc.fileio import atomic_path

CHECKPOINT = "checkpoint.pth"
#: checkpoint.pth is readable and writable by its owner only.
CHECKPOINT_MODE = 0o600

# The hidden temp files `atomic_path` writes beside a `.pth` target (fileio._temp_name).
_TEMP_PTH = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp\.pth$")

# The modules whose `torch.save` calls write the run's files.
_SAVING_MODULES = tuple(importlib.import_module(name) for name in (
    "espnet2.train.trainer", "espnet2.main_funcs.average_nbest_models"))


class _AtomicSaveTorch:
    """`torch` for espnet2's trainer modules during `PCCTrainer.run`: every attribute is
    torch's own, except that `save` to a path writes atomically and then tells `on_saved`."""

    def __init__(self, on_saved: Callable[[object, Path], None]):
        self._on_saved = on_saved

    def __getattr__(self, name: str):
        return getattr(torch, name)

    def save(self, obj, f, *args, **kwargs):
        if not isinstance(f, (str, os.PathLike)):
            return torch.save(obj, f, *args, **kwargs)
        with atomic_path(f) as tmp:
            if Path(f).name == CHECKPOINT:
                # It holds the secret noise seed (and the optimizer's state): its owner's
                # alone, set on the empty temp file before anything is written to it.
                os.chmod(tmp, CHECKPOINT_MODE)
            torch.save(obj, tmp, *args, **kwargs)
        self._on_saved(obj, Path(f))


@contextlib.contextmanager
def atomic_torch_saves(on_saved: Callable[[object, Path], None] = lambda obj, path: None):
    """Within the block, espnet2's trainer and n-best averaging write every file atomically."""
    replacement = _AtomicSaveTorch(on_saved)
    saved = [(module, module.torch) for module in _SAVING_MODULES]
    for module, _ in saved:
        module.torch = replacement
    try:
        yield
    finally:
        for module, original in saved:
            module.torch = original


def reporter_value_types() -> list:
    """The value types espnet2 202511's Reporter keeps in its state (numpy scalars from its
    means, timedelta for the epoch's time): plain data, allowed beside tensors when a
    checkpoint is read with ``weights_only=True``. (202611's Reporter stores floats.)"""
    import datetime

    import numpy as np

    return [np._core.multiarray.scalar, np.dtype, datetime.timedelta,
            *{type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_)}]


def load_checkpoint(path: Path) -> dict:
    """The checkpoint's states on CPU with ``weights_only=True`` (tensors and plain values
    only: nothing in it is executed); memory-mapped, so the tensors are read only if used."""
    with torch.serialization.safe_globals(reporter_value_types()):
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)  # pre-zip format


def _relink(link: Path, target: str) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


def complete_epoch_files(output_dir: Path, reporter: Reporter, model_state: dict,
                         options: TrainerOptions) -> None:
    """Redo what espnet2's `Trainer.run` does after writing `checkpoint.pth` at the end of the
    checkpoint's epoch N, in case a kill came in between: write `<N>epoch.pth` (= the
    checkpoint's `model`) if it is missing, point `latest.pth` and each
    `<phase>.<key>.best.pth` whose best epoch is N at it, and remove the epoch files of epochs
    before N that are neither among the n best nor N.  Idempotent."""
    epoch = reporter.get_epoch()
    if epoch < 1:
        return
    epoch_file = output_dir / f"{epoch}epoch.pth"
    if not epoch_file.exists():
        logging.warning(f"{epoch_file} is missing (the run stopped right after writing "
                        f"{CHECKPOINT}); writing it from {CHECKPOINT}")
        with atomic_path(epoch_file) as tmp:
            torch.save(model_state, tmp)
    _relink(output_dir / "latest.pth", epoch_file.name)
    criteria = [c for c in options.best_model_criterion if reporter.has(c[0], c[1])]
    for phase, key, mode in criteria:
        if reporter.get_best_epoch(phase, key, mode) == epoch:
            _relink(output_dir / f"{phase}.{key}.best.pth", epoch_file.name)
    keep = options.keep_nbest_models  # as in espnet2: an int, a list, or [] for [1]
    keep = keep if isinstance(keep, int) else max(keep or [1])
    nbests = set().union(*[set(reporter.sort_epochs(phase, key, mode)[:keep])
                           for phase, key, mode in criteria])
    for e in range(1, epoch):
        if e not in nbests:
            (output_dir / f"{e}epoch.pth").unlink(missing_ok=True)


def remove_temp_files(output_dir: Path) -> None:
    """Delete the temp files of writes that a kill interrupted (never a complete file)."""
    if output_dir.is_dir():
        for path in output_dir.iterdir():
            if _TEMP_PTH.match(path.name):
                path.unlink(missing_ok=True)


def stopped_early(reporter: Reporter, patience: Optional[int],
                  criterion: Sequence[str], log: bool = False) -> bool:
    """espnet2's early-stopping rule on the reporter's last epoch (False before any epoch)."""
    if patience is None or reporter.get_epoch() < 1:
        return False
    key1, key2, mode = criterion
    if not reporter.has(key1, key2):
        return False
    if log:
        return reporter.check_early_stopping(patience, key1, key2, mode)
    return reporter.get_epoch() - reporter.get_best_epoch(key1, key2, mode) > patience


def resumed_states(output_dir: Path, options: TrainerOptions) -> Optional[dict]:
    """The checkpoint a ``--resume`` continues (`load_checkpoint`), None where the run starts
    afresh.  Read here as well as in espnet2's resume (memory-mapped: cheap) for what
    `PCCTrainer.run` checks and completes before espnet2's loop."""
    checkpoint = output_dir / CHECKPOINT
    if options.resume and checkpoint.exists():
        return load_checkpoint(checkpoint)
    return None


def resumed_reporter(output_dir: Path, states: Optional[dict], options: TrainerOptions,
                     writes_files: bool) -> Reporter:
    """The reporter the run starts from: that of the resumed checkpoint's `states` (its
    epochs), else an empty one. The process that writes files first removes the temp files of
    interrupted writes and completes the last epoch's files."""
    reporter = Reporter()
    if writes_files:
        remove_temp_files(output_dir)
    if states is not None:
        reporter.load_state_dict(states["reporter"])
        if writes_files:
            complete_epoch_files(output_dir, reporter, states["model"], options)
    return reporter


# The first ESPnet release whose Trainer.run skips its loop when a resumed run had already
# stopped early (before it, the check came only after an epoch: one more was trained).
UPSTREAM_RESUMED_EARLY_STOP = Version("202611")


@functools.lru_cache(maxsize=None)
def espnet_release() -> Optional[Version]:
    """The installed espnet's version (None: unknown, e.g. a source tree never installed)."""
    try:
        return Version(version("espnet"))
    except (PackageNotFoundError, InvalidVersion):
        return None


def espnet_skips_resumed_early_stop() -> bool:
    """Whether espnet2's own Trainer.run ends a resumed early-stopped run without an epoch.
    An unknown version is taken as a current one (a development checkout)."""
    release = espnet_release()
    return release is None or release >= UPSTREAM_RESUMED_EARLY_STOP


def epochs_to_train(reporter: Reporter, options: TrainerOptions,
                    nothing_to_train: Callable[[str], None]) -> TrainerOptions:
    """``options`` for espnet2's loop. When the resumed run had stopped early: on a release
    whose loop checks that itself (`espnet_skips_resumed_early_stop`), unchanged, so the check
    is made once, by espnet2; before it, with max_epoch the last epoch (espnet2 would train
    epoch N+1 before checking). Where nothing is left to train, ``nothing_to_train`` is told
    why."""
    if stopped_early(reporter, options.patience, options.early_stopping_criterion,
                     log=not espnet_skips_resumed_early_stop()):
        logging.info(f"The training had stopped early at epoch {reporter.get_epoch()}: "
                     "nothing to train (raise --patience to continue)")
        nothing_to_train("stopped early before: nothing to train")
        if espnet_skips_resumed_early_stop():
            return options
        return dataclasses.replace(options, max_epoch=reporter.get_epoch())
    if reporter.get_epoch() >= options.max_epoch:
        nothing_to_train("finished before: nothing to train")
    return options
