"""Shared fixtures: one small generated canary dir per test session (TTS runs once, ~2 s)."""
import shutil

import pytest

from espnet_pcc.canary.generate import CanaryConfig, generate

SMALL = dict(num_words=4, repeat_counts=(1, 2, 4), canaries_per_count=2, num_references=6,
             speed=1.6, seed=7)
VOCAB = ["apple", "river", "stone", "yellow", "garden", "window", "silver", "candle",
         "mountain", "pepper", "letter", "forest"]

needs_tts = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("sox")), reason="espeak-ng/sox not installed"
)


@pytest.fixture(scope="session")
def canary_dir(tmp_path_factory):
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        pytest.skip("espeak-ng/sox not installed")
    out = tmp_path_factory.mktemp("gen") / "canaries_out"
    generate(out, VOCAB, CanaryConfig(**SMALL), vocab_source="test", nj=2)
    return out
