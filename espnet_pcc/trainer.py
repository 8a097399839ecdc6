"""PCCTrainer: espnet2's Trainer with per-core clipping.

Cores of one optimizer step = (DDP rank) × (`accum_grad` micro-batch) ×
(`num_cores` split of the micro-batch; per_example: one per utterance;
core_by speaker: one speaker's run of utterances).  For each core the trainer
runs forward and backward on that core's own mean loss (under DDP `no_sync`,
so no gradient is communicated per micro-batch), hands the gradient to
`PerCoreClipOptimizer.add_core()`, and every `accum_grad` micro-batches
reduces the clipped sum over ranks (one all-reduce, with the noise where
clip_conf.noise_multiplier asks for it) and steps.  With noise, the epsilon
spent so far is registered as `dp_epsilon` at each epoch's last step.  Under DDP
the model's buffers (BatchNorm statistics) are averaged over ranks after every
step and at the epoch's end (`espnet_pcc.distributed.average_buffers`), since
`no_sync` forwards stop DDP's own buffer broadcast.

`clip: global` and `clip: none` run espnet2's own `train_one_epoch` unchanged
(with `grad_clip` = C, or +inf for none): they *are* the baseline.

The clipping settings arrive parsed: `PCCASRTask.check_args` builds the run's
`ClipConfig` once, `build_options` puts it on the trainer options
(`PCCTrainerOptions.clip_config`), and every epoch reads it from there.

`run` (every clip mode, `global`/`none` included) is espnet2's `Trainer.run` with three
additions around it, none inside its loop:

- **Checkpoints are never half-written.** While it runs, the `torch` that espnet2's trainer
  and `average_nbest_models` modules see is `torch` with an atomic `save`: `checkpoint.pth`,
  `<N>epoch.pth` and the averaged models are written under a hidden temp name beside the
  target, fsync'd and renamed (`espnet_pcc.fileio.atomic_path`).  A kill at any moment leaves
  the previous complete file.  On `--resume`, what a kill between two of espnet2's end-of-epoch
  writes left undone is completed first: `<N>epoch.pth` of the checkpoint's epoch N (the same
  state dict as the checkpoint's `model`), the `latest.pth` and `*.best.pth` links; stale temp
  files are removed.
- **Resume after early stopping trains nothing.** espnet2 202511 checks `patience` only after
  an epoch, so a resumed early-stopped run trained one more epoch; now the check is also made
  on the resumed state (with the resumed run's `patience`, as ESPnet's current trainer does).
- **Progress on stderr**: one line per epoch, once its checkpoint is on disk (rank 0):
  ``[progress] <output_dir> epoch N/M loss L valid_loss V S s/epoch ETA T`` (see
  `format_progress`).

NOTE: `train_one_epoch` and `_step` mirror the loop of espnet2's
`Trainer.train_one_epoch` (espnet2/train/trainer.py) in espnet 202511, the version
pinned in constraints.txt: iterator_stop, no_forward_run, reporter keys, grad_noise,
the non-finite skip, GradScaler, schedulers.  Re-read that loop when upgrading ESPnet.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import logging
import math
import os
import re
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, TextIO, Tuple

import torch
from espnet2.schedulers.abs_scheduler import AbsBatchStepScheduler, AbsScheduler
from espnet2.torch_utils.add_gradient_noise import add_gradient_noise
from espnet2.torch_utils.device_funcs import to_device
from espnet2.torch_utils.recursive_op import recursive_average
from espnet2.train.distributed_utils import DistributedOption
from espnet2.train.reporter import Reporter, SubReporter
from espnet2.train.trainer import Trainer, TrainerOptions, autocast, autocast_args
from espnet2.utils.build_dataclass import build_dataclass
from espnet2.utils.nested_dict_action import NestedDictAction

from espnet_pcc import accounting, registry
from espnet_pcc.clip_config import DEFAULT_CLIP, DEFAULT_CLIP_CONF, ClipConfig
from espnet_pcc.clipping import ClipMode, grad_norm
from espnet_pcc.cores import batch_size, split_batch, split_by_speaker
from espnet_pcc.distributed import average_buffers
from espnet_pcc.fileio import atomic_path
from espnet_pcc.optim import CoreClippingOptimizer


@dataclasses.dataclass
class PCCTrainerOptions(TrainerOptions):
    clip: str  # as given (config.yaml keeps it)
    clip_conf: dict  # as given
    clip_config: ClipConfig  # both, validated: what the trainer uses
    # core_by speaker: utterance -> speaker of the training set (TrainArgs.speaker_of)
    speaker_of: Optional[dict] = None


def add_clip_arguments(parser: argparse.ArgumentParser) -> None:
    """`--clip` and `--clip_conf` (shown by --print_config with their defaults)."""
    group = parser.add_argument_group("Per-core clipping related")
    group.add_argument("--clip", type=str, default=DEFAULT_CLIP,
                       help="Gradient clipping: " + ", ".join(m.value for m in ClipMode)
                       + ". global = ESPnet's --grad_clip on the averaged gradient.")
    group.add_argument("--clip_conf", action=NestedDictAction, default=dict(DEFAULT_CLIP_CONF),
                       help="max_norm: C (per_core, per_example; global: overrides "
                       "--grad_clip); num_cores: cores per micro-batch; noise_multiplier: "
                       "sigma, noise sigma*C on the sum of clipped cores; delta: of the "
                       "reported (epsilon, delta), default 1/N; target_quantile, bound_lr, "
                       "initial_bound: C follows a quantile of the core norms; core_by: "
                       "position | speaker; utt2spk: for core_by speaker")
    group.add_argument("--clip_wrapper", type=str, default=registry.PER_CORE_CLIP,
                       help="the optimizer wrapper of the per-core modes: a name registered "
                       f"in the {registry.OPTIMIZERS} entry-point group")


def effective_grad_clip(config: ClipConfig, grad_clip: float) -> float:
    """ESPnet's grad_clip for the modes that run the stock loop.

    none → +inf (clip_grad_norm_ then only measures); global → clip_conf.max_norm
    when given, else --grad_clip as in any ESPnet config.
    """
    if config.mode is ClipMode.NONE:
        return math.inf
    if config.mode is ClipMode.GLOBAL and config.max_norm is not None:
        return config.max_norm
    return grad_clip


def epsilon_spent(config: ClipConfig, steps: int, steps_per_epoch: int) -> float:
    """The epsilon at `config.delta` after `steps` noisy steps (espnet_pcc.accounting:
    Poisson approximation with q = 1/steps_per_epoch, utterance-level).  PCCASRTask sets
    delta (default 1/N); a trainer driven without it falls back to 1e-5."""
    return accounting.epsilon(config.noise_multiplier,
                              accounting.sampling_rate(max(steps_per_epoch, 1)), steps,
                              config.delta if config.delta is not None else 1e-5)


def _forward(model: torch.nn.Module, batch: Dict) -> Tuple[torch.Tensor, Dict, torch.Tensor]:
    """model(**batch) as (loss, stats, weight), for both ESPnet return styles."""
    retval = model(**batch)
    if isinstance(retval, dict):
        if retval.get("optim_idx") not in (None, 0):
            raise RuntimeError("per-core clipping supports a single optimizer (optim_idx=0)")
        loss, stats, weight = retval["loss"], retval["stats"], retval["weight"]
    else:
        loss, stats, weight = retval
    return loss, {k: v for k, v in stats.items() if v is not None}, weight


def _weighted_mean(per_core: List[Tuple[Dict, torch.Tensor]]) -> Tuple[Dict, torch.Tensor]:
    """Stats of the micro-batch from its cores' stats, weighted by utterance count."""
    if len(per_core) == 1:
        return per_core[0]
    total = sum(w for _, w in per_core)
    keys = per_core[0][0].keys()
    return {k: sum(s[k] * w for s, w in per_core) / total for k in keys}, total


