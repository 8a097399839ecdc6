"""The one reader of a ``make_canaries`` output dir, used by insertion, exposure and accuracy.

Layout (written by :func:`espnet_pcc.canary.generate.generate`)::

    manifest.json   {"format", "canaries": [{"id", "text", "repeat_count", ...}],
                     "references": [{"id", "text", "repeat_count": 0, ...}], ...}
    canaries/       Kaldi dir of the canaries (one utterance each, sped up)
    references/     Kaldi dir of the never-inserted references from the same generator

:func:`read_canary_dir` checks, before any model loads or any file is written, that the
manifest is ours, that it and ``canaries/`` list the same canaries, and that no id is both a
canary and a reference.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Union

from espnet_pcc import kaldi_dir
from espnet_pcc.canary.generate import CanaryError, read_manifest

PathLike = Union[str, Path]


@dataclass(frozen=True)
class CanaryDir:
    path: Path
    manifest: Dict[str, Any]
    canaries: kaldi_dir.KaldiDir
    references: kaldi_dir.KaldiDir

    @property
    def repeat_counts(self) -> Dict[str, int]:
        """canary id -> times it is inserted into training."""
        return {c["id"]: int(c["repeat_count"]) for c in self.manifest["canaries"]}

    @property
    def canary_info(self) -> Dict[str, Dict[str, Any]]:
        """canary id -> its manifest entry (text, repeat count, duration, num_samples, ...)."""
        return {c["id"]: c for c in self.manifest["canaries"]}

    def entries(self, kind: str) -> List[Dict[str, Any]]:
        """The manifest entries of ``"canaries"`` or ``"references"`` (repeat count 0)."""
        return self.manifest[kind]


def read_canary_dir(path: PathLike) -> CanaryDir:
    """The canary dir at ``path``, checked (see the module docstring); a bad one is a
    one-line :class:`CanaryError`."""
    path = Path(path)
    manifest = read_manifest(path)
    canaries = kaldi_dir.read(path / "canaries")
    references = kaldi_dir.read(path / "references")
    clash = set(canaries.utt2spk) & set(references.utt2spk)
    if clash:
        raise CanaryError(f"canary/reference id collision: {sorted(clash)[0]!r} is in both")
    if {c["id"] for c in manifest["canaries"]} != set(canaries.utt2spk):
        raise CanaryError(f"{path}: manifest and canaries/ list different canaries")
    return CanaryDir(path, manifest, canaries, references)


__all__ = ["CanaryDir", "read_canary_dir"]
