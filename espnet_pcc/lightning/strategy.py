"""Per-core clipping as a Lightning strategy (docs/lightning.md).

A core is what it is in the espnet2 integration: DDP rank × accumulation micro-batch
(``accumulate_grad_batches``) × split of the micro-batch (``clip_conf.num_cores``; per_example:
one item per core).  For the modes that clip per core (`ClipConfig.wraps_optimizer`) the
strategy

- wraps the module's one optimizer in `LightningCoreClipOptimizer` (`setup_optimizers`);
- runs every micro-batch as its cores (`training_step`): each core's ``training_step`` and
  ``backward`` on its own mean loss, under DDP's ``no_sync`` (no gradient is communicated per
  micro-batch or per core), then ``add_core``; the loop's own ``backward`` of the returned
  loss, which Lightning divides by ``accumulate_grad_batches``, has nothing left to do; under
  DDP, where ranks could cut a micro-batch into different numbers of cores, one all-reduce of
  two integers first checks that they did not (each core is one ``training_step`` call, and
  a module's collectives there would hang);
- at the cycle's last micro-batch (`optimizer_step`), after its cores: ``reduce_cores`` (one
  all-reduce under DDP, with the step's statistics), the telemetry through ``self.log``, then
  Lightning's own step (precision plugin, ``on_before_optimizer_step``, GradScaler); a step
  with a non-finite core and no GradScaler is skipped, as espnet2 skips one; under DDP the
  module's buffers are then averaged over the ranks (``no_sync`` forwards stop DDP's own
  buffer broadcast; `espnet_pcc.core.distributed.average_buffers`);
- moves every rank's pending cores to rank 0 before a checkpoint is written mid-cycle
  (`optimizer_state`), since rank 0 alone writes it.

``global`` and plain ``none`` are Lightning's own loop, untouched: the baseline, clipped (or
not) by the trainer's ``gradient_clip_val``.  An epoch's last, unfinished cycle is stepped by
Lightning with the cores it has (K of those cores), so no core crosses an epoch boundary.
"""
from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import Any, Callable, ContextManager, List, Mapping, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy

from espnet_pcc.core.clip_config import ClipConfig, ClipConfigError
from espnet_pcc.core.distributed import average_buffers
from espnet_pcc.core.optimizers import CoreClippingOptimizer, CoreReduction, \
    implements_core_clipping
from espnet_pcc.lightning.batches import batch_size, split_into_cores
from espnet_pcc.lightning.optimizer import LightningCoreClipOptimizer

log = logging.getLogger(__name__)

SplitBatch = Callable[[Any, ClipConfig], List[Any]]


def lightning_clip_config(clip: str, clip_conf: Optional[Mapping[str, Any]]) -> ClipConfig:
    """The run's `ClipConfig`, with what the Lightning integration refuses, in one line each.

    Raises:
        ClipConfigError: an invalid setting (`ClipConfig.from_options`), DP noise, speaker
            cores, or clip_conf.max_norm with clip: global.
    """
    # A Hydra config hands a DictConfig over; ClipConfig reads plain values.
    config = ClipConfig.from_options(clip, {str(k): v for k, v in dict(clip_conf or {}).items()})
    if config.noise_multiplier > 0:
        raise ClipConfigError(
            f"clip_conf.noise_multiplier={config.noise_multiplier:g} is not supported under "
            "Lightning: a DP guarantee needs espnet_pcc's Poisson sampler and accountant, which "
            "only the espnet2 trainer runs (espnet_pcc.bin.asr_train)")
    if config.core_by != "position":
        raise ClipConfigError(
            f"clip_conf.core_by={config.core_by} is not supported under Lightning: speaker "
            "cores need espnet_pcc's SpeakerCoreSampler batches (espnet2 trainer); use "
            "core_by: position")
    if not config.wraps_optimizer and config.mode.clips_mean and config.max_norm is not None:
        raise ClipConfigError(
            f"clip_conf.max_norm={config.max_norm:g} with clip: {config.mode.value}: under "
            "Lightning the averaged gradient is clipped by the trainer's own "
            f"gradient_clip_val; set gradient_clip_val: {config.max_norm:g} instead")
    return config


