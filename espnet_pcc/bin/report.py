"""Stage 9: compare clipping modes — RESULTS.md (ESPnet style), its plots and raw data.

Usage::

    python -m espnet_pcc.bin.report --expdir exp --asr_tags asr_baseline asr_pcc asr_apcc \\
        --decode_tag decode_asr_valid.acc.ave --test_sets dev test \\
        --output_md RESULTS.md --output_png exp/pcc_comparison.png

The pipeline (model dirs read once, raw data, both views): :mod:`espnet_pcc.recipe.stage9`.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from espnet2.utils.types import str2bool

from espnet_pcc.errors import run_main


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
    from espnet_pcc.recipe.stage9 import Outputs, write_comparison

    printed = write_comparison(
        args.expdir, args.asr_tags, args.decode_tag, args.test_sets,
        Outputs(args.output_md, args.output_png, args.study_png, args.raw_dir),
        exposure_name=args.exposure_name, title=args.title, notes=args.notes,
        score_epochs=args.score_epochs, epoch_decode_tag=args.epoch_decode_tag,
        canary_accuracy=args.canary_accuracy)
    for text in printed:
        print(text)
    print(f"wrote {args.output_md} and {args.output_png}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_main(get_parser(), argv, _run)


if __name__ == "__main__":
    main()
