"""What a noisy run releases besides its noisy steps, kept to what the accountant covers.

The accountant (`espnet_pcc.core.accounting`) covers the model parameters, each the result of
noisy steps.  A run writes more than its parameters; docs/privacy.md lists what is released
and covered by epsilon, released and not covered, and not released.  With noise this module
keeps the rest out of the released files:

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
- **Logs.**  With noise, unless ``clip_conf.log_train_stats: true``, a trainer logs only
  `RELEASED_KEYS` (`is_released`): what is private (a function of the noisy update) or does
  not depend on the data.  The espnet2 trainer's reporters that apply it are in
  `espnet_pcc.espnet2.release`.
"""
from __future__ import annotations

from typing import List, Tuple

import torch

from espnet_pcc.core.clip_config import ClipConfig, ClipConfigError

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


__all__ = ["BufferGuard", "LR_PREFIX", "RELEASED_KEYS", "check_running_statistics",
           "freeze_running_statistics", "has_running_statistics", "is_released",
           "modules_with_running_statistics"]
