"""The core's batch samplers as espnet2 batch samplers (`--batch_sampler`).

espnet2's iterator factories call ``generate(seed)`` on a batch sampler only when it is an
``AbsSampler``; the core's samplers (`espnet_pcc.core.data_loader`) have that method but
import no espnet2, so they are registered here as virtual subclasses (`abc`'s own mechanism:
no copy of a class, no wrapper around it).
"""
from __future__ import annotations

from espnet2.samplers.abs_sampler import AbsSampler

from espnet_pcc.core.data_loader.poisson import PoissonCoreSampler
from espnet_pcc.core.data_loader.shuffled import ShuffledBatchSampler
from espnet_pcc.core.data_loader.speaker_cores import SpeakerCoreSampler

#: --batch_sampler values: auto (poisson with noise, else espnet), ESPnet's own
#: (`--batch_type`), new batches every epoch (`ShuffledBatchSampler`), or Poisson sampling
#: into hashed cores (`PoissonCoreSampler`).
BATCH_SAMPLERS = ("auto", "espnet", "shuffled", "poisson")

for _sampler in (PoissonCoreSampler, ShuffledBatchSampler, SpeakerCoreSampler):
    AbsSampler.register(_sampler)

__all__ = ["BATCH_SAMPLERS", "PoissonCoreSampler", "ShuffledBatchSampler", "SpeakerCoreSampler"]
