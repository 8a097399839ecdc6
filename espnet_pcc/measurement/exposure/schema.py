"""The exposure outputs' layouts, their one writer and one reader each, and the one table.

``summary.json`` (body built by :func:`espnet_pcc.measurement.exposure.metric.compute_exposures` and
:func:`espnet_pcc.measurement.exposure.run.score_exposure`, written by :func:`write_summary_json`,
read by :func:`read_summary_json` alone)::

    {"format": "espnet-pcc-exposure/1",
     "score": "att_nll" | "ctc_nll",          # which likelihood was used
     "num_references": n, "num_canaries": m,
     "rank_exposure_cap": log2(n + 1),        # max possible rank exposure
     "chance_rank_exposure": E[rank exposure] of an unmemorised canary (≈ 1.44),
     "include_canary": true,
     "skewnorm": {"a", "loc", "scale"},       # fit on the reference scores
     "reference_score": {"mean", "std", "min", "max", "num_nonfinite"},
     "asr_train_config", "asr_model_file", "canary_dir", "utterances_per_second",
     "repeat_counts": [                       # ascending repeat count
        {"repeat_count": c, "num_canaries": k,
         "rank_exposure": {"mean", "std", "max"},          # std: population (ddof=0)
         "extrapolated_exposure": {"mean", "std", "max"},
         "score": {"mean", "std"}}, ...]}

``exposure.json`` (written by :func:`write_exposure_json`, read by :func:`read_exposure_json`
alone)::

    {"canaries": [{"id", "text", "repeat_count", "score", "num_tokens", "rank",
                   "rank_exposure", "extrapolated_exposure"}, ...]}   # CANARY_KEYS

``exposure.tsv`` (:func:`exposure_tsv`; for people and shell tools, read by no code): the same
entries, one line each, :data:`EXPOSURE_TSV_COLUMNS`.

``scores.tsv`` (:func:`scores_tsv`; read by no code): every scored utterance, canaries and
references, :data:`SCORES_TSV_COLUMNS`.

Non-finite numbers are written as JSON ``Infinity``/``NaN`` (Python's json reads them back).
This module is plain Python, so a reader of summaries imports no numpy, torch or ESPnet.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Union

from espnet_pcc import fileio
from espnet_pcc.errors import UserError

#: ``summary.json``'s "format" value; bump it when the layout changes.
SUMMARY_FORMAT = "espnet-pcc-exposure/1"
#: The output files of one scoring run (in ``output_dir``).
SCORES_TSV, EXPOSURE_TSV, EXPOSURE_JSON = "scores.tsv", "exposure.tsv", "exposure.json"
SUMMARY_TSV, SUMMARY_JSON = "summary.tsv", "summary.json"

#: The per-repeat-count groups, ascending by their REPEAT_COUNT.
REPEAT_COUNTS, REPEAT_COUNT = "repeat_counts", "repeat_count"
#: The two exposure measures, each summarised per group as {"mean", "std", "max"}.
RANK_EXPOSURE, EXTRAPOLATED_EXPOSURE = "rank_exposure", "extrapolated_exposure"
MEASURES = (RANK_EXPOSURE, EXTRAPOLATED_EXPOSURE)
#: exposure.json's one top-level key: the list of per-canary entries.
CANARIES = "canaries"
#: The keys of one canary in exposure.json.
CANARY_ID, CANARY_TEXT, SCORE, NUM_TOKENS, RANK = "id", "text", "score", "num_tokens", "rank"
CANARY_KEYS = (CANARY_ID, CANARY_TEXT, REPEAT_COUNT, SCORE, NUM_TOKENS, RANK, RANK_EXPOSURE,
               EXTRAPOLATED_EXPOSURE)
#: |R|: how many never-inserted references each canary is ranked among.
NUM_REFERENCES = "num_references"
#: summary.json's other top-level keys (see the module docstring); SCORE_KIND is the
#: likelihood's name ("att_nll" | "ctc_nll"), a group's SCORE its canaries' score spread.
NUM_CANARIES, INCLUDE_CANARY, SKEWNORM = "num_canaries", "include_canary", "skewnorm"
RANK_EXPOSURE_CAP, CHANCE_RANK_EXPOSURE = "rank_exposure_cap", "chance_rank_exposure"
REFERENCE_SCORE, SCORE_KIND = "reference_score", "score"
ASR_TRAIN_CONFIG, ASR_MODEL_FILE, CANARY_DIR = "asr_train_config", "asr_model_file", "canary_dir"
UTTERANCES_PER_SECOND = "utterances_per_second"
#: Top-level numbers that say how to read the exposures (range, chance level, likelihood).
SUMMARY_SCALARS = (NUM_REFERENCES, RANK_EXPOSURE_CAP, CHANCE_RANK_EXPOSURE, SCORE_KIND)
#: Columns of scores.tsv (one line per scored utterance).
SCORES_TSV_COLUMNS = ("utt_id", "kind", REPEAT_COUNT, NUM_TOKENS, "nll_sum", SCORE)

#: Columns of exposure.tsv (one line per canary): its id, the exposure.json keys, then its text.
EXPOSURE_TSV_COLUMNS = ("canary_id", REPEAT_COUNT, SCORE, RANK, RANK_EXPOSURE, EXTRAPOLATED_EXPOSURE,
                        CANARY_TEXT)

#: Columns of the per-repeat-count table (printed, and written to summary.tsv).
TABLE_COLUMNS = ("repeats", "canaries", "rank_exp_mean", "rank_exp_std", "rank_exp_max",
                 "extrap_exp_mean", "extrap_exp_std", "extrap_exp_max", "score_mean", "score_std")

Cell = Union[int, float]
PathLike = Union[str, Path]


def summary_table(summary: Mapping[str, Any]) -> List[List[Cell]]:
    """The per-repeat-count table: one row of numbers per group, in :data:`TABLE_COLUMNS` order."""
    rows = []
    for g in summary[REPEAT_COUNTS]:
        r, e, s = g[RANK_EXPOSURE], g[EXTRAPOLATED_EXPOSURE], g[SCORE]
        rows.append([g[REPEAT_COUNT], g[NUM_CANARIES], r["mean"], r["std"], r["max"],
                     e["mean"], e["std"], e["max"], s["mean"], s["std"]])
    return rows


def _cells(row: Sequence[Cell], float_format: str) -> List[str]:
    return [str(v) if isinstance(v, int) else format(v, float_format) for v in row]


def format_summary(summary: Mapping[str, Any]) -> str:
    """:func:`summary_table` for people: right-aligned, 3 decimals, and a line on how to read it."""
    rows = [list(TABLE_COLUMNS)] + [_cells(r, ".3f") for r in summary_table(summary)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_COLUMNS))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
    lines.append(
        f"|R| = {summary[NUM_REFERENCES]}  rank-exposure cap = {summary[RANK_EXPOSURE_CAP]:.3f} "
        f"bits  chance = {summary[CHANCE_RANK_EXPOSURE]:.3f} bits  score = "
        f"{summary.get(SCORE_KIND, '?')}"
    )
    return "\n".join(lines)


def summary_tsv(summary: Mapping[str, Any]) -> str:
    """:func:`summary_table` for programs: tab-separated, 6 significant digits, with a header."""
    rows = [list(TABLE_COLUMNS)] + [_cells(r, ".6g") for r in summary_table(summary)]
    return "".join("\t".join(row) + "\n" for row in rows)


def mean_per_repeat_count(summary: Mapping[str, Any], measure: str) -> Dict[int, float]:
    """``{repeat count: mean of measure}`` for one of :data:`MEASURES`."""
    return {int(g[REPEAT_COUNT]): float(g[measure]["mean"]) for g in summary[REPEAT_COUNTS]}


def exposure_tsv(per_canary: Sequence[Mapping[str, Any]]) -> str:
    """exposure.tsv: one line per exposure.json entry, for people and shell tools."""
    lines = ["\t".join(EXPOSURE_TSV_COLUMNS) + "\n"]
    for p in per_canary:
        lines.append(f"{p[CANARY_ID]}\t{p[REPEAT_COUNT]}\t{p[SCORE]:.6f}\t{p[RANK]}\t"
                     f"{p[RANK_EXPOSURE]:.4f}\t{p[EXTRAPOLATED_EXPOSURE]:.4f}\t{p[CANARY_TEXT]}\n")
    return "".join(lines)


def scores_tsv(utt_ids: Sequence[str], counts: Mapping[str, int],
               raw: Mapping[str, Sequence[float]], score: Mapping[str, float]) -> str:
    """scores.tsv: one line per utterance (canaries have a repeat count, references 0);
    ``raw`` is (NLL sum, tokens) per utterance, ``score`` the per-token NLL."""
    lines = ["\t".join(SCORES_TSV_COLUMNS) + "\n"]
    for u in utt_ids:
        kind = "canary" if u in counts else "reference"
        lines.append(f"{u}\t{kind}\t{counts.get(u, 0)}\t{raw[u][1]}\t{raw[u][0]:.6f}\t"
                     f"{score[u]:.6f}\n")
    return "".join(lines)


def write_summary_json(path: PathLike, summary: Mapping[str, Any]) -> None:
    """``summary.json``, written atomically; a body of another layout is a bug, not an output."""
    if summary.get("format") != SUMMARY_FORMAT:
        raise ValueError(f"summary format {summary.get('format')!r}, expected {SUMMARY_FORMAT!r}")
    fileio.atomic_write_json(Path(path), summary)


def read_summary_json(path: PathLike) -> Dict[str, Any]:
    """The summary in a ``summary.json``; a missing file or another layout is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} missing (produced by stage 8, exposure)")
    summary = json.loads(path.read_text())
    if summary.get("format") != SUMMARY_FORMAT:
        raise UserError(f"{path}: unknown format {summary.get('format')!r} (rerun stage 8)")
    return summary


def write_exposure_json(path: PathLike, per_canary: Sequence[Mapping[str, Any]]) -> None:
    """``exposure.json`` of the per-canary entries (:data:`CANARY_KEYS`), written atomically."""
    fileio.atomic_write_json(Path(path), {CANARIES: list(per_canary)})


def read_exposure_json(path: PathLike, keys: Sequence[str] = CANARY_KEYS) -> List[Dict[str, Any]]:
    """The per-canary entries of an ``exposure.json``; a missing file, or an entry without
    one of ``keys`` (the ones the caller reads), is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} missing (produced by stage 8, exposure)")
    canaries = json.loads(path.read_text())[CANARIES]
    for c in canaries:
        missing = [k for k in keys if k not in c]
        if missing:
            raise UserError(f"{path}: canary {c.get(CANARY_ID)!r} lacks {', '.join(missing)}")
    return canaries
