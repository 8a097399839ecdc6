"""PCCASRTask: espnet2's ASRTask trained by PCCTrainer.

Adds `clip` / `clip_conf` to the config (PCCTrainer.add_arguments), rejects bad
settings with one line before anything runs, builds the run's `ClipConfig` once
(`check_args`), wraps the optimizer ESPnet builds from `optim` / `optim_conf` in
the registered per-core wrapper, and hands the same `ClipConfig` to the trainer
options.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional, Sequence

import torch
from espnet2.tasks.asr import ASRTask

from espnet_pcc import distributed, registry
from espnet_pcc.clip_config import ClipConfig, ClipConfigError
from espnet_pcc.errors import UserError
from espnet_pcc.trainer import PCCTrainer


class TrainArgs(argparse.Namespace):
    """asr_train's parsed options plus `clip_config`, the ClipConfig built from them.

    `clip_config` is not an option: it is a slot, outside ``vars(args)``, which espnet2
    writes to config.yaml (a file that must load back as options).  espnet2's spawned
    DDP workers get a plain copy of ``vars(args)``: they build their own (see
    `PCCASRTask.main_worker`).
    """

    __slots__ = ("clip_config",)


class PCCASRTask(ASRTask):
    trainer = PCCTrainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_task_arguments(parser)
        distributed.add_arguments(parser)

    @classmethod
    def check_args(cls, args: argparse.Namespace) -> TrainArgs:
        """Validates --dist_timeout and clipping against the rest of the configuration.

        Returns `args` as TrainArgs carrying the run's one ClipConfig (`clip_config`).
        Raises DistTimeoutError or ClipConfigError (one-line messages).
        """
        distributed.check_timeout(args.dist_timeout)
        config = ClipConfig.from_options(args.clip, args.clip_conf)
        if config.wraps_optimizer:
            if getattr(args, "sharded_ddp", False):
                raise ClipConfigError(f"clip: {config.mode.value} does not support "
                                      "--sharded_ddp; use plain DDP")
            if getattr(args, "use_deepspeed", False):
                raise ClipConfigError(f"clip: {config.mode.value} does not support "
                                      "--use_deepspeed; use plain DDP")
            if getattr(args, "num_optimizers", 1) != 1:
                raise ClipConfigError(f"clip: {config.mode.value} supports one optimizer")
        checked = TrainArgs(**vars(args))
        checked.clip_config = config
        return checked

    @classmethod
    def build_optimizers(cls, args: TrainArgs,
                         model: torch.nn.Module) -> List[torch.optim.Optimizer]:
        config = args.clip_config
        optimizers = super().build_optimizers(args, model)
        if not config.wraps_optimizer:
            return optimizers
        logging.info(f"clip: {config.mode.value} (clip_conf {args.clip_conf}); "
                     f"--grad_clip {args.grad_clip} is not used")
        wrapper = registry.load(registry.OPTIMIZERS, registry.PER_CORE_CLIP)
        return [wrapper(optimizers[0], clip_config=config)]

    @classmethod
    def main(cls, args: Optional[argparse.Namespace] = None,
             cmd: Optional[Sequence[str]] = None):
        if args is None:
            args = cls.get_parser().parse_args(cmd)
        if not args.print_config:
            try:
                args = cls.check_args(args)
            except UserError as e:
                print(f"asr_train: error: {e}", file=sys.stderr)
                sys.exit(2)
        super().main(args=args)

    @classmethod
    def main_worker(cls, args: argparse.Namespace):
        if not isinstance(getattr(args, "clip_config", None), ClipConfig):
            # A worker spawned by espnet2 (--multiprocessing_distributed) gets a plain
            # copy of the options that main() already checked.
            args = cls.check_args(args)
        with distributed.default_timeout(args.dist_timeout):
            super().main_worker(args)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # espnet2 leaves the process group to the interpreter's exit, where a torchrun
            # worker of a multi-node (c10d rendezvous) job can abort in gloo's teardown
            # ("terminate called without an active exception") after a finished run, failing
            # the job; and the other node's agent then waits for its exit barrier.
            torch.distributed.destroy_process_group()
