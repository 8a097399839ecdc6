"""Shared fixtures: one small generated canary dir per test session (TTS runs once, ~2 s)."""
import pytest

from espnet_pcc.measurement.canary.generate import CanaryConfig, generate
from shared_helpers import CANARY_SMALL, CANARY_VOCAB


@pytest.fixture(scope="session")
def canary_dir(tmp_path_factory):
    """Needs espeak-ng and sox: mark the tests that use it with `needs_tts`."""
    out = tmp_path_factory.mktemp("gen") / "canaries_out"
    generate(out, CANARY_VOCAB, CanaryConfig(**CANARY_SMALL), vocab_source="test", nj=2)
    return out
