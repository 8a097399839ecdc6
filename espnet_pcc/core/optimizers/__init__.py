"""Per-core clipping as a torch optimizer wrapper (Opacus' ``optimizers/`` in form):
`PerCoreClipOptimizer` implements `CoreClippingOptimizer`, the interface the trainers call."""
from espnet_pcc.core.optimizers.checkpoint import saved_privacy_history
from espnet_pcc.core.optimizers.interface import CoreClippingOptimizer, CoreReduction, \
    implements_core_clipping
from espnet_pcc.core.optimizers.per_core import PerCoreClipOptimizer

__all__ = ["CoreClippingOptimizer", "CoreReduction", "PerCoreClipOptimizer",
           "implements_core_clipping", "saved_privacy_history"]
