"""Score a canary dir with a trained model and write the exposure outputs.

:func:`score_exposure` reads a ``make_canaries`` dir (``canaries/``, ``references/``,
``manifest.json``), scores every utterance (:mod:`~espnet_pcc.measurement.exposure.scoring`),
computes the exposures (:mod:`~espnet_pcc.measurement.exposure.metric`) and writes ``output_dir``
atomically (built in a temp dir and renamed, so it is complete or absent)::

    scores.tsv       utt_id  kind(canary|reference)  repeat_count  num_tokens  nll_sum  score
    exposure.tsv     the per-canary table
    (:func:`~espnet_pcc.measurement.exposure.schema.exposure_tsv`) exposure.json    one entry per
    canary (layout, writer and reader in :mod:`~espnet_pcc.measurement.exposure.schema`) summary.tsv
    the per-repeat-count table (:func:`~espnet_pcc.measurement.exposure.schema.summary_tsv`)
    summary.json     the summary (layout, writer and reader in
    :mod:`espnet_pcc.measurement.exposure.schema`)
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from espnet_pcc import fileio, kaldi_dir
from espnet_pcc.measurement.canary.canary_dir import read_canary_dir
from espnet_pcc.measurement.exposure import schema
from espnet_pcc.measurement.exposure.metric import ExposureError, compute_exposures
from espnet_pcc.measurement.exposure.scoring import Scorer, load_asr_model, set_num_threads

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]


def canaries_and_references(canary_dir: Path
                            ) -> Tuple[kaldi_dir.KaldiDir, kaldi_dir.KaldiDir, Dict[str, int]]:
    """``(canaries, references, {canary id: repeat count})``, checked before any model loads
    (`espnet_pcc.measurement.canary.canary_dir`; exposure also needs two references at least)."""
    found = read_canary_dir(canary_dir)
    if len(found.references) < 2:
        raise ExposureError(f"need >= 2 references, got {len(found.references)} in "
                            f"{canary_dir}/references")
    return found.canaries, found.references, found.repeat_counts


def write_outputs(output_dir: Path, scores_text: str, per_canary: List[Dict[str, Any]],
                  summary: Mapping[str, Any]) -> None:
    """All five output files, into ``output_dir`` as one atomic replacement."""
    with fileio.atomic_dir(output_dir) as tmp:
        (tmp / schema.SCORES_TSV).write_text(scores_text, encoding="utf-8")
        (tmp / schema.EXPOSURE_TSV).write_text(schema.exposure_tsv(per_canary), encoding="utf-8")
        schema.write_exposure_json(tmp / schema.EXPOSURE_JSON, per_canary)
        (tmp / schema.SUMMARY_TSV).write_text(schema.summary_tsv(summary), encoding="utf-8")
        schema.write_summary_json(tmp / schema.SUMMARY_JSON, summary)


def score_exposure(
    asr_train_config: PathLike,
    asr_model_file: PathLike,
    canary_dir: PathLike,
    output_dir: PathLike,
    batch_size: int = 32,
    device: str = "cpu",
    nj: Optional[int] = None,
    log_every: int = 500,
    include_canary: bool = True,
) -> Dict[str, Any]:
    """Score canaries + references of a make_canaries dir, write the outputs, return the summary.

    Args:
        asr_train_config: the model's ``config.yaml``.
        asr_model_file: its checkpoint (a state_dict, or a trainer ``checkpoint.pth``).
        canary_dir: a ``make_canaries`` output dir.
        output_dir: where the five files go (replaced as a whole).
        batch_size: utterances per forward pass.
        device: torch device.
        nj: torch CPU threads (``None``: torch's default).
        log_every: log progress every this many utterances (0: never).
        include_canary: count the canary in |R| (see
        :mod:`~espnet_pcc.measurement.exposure.metric`).

    Returns:
        The summary (the contents of summary.json).
    """
    canary_dir, output_dir = Path(canary_dir), Path(output_dir)
    can, ref, counts = canaries_and_references(canary_dir)
    set_num_threads(nj)
    model, args = load_asr_model(asr_train_config, asr_model_file, device)
    scorer = Scorer(model, args, device=device, batch_size=batch_size)
    items = [(u, can.wav_of(u), can.text[u]) for u in can.utt_ids] + [
        (u, ref.wav_of(u), ref.text[u]) for u in ref.utt_ids]
    t0 = time.time()
    raw = scorer.score(items, log_every=log_every)
    elapsed = time.time() - t0
    if scorer.num_unk:
        logger.warning("%d tokens mapped to <unk>: canary text and token list disagree "
                       "(check --text_case)", scorer.num_unk)
    score = {u: v / max(n, 1) for u, (v, n) in raw.items()}
    per, summary = compute_exposures(
        {u: score[u] for u in can.utt2spk}, counts, [score[u] for u in ref.utt_ids], include_canary)
    for p in per:
        p[schema.CANARY_TEXT] = can.text[p[schema.CANARY_ID]]
        p[schema.NUM_TOKENS] = raw[p[schema.CANARY_ID]][1]
    summary.update({
        schema.SCORE_KIND: scorer.kind,
        schema.ASR_TRAIN_CONFIG: str(asr_train_config),
        schema.ASR_MODEL_FILE: str(asr_model_file),
        schema.CANARY_DIR: str(canary_dir),
        schema.UTTERANCES_PER_SECOND: len(items) / max(elapsed, 1e-9),
    })
    write_outputs(output_dir, schema.scores_tsv(can.utt_ids + ref.utt_ids, counts, raw, score), per, summary)
    logger.info("wrote %s (%d canaries, %d references, %.1f utt/s)", output_dir, len(can),
                len(ref), summary[schema.UTTERANCES_PER_SECOND])
    return summary
