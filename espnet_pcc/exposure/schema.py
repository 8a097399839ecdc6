"""The exposure summary: its ``summary.json`` layout, the one table of it, and a reader.

``summary.json`` (written by :func:`espnet_pcc.exposure.run.score_exposure`, read by the
stage-9 report)::

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

``exposure.json`` (same writer; read by :func:`read_exposure_json` alone)::

    {"canaries": [{"id", "text", "repeat_count", "score", "num_tokens", "rank",
                   "rank_exposure", "extrapolated_exposure"}, ...]}   # CANARY_KEYS

Non-finite numbers are written as JSON ``Infinity``/``NaN`` (Python's json reads them back).
This module is plain Python, so a reader of summaries imports no numpy, torch or ESPnet.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence, Union

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
#: The keys of one canary in exposure.json.
CANARY_ID, CANARY_TEXT, SCORE, NUM_TOKENS, RANK = "id", "text", "score", "num_tokens", "rank"
CANARY_KEYS = (CANARY_ID, CANARY_TEXT, REPEAT_COUNT, SCORE, NUM_TOKENS, RANK, RANK_EXPOSURE,
               EXTRAPOLATED_EXPOSURE)
#: Top-level numbers that say how to read the exposures (range, chance level, likelihood).
SUMMARY_SCALARS = ("num_references", "rank_exposure_cap", "chance_rank_exposure", "score")

#: Columns of the per-repeat-count table (printed, and written to summary.tsv).
TABLE_COLUMNS = ("repeats", "canaries", "rank_exp_mean", "rank_exp_std", "rank_exp_max",
                 "extrap_exp_mean", "extrap_exp_std", "extrap_exp_max", "score_mean", "score_std")

Cell = Union[int, float]


def summary_table(summary: Mapping[str, Any]) -> List[List[Cell]]:
    """The per-repeat-count table: one row of numbers per group, in :data:`TABLE_COLUMNS` order."""
    rows = []
    for g in summary[REPEAT_COUNTS]:
        r, e, s = g[RANK_EXPOSURE], g[EXTRAPOLATED_EXPOSURE], g["score"]
        rows.append([g[REPEAT_COUNT], g["num_canaries"], r["mean"], r["std"], r["max"],
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
        f"|R| = {summary['num_references']}  rank-exposure cap = {summary['rank_exposure_cap']:.3f} "
        f"bits  chance = {summary['chance_rank_exposure']:.3f} bits  score = "
        f"{summary.get('score', '?')}"
    )
    return "\n".join(lines)


def summary_tsv(summary: Mapping[str, Any]) -> str:
    """:func:`summary_table` for programs: tab-separated, 6 significant digits, with a header."""
    rows = [list(TABLE_COLUMNS)] + [_cells(r, ".6g") for r in summary_table(summary)]
    return "".join("\t".join(row) + "\n" for row in rows)


def mean_per_repeat_count(summary: Mapping[str, Any], measure: str) -> Dict[int, float]:
    """``{repeat count: mean of measure}`` for one of :data:`MEASURES`."""
    return {int(g[REPEAT_COUNT]): float(g[measure]["mean"]) for g in summary[REPEAT_COUNTS]}


def read_exposure_json(path, keys: Sequence[str] = CANARY_KEYS) -> List[Dict[str, Any]]:
    """The per-canary entries of an ``exposure.json``; a missing file, or an entry without
    one of ``keys`` (the ones the caller reads), is a one-line error."""
    import json
    from pathlib import Path

    from espnet_pcc.errors import UserError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} missing (produced by stage 8, exposure)")
    canaries = json.loads(path.read_text())["canaries"]
    for c in canaries:
        missing = [k for k in keys if k not in c]
        if missing:
            raise UserError(f"{path}: canary {c.get(CANARY_ID)!r} lacks {', '.join(missing)}")
    return canaries
