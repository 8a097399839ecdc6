"""The quantile-adaptive clipping bound (clip_conf.target_quantile γ, bound_lr η; Andrew et
al. 2021, "Differentially private learning with adaptive clipping", without their noise on
the count): after each step C ← C·exp(−η(b − γ)), b the fraction of the step's finite cores
with ‖g_k‖ ≤ C."""
from __future__ import annotations

import math


def next_quantile_bound(bound: float, unclipped_fraction: float, target_quantile: float,
                        bound_lr: float) -> float:
    """Andrew et al.'s geometric update: C·exp(−η(b − γ)).

    b > γ (more cores under C than the target): C shrinks; b < γ: C grows.  At b = γ,
    C is the γ-quantile of the core norms, which it tracks over steps.
    """
    return bound * math.exp(-bound_lr * (unclipped_fraction - target_quantile))


__all__ = ["next_quantile_bound"]
