"""The raw study data (the study's, and stage 9's) from the model dirs of a stage-script run.

Per model dir ``<expdir>/<tag>`` (tag ``asr_<config>_seed<N>``; the arm is the config's last
``_`` field: ``train_asr_shuffled_pcc`` -> ``pcc``) it reads, through
:func:`espnet_pcc.model_dir.collect` (or the results stage 9 has already collected),

  config.yaml                                   batch_sampler (the sampler column)
  train.log                                     validation loss per epoch
  exposure_<N>epoch/exposure.json               per canary: score, rank, exposures (epoch N)
  <epoch decode tag>/canary_accuracy/utterances.tsv     CER of canaries and references
  exposure/exposure.json, <decode tag>/...      the same of the final (averaged) model
  <decode tag>/<set>/score_{wer,cer}/result.json         its WER and CER

and, itself, the per-canary files (``exposure*/exposure.json``, ``utterances.tsv``); it
returns a :class:`espnet_pcc.study.raw.RawStudy` (written by ``bin/study_export``).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from espnet_pcc.exposure import schema
from espnet_pcc.model_dir import ModelResult, collect, split_tag
from espnet_pcc.study.raw import FINAL, CanaryScore, RawDataError, RawStudy, RunEpoch
from espnet_pcc.study.accuracy import ACCURACY_DIR, UTTERANCES_TSV, read_utterances_tsv


def arm_of(tag: str) -> Tuple[str, int]:
    """(arm, seed) of a model tag ``asr_<config>_seed<N>``; a tag without the seed suffix (one
    run per config, ``pcc_asr.sh`` without ``--seeds``) is seed 0."""
    name, seed = split_tag(tag)
    return name.rsplit("_", 1)[-1], 0 if seed is None else seed


def _num_references(exposure_dir: Path) -> int:
    """|R| of one scored checkpoint, from its summary.json (read, and checked, by its one reader)."""
    return int(schema.read_summary_json(exposure_dir / schema.SUMMARY_JSON)[schema.NUM_REFERENCES])


def _checkpoint(arm: str, sampler: str, seed: int, epoch: str, exposure_dir: Path,
                accuracy_tsv: Optional[Path]) -> Tuple[List[CanaryScore], float, int]:
    """The canary rows of one scored checkpoint, its references' mean CER, and |R|.  Without
    the canary transcription (stage 7 with no ``--canary_sets``) the CERs are NaN."""
    exposure_json = exposure_dir / schema.EXPOSURE_JSON
    scored = read_utterances_tsv(accuracy_tsv) if accuracy_tsv is not None else []
    cer = {r.utt_id: r.cer for r in scored}
    references = [r.cer for r in scored if r.repeat_count == 0]
    rows = []
    for c in schema.read_exposure_json(exposure_json):
        canary = c[schema.CANARY_ID]
        if accuracy_tsv is None:
            cer[canary] = math.nan
        elif canary not in cer:
            raise RawDataError(f"{accuracy_tsv}: no CER of canary {canary}")
        rows.append(CanaryScore(
            arm=arm, sampler=sampler, seed=seed, epoch=epoch, canary=canary,
            repeat_count=int(c[schema.REPEAT_COUNT]), score=float(c[schema.SCORE]),
            rank=int(c[schema.RANK]), rank_exposure=float(c[schema.RANK_EXPOSURE]),
            extrapolated_exposure=float(c[schema.EXTRAPOLATED_EXPOSURE]), cer=cer[canary]))
    ref_cer = sum(references) / len(references) if references else math.nan
    return rows, ref_cer, _num_references(exposure_dir)


def export_study(expdir: Path, tags: Sequence[str], score_epochs: Sequence[int],
                 decode_tag: str, epoch_decode_tag: str, test_sets: Sequence[str],
                 made_by: str = "", progress: Optional[callable] = None,
                 canary_accuracy: bool = True,
                 results: Optional[Sequence[ModelResult]] = None) -> RawStudy:
    """Every model's raw rows (see the module docstring); ``epoch_decode_tag`` has an
    ``{epoch}`` field.  ``canary_accuracy=False``: stage 7 did not transcribe the canaries
    (their CER columns are NaN).  ``results``: the models as :func:`model_dir.collect` has
    already read them (stage 9), so that config.yaml, train.log and the scores are read once."""
    if results is None:
        results = collect(expdir, tags, decode_tag, test_sets, exposure_name="none")
    runs: List[RunEpoch] = []
    canaries: List[CanaryScore] = []
    seen = {}
    for i, (tag, r) in enumerate(zip(tags, results), 1):
        d = Path(expdir) / tag
        accuracy = (lambda dec: d / dec / ACCURACY_DIR / UTTERANCES_TSV) \
            if canary_accuracy else (lambda dec: None)  # noqa: E731
        arm, seed = arm_of(tag)
        sampler = r.batch_sampler
        # Two configs whose names end alike would merge into one arm's run: refuse.
        other = seen.setdefault((arm, sampler, seed), tag)
        if other != tag:
            raise RawDataError(f"models {other} and {tag} are both arm {arm!r}, seed {seed} "
                               f"({sampler} batches): give their configs different last fields")
        for e in score_epochs:
            loss = r.epochs[e - 1].get("valid", {}).get("loss") if 0 < e <= len(r.epochs) else None
            if loss is None:
                raise RawDataError(f"{d / 'train.log'}: no validation loss of epoch {e}")
            rows, ref_cer, num_refs = _checkpoint(
                arm, sampler, seed, str(e), d / f"exposure_{e}epoch",
                accuracy(epoch_decode_tag.format(epoch=e)))
            canaries += rows
            runs.append(RunEpoch(arm, sampler, seed, tag, str(e), loss, ref_cer, num_refs))
        rows, ref_cer, num_refs = _checkpoint(
            arm, sampler, seed, FINAL, d / "exposure",
            accuracy(decode_tag))
        canaries += rows
        errors = {s: (float(r.wer[s]["wer"]["Err"]), float(r.wer[s]["cer"]["Err"]))
                  for s in test_sets}
        runs.append(RunEpoch(arm, sampler, seed, tag, FINAL, math.nan, ref_cer, num_refs,
                             errors))
        if progress is not None:
            progress(f"[export] {i}/{len(tags)} {tag}")
    return RawStudy(runs=runs, canaries=canaries, test_sets=list(test_sets), made_by=made_by)


__all__ = ["arm_of", "export_study"]
