"""Kaldi data directories: read, validate, write atomically, merge.

A data dir holds one line per key in each file, ``<key> <value>``, sorted in C-locale byte order
(what ``LC_ALL=C sort`` and ESPnet's ``utils/validate_data_dir.sh`` expect)::

    wav.scp   <recording-id> <path or command |>
    text      <utt-id> <transcript>
    utt2spk   <utt-id> <spk-id>
    spk2utt   <spk-id> <utt-id> <utt-id> ...     (derived from utt2spk, never edited by hand)
    segments  <utt-id> <recording-id> <start-s> <end-s>     (optional; then wav.scp is by recording)
    utt2dur, utt2num_samples, ...                  (optional per-utterance files, kept verbatim)

Invariants checked by :func:`validate`: every file sorted and without duplicate keys, the same
utterance set in ``text``/``utt2spk`` (and ``wav.scp`` or ``segments``), ``spk2utt`` the exact
inverse of ``utt2spk``, every segment's recording in ``wav.scp``. With ``strict_sort`` also
Kaldi's rule that sorting by speaker then utterance gives the same order as sorting by utterance
(true when utterance ids start with their speaker id).

Writes go to a temp dir next to the target and are renamed into place, so a crash or an error
never leaves a half-written data dir.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Union

from espnet_pcc import fileio
from espnet_pcc.errors import UserError

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]

#: Optional files keyed by utterance id that we read, carry and write verbatim.
PER_UTT_FILES = ("utt2dur", "utt2num_samples", "utt2category", "utt2lang", "utt2gender")
#: Files that only make sense with features we do not compute; dropped (with a warning) on merge.
FEATURE_FILES = ("feats.scp", "cmvn.scp", "utt2num_frames", "frame_shift")


class KaldiDirError(UserError):
    """A malformed or inconsistent data dir, or an id collision."""


def sort_key(s: str) -> bytes:
    """C-locale order (byte order of UTF-8), what Kaldi's sort checks use."""
    return s.encode("utf-8")


# --------------------------------------------------------------------------- 2-column files
def read_table(path: PathLike, allow_empty_value: bool = False) -> "OrderedDict[str, str]":
    """Read ``<key> <value...>`` lines in file order; raise on duplicates or missing values."""
    table: "OrderedDict[str, str]" = OrderedDict()
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            parts = line.split(maxsplit=1)
            key = parts[0]
            value = parts[1].strip() if len(parts) > 1 else ""
            if not value and not allow_empty_value:
                raise KaldiDirError(f"{path}:{n}: key {key!r} has no value")
            if key in table:
                raise KaldiDirError(f"{path}:{n}: duplicate key {key!r}")
            table[key] = value
    return table


def write_table(path: PathLike, table: Mapping[str, str]) -> None:
    """Write ``<key> <value>`` lines sorted by key (C order)."""
    with open(path, "w", encoding="utf-8") as f:
        for key in sorted(table, key=sort_key):
            value = table[key]
            f.write(f"{key} {value}\n" if value != "" else f"{key}\n")


# --------------------------------------------------------------------------- data dir
@dataclasses.dataclass
class KaldiDir:
    """An in-memory data dir. ``wav_scp`` is keyed by recording (= utterance without segments)."""

    wav_scp: Dict[str, str]
    text: Dict[str, str]
    utt2spk: Dict[str, str]
    segments: Optional[Dict[str, str]] = None
    extra: Dict[str, Dict[str, str]] = dataclasses.field(default_factory=dict)

    @property
    def utt_ids(self) -> List[str]:
        return sorted(self.utt2spk, key=sort_key)

    @property
    def spk2utt(self) -> Dict[str, str]:
        inv: Dict[str, List[str]] = {}
        for utt in self.utt_ids:
            inv.setdefault(self.utt2spk[utt], []).append(utt)
        return {spk: " ".join(utts) for spk, utts in inv.items()}

    def __len__(self) -> int:
        return len(self.utt2spk)

    def wav_of(self, utt: str) -> str:
        """The wav.scp entry of an utterance (its recording's entry with segments)."""
        if self.segments is not None:
            return self.wav_scp[self.segments[utt].split()[0]]
        return self.wav_scp[utt]


def read(path: PathLike, validate_dir: bool = True) -> KaldiDir:
    """Read a data dir (wav.scp, text, utt2spk required; segments and PER_UTT_FILES optional)."""
    path = Path(path)
    if not path.is_dir():
        raise KaldiDirError(f"data dir {path} does not exist")
    for name in ("wav.scp", "text", "utt2spk"):
        if not (path / name).is_file():
            raise KaldiDirError(f"data dir {path} has no {name}")
    kd = KaldiDir(
        wav_scp=dict(read_table(path / "wav.scp")),
        text=dict(read_table(path / "text", allow_empty_value=True)),
        utt2spk=dict(read_table(path / "utt2spk")),
        segments=dict(read_table(path / "segments")) if (path / "segments").is_file() else None,
        extra={n: dict(read_table(path / n)) for n in PER_UTT_FILES if (path / n).is_file()},
    )
    if validate_dir:
        validate_files(path)
        validate(kd, name=str(path))
    return kd


