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
    return p


def _run(args: argparse.Namespace) -> None:
    from espnet_pcc.recipe.report import collect, comparison_table, plot, results_markdown

    results = collect(args.expdir, args.asr_tags, args.decode_tag, args.test_sets,
                      args.exposure_name)
    plot(results, args.output_png)
    rel_png = os.path.relpath(args.output_png, args.output_md.resolve().parent
                              if args.output_md.parent != Path("") else Path("."))
    md = results_markdown(results, args.test_sets, args.decode_tag, args.expdir,
                          title=args.title, notes=args.notes, plot_name=rel_png)
    atomic_write_text(args.output_md, md)
    print(comparison_table(results, args.test_sets))
    print(f"wrote {args.output_md} and {args.output_png}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_main(get_parser(), argv, _run)


if __name__ == "__main__":
    main()
