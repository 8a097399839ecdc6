"""LibriSpeech data prep: the extracted corpus layout -> one Kaldi data dir per set.

On-disk layout (as distributed on openslr.org, after ``tar xzf``)::

    <corpus>/<split>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac
    <corpus>/<split>/<spk>/<chapter>/<spk>-<chapter>.trans.txt     ("<utt-id> WORDS ..." lines)

Kaldi dir written (ESPnet's ``local/data.sh`` conventions): utterance id = the flac stem,
speaker id = ``<spk>-<chapter>`` (so every utterance id starts with its speaker id), ``wav.scp``
points at the flac files by absolute path (espnet2 reads flac with soundfile; no conversion),
``text`` is the transcript as given (upper case). Several splits may be combined into one dir
(train_960 = train-clean-100 + train-clean-360 + train-other-500). The corpus dir may be the
extracted ``LibriSpeech/`` or its parent (ESPnet's ``db.sh``: ``LIBRISPEECH=downloads``).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Sequence, Tuple

import soundfile

from espnet_pcc import data_check, fileio, kaldi_dir
from espnet_pcc.errors import UserError

logger = logging.getLogger(__name__)

KNOWN_SPLITS = (
    "train-clean-100", "train-clean-360", "train-other-500",
    "dev-clean", "dev-other", "test-clean", "test-other",
)


#: Written into every prepared dir: the corpus dir and splits it was made from.
STAMP = ".prep_librispeech.json"


class DataPrepError(UserError):
    """Missing corpus, missing split, or a split whose files disagree."""


def resolve_corpus(corpus_dir: Path, splits: Sequence[str]) -> Path:
    """The directory that holds ``splits``: ``corpus_dir`` itself (the extracted LibriSpeech/)
    or, as ESPnet's ``db.sh`` has it (``LIBRISPEECH=downloads``), its ``LibriSpeech/`` subdir.

    Raises one line naming the first missing thing: the directory, or a split in it.
    """
    corpus_dir = Path(corpus_dir)
    for candidate in (corpus_dir, corpus_dir / "LibriSpeech"):
        if all((candidate / s).is_dir() for s in splits):
            return candidate
    hint = ("LIBRISPEECH (--corpus_dir) must be the extracted LibriSpeech/ directory or the "
            "directory that contains it")
    if not corpus_dir.is_dir():
        raise DataPrepError(f"LibriSpeech directory {corpus_dir} does not exist ({hint})")
    looked = corpus_dir / "LibriSpeech" if (corpus_dir / "LibriSpeech").is_dir() else corpus_dir
    missing = [s for s in splits if not (looked / s).is_dir()]
    present = sorted(p.name for p in looked.iterdir() if p.is_dir())
    raise DataPrepError(
        f"split {missing[0]} missing from {looked} (found: {', '.join(present) or 'nothing'}); "
        f"download and extract {missing[0]}.tar.gz from https://www.openslr.org/12 ({hint})"
    )


def check_corpus(corpus_dir: Path, splits: Sequence[str]) -> None:
    """Raise one line naming the first missing thing (see :func:`resolve_corpus`)."""
    resolve_corpus(corpus_dir, splits)


def read_split(split_dir: Path) -> Tuple[Dict[str, str], Dict[str, str], Dict[str, str]]:
    """Scan one split; return (wav_scp, text, utt2spk) keyed by utterance id."""
    wav_scp: Dict[str, str] = {}
    text: Dict[str, str] = {}
    utt2spk: Dict[str, str] = {}
    trans_files = sorted(split_dir.glob("*/*/*.trans.txt"))
    if not trans_files:
        raise DataPrepError(
            f"{split_dir} has no <spk>/<chapter>/<spk>-<chapter>.trans.txt files: "
            f"not an extracted LibriSpeech split"
        )
    for trans in trans_files:
        chapter_dir = trans.parent
        spk_chapter = trans.name[: -len(".trans.txt")]
        expected = f"{chapter_dir.parent.name}-{chapter_dir.name}"
        if spk_chapter != expected:
            raise DataPrepError(f"{trans}: expected the name {expected}.trans.txt")
        with open(trans, encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                parts = line.strip().split(maxsplit=1)
                if not parts:
                    continue
                utt = parts[0]
                if not utt.startswith(spk_chapter + "-"):
                    raise DataPrepError(f"{trans}:{n}: utterance {utt} is not in chapter {spk_chapter}")
                flac = chapter_dir / f"{utt}.flac"
                if not flac.is_file():
                    raise DataPrepError(f"{trans}:{n}: audio {flac} is missing")
                if utt in text:
                    raise DataPrepError(f"{trans}:{n}: duplicate utterance {utt}")
                text[utt] = parts[1] if len(parts) > 1 else ""
                wav_scp[utt] = str(flac.resolve())
                utt2spk[utt] = spk_chapter
        orphans = {p.stem for p in chapter_dir.glob("*.flac")} - {
            u for u in text if u.startswith(spk_chapter + "-")
        }
        if orphans:
            logger.warning("%s: %d flac files without a transcript ignored, e.g. %s",
                           chapter_dir, len(orphans), sorted(orphans)[0])
    return wav_scp, text, utt2spk


def prepare(corpus_dir: Path, splits: Sequence[str], output_dir: Path,
            overwrite: bool = False, check_audio: int = 1, audio_nj: int = 4) -> int:
    """Write ``output_dir`` (atomically) from ``splits`` of the corpus; return #utterances.

    ``corpus_dir`` is the extracted LibriSpeech/ or its parent (:func:`resolve_corpus`). An
    existing valid ``output_dir`` made from the same corpus dir and splits (its ``STAMP``) is
    kept; one made from anything else is an error unless ``overwrite``, which rewrites it.
    (The stage script decides itself whether its output is up to date and passes overwrite.)
    The first ``check_audio`` flac files are opened to catch a wrong sample rate early; every
    file's header is read (``audio_nj`` threads) to reject corrupt or empty audio.
    """
    corpus_dir, output_dir = Path(corpus_dir), Path(output_dir)
    corpus_dir = resolve_corpus(corpus_dir, splits)
    stamp = fileio.dumps_json({"corpus_dir": str(corpus_dir.resolve()), "splits": list(splits)})
    if output_dir.exists() and not overwrite:
        made_by = output_dir / STAMP
        if not made_by.is_file() or made_by.read_text(encoding="utf-8") != stamp:
            raise DataPrepError(f"{output_dir} exists but was not made from {' '.join(splits)} "
                                f"of {corpus_dir} (use --overwrite)")
        kd = kaldi_dir.read(output_dir)  # raises if it is not a valid data dir
        logger.info("%s exists and is valid (%d utterances): skipped", output_dir, len(kd))
        return len(kd)
    wav_scp: Dict[str, str] = {}
    text: Dict[str, str] = {}
    utt2spk: Dict[str, str] = {}
    for split in splits:
        w, t, u = read_split(corpus_dir / split)
        clash = set(w) & set(wav_scp)
        if clash:
            raise DataPrepError(f"split {split} repeats utterance {sorted(clash)[0]}")
        wav_scp.update(w)
        text.update(t)
        utt2spk.update(u)
        logger.info("%s: %d utterances", split, len(w))
    for path in list(wav_scp.values())[: max(0, check_audio)]:
        info = soundfile.info(path)
        if info.samplerate != 16000 or info.channels != 1:
            raise DataPrepError(f"{path}: expected 16 kHz mono, got {info.samplerate} Hz x {info.channels}")
    kd = kaldi_dir.KaldiDir(wav_scp=wav_scp, text=text, utt2spk=utt2spk)
    # Every header, before anything is written: a corrupt or empty flac would
    # otherwise crash a training epoch hours later.
    data_check.check_audio(kd, " ".join(splits), nj=audio_nj)
    kaldi_dir.validate(kd, name=str(output_dir), strict_sort=True)
    with kaldi_dir.atomic_dir(output_dir, overwrite=overwrite) as tmp:
        kaldi_dir.write_files(kd, tmp)
        kaldi_dir.validate_files(tmp)
        (tmp / STAMP).write_text(stamp, encoding="utf-8")
    logger.info("wrote %s: %d utterances, %d speakers", output_dir, len(kd), len(set(utt2spk.values())))
    return len(kd)
