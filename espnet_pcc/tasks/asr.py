"""PCCASRTask: espnet2's ASRTask trained by PCCTrainer.

Adds `clip` / `clip_conf` to the config (PCCTrainer.add_arguments), wraps the
optimizer ESPnet builds from `optim` / `optim_conf` in the registered per-core
wrapper, and rejects bad clipping settings with one line before anything runs.
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
from espnet_pcc.trainer import PCCTrainer

OPTIMIZER_WRAPPER = "per_core_clip"


class PCCASRTask(ASRTask):
    trainer = PCCTrainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_task_arguments(parser)
        distributed.add_arguments(parser)

    @classmethod
    def clip_config(cls, args: argparse.Namespace) -> ClipConfig:
        return ClipConfig.from_options(args.clip, args.clip_conf)

    @classmethod
    def check_args(cls, args: argparse.Namespace) -> ClipConfig:
        """Validates clipping (and --dist_timeout) against the rest of the configuration."""
        if not args.dist_timeout > 0:
            raise ClipConfigError(f"--dist_timeout must be > 0 seconds, got {args.dist_timeout}")
        config = cls.clip_config(args)
        if config.mode.clips_each_core:
            if getattr(args, "sharded_ddp", False):
                raise ClipConfigError(f"clip: {config.mode.value} does not support "
                                      "--sharded_ddp; use plain DDP")
            if getattr(args, "use_deepspeed", False):
                raise ClipConfigError(f"clip: {config.mode.value} does not support "
                                      "--use_deepspeed; use plain DDP")
            if getattr(args, "num_optimizers", 1) != 1:
                raise ClipConfigError(f"clip: {config.mode.value} supports one optimizer")
        return config

    @classmethod
    def build_optimizers(cls, args: argparse.Namespace,
                         model: torch.nn.Module) -> List[torch.optim.Optimizer]:
        config = cls.clip_config(args)
        optimizers = super().build_optimizers(args, model)
        if not config.mode.clips_each_core:
            return optimizers
        logging.info(f"clip: {config.mode.value} (clip_conf {args.clip_conf}); "
                     f"--grad_clip {args.grad_clip} is not used")
        wrapper = registry.load("espnet_pcc.optimizers", OPTIMIZER_WRAPPER)
        return [wrapper(optimizers[0], config.mode, config.max_norm)]

    @classmethod
    def main(cls, args: Optional[argparse.Namespace] = None,
             cmd: Optional[Sequence[str]] = None):
        if args is None:
            args = cls.get_parser().parse_args(cmd)
        if not args.print_config:
            try:
                cls.check_args(args)
            except ClipConfigError as e:
                print(f"asr_train: error: {e}", file=sys.stderr)
                sys.exit(2)
        super().main(args=args)

    @classmethod
    def main_worker(cls, args: argparse.Namespace):
        with distributed.default_timeout(args.dist_timeout):
            super().main_worker(args)
