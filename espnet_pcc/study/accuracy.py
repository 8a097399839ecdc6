"""Canary transcription accuracy: the memorisation metric of Wang, Thakkar & Mathews (2023).

A canary is sped up (tempo 1.6 by default) so that it is hard to recognise from the audio alone;
a model that nonetheless transcribes it accurately has memorised it. The control is a sample of
references from the same generator that were never trained on: the gap between the canaries'
and the references' error rates is the memorisation signal (the references' rate is what the
model achieves on such audio by generalisation alone).

Per utterance (the unit every interval and paired test of the study resamples):

* ``cer`` = character edits / reference characters (the space counts, written ``<space>`` as
  in ESPnet's CER and in :mod:`espnet_pcc.measurement.wer`);
* ``wer`` = word edits / reference words;
* ``exact`` = 1 when the hypothesis equals the reference word for word, else 0.

Per repeat count (0 = references): the mean of each over the utterances, with a bootstrap
interval over them (:func:`espnet_pcc.study.stats.bootstrap_interval`).

:func:`score_canary_accuracy` (``bin/score_canary_accuracy``, stage 7) writes both files of
``<decode dir>/canary_accuracy/``, ``utterances.tsv`` and ``summary.json``; their layouts,
writers and reader are :mod:`espnet_pcc.study.accuracy_schema`.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

import jiwer

from espnet_pcc import kaldi_dir
from espnet_pcc.errors import UserError
from espnet_pcc.measurement.canary.canary_dir import CANARIES, MANIFEST_JSON, REFERENCES, \
    read_canary_dir
from espnet_pcc.measurement.wer import tokens
from espnet_pcc.study.accuracy_schema import METRICS, SUMMARY_JSON, UTTERANCES_TSV, \
    UtteranceAccuracy, write_summary_json, write_utterances_tsv
from espnet_pcc.study.stats import Interval, bootstrap_interval

logger = logging.getLogger(__name__)

Summary = Dict[int, Dict[str, Interval]]


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


def summarise(rows: Iterable[UtteranceAccuracy]) -> Summary:
    """Mean CER, WER and exact-match fraction per repeat count, each with its interval."""
    return {
        count: {m: bootstrap_interval([getattr(r, m) for r in group]) for m in METRICS}
        for count, group in by_repeat_count(rows).items()
    }


def summary_lines(summary: Summary) -> List[str]:
    """One line per repeat count for people: n, and each metric with its interval."""
    lines = []
    for c, metrics in summary.items():
        what = "references" if c == 0 else f"canaries x{c}"
        lines.append(f"{what}: n={metrics['cer'].n} CER {metrics['cer'].fmt(3)} "
                     f"WER {metrics['wer'].fmt(3)} exact {metrics['exact'].fmt(3)}")
    return lines


def read_hypotheses(hyp_text: Sequence[Path], known: Set[str], canary_dir: Path) -> Dict[str, str]:
    """Every hypothesis of the Kaldi texts ``hyp_text``, checked first, so that a missing file or
    an utterance the manifest lacks is a one-line error before anything is written."""
    hyps: Dict[str, str] = {}
    for path in hyp_text:
        if not path.is_file():
            raise UserError(f"hypotheses {path} missing (produced by stage 6)")
        table = kaldi_dir.read_table(path, allow_empty_value=True)
        if not table:
            logger.warning(f"{path} lists no hypothesis")
        unknown = sorted(set(table) - known)
        if unknown:
            raise UserError(f"{path}: {len(unknown)} utterances not in {canary_dir}/{MANIFEST_JSON}, "
                            f"e.g. {unknown[0]}")
        hyps.update(table)
    if not hyps:
        raise UserError(f"no hypotheses in {' '.join(map(str, hyp_text))}")
    return hyps


def decoded_references(references: Set[str], hyps: Mapping[str, str], reference_dir: Optional[Path],
                       canary_dir: Path) -> Set[str]:
    """The references that were decoded (a sample, --num_decoded_references): those of
    ``reference_dir`` when it is given, else those with a hypothesis."""
    if reference_dir is None:
        return set(hyps)
    sample = set(kaldi_dir.read(reference_dir).utt2spk)
    unknown = sorted(sample - references)
    if unknown:
        raise UserError(f"{reference_dir}: {len(unknown)} utterances are not references "
                        f"of {canary_dir}, e.g. {unknown[0]}")
    return sample


def score_canary_accuracy(canary_dir: Path, hyp_text: Sequence[Path], output_dir: Path,
                          reference_dir: Optional[Path] = None) -> Summary:
    """Score the decoded canaries and references of a ``make_canaries`` dir, write
    ``utterances.tsv`` and ``summary.json`` into ``output_dir``, and return the summary.

    Every canary is scored, a missing hypothesis as empty: dropping it would raise the
    canaries' accuracy.  Of the references, the decoded sample is (:func:`decoded_references`),
    a missing hypothesis of ``reference_dir`` as empty.  Every input is checked before
    ``output_dir`` is made.
    """
    found = read_canary_dir(canary_dir)
    texts = {**found.texts(CANARIES), **found.texts(REFERENCES)}
    counts = {**found.counts(CANARIES), **found.counts(REFERENCES)}
    hyps = read_hypotheses(hyp_text, set(texts), canary_dir)
    sample = decoded_references(set(found.texts(REFERENCES)), hyps, reference_dir, canary_dir)
    refs = {**found.texts(CANARIES),
            **{u: t for u, t in found.texts(REFERENCES).items() if u in sample}}
    missing = len(set(refs) - set(hyps))
    if missing:
        logger.warning(f"{missing} of the {len(refs)} canaries and decoded references have no "
                       "hypothesis in the decoded texts: scored as empty")
    rows = score_utterances(refs, hyps, {k: counts[k] for k in refs})
    summary = summarise(rows)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_utterances_tsv(output_dir / UTTERANCES_TSV, rows)
    write_summary_json(output_dir / SUMMARY_JSON, summary, canary_dir, hyp_text)
    return summary
