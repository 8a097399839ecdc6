"""Stage 9: the comparison of a recipe's clipping modes, one pipeline.

The model dirs are read once: their utility into :class:`espnet_pcc.model_dir.ModelResult`
(:func:`espnet_pcc.model_dir.collect`), their per-run, per-canary memorisation from those
results and the exposure files into the raw data of :mod:`espnet_pcc.study.raw`
(:func:`espnet_pcc.study.export.export_study`, written beside the report: the same files the
study's report is rebuilt from). Two views of that: the utility table and plot
(:mod:`espnet_pcc.recipe.report`) and the memorisation over runs (:mod:`espnet_pcc.study.results`).

Command line: :mod:`espnet_pcc.bin.report`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from espnet_pcc.fileio import atomic_write_text
from espnet_pcc.model_dir import collect
from espnet_pcc.recipe.report import comparison_table, plot, results_markdown


@dataclass(frozen=True)
class Outputs:
    """Where stage 9 writes: RESULTS.md, the utility plot, the memorisation plot and raw
    data (default: beside them, ``<png stem>_study.png`` and ``<md stem>_raw/``)."""

    md: Path
    png: Path
    study_png: Optional[Path] = None
    raw_dir: Optional[Path] = None


def write_comparison(expdir: Path, tags: Sequence[str], decode_tag: str,
                     test_sets: Sequence[str], out: Outputs, *, exposure_name: str = "exposure",
                     title: str = "RESULTS", notes: str = "",
                     score_epochs: Sequence[int] = (), epoch_decode_tag: str = "",
                     canary_accuracy: bool = False) -> List[str]:
    """Writes RESULTS.md, its plots and (with exposure) the raw data; returns what is printed
    in the terminal: the comparison table, then each memorisation section."""
    results = collect(expdir, tags, decode_tag, test_sets, exposure_name)
    md_dir = out.md.resolve().parent
    rel = lambda p: os.path.relpath(p.resolve(), md_dir)  # noqa: E731
    sections = []
    if exposure_name != "none":
        from espnet_pcc.study import raw, results as study_results
        from espnet_pcc.study.analysis import compare_modes
        from espnet_pcc.study.export import export_study

        raw_dir = out.raw_dir or out.md.with_name(out.md.stem + "_raw")
        study = export_study(expdir, tags, score_epochs, decode_tag, epoch_decode_tag,
                             test_sets, made_by="espnet_pcc.bin.report",
                             canary_accuracy=canary_accuracy, results=results)
        raw.write_raw(raw_dir, study)
        comparisons = [compare_modes(study, s)
                       for s in dict.fromkeys(r.sampler for r in study.runs)]
        study_png = out.study_png or out.png.with_name(out.png.stem + "_study.png")
        study_results.plot_modes(comparisons, study_png, title)
        sections.append(study_results.render_modes(comparisons, test_sets, rel(raw_dir))
                        + f"\n\n![exposure over runs]({rel(study_png)})\n")
    plot(results, out.png)
    md = results_markdown(results, test_sets, decode_tag, expdir, title=title, notes=notes,
                          plot_name=rel(out.png), sections=sections)
    atomic_write_text(out.md, md)
    return [comparison_table(results, test_sets), *sections]


__all__ = ["Outputs", "write_comparison"]
