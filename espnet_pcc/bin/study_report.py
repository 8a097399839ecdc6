"""The memorisation study's RESULTS.md and plot, from its committed raw data alone.

Usage::

    python -m espnet_pcc.bin.study_report --raw_dir study/raw --output_md study/RESULTS.md \\
        --output_png study/pcc_comparison.png

Everything in the report comes from ``--raw_dir`` (its provenance paragraph too: the notes
study_export kept in meta.json) and the options, so the command it prints rebuilds it byte for
byte. The pre-registered analysis (docs/study.md) on the shuffled-batch runs; the runs of any other
sampler in the raw data get the same numbers, labelled exploratory.
"""
from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path
from typing import Optional, Sequence

from espnet_pcc.errors import run_main

DEFAULT_TITLE = "RESULTS (memorisation study)"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="study_report", description=__doc__.splitlines()[0])
    p.add_argument("--raw_dir", type=Path, required=True, help="written by study_export")
    p.add_argument("--output_md", type=Path, required=True)
    p.add_argument("--output_png", type=Path, required=True)
    p.add_argument("--title", default=DEFAULT_TITLE)
    return p


def rebuild_command(args: argparse.Namespace) -> str:
    """The command line that writes this report again (from the directory it was run in)."""
    rel = lambda p: os.path.relpath(p.resolve(), Path.cwd())  # noqa: E731
    words = ["python", "-m", "espnet_pcc.bin.study_report", "--raw_dir", rel(args.raw_dir),
             "--output_md", rel(args.output_md), "--output_png", rel(args.output_png)]
    if args.title != DEFAULT_TITLE:
        words += ["--title", args.title]
    return shlex.join(words)


def _run(args: argparse.Namespace) -> None:
    from espnet_pcc.study.results import write_study_report

    print(write_study_report(args.raw_dir, args.output_md, args.output_png, args.title,
                             rebuild_command(args)))
    print(f"wrote {args.output_md} and {args.output_png}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_main(get_parser(), argv, _run)


if __name__ == "__main__":
    main()
