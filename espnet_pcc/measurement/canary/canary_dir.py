"""The layout of a ``make_canaries`` output dir, its manifest's writer, and the one reader of
the dir, used by insertion, exposure and accuracy.

Layout (made by :func:`espnet_pcc.measurement.canary.generate.generate`, the manifest written by
:func:`write_manifest`; the manifest's full schema is in that module's docstring)::

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
from typing import Any, Dict, Union

import json

from espnet_pcc import fileio, kaldi_dir
from espnet_pcc.errors import UserError

PathLike = Union[str, Path]

MANIFEST_FORMAT = "espnet-pcc-canaries/1"
MANIFEST_JSON = "manifest.json"
CANARIES, REFERENCES = "canaries", "references"  # the Kaldi dirs and the manifest's lists
ID, TEXT, REPEAT_COUNT = "id", "text", "repeat_count"  # of every manifest entry


class CanaryError(UserError):
    """Bad canary configuration (counts, sizes, vocabulary too small, existing output)."""


def write_manifest(directory: PathLike, manifest: Dict[str, Any]) -> None:
    """``directory/manifest.json``, written atomically (keys sorted: a byte-identical file for
    the same content)."""
    fileio.atomic_write_json(Path(directory) / MANIFEST_JSON, manifest)


def read_manifest(canary_dir: PathLike) -> Dict[str, Any]:
    """Load ``canary_dir/manifest.json`` (raises :class:`CanaryError` if missing or foreign)."""
    path = Path(canary_dir) / MANIFEST_JSON
    if not path.is_file():
        raise CanaryError(f"{path} not found: is {canary_dir} a make_canaries output dir?")
    with open(path, encoding="utf-8") as f:
        man = json.load(f)
    if man.get("format") != MANIFEST_FORMAT:
        raise CanaryError(f"{path}: unknown manifest format {man.get('format')!r}")
    return man


@dataclass(frozen=True)
class CanaryDir:
    path: Path
    manifest: Dict[str, Any]
    canaries: kaldi_dir.KaldiDir
    references: kaldi_dir.KaldiDir

    @property
    def repeat_counts(self) -> Dict[str, int]:
        """canary id -> times it is inserted into training."""
        return {c[ID]: int(c[REPEAT_COUNT]) for c in self.manifest[CANARIES]}

    @property
    def canary_info(self) -> Dict[str, Dict[str, Any]]:
        """canary id -> its manifest entry (text, repeat count, duration, num_samples, ...)."""
        return {c[ID]: c for c in self.manifest[CANARIES]}

    def texts(self, kind: str) -> Dict[str, str]:
        """utterance id -> text of ``"canaries"`` or ``"references"``."""
        return {u[ID]: u[TEXT] for u in self.manifest[kind]}

    def counts(self, kind: str) -> Dict[str, int]:
        """utterance id -> repeat count of ``"canaries"`` or ``"references"`` (0)."""
        return {u[ID]: int(u[REPEAT_COUNT]) for u in self.manifest[kind]}


def read_canary_dir(path: PathLike) -> CanaryDir:
    """The canary dir at ``path``, checked (see the module docstring); a bad one is a
    one-line :class:`CanaryError`."""
    path = Path(path)
    manifest = read_manifest(path)
    canaries = kaldi_dir.read(path / CANARIES)
    references = kaldi_dir.read(path / REFERENCES)
    clash = set(canaries.utt2spk) & set(references.utt2spk)
    if clash:
        raise CanaryError(f"canary/reference id collision: {sorted(clash)[0]!r} is in both")
    if {c[ID] for c in manifest[CANARIES]} != set(canaries.utt2spk):
        raise CanaryError(f"{path}: manifest and canaries/ list different canaries")
    return CanaryDir(path, manifest, canaries, references)


__all__ = ["CANARIES", "ID", "MANIFEST_FORMAT", "MANIFEST_JSON", "REFERENCES", "REPEAT_COUNT",
           "TEXT", "CanaryDir", "CanaryError", "read_canary_dir", "read_manifest",
           "write_manifest"]
