"""Per-core clipping under Lightning, and so under ESPnet3: Lightning strategies a training
YAML selects by ``_target_`` (docs/lightning.md).  Built on the framework-free core only
(`espnet_pcc.clip_config`, `espnet_pcc.optim`, `espnet_pcc.cores`, `espnet_pcc.distributed`),
never on the espnet2 integration (`espnet_pcc.trainer`, `espnet_pcc.tasks`)."""
from espnet_pcc.lightning.optimizer import LightningCoreClipOptimizer
from espnet_pcc.lightning.strategy import PerCoreDDPStrategy, PerCoreSingleDeviceStrategy, \
    per_core_strategy

__all__ = ["LightningCoreClipOptimizer", "PerCoreDDPStrategy", "PerCoreSingleDeviceStrategy",
           "per_core_strategy"]
