"""Stage 9: compare clipping modes — RESULTS.md (ESPnet style) + PNG plot; prints the table.

Usage::

    python -m espnet_pcc.bin.report --expdir exp --asr_tags asr_baseline asr_pcc asr_apcc \\
        --decode_tag decode_asr_valid.acc.ave --test_sets dev test \\
        --output_md RESULTS.md --output_png exp/pcc_comparison.png
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
    p.add_argument("--datadir", type=Path, default=Path("data"),
                   help="holds <test set>/text (per-utterance errors for the WER intervals)")
    p.add_argument("--score_epochs", type=int, nargs="*", default=[],
                   help="epochs whose checkpoints stage 8 scored (memorisation trajectory)")
    p.add_argument("--epoch_decode_tag", default="",
                   help="decode dir of epoch N's checkpoint, with {epoch} for N")
    p.add_argument("--canary_accuracy", type=str2bool, default=False,
                   help="stage 7 scored canary transcription accuracy")
    p.add_argument("--study_png", type=Path, default=None,
                   help="the study's plots (default: --output_png with suffix _study.png)")
    return p


def _run(args: argparse.Namespace) -> None:
    from espnet_pcc.recipe.report import collect, comparison_table, plot, results_markdown
    from espnet_pcc.study import report as study_report

    results = collect(args.expdir, args.asr_tags, args.decode_tag, args.test_sets,
                      args.exposure_name)
    md_dir = args.output_md.resolve().parent
    study_md = ""
    if args.exposure_name != "none":
        study = study_report.build(
            results, args.expdir, args.decode_tag, {s: args.datadir / s for s in args.test_sets},
            args.score_epochs, args.canary_accuracy, args.epoch_decode_tag)
        study_png = args.study_png or args.output_png.with_name(args.output_png.stem + "_study.png")
        study_report.plot(study, study_png)
        study_md = study_report.markdown(study, os.path.relpath(study_png.resolve(), md_dir))
    plot(results, args.output_png)
    md = results_markdown(results, args.test_sets, args.decode_tag, args.expdir,
                          title=args.title, notes=args.notes,
                          plot_name=os.path.relpath(args.output_png.resolve(), md_dir),
                          study_md=study_md)
    atomic_write_text(args.output_md, md)
    print(comparison_table(results, args.test_sets))
    if study_md:
        print(study_md)
    print(f"wrote {args.output_md} and {args.output_png}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_main(get_parser(), argv, _run)


if __name__ == "__main__":
    main()
