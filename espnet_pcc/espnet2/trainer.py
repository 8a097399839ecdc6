"""PCCTrainer: espnet2's Trainer with per-core clipping.

Cores of one optimizer step = (DDP rank) × (`accum_grad` micro-batch) ×
(`num_cores` split of the micro-batch; per_example: one per utterance;
core_by speaker: one speaker's run of utterances).  For each core the trainer
runs forward and backward on that core's own mean loss (under DDP `no_sync`,
so no gradient is communicated per micro-batch), hands the gradient to
the wrapper's `add_core()` (`espnet_pcc.core.optimizers.CoreClippingOptimizer`), and every
`accum_grad` micro-batches reduces the clipped sum over ranks (one all-reduce, with the noise where
clip_conf.noise_multiplier asks for it) and steps.  With noise
(`espnet_pcc.espnet2.release.NoisyEpoch`) an epoch ends on a step (cores left over from its last
`accum_grad` cycle are a step of their own), every step is recorded in the optimizer's privacy
history, the buffers are checked after every step, only released keys are logged unless
clip_conf.log_train_stats, and the epsilon spent so far is registered once at the epoch's end, as
`dp_epsilon` (Poisson sampling) or `dp_epsilon_unamplified` (espnet_pcc.core.accounting).  With
clip_conf.running_stats: freeze the layers with running statistics stay in eval mode.  Under
`--batch_sampler poisson` an iterator item is one hashed core (per_example: a micro-batch), not
split again, a step is `items_per_step` items, and an empty slot adds no core (docs/design.md,
'Cores under the Poisson sampler (noise)').  Under DDP the model's buffers (BatchNorm statistics)
are averaged over ranks after every step and at the epoch's end
(`espnet_pcc.core.distributed.average_buffers`), since `no_sync` forwards stop DDP's own buffer
broadcast.

`clip: global` and `clip: none` run espnet2's own `train_one_epoch` unchanged
(with `grad_clip` = C, or +inf for none): they *are* the baseline.  `clip: global_of_cores`
runs the per-core loop, whose wrapper clips the cores' average as one vector: espnet2's
global clipping on PCC's forwards (the paper's baseline).

The clipping settings arrive parsed: `PCCASRTask.check_args` builds the run's
`ClipConfig` once, `build_options` puts it on the trainer options
(`PCCTrainerOptions.clip_config`), and every epoch reads it from there.

`run` (every clip mode, `global`/`none` included) is espnet2's `Trainer.run` with these
additions around it, none inside its loop, each in its own module:

- **Checkpoints are never half-written**, and on `--resume` what a kill between two of
  espnet2's end-of-epoch writes left undone is completed first (`espnet_pcc.espnet2.checkpoints`).
- **Resume after early stopping trains nothing.** espnet2 202611 skips its loop itself; on
  202511, which checks `patience` only after an epoch, the check is made on the resumed state
  first (`espnet_pcc.espnet2.checkpoints.epochs_to_train`), so neither release trains another epoch.
- **Progress on stderr**: one line per epoch, once its checkpoint is on disk (rank 0;
  `espnet_pcc.espnet2.progress`).
- **With noise, a resume is checked before anything of it runs**: the checkpoint's privacy
  history against this run's unit and N (`espnet_pcc.core.accounting.check_history`).
- **With noise, no GPU memory peak in the reporter** (unless clip_conf.log_train_stats): the
  reporter espnet2 builds leaves it out (`espnet_pcc.espnet2.release.released_epoch_reporter`).

NOTE: `train_one_epoch` and `_step` mirror the loop of espnet2's
`Trainer.train_one_epoch` (espnet2/train/trainer.py), which is the same in espnet 202511 and
202611 but for its autocast call: iterator_stop, no_forward_run, reporter keys, grad_noise,
the non-finite skip, GradScaler, schedulers.  The forward's autocast is torch's own
(`mixed_precision`).  Re-read that loop when a new ESPnet is released;
tests/espnet2/test_espnet2_interface.py names every espnet2 symbol used here.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from espnet2.schedulers.abs_scheduler import AbsBatchStepScheduler, AbsScheduler
from espnet2.torch_utils.add_gradient_noise import add_gradient_noise
from espnet2.torch_utils.device_funcs import to_device
from espnet2.torch_utils.recursive_op import recursive_average
from espnet2.train.distributed_utils import DistributedOption
from espnet2.train.reporter import SubReporter
from espnet2.train.trainer import Trainer, TrainerOptions
from espnet2.utils.build_dataclass import build_dataclass
from espnet2.utils.nested_dict_action import NestedDictAction

from espnet_pcc import registry
from espnet_pcc.core import accounting
from espnet_pcc.core.clip_config import DEFAULT_CLIP, DEFAULT_CLIP_CONF, ClipConfig
from espnet_pcc.core.clipping import ClipMode, grad_norm
from espnet_pcc.core.cores import batch_size, split_batch, split_by_speaker
from espnet_pcc.core.data_loader.poisson import is_empty
from espnet_pcc.core.distributed import average_buffers
from espnet_pcc.core.optimizers.checkpoint import saved_privacy_history
from espnet_pcc.core.optimizers.interface import CoreClippingOptimizer, implements_core_clipping
from espnet_pcc.core.release import freeze_running_statistics
from espnet_pcc.espnet2.checkpoints import atomic_torch_saves, epochs_to_train, resumed_reporter, \
    resumed_states
from espnet_pcc.espnet2.progress import EpochProgress
from espnet_pcc.espnet2.release import NoisyEpoch, released_epoch_reporter


@dataclasses.dataclass
class PCCTrainerOptions(TrainerOptions):
    clip: str  # as given (config.yaml keeps it)
    clip_conf: dict  # as given
    clip_config: ClipConfig  # both, validated: what the trainer uses
    # core_by speaker: utterance -> speaker of the training set (TrainArgs.speaker_of)
    speaker_of: Optional[dict] = None
    # --batch_sampler as resolved by PCCASRTask.check_args (poisson: hashed cores)
    batch_sampler: str = "espnet"
    # With noise: what the epsilon is computed from (TrainArgs.privacy)
    privacy: Optional[accounting.PrivacyAccounting] = None


def add_clip_arguments(parser: argparse.ArgumentParser) -> None:
    """`--clip` and `--clip_conf` (shown by --print_config with their defaults)."""
    group = parser.add_argument_group("Per-core clipping related")
    group.add_argument("--clip", type=str, default=DEFAULT_CLIP,
                       help="Gradient clipping: " + ", ".join(m.value for m in ClipMode)
                       + ". global = ESPnet's --grad_clip on the averaged gradient; "
                       "global_of_cores = the same on the average of per-core gradients.")
    group.add_argument("--clip_conf", action=NestedDictAction, default=dict(DEFAULT_CLIP_CONF),
                       help="max_norm: C (per_core, per_example, global_of_cores; global: "
                       "overrides --grad_clip); num_cores: cores per micro-batch; "
                       "noise_multiplier: "
                       "sigma, noise sigma*C on the sum of clipped cores; delta: of the "
                       "reported (epsilon, delta) (None: 0.01/N, N the privacy units); "
                       "target_quantile, bound_lr, initial_bound: C follows a quantile of "
                       "the core norms; core_by: position | speaker; utt2spk: for core_by "
                       "speaker; running_stats: update | freeze (BatchNorm statistics; freeze "
                       "is needed with noise); log_train_stats: with noise, also log the "
                       "training batches' statistics (not private).  Defaults: "
                       + ", ".join(f"{k}={v}" for k, v in DEFAULT_CLIP_CONF.items()))
    group.add_argument("--clip_wrapper", type=str, default=registry.PER_CORE_CLIP,
                       help="the optimizer wrapper of the per-core modes: a name registered "
                       f"in the {registry.OPTIMIZERS} entry-point group")


def items_per_step(config: ClipConfig, batch_sampler: str, accum_grad: int) -> int:
    """Iterator items of one optimizer step on each rank: accum_grad micro-batches, and with
    the Poisson sampler's hashed cores each micro-batch's cores one item each (per_example:
    the micro-batch is one item, split per utterance)."""
    if batch_sampler == "poisson" and not config.mode.one_utterance_per_core:
        return accum_grad * config.num_cores
    return accum_grad


@torch.no_grad()
def _stand_in_stats(model: torch.nn.Module, batch: Dict) -> Tuple[Dict, torch.Tensor]:
    """Stats of an empty item (weight 0), with the keys a real one has: a forward of the
    stand-in utterance without gradient, the buffers (BatchNorm statistics) put back.  Under
    DDP every rank must register the same keys each item (`recursive_average` is a
    collective), so an empty item cannot just register nothing."""
    buffers = [b.detach().clone() for b in model.buffers()]
    _, stats, weight = _forward(model, batch)
    for b, saved in zip(model.buffers(), buffers):
        b.copy_(saved)
    return stats, torch.zeros_like(weight)


def mixed_precision(enabled: bool) -> torch.autocast:
    """The forward's autocast, as espnet2's own loop sets it (AMP is CUDA only there: with
    ``--use_amp`` a GradScaler exists, bfloat16 where the GPU has it, else float16), from
    torch's public API rather than espnet2's module-level helper, whose signature changed
    between espnet 202511 (``autocast(enabled)``) and 202611 (``torch.amp.autocast``)."""
    if not enabled:
        return torch.autocast("cuda", enabled=False)
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return torch.autocast("cuda", dtype=torch.bfloat16 if bf16 else torch.float16)


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


def cores_of(utt_id: List[str], batch: Dict, config: ClipConfig, one_core_per_item: bool,
             speaker_of: Optional[Dict[str, str]]) -> List[Dict]:
    """The cores of one item of the iterator."""
    if is_empty(utt_id):
        return []  # an empty slot of a Poisson step: no core
    if one_core_per_item:
        return [batch]  # a hashed core of the Poisson sampler, as drawn
    if config.core_by == "speaker":
        return split_by_speaker(batch, speaker_of)
    return split_batch(batch, config.cores_per_micro_batch(batch_size(batch)))


def add_cores(model: torch.nn.Module, optimizer: CoreClippingOptimizer, cores: List[Dict],
              batch: Dict, scaler: Optional[torch.amp.GradScaler], no_sync: Callable
              ) -> Tuple[Dict, torch.Tensor, float, float]:
    """Each core's forward and backward (no DDP all-reduce), handed to the optimizer:
    (the item's statistics, their weight, forward seconds, backward seconds).  An item
    without cores reports a stand-in's statistics with weight 0."""
    loss_scale = scaler.get_scale() if scaler is not None else 1.0
    forward_time = backward_time = 0.0
    per_core = []
    for core in cores:
        with no_sync():
            tic = time.perf_counter()
            with mixed_precision(scaler is not None):
                loss, stats, weight = _forward(model, core)
            toc = time.perf_counter()
            (scaler.scale(loss) if scaler is not None else loss).backward()
        del loss
        optimizer.add_core(loss_scale=loss_scale)
        backward_time += time.perf_counter() - toc
        forward_time += toc - tic
        per_core.append((stats, weight))
    if per_core:
        stats, weight = _weighted_mean(per_core)
    else:
        with no_sync():
            stats, weight = _stand_in_stats(model, batch)
    return stats, weight, forward_time, backward_time


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
        for name, default in (("privacy", None), ("batch_sampler", "espnet")):
            if getattr(args, name, None) is None:
                setattr(args, name, default)  # args built without PCCASRTask's options
        if args.clip_config.noise_multiplier > 0 and args.privacy is None:
            raise ValueError("args.privacy is not set: PCCASRTask.build_optimizers sets what a "
                             "noisy run's epsilon is computed from")
        options = build_dataclass(PCCTrainerOptions, args)
        options.grad_clip = options.clip_config.stock_grad_clip(options.grad_clip)
        return options

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        add_clip_arguments(parser)

    @classmethod
    def run(cls, model, optimizers, schedulers, train_iter_factory, valid_iter_factory,
            plot_attention_iter_factory, trainer_options, distributed_option) -> None:
        """espnet2's `Trainer.run` with atomic checkpoints, resume completion, no epoch after
        a resumed early stop, progress lines and, with noise, a resume checked against the
        checkpoint's privacy history and no GPU memory peak in the reporter (see the module
        docstring).

        Raises:
            ClipConfigError: with noise, a resume that one epsilon cannot compose with the
                checkpoint's steps (another privacy unit or N), before anything is loaded.
        """
        output_dir = Path(trainer_options.output_dir)
        writes_files = not distributed_option.distributed or distributed_option.dist_rank == 0
        states = resumed_states(output_dir, trainer_options)
        privacy = trainer_options.privacy
        if privacy is not None and states is not None and states.get("optimizers"):
            accounting.check_history(saved_privacy_history(states["optimizers"][0]),
                                     privacy.mechanism)
        reporter = resumed_reporter(output_dir, states, trainer_options, writes_files)
        del states
        progress = EpochProgress(output_dir, trainer_options, reporter.get_epoch() + 1)
        trainer_options = epochs_to_train(
            reporter, trainer_options,
            lambda note: progress.nothing_to_train(reporter, note) if writes_files else None)
        config = trainer_options.clip_config
        with atomic_torch_saves(progress if writes_files else (lambda obj, path: None)), \
                released_epoch_reporter(config.noise_multiplier > 0
                                        and not config.log_train_stats):
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
        if len(optimizers) != 1 or not implements_core_clipping(optimizers[0]):
            raise RuntimeError(f"clip: {config.mode.value} needs exactly one optimizer wrapped "
                               "in a per-core wrapper (espnet_pcc.core.optimizers."
                               "CoreClippingOptimizer: add_core, "
                               "reduce_cores, gather_pending and a torch optimizer's surface; "
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
        step_items = items_per_step(config, options.batch_sampler, options.accum_grad)
        one_core_per_item = (options.batch_sampler == "poisson"
                             and not config.mode.one_utterance_per_core)
        model.train()
        if config.running_stats == "freeze":
            freeze_running_statistics(model)
        # With noise: released logs, the privacy history, the buffer check
        # (espnet_pcc.espnet2.release).
        noisy = NoisyEpoch(model, optimizer, options.privacy, config, reporter) \
            if config.noise_multiplier > 0 else None
        reporter = reporter if noisy is None else noisy.reporter
        items_done = 0
        # The reporter's rows up to the last log: with noise (ReleasedReporter) only the
        # iterations that step make a row, so a window of log_interval rows would overlap.
        rows_logged = 0
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

            cores = cores_of(utt_id, batch, config, one_core_per_item, options.speaker_of)
            stats, weight, forward_time, backward_time = add_cores(
                model, optimizer, cores, batch, scaler, no_sync)
            if distributed:
                stats, weight = recursive_average(stats, weight, distributed)
            reporter.register(stats, weight)
            reporter.register({"forward_time": forward_time, "backward_time": backward_time})

            if iiter % step_items == 0:
                if cls._step(model, optimizer, scheduler, scaler, reporter, options):
                    all_steps_are_invalid = False
                if distributed:
                    average_buffers(model)  # no_sync stopped DDP's buffer broadcast
                if noisy is not None:
                    noisy.after_step(reporter.get_epoch())
                reporter.register({
                    **{f"optim0_lr{j}": pg["lr"] for j, pg in enumerate(optimizer.param_groups)
                       if "lr" in pg},
                    "train_time": time.perf_counter() - start_time,
                })
                start_time = time.perf_counter()

            reporter.next()
            if iiter % log_interval == 0:
                rows = reporter.count - rows_logged  # those of the last log_interval items
                if rows:
                    logging.info(reporter.log_message(-rows))
                    if summary_writer is not None:
                        reporter.tensorboard_add_scalar(summary_writer, -rows)
                    if options.use_wandb:
                        reporter.wandb_log()
                rows_logged = reporter.count
            items_done = iiter
        else:
            if distributed:
                iterator_stop.fill_(1)
                torch.distributed.all_reduce(iterator_stop, torch.distributed.ReduceOp.SUM)
        if noisy is not None:
            # A noisy epoch ends on a step: no step holds cores of two epochs (a unit could be
            # in both), so each unit takes part in an epoch's steps once, as accounted.
            if items_done % step_items:
                if cls._step(model, optimizer, scheduler, scaler, reporter, options):
                    all_steps_are_invalid = False
                if distributed:
                    average_buffers(model)
                noisy.after_step(reporter.get_epoch())
            reporter.register(noisy.epsilon())  # once an epoch: the epoch's value
            reporter.next()
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
            # With noise the core counts are not logged (they are not private).
            counts = "" if options.clip_config.noise_multiplier > 0 else \
                f" ({reduction.nonfinite_cores} of {reduction.num_cores} cores non-finite)"
            logging.warning(f"The grad norm is {update_norm}{counts}. Skipping updating the "
                            "model.")
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
