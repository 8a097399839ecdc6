"""Exposure of canaries (Secret Sharer, Carlini et al. 2019) for ESPnet ASR models.

One concern per module:

* :mod:`~espnet_pcc.measurement.exposure.metric`: ranks, rank exposure, the skew-normal fit,
  extrapolated exposure and the per-repeat-count summary; numpy/scipy only.
* :mod:`~espnet_pcc.measurement.exposure.schema`: the output files' layouts (format, key names,
  file names), one writer and one reader each, the per-repeat-count table (printed and
  summary.tsv); plain Python.
* :mod:`~espnet_pcc.measurement.exposure.scoring`: load a trained model, per-utterance NLL
  (torch/ESPnet, imported when called).
* :mod:`~espnet_pcc.measurement.exposure.run`: score a canary dir and write the outputs.

Importing this package loads neither torch nor ESPnet.
"""
from espnet_pcc.measurement.exposure.metric import (
    ExposureError, chance_rank_exposure, compute_exposures, extrapolated_exposure, fit_skewnorm,
    rank_exposure, ranks,
)
from espnet_pcc.measurement.exposure.run import score_exposure
from espnet_pcc.measurement.exposure.schema import SUMMARY_FORMAT, format_summary, summary_table, \
    summary_tsv
from espnet_pcc.measurement.exposure.scoring import Scorer, load_asr_model, read_mono

__all__ = [
    "ExposureError", "SUMMARY_FORMAT", "Scorer", "chance_rank_exposure", "compute_exposures",
    "extrapolated_exposure", "fit_skewnorm", "format_summary", "load_asr_model", "rank_exposure",
    "ranks", "read_mono", "score_exposure", "summary_table", "summary_tsv",
]
