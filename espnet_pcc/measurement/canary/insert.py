"""Insert canaries into a training data dir: each canary repeated its count times.

``insert(train_dir, canary_dir, output_dir)`` writes ``output_dir`` = ``train_dir`` ∪ repeats:

* repeat ``k`` (1-based) of canary ``C`` is utterance ``C-repNN`` (``NN`` zero-padded to the
  widest count), with the same wav, the same text and speaker id ``C`` (every canary is its own
  speaker, so per-speaker CMVN or speaker-balanced sampling never mixes it with real speakers);
* ``train_dir`` is only read; dev/test dirs are never involved;
* any utterance, recording or speaker id already in ``train_dir`` is an error (this also catches
  inserting twice, e.g. passing ``data/train_canary`` as the source);
* re-running with the same inputs is a no-op: ``output_dir`` is left as it is when its
  ``.canary_insert.json`` stamp records the same sources and counts and is not older than any
  input file (make's rule). Otherwise the output is written to a temp dir and renamed, so it is
  never half-written; the stamp is written last, so a dir with a stamp is complete. An existing
  ``output_dir`` is replaced only if an earlier insert made it (it carries the stamp).

Optional per-utterance files of ``train_dir`` are carried over: ``utt2dur`` and
``utt2num_samples`` get the canaries' values from the manifest, ``segments`` gets one
whole-file segment per repeat; other per-utterance or feature files are dropped with a warning
(ESPnet's stage 3 recomputes them).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Dict, List, Optional

from espnet_pcc import fileio, kaldi_dir
from espnet_pcc.errors import UserError
from espnet_pcc.measurement.canary.canary_dir import CANARIES, MANIFEST_JSON, CanaryDir, \
    read_canary_dir

logger = logging.getLogger(__name__)

STAMP = ".canary_insert.json"


class InsertError(UserError):
    """Bad insertion request (same dir in and out, foreign output dir, id collision)."""


def repeat_id(canary_id: str, k: int, width: int = 2) -> str:
    """Utterance id of repeat ``k`` (1-based) of a canary: ``<canary-id>-rep<NN>``."""
    return f"{canary_id}-rep{k:0{width}d}"


_REPEAT_ID = re.compile(r"^(?P<canary>.+)-rep[0-9]+$")


def canary_of(utt_id: str) -> Optional[str]:
    """The canary whose repeat ``utt_id`` is (the inverse of :func:`repeat_id`), else None."""
    match = _REPEAT_ID.match(utt_id)
    return match.group("canary") if match else None


def canary_repeats(found: CanaryDir, like: kaldi_dir.KaldiDir) -> kaldi_dir.KaldiDir:
    """The repeated canaries as a data dir shaped like ``like`` (same optional files)."""
    canaries, counts, info = found.canaries, found.repeat_counts, found.canary_info
    width = max(2, len(str(max(counts.values()))))
    add = kaldi_dir.KaldiDir(wav_scp={}, text={}, utt2spk={},
                             segments={} if like.segments is not None else None,
                             extra={k: {} for k in like.extra})
    for cid in canaries.utt_ids:
        for k in range(1, counts[cid] + 1):
            uid = repeat_id(cid, k, width)
            add.wav_scp[uid] = canaries.wav_scp[cid]
            add.text[uid] = canaries.text[cid]
            add.utt2spk[uid] = cid
            if add.segments is not None:
                add.segments[uid] = f"{uid} 0.00 {info[cid]['duration']:.2f}"
            if "utt2dur" in add.extra:
                add.extra["utt2dur"][uid] = f"{info[cid]['duration']:.3f}"
            if "utt2num_samples" in add.extra:
                add.extra["utt2num_samples"][uid] = str(info[cid]["num_samples"])
    unknown = [k for k in add.extra if k not in ("utt2dur", "utt2num_samples")]
    for k in unknown:
        logger.warning("dropping %s from the output (no value for canaries)", k)
        del add.extra[k]
    return add


def insert(train_dir: Path, canary_dir: Path, output_dir: Path) -> Dict[str, int]:
    """Merge repeated canaries into a copy of ``train_dir`` at ``output_dir``; return counts."""
    train_dir, canary_dir, output_dir = Path(train_dir), Path(canary_dir), Path(output_dir)
    if output_dir.resolve() == train_dir.resolve():
        raise InsertError(f"output_dir must differ from train_dir ({train_dir} is never modified)")
    found = read_canary_dir(canary_dir)
    train = kaldi_dir.read(train_dir)
    for k in [k for k in train.extra if k not in ("utt2dur", "utt2num_samples")]:
        logger.warning("%s/%s not carried over (no value for canaries)", train_dir, k)
        del train.extra[k]
    for f in kaldi_dir.FEATURE_FILES:
        if (train_dir / f).exists():
            logger.warning("%s/%s not carried over (features are recomputed)", train_dir, f)
    add = canary_repeats(found, train)
    merged = kaldi_dir.merge(train, add, name=f"inserting {canary_dir} into {train_dir}")
    stamp = {
        "train_dir": str(train_dir.resolve()),
        "canary_dir": str(canary_dir.resolve()),
        "num_train_utts": len(train),
        "num_canaries": len(found.repeat_counts),
        "num_inserted_utts": len(add),
    }
    if output_dir.exists() and not (output_dir / STAMP).is_file():
        raise InsertError(
            f"{output_dir} exists and was not made by insert_canaries: refusing to replace it"
        )
    counts = {"train": len(train), "inserted": len(add), "total": len(merged)}
    stamp_text = fileio.dumps_json(stamp)
    if _is_done(output_dir, stamp_text, _input_files(train_dir, canary_dir)):
        logger.info("%s is up to date: nothing to do", output_dir)
        return counts
    with kaldi_dir.atomic_dir(output_dir, overwrite=True) as tmp:
        kaldi_dir.write_files(merged, tmp)
        kaldi_dir.validate_files(tmp)
        fileio.atomic_write_text(tmp / STAMP, stamp_text)
    logger.info(
        "%s: %d training + %d canary utterances (%d canaries)",
        output_dir, len(train), len(add), len(found.repeat_counts),
    )
    return counts


def _input_files(train_dir: Path, canary_dir: Path) -> List[Path]:
    """The files an insert reads: the training data dir, the manifest and the canary data dir.

    (The wavs are referenced, not copied, so they are no input of the output dir.)
    """
    files = [canary_dir / MANIFEST_JSON]
    for d in (train_dir, canary_dir / CANARIES):
        files += sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith("."))
    return files


def _is_done(output_dir: Path, stamp_text: str, inputs: List[Path]) -> bool:
    """Whether ``output_dir`` was made by this very insert and no input changed since."""
    stamp = output_dir / STAMP
    return (stamp.is_file() and stamp.read_text(encoding="utf-8") == stamp_text
            and fileio.is_up_to_date(stamp, inputs))