# ---------------------------------------------------------------------------------------------
# Around espnet2's Trainer.run: atomic checkpoints, resume completion, early stop, progress.

#: Every progress line starts with this (the recipes' stage script shows these lines).
PROGRESS_PREFIX = "[progress] "

CHECKPOINT = "checkpoint.pth"

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


def _load_checkpoint(path: Path) -> dict:
    """The checkpoint's states on CPU; memory-mapped, so the tensors are read only if used."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except RuntimeError as e:
        if "mmap" not in str(e):
            raise
        return torch.load(path, map_location="cpu", weights_only=False)  # pre-zip format


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


class PCCTrainer(Trainer):
    """Trainer whose `train_one_epoch` clips per core (see the module docstring)."""

    @classmethod
    def build_options(cls, args: argparse.Namespace) -> PCCTrainerOptions:
        """The trainer options, carrying `args.clip_config` and `args.speaker_of` (both set
        by PCCASRTask.check_args)."""
        if not isinstance(getattr(args, "clip_config", None), ClipConfig):
            raise ValueError("args.clip_config is not set: PCCASRTask.check_args(args) "
                             "builds it from --clip / --clip_conf")
        if args.clip_config.core_by == "speaker" and getattr(args, "speaker_of", None) is None:
            raise ValueError("args.speaker_of is not set: PCCASRTask.check_args(args) reads "
                             "it from utt2spk for clip_conf.core_by=speaker")
        options = build_dataclass(PCCTrainerOptions, args)
        options.grad_clip = effective_grad_clip(options.clip_config, options.grad_clip)
        return options

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        add_clip_arguments(parser)

    @classmethod
    def run(cls, model, optimizers, schedulers, train_iter_factory, valid_iter_factory,
            plot_attention_iter_factory, trainer_options, distributed_option) -> None:
        """espnet2's `Trainer.run` with atomic checkpoints, resume completion, no epoch after
        a resumed early stop, and progress lines (see the module docstring)."""
        output_dir = Path(trainer_options.output_dir)
        writes_files = not distributed_option.distributed or distributed_option.dist_rank == 0
        checkpoint = output_dir / CHECKPOINT
        reporter = Reporter()
        if writes_files:
            remove_temp_files(output_dir)
        if trainer_options.resume and checkpoint.exists():
            # Read here as well as in espnet2's resume (memory-mapped: cheap) for the
            # reporter's epochs and the model state of the last epoch.
            states = _load_checkpoint(checkpoint)
            reporter.load_state_dict(states["reporter"])
            if writes_files:
                complete_epoch_files(output_dir, reporter, states["model"], trainer_options)
            del states
        progress = EpochProgress(output_dir, trainer_options, reporter.get_epoch() + 1)
        if stopped_early(reporter, trainer_options.patience,
                         trainer_options.early_stopping_criterion, log=True):
            # espnet2 would train epoch N+1 before checking: end the loop before it starts.
            logging.info(f"The training had stopped early at epoch {reporter.get_epoch()}: "
                         "nothing to train (raise --patience to continue)")
            if writes_files:
                progress.print(format_progress(output_dir, reporter, trainer_options.max_epoch,
                                               None, 0, "stopped early before: nothing to train"))
            trainer_options = dataclasses.replace(trainer_options,
                                                  max_epoch=reporter.get_epoch())
        elif writes_files and reporter.get_epoch() >= trainer_options.max_epoch:
            progress.print(format_progress(output_dir, reporter, trainer_options.max_epoch,
                                           None, 0, "finished before: nothing to train"))
        with atomic_torch_saves(progress if writes_files else (lambda obj, path: None)):
            super().run(
                model=model, optimizers=optimizers, schedulers=schedulers,
                train_iter_factory=train_iter_factory, valid_iter_factory=valid_iter_factory,
                plot_attention_iter_factory=plot_attention_iter_factory,
                trainer_options=trainer_options, distributed_option=distributed_option)

    @classmethod
    def train_one_epoch(
        cls,
        model: torch.nn.Module,
        iterator: Iterable[Tuple[List[str], Dict[str, torch.Tensor]]],
        optimizers: Sequence[torch.optim.Optimizer],
        schedulers: Sequence[Optional[AbsScheduler]],
        scaler: Optional[torch.amp.GradScaler],
        reporter: SubReporter,
        summary_writer,
        options: PCCTrainerOptions,
        distributed_option: DistributedOption,
    ) -> bool:
        config = options.clip_config
        if not config.wraps_optimizer:
            return super().train_one_epoch(
                model=model, iterator=iterator, optimizers=optimizers,
                schedulers=schedulers, scaler=scaler, reporter=reporter,
                summary_writer=summary_writer, options=options,
                distributed_option=distributed_option)
        if len(optimizers) != 1 or not isinstance(optimizers[0], CoreClippingOptimizer):
            raise RuntimeError(f"clip: {config.mode.value} needs exactly one optimizer wrapped "
                               "in a per-core wrapper (add_core, reduce_cores, gather_pending; "
                               "build it with espnet_pcc's task)")
        if isinstance(model, torch.nn.DataParallel):
            raise RuntimeError(f"clip: {config.mode.value} does not support DataParallel "
                               "(ngpu > 1 in one process); use DDP (--multiprocessing_distributed true)")
        optimizer = optimizers[0]
        scheduler = schedulers[0]
        distributed = distributed_option.distributed
        device = "cuda" if options.ngpu > 0 else "cpu"
        no_sync = model.no_sync if isinstance(
            model, torch.nn.parallel.DistributedDataParallel) else nullcontext
        try:
            epoch_length = len(iterator)
        except TypeError:
            epoch_length = None
        log_interval = options.log_interval
        if log_interval is None:
            log_interval = 100 if epoch_length is None else max(epoch_length // 20, 10)
        if config.noise_multiplier > 0 and epoch_length is None:
            logging.warning("the iterator has no length: dp_epsilon is not reported")
        model.train()
        all_steps_are_invalid = True
        # Ranks may hold different numbers of batches: stop all when one runs out.
        iterator_stop = torch.tensor(0).to(device)
        start_time = time.perf_counter()
        for iiter, (utt_id, batch) in enumerate(
            reporter.measure_iter_time(iterator, "iter_time"), 1
        ):
            assert isinstance(batch, dict), type(batch)
            if distributed:
                torch.distributed.all_reduce(iterator_stop, torch.distributed.ReduceOp.SUM)
                if iterator_stop > 0:
                    break
            batch["utt_id"] = utt_id
            batch = to_device(batch, device)
            if options.no_forward_run:
                all_steps_are_invalid = False
                continue

            if config.core_by == "speaker":
                cores = split_by_speaker(batch, options.speaker_of)
            else:
                cores = split_batch(batch, config.cores_per_micro_batch(batch_size(batch)))
            loss_scale = scaler.get_scale() if scaler is not None else 1.0
            forward_time = backward_time = 0.0
            per_core = []
            for core in cores:
                with no_sync():
                    tic = time.perf_counter()
                    with autocast(scaler is not None, **autocast_args):
                        loss, stats, weight = _forward(model, core)
                    toc = time.perf_counter()
                    (scaler.scale(loss) if scaler is not None else loss).backward()
                del loss
                optimizer.add_core(loss_scale=loss_scale)
                backward_time += time.perf_counter() - toc
                forward_time += toc - tic
                per_core.append((stats, weight))
            stats, weight = _weighted_mean(per_core)
            if distributed:
                stats, weight = recursive_average(stats, weight, distributed)
            reporter.register(stats, weight)
            reporter.register({"forward_time": forward_time, "backward_time": backward_time})

            if iiter % options.accum_grad == 0:
                if cls._step(model, optimizer, scheduler, scaler, reporter, options):
                    all_steps_are_invalid = False
                if distributed:
                    average_buffers(model)  # no_sync stopped DDP's buffer broadcast
                if (config.noise_multiplier > 0 and epoch_length is not None
                        and iiter + options.accum_grad > epoch_length):
                    # At the epoch's last step, once: nanmean makes it the epoch's value.
                    reporter.register({"dp_epsilon": epsilon_spent(
                        config, optimizer.steps, epoch_length // options.accum_grad)})
                reporter.register({
                    **{f"optim0_lr{j}": pg["lr"] for j, pg in enumerate(optimizer.param_groups)
                       if "lr" in pg},
                    "train_time": time.perf_counter() - start_time,
                })
                start_time = time.perf_counter()

            reporter.next()
            if iiter % log_interval == 0:
                logging.info(reporter.log_message(-log_interval))
                if summary_writer is not None:
                    reporter.tensorboard_add_scalar(summary_writer, -log_interval)
                if options.use_wandb:
                    reporter.wandb_log()
        else:
            if distributed:
                iterator_stop.fill_(1)
                torch.distributed.all_reduce(iterator_stop, torch.distributed.ReduceOp.SUM)
        if distributed:
            # Cores of an unfinished accum_grad cycle go into the checkpoint, which rank 0
            # alone writes: rank 0 takes every rank's over (see gather_pending).  Their
            # forwards moved the buffers after the last step: equal again before validation
            # and the checkpoint.
            optimizer.gather_pending()
            average_buffers(model)
        return all_steps_are_invalid

    @classmethod
    def _step(cls, model: torch.nn.Module, optimizer: CoreClippingOptimizer,
              scheduler: Optional[AbsScheduler], scaler: Optional[torch.amp.GradScaler],
              reporter: SubReporter, options: PCCTrainerOptions) -> bool:
        """Reduce the cores, step (unless non-finite), zero; True if it stepped."""
        reduction = optimizer.reduce_cores()
        if scaler is not None:
            scaler.unscale_(optimizer)
        if options.grad_noise:
            add_gradient_noise(model, reporter.get_total_count(),
                               duration=100, eta=1.0, scale_factor=0.55)
        if reduction.update_norm is not None and scaler is None and not options.grad_noise:
            # One core: ‖u‖ is known from its statistics, which saves a pass over u.
            update_norm = torch.tensor(reduction.update_norm)
        else:
            update_norm = grad_norm([p.grad for p in model.parameters() if p.grad is not None])
        reporter.register({"nonfinite_cores": float(reduction.nonfinite_cores)})
        stepped = bool(torch.isfinite(update_norm))
        if not stepped:
            logging.warning(f"The grad norm is {update_norm} ({reduction.nonfinite_cores} of "
                            f"{reduction.num_cores} cores non-finite). Skipping updating the model.")
            if scaler is not None:
                # GradScaler found the inf in unscale_(): step() skips, update() backs off.
                scaler.step(optimizer)
                scaler.update()
        else:
            reporter.register({
                "grad_norm": update_norm,
                **reduction.as_report(),
                "loss_scale": scaler.get_scale() if scaler is not None else 1.0,
            })
            with reporter.measure_time("optim_step_time"):
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                if isinstance(scheduler, AbsBatchStepScheduler):
                    scheduler.step()
        optimizer.zero_grad()
        return stepped