def check_trainer(trainer: "pl.Trainer", config: ClipConfig) -> None:
    """Refuses, in one line, trainer settings that contradict the clip mode."""
    clip_val = trainer.gradient_clip_val
    if clip_val not in (None, 0, 0.0) and (config.wraps_optimizer or config.mode.clips_nothing):
        instead = ("which the per-core strategy clips itself (clip_conf)"
                   if config.wraps_optimizer else "which clips nothing")
        raise ClipConfigError(
            f"gradient_clip_val={clip_val:g} (Lightning's clipping of the averaged gradient) "
            f"with clip: {config.mode.value}, {instead}; remove gradient_clip_val")
    module = trainer.lightning_module
    if config.wraps_optimizer and module is not None and not module.automatic_optimization:
        raise ClipConfigError(
            f"clip: {config.mode.value} drives Lightning's automatic optimization, but "
            f"{type(module).__name__} optimizes manually (ESPnet3: named `optimizers:`); "
            "use one `optimizer:`")


def _loss_of(output: Any) -> Optional[torch.Tensor]:
    return output.get("loss") if isinstance(output, Mapping) else output


class PerCoreClipping:
    """The per-core loop, mixed into a Lightning strategy (see the module docstring).

    Keyword arguments (a YAML's ``strategy:`` block names them beside ``_target_``):
        clip: espnet2's `clip` (none, global, global_of_cores, per_core, adaptive_per_core,
            per_example).
        clip_conf: espnet2's `clip_conf` (max_norm, num_cores, target_quantile, ...).
        split_batch: how a micro-batch is cut into cores, ``f(batch, clip_config) -> [core]``
            (default `espnet_pcc.lightning.batches.split_into_cores`).
        log_prefix: of the telemetry keys (``train/clip``, ``train/core_norm_max``, ...).
    """

    def __init__(self, *args: Any, clip: str = "per_core",
                 clip_conf: Optional[Mapping[str, Any]] = None,
                 split_batch: Optional[SplitBatch] = None, log_prefix: str = "train/",
                 **kwargs: Any) -> None:
        self.clip_config = lightning_clip_config(clip, clip_conf)
        self.split_batch: SplitBatch = split_batch or split_into_cores
        self.log_prefix = log_prefix
        super().__init__(*args, **kwargs)

    @property
    def clips_per_core(self) -> bool:
        """Whether the per-core loop runs (else Lightning's own loop, untouched)."""
        return self.clip_config.wraps_optimizer

    # -- set-up -----------------------------------------------------------------------------
    def setup(self, trainer: "pl.Trainer") -> None:
        check_trainer(trainer, self.clip_config)
        super().setup(trainer)

    def setup_optimizers(self, trainer: "pl.Trainer") -> None:
        """Lightning's optimizers and schedulers, the one optimizer wrapped (its schedulers
        keep the wrapped one, whose parameter groups the wrapper shares)."""
        super().setup_optimizers(trainer)
        if not self.clips_per_core:
            return
        if len(self.optimizers) != 1:
            raise ClipConfigError(
                f"clip: {self.clip_config.mode.value} takes one optimizer; "
                f"configure_optimizers returned {len(self.optimizers)}")
        optimizer = self.optimizers[0]
        if implements_core_clipping(optimizer):
            # Used as it is, it would clip by its own settings, and a wrapper whose zero_grad
            # drops the pending cores (PerCoreClipOptimizer's) would lose each cycle's first
            # micro-batch to Lightning's zero_grad.
            raise ClipConfigError(
                f"clip: {self.clip_config.mode.value}: configure_optimizers returned "
                f"{type(optimizer).__name__}, already a per-core wrapper; return the plain "
                "optimizer (the strategy wraps it with its clip and clip_conf)")
        self.optimizers = [LightningCoreClipOptimizer(optimizer, clip_config=self.clip_config)]

    def _clip_optimizer(self) -> CoreClippingOptimizer:
        optimizer = self.optimizers[0]
        return optimizer.optimizer if isinstance(optimizer, LightningOptimizer) else optimizer

    # -- the cores of a micro-batch ---------------------------------------------------------
    def _local_gradients(self) -> ContextManager:
        """DDP's no_sync: a core's backward communicates nothing."""
        model = self.model
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            return model.no_sync()
        return nullcontext()

    def _loss_scale(self) -> float:
        scaler = getattr(self.precision_plugin, "scaler", None)
        return float(scaler.get_scale()) if scaler is not None else 1.0

    @property
    def core_counts_may_differ(self) -> bool:
        """Whether two ranks can cut their micro-batches into different numbers of cores:
        per_example (one per item), num_cores > 1 (a micro-batch smaller than num_cores has
        fewer), or a module's own ``split_batch``."""
        config = self.clip_config
        return (config.mode.one_utterance_per_core or config.num_cores > 1
                or self.split_batch is not split_into_cores)

    def _check_equal_core_counts(self, num_cores: int) -> None:
        """Under DDP, where the counts can differ: one all-reduce of (count, -count) for the
        smallest and largest count over the ranks, so that each rank runs the module's
        ``training_step`` as often.  A module whose ``training_step`` runs collectives
        (ESPnet3's: a barrier and an all-gather with more than one device) would otherwise
        hang at the first micro-batch cut differently.

        Raises:
            ClipConfigError: on every rank alike, where the counts differ (one line).
        """
        if not (self.core_counts_may_differ and _distributed()):
            return
        counts = torch.tensor([num_cores, -num_cores], dtype=torch.int64,
                              device=self.root_device)
        torch.distributed.all_reduce(counts, op=torch.distributed.ReduceOp.MIN)
        fewest, most = int(counts[0]), -int(counts[1])
        if fewest != most:
            config = self.clip_config
            raise ClipConfigError(
                f"clip: {config.mode.value}: the ranks cut one micro-batch into {fewest} to "
                f"{most} cores (clip_conf.num_cores={config.num_cores}); each core is one call "
                "of the module's training_step, whose collectives (ESPnet3's) need every rank "
                "to call it as often: give every rank micro-batches of at least num_cores "
                "items (per_example: micro-batches of one size)")

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        """The micro-batch as its cores: per core the module's ``training_step`` and a
        ``backward`` of its own loss, then ``add_core``.  Returns the cores' loss averaged
        over their items (detached: only for Lightning's progress bar and logs).  Under DDP
        every rank must cut the micro-batch into as many cores (`_check_equal_core_counts`)."""
        if not self.clips_per_core:
            return super().training_step(*args, **kwargs)
        batch, rest = args[0], args[1:]
        optimizer = self._clip_optimizer()
        cores = self.split_batch(batch, self.clip_config)
        self._check_equal_core_counts(len(cores))
        losses, sizes, last = [], [], None
        for core in cores:
            with self._local_gradients():
                output = super().training_step(core, *rest, **kwargs)
                loss = _loss_of(output)
                if loss is None:  # the module skipped the core (ESPnet3: a non-finite loss)
                    continue
                super().backward(loss, optimizer)
            optimizer.add_core(loss_scale=self._loss_scale())
            losses.append(loss.detach())
            sizes.append(batch_size(core))
            last = output
        if not losses:
            return None
        mean = sum(loss * size for loss, size in zip(losses, sizes)) / sum(sizes)
        return {**last, "loss": mean} if isinstance(last, Mapping) else mean

    def backward(self, closure_loss: torch.Tensor, optimizer: Optional[torch.optim.Optimizer],
                 *args: Any, **kwargs: Any) -> torch.Tensor:
        """Lightning's backward of the returned loss: each core's ran in `training_step`."""
        if not self.clips_per_core:
            return super().backward(closure_loss, optimizer, *args, **kwargs)
        return closure_loss

    # -- the step ---------------------------------------------------------------------------
    def optimizer_step(self, optimizer: torch.optim.Optimizer, closure: Callable[[], Any],
                       model: Any = None, **kwargs: Any) -> Any:
        """The cycle's last micro-batch (`closure`), ``reduce_cores``, the telemetry, then
        Lightning's own step on the update in ``p.grad``."""
        if not self.clips_per_core:
            return super().optimizer_step(optimizer, closure, model, **kwargs)
        closure_result = closure()
        clip_optimizer = self._clip_optimizer()
        reduction = clip_optimizer.reduce_cores()
        self._log_reduction(reduction)
        try:
            if reduction.nonfinite_cores and getattr(self.precision_plugin, "scaler", None) is None:
                # Without a GradScaler nothing else would skip it (with one, unscale_ finds
                # the inf, its step skips and its scale backs off).
                log.warning(f"{reduction.nonfinite_cores} of {reduction.num_cores} cores "
                            "have a non-finite gradient norm: the step is skipped")
                output = closure_result
            else:
                output = super().optimizer_step(optimizer, lambda: closure_result, model,
                                                **kwargs)
        finally:
            clip_optimizer.zero_grad()  # the next core's backward starts from no gradient
        if _distributed():
            average_buffers(self.lightning_module)
        return output

    def _log_reduction(self, reduction: CoreReduction) -> None:
        module = self.lightning_module
        if module is None:
            return
        try:
            module.trainer
        except RuntimeError:  # not attached to a Trainer: nowhere to log
            return
        report = {self.log_prefix + key: float(value)
                  for key, value in reduction.as_report().items()}
        report[self.log_prefix + "nonfinite_cores"] = float(reduction.nonfinite_cores)
        # Every rank holds the same all-reduced statistics: nothing to synchronise.
        module.log_dict(report, on_step=True, on_epoch=False, batch_size=1)

    # -- checkpoints ------------------------------------------------------------------------
    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict:
        """The optimizer's state for a checkpoint (called on every rank): under DDP, a cycle's
        pending cores are first moved to rank 0, which writes the checkpoint; training goes on
        with the same sum."""
        if self.clips_per_core:
            raw = optimizer.optimizer if isinstance(optimizer, LightningOptimizer) else optimizer
            raw.gather_pending()
        return super().optimizer_state(optimizer)


