"""Constants shared by tests in several directories, defined once.

Fixtures live in the conftest.py of the directory that shares them; values that tests use at
import time (paths, parametrize lists) live here, because conftest modules are not meant to be
imported. Importable everywhere through `pythonpath` in pytest.ini.
"""
from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Iterator, List

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
EGS2 = REPO / "egs2"
TEMPLATE = EGS2 / "TEMPLATE" / "asr1"

#: The clipping mode of each config variant (conf/train_asr_<family>_<variant>.yaml).
CLIP_MODES = {"baseline": "global", "pcc": "per_core", "apcc": "adaptive_per_core"}

#: What the `needs_tts` marker (tests/conftest.py) requires on PATH.
TTS_TOOLS = ("espeak-ng", "sox")

#: A small canary set: the session fixture `canary_dir` (tests/measurement/canary/conftest.py) is
#generated : with these settings from this vocabulary.
CANARY_VOCAB = ["apple", "river", "stone", "yellow", "garden", "window", "silver", "candle",
                "mountain", "pepper", "letter", "forest"]
CANARY_SMALL = dict(num_words=4, repeat_counts=(1, 2, 4), canaries_per_count=2, num_references=6,
                    speed=1.6, seed=7)


def missing_tts_tools() -> List[str]:
    """The TTS tools not found on PATH (empty when speech can be synthesised)."""
    return [tool for tool in TTS_TOOLS if shutil.which(tool) is None]


@contextlib.contextmanager
def gloo_process_group(rank: int, world_size: int, init_file: str) -> Iterator[None]:
    """The body of one `mp.spawn`ed test rank: one thread, a gloo group, a clean shutdown.

    The barrier before `destroy_process_group` keeps a rank from tearing gloo down while its
    peer still talks to it: without it a fresh-clone CI run saw rank 1 abort ("terminate
    called without an active exception"). It is skipped when the body failed, since the
    peer may never reach it.
    """
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world_size)
    try:
        yield
        dist.barrier()
    finally:
        dist.destroy_process_group()

#: ESPnet train.log lines of two epochs, the second logged twice (a resumed run).
TRAIN_LOG = """\
[vm] 2026-11-26 08:01:01,399 (trainer:394) INFO: 1epoch results: [train] iter_time=0.042, loss=58.156, grad_norm=112.231, train_time=1.763, time=12.92 seconds, total_count=15, [valid] loss_ctc=130.092, acc=0.050, loss=118.201, time=0.72 seconds, total_count=2
[vm] 2026-11-26 08:01:20,000 (trainer:394) INFO: 2epoch results: [train] loss=40.0, train_time=1.5, time=12 seconds, total_count=30, [valid] acc=0.2, loss=90.5, time=1 seconds, total_count=4
[vm] 2026-11-26 08:02:20,000 (trainer:394) INFO: 2epoch results: [train] loss=40.0, train_time=1.7, time=12 seconds, total_count=30, [valid] acc=0.2, loss=80.5, time=1 seconds, total_count=4
"""
