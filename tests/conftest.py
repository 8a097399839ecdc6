"""Fixtures and markers shared by the whole suite (conventions: docs/design.md, 'Tests').

Markers (registered in pytest.ini):
    needs_tts   skip the test when espeak-ng or sox is not on PATH.

One torch thread in this process and in every process a test starts: a reduction's
rounding depends on the thread count, so a run split between the test process and a
child (kill-and-resume, two nodes) only matches an uninterrupted one when both use the
same count, and one thread is also the fast setting on this project's CPUs.
"""
import os

import numpy as np
import pytest
import soundfile
import torch

os.environ["OMP_NUM_THREADS"] = "1"  # inherited by every subprocess a test starts
torch.set_num_threads(1)

from shared_helpers import TTS_TOOLS, missing_tts_tools

CHARS = list("abcde")


def pytest_runtest_setup(item):
    """Runs before the test's fixtures are set up, so a skipped test builds none of them."""
    if item.get_closest_marker("needs_tts") is not None and missing_tts_tools():
        pytest.skip("/".join(TTS_TOOLS) + " not installed")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """8 short noisy-tone utterances with char transcripts, as a Kaldi-style dir."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    wav_scp, text, shape = [], [], []
    for i in range(8):
        n = int(16000 * rng.uniform(0.5, 0.9))
        t = np.arange(n) / 16000
        audio = 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.05 * rng.standard_normal(n)
        path = root / f"utt{i}.wav"
        soundfile.write(path, audio.astype(np.float32), 16000, subtype="PCM_16")
        utt = f"utt{i}"
        wav_scp.append(f"{utt} {path}")
        text.append(f"{utt} " + "".join(rng.choice(CHARS, 2)) + " " +
                    "".join(rng.choice(CHARS, 3)))
        shape.append(f"{utt} {n}")
    (root / "wav.scp").write_text("\n".join(wav_scp) + "\n")
    (root / "text").write_text("\n".join(text) + "\n")
    (root / "speech_shape").write_text("\n".join(shape) + "\n")
    tokens = ["<blank>", "<unk>", "<space>"] + CHARS + ["<sos/eos>"]
    (root / "tokens.txt").write_text("\n".join(tokens) + "\n")
    return root
