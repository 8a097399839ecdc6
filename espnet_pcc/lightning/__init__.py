"""Per-core clipping under Lightning, and so under ESPnet3: Lightning strategies a training
YAML selects by ``_target_`` (docs/lightning.md).  Built on the framework-free core only
(`espnet_pcc.core.clip_config`, `espnet_pcc.core.optimizers.per_core`, `espnet_pcc.core.cores`,
`espnet_pcc.core.distributed`),
never on the espnet2 integration (`espnet_pcc.espnet2.trainer`, `espnet_pcc.espnet2.task`)."""
from espnet_pcc.lightning.optimizer import LightningCoreClipOptimizer
from espnet_pcc.lightning.strategy import PerCoreDDPStrategy, PerCoreSingleDeviceStrategy, \
    per_core_strategy

__all__ = ["LightningCoreClipOptimizer", "PerCoreDDPStrategy", "PerCoreSingleDeviceStrategy",
           "per_core_strategy"]
