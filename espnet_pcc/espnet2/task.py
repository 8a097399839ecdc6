"""PCCASRTask: espnet2's ASRTask trained by PCCTrainer.

Adds `clip` / `clip_conf` to the config (PCCTrainer.add_arguments), rejects bad
settings with one line before anything runs, builds the run's `ClipConfig` once
(`check_args`), wraps the optimizer ESPnet builds from `optim` / `optim_conf` in
the registered per-core wrapper, and hands the same `ClipConfig` to the trainer
options.

With `clip_conf: {core_by: speaker}`, `check_args` also reads the training set's
utt2spk (one-line error if it is missing or lacks an utterance) and the training
iterator is built on `SpeakerCoreSampler` (espnet_pcc.core.data_loader.speaker_cores): one speaker
per core, no speaker twice in a step.  With `--batch_sampler shuffled` it is built on
`ShuffledBatchSampler` (espnet_pcc.core.data_loader.shuffled): new batches every epoch.  With
`--batch_sampler poisson` (the default when there is noise) on `PoissonCoreSampler`
(espnet_pcc.core.data_loader.poisson): each privacy unit joins each step with probability q into a
core drawn for it alone; the accountant's premises (espnet_pcc.core.accounting) then hold.
Validation keeps ESPnet's sampler. `--clip_wrapper` names the registered optimizer wrapper (default
per_core_clip); the noise's seed is drawn from the OS unless clip_conf.noise_seed gives one, and
under DDP rank 0's is broadcast.

Noise is accounted only where the layout bounds one unit's influence (`check_privacy_layout`):
the Poisson sampler's hashed cores, or per_example clipping (without amplification under any
other sampler, averaged over the fixed batch_size x accum_grad, for one unit replaced by an
empty stand-in rather than added or removed).  With noise no choice of the
run reads a training statistic (`check_noisy_choices`), and a model whose layers keep running
statistics is refused unless clip_conf.running_stats: freeze (`build_model`,
espnet_pcc.core.release); errors raised after check_args (there, and in training) are one line too
(`main_worker`).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import secrets
import sys
from typing import Dict, List, Optional, Sequence

import torch
from espnet2.iterators.abs_iter_factory import AbsIterFactory
from espnet2.iterators.sequence_iter_factory import SequenceIterFactory
from espnet2.schedulers.abs_scheduler import AbsValEpochStepScheduler
from espnet2.tasks.abs_task import IteratorOptions, scheduler_classes
from espnet2.tasks.asr import ASRTask
from espnet2.train.distributed_utils import DistributedOption

from espnet_pcc import registry
from espnet_pcc.core import distributed
from espnet_pcc.core.accounting import PrivacyAccounting, default_delta, sensitivity
from espnet_pcc.core.clip_config import ClipConfig, ClipConfigError, numeric_conf
from espnet_pcc.core.data_loader.poisson import PoissonPlan, WithEmptyItems, group_units, \
    make_plan, unit_kind
from espnet_pcc.core.data_loader.speaker_cores import check_enough_speakers, read_utt2spk, \
    read_utt_lengths, utt2spk_path, utts_per_core
from espnet_pcc.core.data_loader.units import recording_of
from espnet_pcc.core.release import check_running_statistics
from espnet_pcc.errors import UserError, print_error
from espnet_pcc.espnet2.samplers import BATCH_SAMPLERS, PoissonCoreSampler, ShuffledBatchSampler, \
    SpeakerCoreSampler
from espnet_pcc.espnet2.trainer import PCCTrainer

#: ESPnet's --batch_type values whose batches hold --batch_size utterances (at most).
UTTERANCE_BATCH_TYPES = ("unsorted", "sorted", "folded")


class TrainArgs(argparse.Namespace):
    """asr_train's parsed options plus `clip_config`, the ClipConfig built from them, and
    `speaker_of` (core_by speaker: the training utterances' speakers, else None) and
    `poisson_plan` (--batch_sampler poisson; `PCCASRTask.build_optimizers` makes it again
    where the world size differs from WORLD_SIZE's); then, set by
    `PCCASRTask.build_optimizers`: `privacy`
    (with noise: what the epsilon is computed from) and `sampler_key` (the Poisson sampler's
    key: the secret noise seed with noise, else --seed).

    Neither is an option: they are slots, outside ``vars(args)``, which espnet2 writes to
    config.yaml (a file that must load back as options).  espnet2's spawned DDP workers
    get a plain copy of ``vars(args)``: they build their own (see
    `PCCASRTask.main_worker`).
    """

    __slots__ = ("clip_config", "speaker_of", "poisson_plan", "privacy", "sampler_key")


def read_training_speakers(args: argparse.Namespace, config: ClipConfig) -> Dict[str, str]:
    """For core_by speaker: the speaker of each training utterance (of the first
    --train_shape_file), from clip_conf.utt2spk or the utt2spk beside the first training
    data file, a speed-perturbed speaker id (``sp<f>-spk``) as its speaker.  Also rejects the
    iterator options that would mix up the speaker cores.

    Raises:
        ClipConfigError: a missing or malformed utt2spk or shape file, an utterance
            without a speaker, fewer speakers than accum_grad x num_cores, or an
            iterator option that speaker cores do not support.
    """
    if args.iterator_type != "sequence" or args.multiple_iterator:
        raise ClipConfigError("clip_conf.core_by=speaker needs --iterator_type sequence and "
                              "--multiple_iterator false")
    if args.shuffle_within_batch:
        raise ClipConfigError("clip_conf.core_by=speaker does not support "
                              "--shuffle_within_batch (it mixes speakers across cores)")
    if args.num_iters_per_epoch is not None and args.num_iters_per_epoch % args.accum_grad:
        raise ClipConfigError(f"clip_conf.core_by=speaker: --num_iters_per_epoch "
                              f"{args.num_iters_per_epoch} must be a multiple of --accum_grad "
                              f"{args.accum_grad} (an epoch must end on a step)")
    if not args.train_shape_file:
        raise ClipConfigError("clip_conf.core_by=speaker needs --train_shape_file "
                              "(the training utterances and their lengths)")
    path = utt2spk_path(config.utt2spk, args.train_data_path_and_name_and_type)
    utts = read_utt_lengths(args.train_shape_file[0])
    # ESPnet's speed perturbation names a copy's speaker sp<f>-<speaker>: the same speaker,
    # for the speaker cores (no speaker twice in a step) as for the Poisson units.
    speaker_of = {utt: recording_of(speaker)
                  for utt, speaker in read_utt2spk(path, utt_ids=utts).items()}
    # One rank at least: the sampler checks again with the world size.
    check_enough_speakers(len(set(speaker_of.values())), config.num_cores, args.accum_grad, 1)
    return speaker_of


def check_sampler_options(args: argparse.Namespace, config: ClipConfig) -> None:
    """The iterator options that --batch_sampler other than espnet works with.

    Raises:
        ClipConfigError: an option that the sampler cannot honour (one line).
    """
    name = f"--batch_sampler {args.batch_sampler}"
    if config.core_by == "speaker":
        raise ClipConfigError(f"{name} with clip_conf.core_by=speaker: speaker cores plan "
                              "their own batches; use one of the two")
    if args.iterator_type != "sequence" or args.multiple_iterator:
        raise ClipConfigError(f"{name} needs --iterator_type sequence and "
                              "--multiple_iterator false")
    if not args.train_shape_file:
        raise ClipConfigError(f"{name} needs --train_shape_file (the training utterances)")


def resolve_batch_sampler(name: str, config: ClipConfig) -> str:
    """--batch_sampler auto: poisson with noise (the sampler the accountant assumes), else
    espnet."""
    if name == "auto":
        return "poisson" if config.noise_multiplier > 0 else "espnet"
    return name


def check_poisson_options(args: argparse.Namespace, config: ClipConfig) -> None:
    """The options --batch_sampler poisson works with.

    Raises:
        ClipConfigError: a mode without the per-core loop, or an iterator option that would
            change what was sampled (one line).
    """
    if not config.wraps_optimizer:
        raise ClipConfigError(f"--batch_sampler poisson with clip: {config.mode.value}: its "
                              "steps may hold empty cores, which only the per-core loop "
                              "handles; use per_core, adaptive_per_core, per_example, or none "
                              "with clip_conf.num_cores > 1")
    if args.iterator_type != "sequence" or args.multiple_iterator:
        raise ClipConfigError("--batch_sampler poisson needs --iterator_type sequence and "
                              "--multiple_iterator false")
    if not args.train_shape_file:
        raise ClipConfigError("--batch_sampler poisson needs --train_shape_file "
                              "(the training utterances)")
    if args.num_iters_per_epoch is not None:
        raise ClipConfigError(f"--batch_sampler poisson with --num_iters_per_epoch "
                              f"{args.num_iters_per_epoch}: an epoch is round(1/q) steps, "
                              "q from the data; remove --num_iters_per_epoch")
    if args.shuffle_within_batch:
        raise ClipConfigError("--batch_sampler poisson does not support "
                              "--shuffle_within_batch (it would move units across cores)")


def check_privacy_layout(args: argparse.Namespace, config: ClipConfig, sampler: str) -> None:
    """With noise: the layouts whose sensitivity the accountant knows.

    Raises:
        ClipConfigError: position or speaker cores of a non-Poisson sampler (one utterance
            more re-cuts every later core of its micro-batch, and the batch plan depends on
            the whole data set), --num_iters_per_epoch (it changes how often a unit takes
            part, which the accountant could not see), or ESPnet's sampler with a
            --batch_type whose batches are not counted in utterances (the noisy average
            divides by the fixed batch_size x accum_grad).
    """
    sigma = f"clip_conf.noise_multiplier={config.noise_multiplier:g}"
    if args.num_iters_per_epoch is not None:
        raise ClipConfigError(f"{sigma} with --num_iters_per_epoch {args.num_iters_per_epoch}: "
                              "the accountant would not know how often a unit takes part; "
                              "remove --num_iters_per_epoch")
    if sampler != "poisson" and not config.mode.one_utterance_per_core:
        raise ClipConfigError(f"{sigma} with --batch_sampler {sampler} and clip: "
                              f"{config.mode.value}: one utterance more re-cuts every later "
                              "core of its micro-batch, so no sensitivity holds; use "
                              "--batch_sampler poisson (hashed cores; the default with noise)")
    if sampler == "espnet" and args.batch_type not in UTTERANCE_BATCH_TYPES:
        raise ClipConfigError(f"{sigma} with --batch_sampler espnet and --batch_type "
                              f"{args.batch_type}: the noisy average divides by the fixed "
                              "batch_size x accum_grad, and these batches are not counted in "
                              f"utterances; use --batch_type {', '.join(UTTERANCE_BATCH_TYPES)} "
                              "or --batch_sampler poisson")


def check_noisy_choices(args: argparse.Namespace, config: ClipConfig) -> None:
    """With noise, no choice of the run reads a statistic of the training data: the model
    files kept or averaged (--best_model_criterion, where clip_conf.log_train_stats logs the
    training statistics; otherwise a train criterion finds nothing and espnet2 skips it), early
    stopping (--early_stopping_criterion with --patience), a plateau scheduler
    (--val_scheduler_criterion).

    Raises:
        ClipConfigError: a criterion of the train phase that would act (one line).
    """
    uses = []
    if config.log_train_stats:
        uses += [("--best_model_criterion", c) for c in args.best_model_criterion]
    if args.patience is not None:
        uses.append(("--early_stopping_criterion", args.early_stopping_criterion))
    if isinstance(scheduler_classes.get(args.scheduler), type) and issubclass(
            scheduler_classes[args.scheduler], AbsValEpochStepScheduler):
        uses.append(("--val_scheduler_criterion", args.val_scheduler_criterion))
    for option, criterion in uses:
        if criterion[0] == "train":
            raise ClipConfigError(
                f"clip_conf.noise_multiplier={config.noise_multiplier:g} with {option} "
                f"{' '.join(criterion)}: it chooses by a statistic of the training data, "
                "which is not private; use a valid criterion")


def count_privacy_units(args: argparse.Namespace, config: ClipConfig,
                        speaker_of: Optional[Dict[str, str]]) -> int:
    """N for delta: the units (utterances, recordings or speakers) of the first shape file."""
    try:
        utts = read_utt_lengths(args.train_shape_file[0])
    except ClipConfigError as e:
        raise ClipConfigError(f"clip_conf.noise_multiplier: cannot count the training units "
                              f"for delta = 0.01/N ({e}); set clip_conf.delta") from None
    if not utts:
        raise ClipConfigError(f"clip_conf.noise_multiplier: {args.train_shape_file[0]} "
                              "lists no training utterance (delta = 0.01/N)")
    return len(group_units(utts, speaker_of))


def shared_secret() -> int:
    """128 bits from the OS's CSPRNG, rank 0's under DDP (every rank must hold the same: the
    Poisson sampler's key, and rank 0's noise)."""
    secret = secrets.randbits(128)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        words = torch.tensor([(secret >> (32 * i)) & 0xFFFFFFFF for i in range(4)],
                             dtype=torch.int64)
        if torch.distributed.get_backend() == "nccl":
            words = words.cuda()
        torch.distributed.broadcast(words, src=0)
        secret = sum(int(w) << (32 * i) for i, w in enumerate(words.tolist()))
    return secret


def current_world_size() -> int:
    return torch.distributed.get_world_size() if (
        torch.distributed.is_available() and torch.distributed.is_initialized()) else 1


def plan_for(args: argparse.Namespace, config: ClipConfig,
             speaker_of: Optional[Dict[str, str]], world: int) -> PoissonPlan:
    """The run's Poisson plan (espnet_pcc.core.data_loader.poisson.make_plan) for `world` ranks."""
    # A slot is a core; per_example's micro-batch is one slot whose utterances are its cores.
    slots = 1 if config.mode.one_utterance_per_core else config.num_cores
    return make_plan(read_utt_lengths(args.train_shape_file[0]), args.batch_size,
                     cores_per_micro_batch=slots, accum_grad=args.accum_grad,
                     world_size=world, speaker_of=speaker_of)


def privacy_accounting(args: argparse.Namespace, config: ClipConfig,
                       plan: Optional[PoissonPlan]) -> Optional[PrivacyAccounting]:
    """What a noisy run's epsilon is computed from (espnet_pcc.core.accounting); None without
    noise."""
    if config.noise_multiplier <= 0:
        return None
    if plan is not None:
        return PrivacyAccounting(plan.kind, plan.num_units, config.noise_multiplier,
                                 sensitivity(config.mode, plan.max_per_unit), config.delta,
                                 plan.sampling_rate)
    # per_example under another sampler: no amplification; a unit's copies may share a step;
    # zero-out adjacency (the batch plan depends on every id and length).
    units = group_units(read_utt_lengths(args.train_shape_file[0]))
    copies = max(len(v) for v in units.values())
    return PrivacyAccounting(unit_kind(units, False), len(units), config.noise_multiplier,
                             sensitivity(config.mode, copies), config.delta, None)


class PCCASRTask(ASRTask):
    trainer = PCCTrainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_task_arguments(parser)
        distributed.add_arguments(parser)
        parser.add_argument_group("Training batch sampler").add_argument(
            "--batch_sampler", type=str, default="auto", choices=BATCH_SAMPLERS,
            help="auto: poisson with clip_conf.noise_multiplier > 0, else espnet; espnet: "
            "ESPnet's batches of --batch_type, built once (only their order changes per "
            "epoch); shuffled: new batches of --batch_size utterances every epoch from a "
            "seeded shuffle of all training utterances (espnet_pcc.core.data_loader.shuffled); "
            "poisson: each utterance, recording or speaker joins each step with probability q "
            "into a hashed core (espnet_pcc.core.data_loader.poisson): q = batch_size / "
            "(training utterances, speed-perturbed copies included), for speakers "
            "(core slots) / (speakers). "
            "Training iterator only")

    @classmethod
    def check_args(cls, args: argparse.Namespace) -> TrainArgs:
        """Validates --dist_timeout and clipping against the rest of the configuration.

        Returns `args` as TrainArgs carrying the run's one ClipConfig (`clip_config`)
        and, for core_by speaker, the training utterances' speakers (`speaker_of`); its
        --batch_sampler resolved (auto: poisson with noise, else espnet), its clip_conf's
        numeric strings as numbers (`clip_config.numeric_conf`), and with noise
        clip_conf.delta defaulted to 0.01/N (N the privacy units).
        Raises DistTimeoutError or ClipConfigError (one-line messages).  asr_train runs
        it before espnet2 creates the output dir, so a bad setting leaves nothing behind.
        """
        distributed.check_timeout(args.dist_timeout)
        config = ClipConfig.from_options(args.clip, args.clip_conf)
        sampler = resolve_batch_sampler(args.batch_sampler, config)
        if config.noise_multiplier > 0:
            check_privacy_layout(args, config, sampler)
            check_noisy_choices(args, config)
            if config.delta is None and not args.train_shape_file and not args.collect_stats:
                raise ClipConfigError("clip_conf.noise_multiplier without --train_shape_file: "
                                      "delta = 0.01/N needs the training units; set "
                                      "clip_conf.delta")
        if config.wraps_optimizer:
            wrappers = registry.available(registry.OPTIMIZERS)
            if args.clip_wrapper not in wrappers:
                raise ClipConfigError(f"--clip_wrapper {args.clip_wrapper!r} is not registered "
                                      f"in {registry.OPTIMIZERS}; registered: "
                                      f"{', '.join(sorted(wrappers))}")
            if getattr(args, "sharded_ddp", False):
                raise ClipConfigError(f"clip: {config.mode.value} does not support "
                                      "--sharded_ddp; use plain DDP")
            if getattr(args, "use_deepspeed", False):
                raise ClipConfigError(f"clip: {config.mode.value} does not support "
                                      "--use_deepspeed; use plain DDP")
            if config.noise_multiplier > 0 and getattr(args, "use_amp", False):
                raise ClipConfigError(
                    f"clip_conf.noise_multiplier={config.noise_multiplier:g} with --use_amp: "
                    "with noise a non-finite core is dropped and the step goes on, but under "
                    "AMP a non-finite core is the loss scaler's overflow signal; train noisy "
                    "runs without --use_amp")
            if getattr(args, "num_optimizers", 1) != 1:
                raise ClipConfigError(f"clip: {config.mode.value} supports one optimizer")
        if sampler == "poisson":
            check_poisson_options(args, config)
        elif sampler != "espnet":
            check_sampler_options(args, config)
        speaker_of = None
        if config.core_by == "speaker" and not args.collect_stats:
            # collect_stats runs no trainer, and its shape files are key lists.
            speaker_of = read_training_speakers(args, config)
        plan = None
        if sampler == "poisson" and not args.collect_stats:
            # The plan's errors (a batch larger than the data, too few speakers) before
            # anything is written; build_optimizers keeps it if the world size is the same.
            plan = plan_for(args, config, speaker_of, int(os.environ.get("WORLD_SIZE", "1")))
        if config.noise_multiplier > 0 and config.delta is None and not args.collect_stats:
            config = dataclasses.replace(config, delta=default_delta(
                plan.num_units if plan is not None
                else count_privacy_units(args, config, speaker_of)))
        # config.yaml records clip_conf's numeric strings (YAML 1.1's 1e9) as the numbers used.
        checked = TrainArgs(**{**vars(args), "batch_sampler": sampler,
                               "clip_conf": args.clip_conf and numeric_conf(args.clip_conf)})
        checked.clip_config = config
        checked.speaker_of = speaker_of
        checked.poisson_plan = plan
        checked.privacy = checked.sampler_key = None
        return checked

    @classmethod
    def build_iter_factory(cls, args: argparse.Namespace,
                           distributed_option: DistributedOption, mode: str,
                           kwargs: Optional[dict] = None) -> AbsIterFactory:
        """ESPnet's iterator factories, except the training one of core_by speaker and of
        --batch_sampler shuffled and poisson."""
        config = getattr(args, "clip_config", None)
        speaker_cores = isinstance(config, ClipConfig) and config.core_by == "speaker"
        if mode != "train" or not (speaker_cores or args.batch_sampler not in ("espnet",
                                                                                "auto")):
            return super().build_iter_factory(args=args, distributed_option=distributed_option,
                                              mode=mode, kwargs=kwargs)
        iter_options = cls.build_iter_options(args, distributed_option, mode)
        for key, value in (kwargs or {}).items():
            setattr(iter_options, key, value)
        if iter_options.distributed:
            world_size = torch.distributed.get_world_size()
            rank = torch.distributed.get_rank()
        else:
            world_size, rank = 1, 0
        utt_lengths = read_utt_lengths(iter_options.shape_files[0])
        if args.batch_sampler == "poisson":
            plan = getattr(args, "poisson_plan", None)
            if plan is None or getattr(args, "sampler_key", None) is None:
                raise RuntimeError("--batch_sampler poisson: build_optimizers makes the plan "
                                   "before the training iterator")
            sampler = PoissonCoreSampler(plan, args.sampler_key, rank=rank,
                                         utt_lengths=utt_lengths)
            stand_in = min(utt_lengths, key=lambda u: (utt_lengths[u], u))
            return cls.build_sampler_iter_factory(args, iter_options, sampler,
                                                  empty_stand_in=stand_in)
        if speaker_cores:
            # batch_size counts utterances over all ranks, as in ESPnet (whatever the
            # batch_type): each rank's micro-batch holds num_cores speaker cores of at most
            # utts_per_core = max(1, batch_size // (world_size x num_cores)) utterances.
            sampler = SpeakerCoreSampler(
                utt_lengths, args.speaker_of, num_cores=config.num_cores,
                utts_per_core=utts_per_core(iter_options.batch_size, world_size,
                                            config.num_cores),
                accum_grad=args.accum_grad, world_size=world_size, rank=rank)
        else:
            sampler = ShuffledBatchSampler(utt_lengths, iter_options.batch_size,
                                           world_size=world_size, rank=rank)
        return cls.build_sampler_iter_factory(args, iter_options, sampler)

    @classmethod
    def build_sampler_iter_factory(cls, args: argparse.Namespace, iter_options: IteratorOptions,
                                   sampler, empty_stand_in: Optional[str] = None
                                   ) -> AbsIterFactory:
        """ESPnet's `build_sequence_iter_factory` with `sampler`, which draws this rank's
        micro-batches of each epoch itself (`generate(epoch + seed)`); `empty_stand_in`: the
        utterance loaded for an empty item (espnet_pcc.core.data_loader.poisson.EMPTY)."""
        logging.info(f"[train] Batch sampler: {sampler}")
        dataset = cls.build_dataset(args, iter_options)
        if empty_stand_in is not None:
            dataset = WithEmptyItems(dataset, empty_stand_in)
        logging.info(f"[train] dataset:\n{dataset}")
        return SequenceIterFactory(
            dataset=dataset,
            batches=sampler,
            seed=args.seed,
            num_iters_per_epoch=iter_options.num_iters_per_epoch,
            # The sampler shuffles; ESPnet's shuffle of the micro-batches would move them
            # across steps (a speaker twice in one step) and add nothing to a shuffled plan.
            shuffle=False,
            shuffle_within_batch=False,
            num_workers=args.num_workers,
            collate_fn=iter_options.collate_fn,
            pin_memory=args.ngpu > 0,
        )

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> torch.nn.Module:
        """ASRTask's model; with noise, refused where a layer's running statistics would
        reach the model files unnoised (espnet_pcc.core.release).  espnet2 writes config.yaml
        after building the optimizers, so a refusal leaves nothing behind."""
        model = super().build_model(args)
        config = getattr(args, "clip_config", None)
        if isinstance(config, ClipConfig) and not args.collect_stats:
            check_running_statistics(model, config)
        return model

    @classmethod
    def build_optimizers(cls, args: TrainArgs,
                         model: torch.nn.Module) -> List[torch.optim.Optimizer]:
        config = args.clip_config
        optimizers = super().build_optimizers(args, model)
        if not config.wraps_optimizer:
            return optimizers
        logging.info(f"clip: {config.mode.value} (clip_conf {args.clip_conf}); "
                     f"--grad_clip {args.grad_clip} is not used")
        wrapper = registry.load(registry.OPTIMIZERS, args.clip_wrapper)
        # The noise's seed: secret unless clip_conf.noise_seed opts in to reproducible noise.
        # Not --seed, which config.yaml publishes; the checkpoint keeps it for --resume.
        noise_seed = config.noise_seed if config.noise_seed is not None \
            else shared_secret()
        if args.collect_stats:  # espnet2 builds the optimizers there too, and trains nothing
            return [wrapper(optimizers[0], clip_config=config, noise_seed=noise_seed)]
        plan = None
        if args.batch_sampler == "poisson":
            plan, world = args.poisson_plan, current_world_size()
            if plan is None or plan.world_size != world:
                plan = plan_for(args, config, args.speaker_of, world)
            logging.info(f"[train] {plan.describe()}")
        kwargs = {}
        if plan is not None and config.mode.has_fixed_bound:
            # Poisson DP-SGD divides by the expected number of cores, not the drawn one.
            kwargs["expected_cores"] = (plan.expected_utterances_per_step
                                        if config.mode.one_utterance_per_core
                                        else plan.slots_per_step)
        elif config.noise_multiplier > 0:
            # per_example under another sampler: the nominal batch, not the step's count K,
            # whose noise σC/K in u = (Σ + noise)/K would tell K.
            kwargs["expected_cores"] = args.batch_size * args.accum_grad
        wrapped = wrapper(optimizers[0], clip_config=config, noise_seed=noise_seed, **kwargs)
        args.poisson_plan = plan
        args.privacy = privacy_accounting(args, config, plan)
        if args.privacy is not None:
            logging.info(args.privacy.describe())
        seed = args.seed
        # The batches are as secret as the noise (amplification by sampling needs it): with
        # noise the sampler's key is the noise seed, which --resume restores.
        args.sampler_key = (lambda: wrapped.noise_seed) if config.noise_multiplier > 0 \
            else (lambda: seed)
        return [wrapped]

    @classmethod
    def main(cls, args: Optional[argparse.Namespace] = None,
             cmd: Optional[Sequence[str]] = None):
        if args is None:
            args = cls.get_parser().parse_args(cmd)
        if not args.print_config:
            try:
                args = cls.check_args(args)
            except UserError as e:
                print_error("asr_train", e)
                sys.exit(2)
        super().main(args=args)

    @classmethod
    def main_worker(cls, args: argparse.Namespace):
        if not isinstance(getattr(args, "clip_config", None), ClipConfig):
            # A worker spawned by espnet2 (--multiprocessing_distributed) gets a plain
            # copy of the options that main() already checked.
            args = cls.check_args(args)
        try:
            with distributed.default_timeout(args.dist_timeout):
                super().main_worker(args)
        except UserError as e:
            # Refused once the model is built (running statistics with noise) or in training
            # (a buffer the data changed, a resume of another privacy unit): one line too.
            print_error("asr_train", e)
            sys.exit(2)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # espnet2 leaves the process group to the interpreter's exit, where a torchrun
            # worker of a multi-node (c10d rendezvous) job can abort in gloo's teardown
            # ("terminate called without an active exception") after a finished run, failing
            # the job; and the other node's agent then waits for its exit barrier.  The
            # barrier first: rank 0 still averages and writes models after the last epoch,
            # and a peer that tore gloo down meanwhile aborted the same way (seen under load).
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
