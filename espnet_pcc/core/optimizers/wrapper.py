"""A torch optimizer that delegates everything optimizer-like to the one it wraps."""
from __future__ import annotations

import torch


class OptimizerWrapper(torch.optim.Optimizer):
    """Shares ``param_groups``, ``state`` and ``defaults`` with the wrapped optimizer and runs
    its ``step``, so LR schedulers and ``GradScaler`` see one optimizer (Opacus' DPOptimizer
    pattern); subclasses add what happens to the gradients before the step.

    ``torch.optim.Optimizer.__init__`` is not called on purpose: all optimizer state lives in
    the wrapped instance.  Subclassing ``torch.optim.Optimizer`` is still needed: torch's LR
    schedulers check ``isinstance(optimizer, torch.optim.Optimizer)``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.original_optimizer = optimizer

    @property
    def param_groups(self):
        return self.original_optimizer.param_groups

    @param_groups.setter
    def param_groups(self, value):
        self.original_optimizer.param_groups = value

    @property
    def state(self):
        return self.original_optimizer.state

    @property
    def defaults(self):
        return self.original_optimizer.defaults

    def step(self, closure=None):
        return self.original_optimizer.step(closure)

    def add_param_group(self, param_group: dict) -> None:
        self.original_optimizer.add_param_group(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.original_optimizer.zero_grad(set_to_none=set_to_none)


__all__ = ["OptimizerWrapper"]
