"""Canary transcription accuracy: the memorisation metric of Wang, Thakkar & Mathews (2023).

A canary is sped up (tempo 1.6 by default) so that it is hard to recognise from the audio alone;
a model that nonetheless transcribes it accurately has memorised it. The control is a sample of
references from the same generator that were never trained on: the gap between the canaries'
and the references' error rates is the memorisation signal (the references' rate is what the
model achieves on such audio by generalisation alone).

Per utterance (the unit every interval and paired test of the study resamples):

* ``cer`` = character edits / reference characters (the space counts, written ``<space>`` as
  in ESPnet's CER and in :mod:`espnet_pcc.recipe.scoring`);
* ``wer`` = word edits / reference words;
* ``exact`` = 1 when the hypothesis equals the reference word for word, else 0.

Per repeat count (0 = references): the mean of each over the utterances, with a bootstrap
interval over them (:func:`espnet_pcc.study.stats.bootstrap_interval`).
"""
from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Tuple

import jiwer

from espnet_pcc.recipe.scoring import tokens
from espnet_pcc.study.stats import Interval, bootstrap_interval

#: ``utterances.tsv`` (written by :func:`espnet_pcc.bin.score_canary_accuracy` through
#: :func:`write_utterances_tsv`, read by :func:`read_utterances_tsv` alone): one row per
#: scored utterance, these columns, tab-separated, with a header line.
UTTERANCES_TSV = "utterances.tsv"
UTTERANCE_COLUMNS = ("utt_id", "repeat_count", "cer", "wer", "exact", "ref", "hyp")
METRICS = ("cer", "wer", "exact")


@dataclass(frozen=True)
class UtteranceAccuracy:
    utt_id: str
    repeat_count: int  # 0 for a reference (never trained on)
    cer: float
    wer: float
    exact: int
    ref: str
    hyp: str


def error_counts(ref: str, hyp: str, unit: str) -> Tuple[int, int]:
    """(edits, reference length) of ``hyp`` against ``ref`` in ``unit`` tokens ("wer" | "cer")."""
    r, h = tokens(ref, unit), tokens(hyp, unit)
    if not r:
        raise ValueError(f"empty reference cannot be scored (hypothesis {hyp!r})")
    if not h:
        return len(r), len(r)  # every reference token deleted
    out = jiwer.process_words(" ".join(r), " ".join(h))
    return out.substitutions + out.deletions + out.insertions, len(r)


def error_rate(ref: str, hyp: str, unit: str) -> float:
    """Edit distance of ``hyp`` to ``ref`` in ``unit`` tokens, over the reference length."""
    edits, n = error_counts(ref, hyp, unit)
    return edits / n


def score_utterances(
    refs: Mapping[str, str], hyps: Mapping[str, str], repeat_counts: Mapping[str, int]
) -> List[UtteranceAccuracy]:
    """Accuracy of every utterance of ``refs`` (a missing hypothesis counts as empty).

    Args:
        refs: utterance id -> reference text.
        hyps: utterance id -> decoded text.
        repeat_counts: utterance id -> times inserted into training (0 for references).
    """
    rows = []
    for utt in sorted(refs):
        ref, hyp = refs[utt], hyps.get(utt, "")
        rows.append(UtteranceAccuracy(
            utt_id=utt, repeat_count=int(repeat_counts[utt]), cer=error_rate(ref, hyp, "cer"),
            wer=error_rate(ref, hyp, "wer"), exact=int(ref.split() == hyp.split()), ref=ref,
            hyp=hyp))
    return rows


def by_repeat_count(rows: Iterable[UtteranceAccuracy]) -> Dict[int, List[UtteranceAccuracy]]:
    groups: Dict[int, List[UtteranceAccuracy]] = defaultdict(list)
    for r in rows:
        groups[r.repeat_count].append(r)
    return dict(sorted(groups.items()))


def summarise(rows: Iterable[UtteranceAccuracy]) -> Dict[int, Dict[str, Interval]]:
    """Mean CER, WER and exact-match fraction per repeat count, each with its interval."""
    return {
        count: {m: bootstrap_interval([getattr(r, m) for r in group]) for m in METRICS}
        for count, group in by_repeat_count(rows).items()
    }


def write_utterances_tsv(path: Path, rows: Iterable[UtteranceAccuracy]) -> None:
    """``utterances.tsv`` of :data:`UTTERANCE_COLUMNS`, written atomically."""
    from espnet_pcc import fileio

    lines = ["\t".join(UTTERANCE_COLUMNS)]
    lines += [f"{r.utt_id}\t{r.repeat_count}\t{r.cer:.6f}\t{r.wer:.6f}\t{r.exact}\t{r.ref}\t{r.hyp}"
              for r in rows]
    fileio.atomic_write_text(path, "\n".join(lines) + "\n")


def read_utterances_tsv(path: Path) -> List[UtteranceAccuracy]:
    """The rows of an ``utterances.tsv``; a missing or malformed file is a one-line error."""
    from espnet_pcc.errors import UserError

    if not Path(path).is_file():
        raise UserError(f"{path} missing (produced by stage 7, canary accuracy)")
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        if tuple(reader.fieldnames or ()) != UTTERANCE_COLUMNS:
            raise UserError(f"{path}: columns {reader.fieldnames}, expected "
                            f"{list(UTTERANCE_COLUMNS)}")
        try:
            return [UtteranceAccuracy(r["utt_id"], int(r["repeat_count"]), float(r["cer"]),
                                      float(r["wer"]), int(r["exact"]), r["ref"] or "",
                                      r["hyp"] or "") for r in reader]
        except (TypeError, ValueError) as e:
            raise UserError(f"{path}: malformed row ({e})") from None
