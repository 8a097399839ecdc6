"""The raw study data (the study's, and stage 9's) from the model results of a stage-script run.

A pure function of :func:`espnet_pcc.study.model_dir.collect`'s results with ``per_canary`` (the one
reader of the model dirs): per model (tag ``asr_<config>_seed<N>``; the arm is the config's last
``_`` field: ``train_asr_shuffled_pcc`` -> ``pcc``, :func:`espnet_pcc.study.arms.arm_of`) its
batch sampler, the validation loss of each scored epoch, each scored checkpoint's canaries
(score, rank, exposures; the CER where stage 7 transcribed them) and the final model's WER and
CER.  It returns a :class:`espnet_pcc.study.raw.RawStudy` (written by ``bin/study_export`` and
stage 9).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from espnet_pcc.measurement.exposure import schema
from espnet_pcc.study.arms import arm_of
from espnet_pcc.study.model_dir import ModelResult, ScoredCheckpoint, collect
from espnet_pcc.study.raw import FINAL, CanaryScore, RawDataError, RawStudy, RunEpoch


def _checkpoint(arm: str, sampler: str, seed: int, scored: ScoredCheckpoint
                ) -> Tuple[List[CanaryScore], float]:
    """The canary rows of one scored checkpoint and its references' mean CER.  Without the
    canary transcription (stage 7 with no ``--canary_sets``) the CERs are NaN."""
    epoch = FINAL if scored.epoch is None else str(scored.epoch)
    cer = {u.utt_id: u.cer for u in scored.utterances}
    references = [u.cer for u in scored.utterances if u.repeat_count == 0]
    rows = []
    for c in scored.canaries:
        canary = c[schema.CANARY_ID]
        if scored.accuracy_tsv is None:
            cer[canary] = math.nan
        elif canary not in cer:
            raise RawDataError(f"{scored.accuracy_tsv}: no CER of canary {canary}")
        rows.append(CanaryScore(
            arm=arm, sampler=sampler, seed=seed, epoch=epoch, canary=canary,
            repeat_count=int(c[schema.REPEAT_COUNT]), score=float(c[schema.SCORE]),
            rank=int(c[schema.RANK]), rank_exposure=float(c[schema.RANK_EXPOSURE]),
            extrapolated_exposure=float(c[schema.EXTRAPOLATED_EXPOSURE]), cer=cer[canary]))
    ref_cer = sum(references) / len(references) if references else math.nan
    return rows, ref_cer


def study_of(results: Sequence[ModelResult], test_sets: Sequence[str],
             made_by: str = "") -> RawStudy:
    """The raw rows of models read with ``per_canary`` (see the module docstring)."""
    runs: List[RunEpoch] = []
    canaries: List[CanaryScore] = []
    seen = {}
    for r in results:
        arm, seed = arm_of(r.tag)
        sampler = r.batch_sampler
        # Two configs whose names end alike would merge into one arm's run: refuse.
        other = seen.setdefault((arm, sampler, seed), r.tag)
        if other != r.tag:
            raise RawDataError(f"models {other} and {r.tag} are both arm {arm!r}, seed {seed} "
                               f"({sampler} batches): give their configs different last fields")
        if not r.scored or r.scored[-1].epoch is not None:
            raise RawDataError(f"model {r.tag}: its scored checkpoints were not read "
                               "(model_dir.collect with per_canary)")
        for scored in r.scored:
            rows, ref_cer = _checkpoint(arm, sampler, seed, scored)
            canaries += rows
            e = scored.epoch
            if e is None:
                errors = {s: (r.error_rate(s, "wer"), r.error_rate(s, "cer"))
                          for s in test_sets}
                runs.append(RunEpoch(arm, sampler, seed, r.tag, FINAL, math.nan, ref_cer,
                                     scored.num_references, errors))
                continue
            loss = r.epochs[e - 1].get("valid", {}).get("loss") if 0 < e <= len(r.epochs) \
                else None
            if loss is None:
                raise RawDataError(f"model {r.tag}: train.log has no validation loss of "
                                   f"epoch {e}")
            runs.append(RunEpoch(arm, sampler, seed, r.tag, str(e), loss, ref_cer,
                                 scored.num_references))
    return RawStudy(runs=runs, canaries=canaries, test_sets=list(test_sets), made_by=made_by)


def export_study(expdir: Path, tags: Sequence[str], score_epochs: Sequence[int],
                 decode_tag: str, epoch_decode_tag: str, test_sets: Sequence[str],
                 made_by: str = "", progress: Optional[Callable[[str], None]] = None,
                 canary_accuracy: bool = True) -> RawStudy:
    """:func:`study_of` the model dirs ``<expdir>/<tag>`` as :func:`model_dir.collect` reads
    them; ``epoch_decode_tag`` has an ``{epoch}`` field.  ``canary_accuracy=False``: stage 7
    did not transcribe the canaries (their CER columns are NaN)."""
    results = collect(expdir, tags, decode_tag, test_sets, per_canary=True,
                      score_epochs=score_epochs, epoch_decode_tag=epoch_decode_tag,
                      canary_accuracy=canary_accuracy, progress=progress)
    return study_of(results, test_sets, made_by)


__all__ = ["export_study", "study_of"]