def validate(kd: KaldiDir, name: str = "data dir", strict_sort: bool = False) -> None:
    """Raise :class:`KaldiDirError` on the first inconsistency between the files of ``kd``."""
    utts = set(kd.utt2spk)
    if not utts:
        raise KaldiDirError(f"{name}: no utterances")

    def same(other: Mapping[str, str], fname: str) -> None:
        missing, extra = utts - set(other), set(other) - utts
        if missing or extra:
            bad = sorted(missing or extra, key=sort_key)[0]
            what = "missing from" if missing else "not in utt2spk but in"
            raise KaldiDirError(
                f"{name}: {len(missing) + len(extra)} utterance ids differ between utt2spk and "
                f"{fname}, e.g. {bad!r} {what} {fname}"
            )

    same(kd.text, "text")
    if kd.segments is None:
        same(kd.wav_scp, "wav.scp")
    else:
        same(kd.segments, "segments")
        for utt, seg in kd.segments.items():
            fields = seg.split()
            if len(fields) != 3:
                raise KaldiDirError(f"{name}: segments line for {utt!r} needs 3 fields: {seg!r}")
            if fields[0] not in kd.wav_scp:
                raise KaldiDirError(f"{name}: segment {utt!r} has recording {fields[0]!r} not in wav.scp")
            try:
                start, end = float(fields[1]), float(fields[2])
            except ValueError:
                raise KaldiDirError(f"{name}: segment {utt!r} has non-numeric times {seg!r}")
            if start < 0 or (end != -1 and end <= start):
                raise KaldiDirError(f"{name}: segment {utt!r} has bad times {seg!r}")
    for fname, table in kd.extra.items():
        same(table, fname)
    for spk in set(kd.utt2spk.values()):
        if not spk or any(c.isspace() for c in spk):
            raise KaldiDirError(f"{name}: bad speaker id {spk!r}")
    if strict_sort:
        by_utt = kd.utt_ids
        by_spk = sorted(by_utt, key=lambda u: (sort_key(kd.utt2spk[u]), sort_key(u)))
        if by_utt != by_spk:
            raise KaldiDirError(
                f"{name}: sorting by speaker and by utterance disagree (utterance ids should "
                f"start with their speaker id)"
            )


def validate_files(path: PathLike) -> None:
    """Check on disk: each file sorted (C order), spk2utt present and the inverse of utt2spk."""
    path = Path(path)
    for fname in ("wav.scp", "text", "utt2spk", "spk2utt", "segments") + PER_UTT_FILES:
        f = path / fname
        if not f.is_file():
            if fname == "spk2utt":
                raise KaldiDirError(f"data dir {path} has no spk2utt")
            continue
        keys = list(read_table(f, allow_empty_value=(fname == "text")))
        if keys != sorted(keys, key=sort_key):
            raise KaldiDirError(f"{f} is not sorted (LC_ALL=C sort)")
    utt2spk = read_table(path / "utt2spk")
    spk2utt = read_table(path / "spk2utt")
    inv: Dict[str, List[str]] = {}
    for utt in sorted(utt2spk, key=sort_key):
        inv.setdefault(utt2spk[utt], []).append(utt)
    if {k: v.split() for k, v in spk2utt.items()} != inv:
        raise KaldiDirError(f"{path}/spk2utt is not the inverse of utt2spk")


@contextlib.contextmanager
def atomic_dir(target: PathLike, overwrite: bool = False) -> Iterator[Path]:
    """:func:`espnet_pcc.fileio.atomic_dir`, refusing an existing ``target`` unless ``overwrite``."""
    target = Path(target)
    if target.exists() and not overwrite:
        raise KaldiDirError(f"{target} already exists (use overwrite)")
    with fileio.atomic_dir(target) as tmp:
        yield tmp


def write_files(kd: KaldiDir, path: PathLike) -> None:
    """Write ``kd`` into an existing directory (no atomicity; see :func:`write`)."""
    path = Path(path)
    write_table(path / "wav.scp", kd.wav_scp)
    write_table(path / "text", kd.text)
    write_table(path / "utt2spk", kd.utt2spk)
    write_table(path / "spk2utt", kd.spk2utt)
    if kd.segments is not None:
        write_table(path / "segments", kd.segments)
    for fname, table in kd.extra.items():
        write_table(path / fname, table)


def write(kd: KaldiDir, path: PathLike, overwrite: bool = False, strict_sort: bool = False) -> Path:
    """Validate ``kd`` and write it atomically to ``path``; return the path."""
    validate(kd, name=str(path), strict_sort=strict_sort)
    with atomic_dir(path, overwrite=overwrite) as tmp:
        write_files(kd, tmp)
        validate_files(tmp)
    return Path(path)


def merge(base: KaldiDir, add: KaldiDir, name: str = "merged") -> KaldiDir:
    """Union of two data dirs; raises :class:`KaldiDirError` on any utterance/recording/speaker
    id shared by both (a silent overwrite would corrupt the training set)."""
    for what, x, y in (
        ("utterance", base.utt2spk, add.utt2spk),
        ("recording", base.wav_scp, add.wav_scp),
        ("speaker", set(base.utt2spk.values()), set(add.utt2spk.values())),
    ):
        clash = set(x) & set(y)
        if clash:
            ex = sorted(clash, key=sort_key)[:3]
            raise KaldiDirError(
                f"{name}: {len(clash)} {what} id(s) already present, e.g. {', '.join(ex)}"
            )
    if (base.segments is None) != (add.segments is None):
        raise KaldiDirError(f"{name}: cannot merge a dir with segments and one without")
    extra = {k: {**v, **add.extra[k]} for k, v in base.extra.items() if k in add.extra}
    dropped = set(base.extra) ^ set(add.extra)
    if dropped:
        logger.warning("%s: dropping %s (not present in both dirs)", name, ", ".join(sorted(dropped)))
    return KaldiDir(
        wav_scp={**base.wav_scp, **add.wav_scp},
        text={**base.text, **add.text},
        utt2spk={**base.utt2spk, **add.utt2spk},
        segments=None if base.segments is None else {**base.segments, **add.segments},
        extra=extra,
    )
