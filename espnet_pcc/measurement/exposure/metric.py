"""Exposure of canaries (Secret Sharer, Carlini et al. 2019): the metric, numpy and scipy only.

A *score* is a per-token negative log-likelihood (lower = more likely = more memorised). With
``n`` reference scores ``r_1..r_n`` (never-inserted sequences from the same generator) and a
canary score ``s``:

* rank: ``rank(s) = 1 + #{i : r_i < s}`` — ties go in the canary's favour, as TF-Privacy's
  secret_sharer does (canaries placed before references in a stable sort).
  ``rank_exposure = log2(n + 1) - log2(rank)``: the candidate space is the references plus the
  canary itself (|R| = n + 1), so exposure lies in ``[0, log2(n + 1)]``; rank 1 among 1023
  references is exactly 10 bits, a canary worse than all references has 0 bits, and a random
  (unmemorised) canary has E[exposure] ≈ log2(e) ≈ 1.44 bits. ``include_canary=False`` gives
  TF-Privacy's ``log2(n) - log2(rank)`` instead.
* extrapolated: fit a skew-normal ``(a, loc, scale)`` to the reference scores
  (``scipy.stats.skewnorm.fit``), ``extrapolated_exposure = -log2 CDF(s)`` computed from
  ``logcdf`` so it keeps growing past the rank cap log2(n + 1) for canaries far below every
  reference (it is +inf only when even ``logcdf`` underflows).

Non-finite scores (a CTC loss of +inf) rank last and are left out of the skew-normal fit.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Sequence, Tuple, Union

import numpy as np

from espnet_pcc.errors import UserError
from espnet_pcc.measurement.exposure.schema import (
    CANARY_ID, CHANCE_RANK_EXPOSURE, EXTRAPOLATED_EXPOSURE, INCLUDE_CANARY, NUM_CANARIES,
    NUM_REFERENCES, RANK, RANK_EXPOSURE, RANK_EXPOSURE_CAP, REFERENCE_SCORE, REPEAT_COUNT,
    REPEAT_COUNTS, SCORE, SKEWNORM, SUMMARY_FORMAT,
)

ArrayLike = Union[Sequence[float], np.ndarray]
SkewNorm = Tuple[float, float, float]


class ExposureError(UserError):
    """Bad scoring input (too few references, model/config mismatch, missing files)."""


def ranks(canary_scores: ArrayLike, reference_scores: ArrayLike) -> np.ndarray:
    """``1 + #{references with a strictly lower score}`` for each canary (ties favour the canary).

    A non-finite canary score (NaN, or +inf: a CTC loss with no alignment) ranks last (n + 1),
    also behind references whose score is +inf too: a canary the model cannot score at all
    has memorised nothing, and a tie there must not earn it exposure."""
    refs = np.sort(np.asarray(reference_scores, dtype=np.float64))
    s = np.asarray(canary_scores, dtype=np.float64)
    r = 1 + np.searchsorted(refs, s, side="left")
    return np.where(np.isnan(s) | np.isposinf(s), len(refs) + 1, r).astype(np.int64)


def rank_exposure(
    canary_scores: ArrayLike, reference_scores: ArrayLike, include_canary: bool = True
) -> np.ndarray:
    """``log2(|R|) - log2(rank)``, ``|R| = n + 1`` (or ``n`` with ``include_canary=False``)."""
    n = len(reference_scores)
    if n < 1:
        raise ExposureError("need at least one reference score")
    size = n + 1 if include_canary else n
    return np.log2(size) - np.log2(ranks(canary_scores, reference_scores))


def chance_rank_exposure(n: int, include_canary: bool = True) -> float:
    """E[rank exposure] of a canary whose rank is uniform on 1..n+1 (an unmemorised one)."""
    size = n + 1 if include_canary else n
    return float(np.log2(size) - np.mean(np.log2(np.arange(1, n + 2))))


def fit_skewnorm(reference_scores: ArrayLike) -> SkewNorm:
    """Maximum-likelihood skew-normal ``(a, loc, scale)`` of the finite reference scores."""
    from scipy.stats import skewnorm  # about a second to import: only when fitting

    r = np.asarray(reference_scores, dtype=np.float64)
    r = r[np.isfinite(r)]
    if len(r) < 2:
        raise ExposureError(f"need >= 2 finite reference scores to fit a skew-normal, got {len(r)}")
    if np.ptp(r) == 0:
        raise ExposureError("all reference scores are equal: cannot fit a skew-normal")
    a, loc, scale = skewnorm.fit(r)
    return float(a), float(loc), float(scale)


def extrapolated_exposure(canary_scores: ArrayLike, params: SkewNorm) -> np.ndarray:
    """``-log2 CDF_skewnorm(s)``, from logcdf so tiny probabilities keep their precision."""
    from scipy.stats import skewnorm

    s = np.asarray(canary_scores, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return -skewnorm.logcdf(s, *params) / math.log(2.0)


def spread(x: ArrayLike) -> Dict[str, float]:
    """``{"mean", "std", "max"}`` of exposures (std: population, ddof=0)."""
    x = np.asarray(x, dtype=np.float64)
    # +inf (logcdf underflow, > ~1000 bits) makes the spread unbounded, not NaN
    std = float(np.std(x)) if np.all(np.isfinite(x)) else float("inf")
    return {"mean": float(np.mean(x)), "std": std, "max": float(np.max(x))}


def per_repeat_count(
    counts: np.ndarray, scores: np.ndarray, exposures: Mapping[str, np.ndarray]
) -> List[Dict[str, Any]]:
    """One summary group per distinct repeat count, ascending (the summary's "repeat_counts").

    Args:
        counts: repeat count of each canary.
        scores: score of each canary.
        exposures: measure name -> exposure of each canary.
    """
    groups = []
    for c in sorted(set(int(v) for v in counts)):
        sel = counts == c
        groups.append({
            REPEAT_COUNT: c,
            NUM_CANARIES: int(sel.sum()),
            **{name: spread(values[sel]) for name, values in exposures.items()},
            SCORE: {"mean": float(np.mean(scores[sel])), "std": float(np.std(scores[sel]))},
        })
    return groups


def describe_references(reference_scores: np.ndarray) -> Dict[str, float]:
    """Mean, std, min, max of the finite reference scores, and how many are not finite."""
    fin = reference_scores[np.isfinite(reference_scores)]
    return {"mean": float(fin.mean()), "std": float(fin.std()), "min": float(fin.min()),
            "max": float(fin.max()), "num_nonfinite": int(len(reference_scores) - len(fin))}


def compute_exposures(
    canary_scores: Mapping[str, float],
    repeat_counts: Mapping[str, int],
    reference_scores: ArrayLike,
    include_canary: bool = True,
) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    """Per-canary exposures and the per-repeat-count summary.

    Args:
        canary_scores: canary id -> score.
        repeat_counts: canary id -> how often it was inserted.
        reference_scores: the scores of the never-inserted references.
        include_canary: count the canary in |R| (``log2(n + 1)`` cap) or not (TF-Privacy).

    Returns:
        ``(per_canary, summary)``: one ``{"id", "repeat_count", "score", "rank",
        "rank_exposure", "extrapolated_exposure"}`` per canary (sorted by id), and the
        summary.json body without the run's details (score kind, paths, speed).
    """
    refs = np.asarray(reference_scores, dtype=np.float64)
    if len(refs) < 2:
        raise ExposureError(f"need >= 2 references, got {len(refs)}")
    ids = sorted(canary_scores)
    s = np.array([canary_scores[i] for i in ids], dtype=np.float64)
    counts = np.array([int(repeat_counts[i]) for i in ids], dtype=np.int64)
    rk = ranks(s, refs)
    params = fit_skewnorm(refs)
    exposures = {RANK_EXPOSURE: rank_exposure(s, refs, include_canary),
                 EXTRAPOLATED_EXPOSURE: extrapolated_exposure(s, params)}
    per = [
        {CANARY_ID: i, REPEAT_COUNT: int(counts[k]), SCORE: float(s[k]), RANK: int(rk[k]),
         **{name: float(values[k]) for name, values in exposures.items()}}
        for k, i in enumerate(ids)
    ]
    summary = {
        "format": SUMMARY_FORMAT,
        NUM_REFERENCES: int(len(refs)),
        NUM_CANARIES: len(ids),
        INCLUDE_CANARY: include_canary,
        RANK_EXPOSURE_CAP: float(np.log2(len(refs) + (1 if include_canary else 0))),
        CHANCE_RANK_EXPOSURE: chance_rank_exposure(len(refs), include_canary),
        SKEWNORM: dict(zip(("a", "loc", "scale"), params)),
        REFERENCE_SCORE: describe_references(refs),
        REPEAT_COUNTS: per_repeat_count(counts, s, exposures),
    }
    return per, summary
