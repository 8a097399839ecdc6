"""`PerCoreClipOptimizer` as Lightning's automatic optimization drives it."""
from __future__ import annotations

import torch

from espnet_pcc.core.optimizers import PerCoreClipOptimizer


class LightningCoreClipOptimizer(PerCoreClipOptimizer):
    """The per-core wrapper whose `zero_grad` releases ``p.grad`` and nothing else.

    Lightning zeroes the gradients of an accumulation cycle's first micro-batch *after* that
    micro-batch's ``training_step`` and before its ``backward``; the per-core strategy runs
    each core's backward inside ``training_step`` and has already added the cores (and freed
    their ``p.grad``) by then.  So a step's cores are dropped only by the step itself
    (`reduce_cores`) or by `load_state_dict`, never by `zero_grad`.  Everything else is
    `PerCoreClipOptimizer`'s: the streaming sums, the single all-reduce under DDP, the
    checkpointed pending cores.
    """

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Releases ``p.grad`` (the last step's update); the pending cores stay."""
        self.original_optimizer.zero_grad(set_to_none=set_to_none)

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The wrapped optimizer, under the name Lightning's callbacks look for on a wrapper
        (`LearningRateMonitor` then reports its learning rate once, under the wrapped
        optimizer's name, as in a run without the wrapper)."""
        return self.original_optimizer


__all__ = ["LightningCoreClipOptimizer"]
