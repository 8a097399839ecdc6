"""Constants shared by tests in several directories, defined once.

Fixtures live in the conftest.py of the directory that shares them; values that tests use at
import time (paths, parametrize lists) live here, because conftest modules are not meant to be
imported. Importable everywhere through `pythonpath` in pytest.ini.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import List

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
EGS2 = REPO / "egs2"
TEMPLATE = EGS2 / "TEMPLATE" / "asr1"

#: The clipping mode of each config variant (conf/train_asr_<family>_<variant>.yaml).
CLIP_MODES = {"baseline": "global", "pcc": "per_core", "apcc": "adaptive_per_core"}

#: What the `needs_tts` marker (tests/conftest.py) requires on PATH.
TTS_TOOLS = ("espeak-ng", "sox")

#: A small canary set: the session fixture `canary_dir` (tests/canary/conftest.py) is generated
#: with these settings from this vocabulary.
CANARY_VOCAB = ["apple", "river", "stone", "yellow", "garden", "window", "silver", "candle",
                "mountain", "pepper", "letter", "forest"]
CANARY_SMALL = dict(num_words=4, repeat_counts=(1, 2, 4), canaries_per_count=2, num_references=6,
                    speed=1.6, seed=7)


def missing_tts_tools() -> List[str]:
    """The TTS tools not found on PATH (empty when speech can be synthesised)."""
    return [tool for tool in TTS_TOOLS if shutil.which(tool) is None]
