"""Stage 9: the comparison of a recipe's clipping modes, one pipeline.

The model dirs are read once, by their one reader, into one
:class:`espnet_pcc.study.model_dir.ModelResult` per model
(:func:`espnet_pcc.study.model_dir.collect`, with every scored checkpoint's canaries where there is
exposure).  Two views of those results: the utility table and plot
(:mod:`espnet_pcc.recipe.report`), and the memorisation over runs (:mod:`espnet_pcc.study.results`),
through the raw data that :func:`espnet_pcc.study.export.study_of` makes of the same results and
that is written beside the report (the files the study's report is rebuilt from).

Command line: :mod:`espnet_pcc.bin.report`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from espnet_pcc.fileio import atomic_write_text
from espnet_pcc.recipe.report import comparison_table, plot, results_markdown
from espnet_pcc.study.model_dir import collect


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
    memorisation = exposure_name != "none"
    results = collect(expdir, tags, decode_tag, test_sets, exposure_name,
                      per_canary=memorisation, score_epochs=score_epochs,
                      epoch_decode_tag=epoch_decode_tag, canary_accuracy=canary_accuracy)
    md_dir = out.md.resolve().parent
    rel = lambda p: os.path.relpath(p.resolve(), md_dir)  # noqa: E731
    sections = []
    if memorisation:
        from espnet_pcc.study import raw, results as study_results
        from espnet_pcc.study.analysis import compare_modes
        from espnet_pcc.study.export import study_of

        raw_dir = out.raw_dir or out.md.with_name(out.md.stem + "_raw")
        study = study_of(results, test_sets, made_by="espnet_pcc.bin.report")
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
