"""Privacy units from utterance ids: ESPnet's speed perturbation writes each perturbed copy of
a recording as ``sp<factor>-<id>`` (`espnet_pcc.recipe.speed_perturb`), and every copy of one
recording is one unit (the guarantee is for the recording, not for a group of its copies)."""
from __future__ import annotations

import re

#: The id prefix of a speed-perturbed copy, for any factor.
SPEED_PERTURBED_PREFIX = re.compile(r"^sp[0-9]+(?:\.[0-9]+)?-")


def recording_of(utt_id: str) -> str:
    """The recording an utterance id is a copy of: the id without its ``sp<f>-`` prefix."""
    return SPEED_PERTURBED_PREFIX.sub("", utt_id, count=1)


__all__ = ["SPEED_PERTURBED_PREFIX", "recording_of"]
