"""The canary accuracy's output files (stage 7's ``<decode dir>/canary_accuracy/``): their
layouts, their one writer and one reader each (beside the exposure outputs' in
:mod:`espnet_pcc.measurement.exposure.schema`).

``utterances.tsv``  one row per scored utterance, :data:`UTTERANCE_COLUMNS`, tab-separated,
                    with a header line (:func:`write_utterances_tsv`, read by
                    :func:`read_utterances_tsv` alone)
``summary.json``    {"format": SUMMARY_FORMAT, "canary_dir", "hyp_text": [...],
                    "repeat_counts": [{"repeat_count": c, "cer" | "wer" | "exact":
                    Interval.as_dict()}, ...]} (ascending repeat count, 0 = references;
                    :func:`write_summary_json`; read by people, by no code)

Written by :func:`espnet_pcc.study.accuracy.score_canary_accuracy`.  Plain Python, so that a
reader (`espnet_pcc.study.model_dir`) imports no metric, scipy or jiwer.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Sequence

from espnet_pcc import fileio
from espnet_pcc.errors import UserError

#: The dir of a decode dir that stage 7 writes the canary accuracy into.
ACCURACY_DIR = "canary_accuracy"
#: The per-utterance rows (see the module docstring).
UTTERANCES_TSV = "utterances.tsv"
UTTERANCE_COLUMNS = ("utt_id", "repeat_count", "cer", "wer", "exact", "ref", "hyp")
METRICS = ("cer", "wer", "exact")
#: The per-repeat-count summary, and its "format" value (bump it when the layout changes).
SUMMARY_JSON = "summary.json"
SUMMARY_FORMAT = "espnet-pcc-canary-accuracy/1"


@dataclass(frozen=True)
class UtteranceAccuracy:
    utt_id: str
    repeat_count: int  # 0 for a reference (never trained on)
    cer: float
    wer: float
    exact: int
    ref: str
    hyp: str


def write_utterances_tsv(path: Path, rows: Iterable[UtteranceAccuracy]) -> None:
    """``utterances.tsv`` of :data:`UTTERANCE_COLUMNS`, written atomically."""
    lines = ["\t".join(UTTERANCE_COLUMNS)]
    lines += [f"{r.utt_id}\t{r.repeat_count}\t{r.cer:.6f}\t{r.wer:.6f}\t{r.exact}\t{r.ref}\t{r.hyp}"
              for r in rows]
    fileio.atomic_write_text(path, "\n".join(lines) + "\n")


def read_utterances_tsv(path: Path) -> List[UtteranceAccuracy]:
    """The rows of an ``utterances.tsv``; a missing or malformed file is a one-line error."""
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


def summary_json(summary: Mapping[int, Mapping[str, Any]], canary_dir: Path,
                 hyp_text: Sequence[Path]) -> Dict[str, Any]:
    """The body of ``summary.json``: per repeat count each metric's interval (anything with
    ``as_dict()``, `espnet_pcc.study.stats.Interval`), and the inputs it was scored from."""
    return {
        "format": SUMMARY_FORMAT,
        "canary_dir": str(canary_dir),
        "hyp_text": [str(p) for p in hyp_text],
        "repeat_counts": [
            {"repeat_count": c, **{m: iv.as_dict() for m, iv in metrics.items()}}
            for c, metrics in summary.items()
        ],
    }


def write_summary_json(path: Path, summary: Mapping[int, Mapping[str, Any]], canary_dir: Path,
                       hyp_text: Sequence[Path]) -> None:
    """``summary.json`` (:func:`summary_json`), written atomically."""
    fileio.atomic_write_json(path, summary_json(summary, canary_dir, hyp_text))


__all__ = ["ACCURACY_DIR", "METRICS", "SUMMARY_FORMAT", "SUMMARY_JSON", "UTTERANCES_TSV",
           "UTTERANCE_COLUMNS", "UtteranceAccuracy", "read_utterances_tsv", "summary_json",
           "write_summary_json", "write_utterances_tsv"]
