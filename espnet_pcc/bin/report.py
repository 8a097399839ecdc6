"""Stage 9: compare clipping modes — RESULTS.md (ESPnet style), its plots and raw data.

Usage::

    python -m espnet_pcc.bin.report --expdir exp --asr_tags asr_baseline asr_pcc asr_apcc \\
        --decode_tag decode_asr_valid.acc.ave --test_sets dev test \\
        --output_md RESULTS.md --output_png exp/pcc_comparison.png

The model dirs are read once: their per-run, per-canary memorisation into the raw data of
:mod:`espnet_pcc.study.raw` (written to ``--raw_dir``, the same files the study's report is
rebuilt from), their utility through :func:`espnet_pcc.model_dir.collect`.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Optional, Sequence

from espnet2.utils.types import str2bool

from espnet_pcc.errors import run_main
from espnet_pcc.fileio import atomic_write_text


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="report", description=__doc__.splitlines()[0])
    p.add_argument("--expdir", type=Path, required=True)
    p.add_argument("--asr_tags", nargs="+", required=True, help="model dirs under --expdir")
    p.add_argument("--decode_tag", required=True)
    p.add_argument("--test_sets", nargs="+", required=True)
    p.add_argument("--exposure_name", default="exposure")
    p.add_argument("--output_md", type=Path, required=True)
    p.add_argument("--output_png", type=Path, required=True)
    p.add_argument("--title", default="RESULTS")
    p.add_argument("--notes", default="", help="a paragraph placed above the table")
    p.add_argument("--score_epochs", type=int, nargs="*", default=[],
                   help="epochs whose checkpoints stage 8 scored (memorisation trajectory)")
    p.add_argument("--epoch_decode_tag", default="",
                   help="decode dir of epoch N's checkpoint, with {epoch} for N")
    p.add_argument("--canary_accuracy", type=str2bool, default=False,
                   help="stage 7 scored canary transcription accuracy")
    p.add_argument("--study_png", type=Path, default=None,
                   help="exposure over runs per mode (default: --output_png with suffix "
                        "_study.png)")
    p.add_argument("--raw_dir", type=Path, default=None,
                   help="the per-run, per-canary raw data (default: beside --output_md, "
                        "<its stem>_raw/)")
    return p


def _run(args: argparse.Namespace) -> None:
    from espnet_pcc.model_dir import collect
    from espnet_pcc.recipe.report import comparison_table, plot, results_markdown

    results = collect(args.expdir, args.asr_tags, args.decode_tag, args.test_sets,
                      args.exposure_name)
    md_dir = args.output_md.resolve().parent
    rel = lambda p: os.path.relpath(p.resolve(), md_dir)  # noqa: E731
    sections = []
    if args.exposure_name != "none":
        from espnet_pcc.study import raw, results as study_results
        from espnet_pcc.study.analysis import compare_modes
        from espnet_pcc.study.export import export_study

        raw_dir = args.raw_dir or args.output_md.with_name(args.output_md.stem + "_raw")
        study = export_study(args.expdir, args.asr_tags, args.score_epochs, args.decode_tag,
                             args.epoch_decode_tag, args.test_sets, made_by="espnet_pcc.bin.report",
                             canary_accuracy=args.canary_accuracy, results=results)
        raw.write_raw(raw_dir, study)
        comparisons = [compare_modes(study, s)
                       for s in dict.fromkeys(r.sampler for r in study.runs)]
        study_png = args.study_png or args.output_png.with_name(args.output_png.stem + "_study.png")
        study_results.plot_modes(comparisons, study_png, args.title)
        sections.append(study_results.render_modes(comparisons, args.test_sets, rel(raw_dir))
                        + f"\n\n![exposure over runs]({rel(study_png)})\n")
    plot(results, args.output_png)
    md = results_markdown(results, args.test_sets, args.decode_tag, args.expdir,
                          title=args.title, notes=args.notes,
                          plot_name=rel(args.output_png),
                          sections=sections)
    atomic_write_text(args.output_md, md)
    print(comparison_table(results, args.test_sets))
    for section in sections:
        print(section)
    print(f"wrote {args.output_md} and {args.output_png}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_main(get_parser(), argv, _run)


if __name__ == "__main__":
    main()
