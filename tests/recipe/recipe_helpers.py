"""Shared helpers: a tiny LibriSpeech directory in the real on-disk layout, run a recipe."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import soundfile

WORDS = "THE QUICK BROWN FOX JUMPS OVER A LAZY DOG WHILE SEVEN BIRDS SING".split()


def make_librispeech(root: Path, splits: Dict[str, Sequence[int]], utts_per_chapter: int = 3,
                     seconds: float = 0.6) -> Path:
    """``root/LibriSpeech/<split>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac`` + ``.trans.txt``
    with noise audio at 16 kHz; ``splits`` maps a split name to its speaker ids."""
    rng = np.random.default_rng(0)
    corpus = root / "LibriSpeech"
    for split, speakers in splits.items():
        for spk in speakers:
            chapter = spk * 10 + 1
            d = corpus / split / str(spk) / str(chapter)
            d.mkdir(parents=True)
            lines = []
            for u in range(utts_per_chapter):
                utt = f"{spk}-{chapter}-{u:04d}"
                audio = (0.1 * rng.standard_normal(int(16000 * seconds))).astype("float32")
                soundfile.write(d / f"{utt}.flac", audio, 16000, subtype="PCM_16")
                words = [WORDS[(spk + u + k) % len(WORDS)] for k in range(3 + u % 3)]
                lines.append(f"{utt} {' '.join(words)}")
            (d / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return corpus


def env() -> Dict[str, str]:
    """The test interpreter's environment, its bin dir first on PATH (python3 = this venv)."""
    e = dict(os.environ)
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    return e


def run(cmd: List[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