def _distributed() -> bool:
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class PerCoreSingleDeviceStrategy(PerCoreClipping, SingleDeviceStrategy):
    """Per-core clipping in one process (``device``: Lightning's; "cpu", "cuda:0", ...)."""


class PerCoreDDPStrategy(PerCoreClipping, DDPStrategy):
    """Per-core clipping under Lightning's DDP: one all-reduce of the clipped sum per step."""


def per_core_strategy(*, devices: Any = 1, num_nodes: Any = 1, device: Optional[str] = None,
                      **kwargs: Any) -> PerCoreClipping:
    """The per-core strategy of a run's process layout, the choice Lightning's ``strategy:
    auto`` makes: DDP for more than one process (``devices`` × ``num_nodes``, an ESPnet3 YAML
    passes ``${num_device}`` and ``${num_nodes}``), else one device (``device``; default the
    first CUDA device where there is one, else the CPU).  ``kwargs``: the strategy's own
    (``clip``, ``clip_conf``, DDPStrategy's ``find_unused_parameters``, ...)."""
    try:
        processes = int(devices) * int(num_nodes)
    except (TypeError, ValueError):
        raise ClipConfigError(f"per_core_strategy: devices={devices!r} and "
                              f"num_nodes={num_nodes!r} must be integers (ESPnet3: "
                              "${num_device}, ${num_nodes})") from None
    if processes > 1:
        return PerCoreDDPStrategy(**kwargs)
    if device is None:
        device = "cuda:0" if torch.cuda.is_available() else "cpu"
    return PerCoreSingleDeviceStrategy(device=device, **kwargs)


__all__ = ["PerCoreClipping", "PerCoreDDPStrategy", "PerCoreSingleDeviceStrategy",
           "check_trainer", "lightning_clip_config", "per_core_strategy"]
