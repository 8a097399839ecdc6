"""The memorisation study's RESULTS.md and plot, from its committed raw data alone.

Usage::

    python -m espnet_pcc.bin.study_report --raw_dir study/raw --output_md study/RESULTS.md \\
        --output_png study/pcc_comparison.png

Everything in the report comes from ``--raw_dir`` (its provenance paragraph too: the notes
study_export kept in meta.json) and the options, so the command it prints rebuilds it byte for
byte. ``--study second`` (the default): the second study's pre-registered analysis
(docs/study.md) on the shuffled-batch runs; the runs of any other sampler in the raw data get the
same numbers, labelled exploratory.  ``--study third``: the third study's (the paper's claims
against the paper's baseline, :mod:`espnet_pcc.study.claims`), once every arm of every seed
block is in the raw data.
"""
from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path
from typing import Optional, Sequence

from espnet_pcc.errors import run_main

DEFAULT_TITLE = "RESULTS (memorisation study)"
STUDIES = ("second", "third")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="study_report", description=__doc__.splitlines()[0])
    p.add_argument("--raw_dir", type=Path, required=True, help="written by study_export")
    p.add_argument("--output_md", type=Path, required=True)
    p.add_argument("--output_png", type=Path, required=True)
    p.add_argument("--title", default=DEFAULT_TITLE)
    p.add_argument("--study", choices=STUDIES, default=STUDIES[0],
                   help="whose pre-registered analysis (docs/study.md)")
    p.add_argument("--skip_incomplete", choices=("true", "false"), default="false",
                   help="--study third: while a run of the plan is missing from --raw_dir, print "
                        "which seed blocks are in and write nothing (exit 0)")
    return p


def rebuild_command(args: argparse.Namespace) -> str:
    """The command line that writes this report again (from the directory it was run in)."""
    rel = lambda p: os.path.relpath(p.resolve(), Path.cwd())  # noqa: E731
    words = ["python", "-m", "espnet_pcc.bin.study_report", "--raw_dir", rel(args.raw_dir),
             "--output_md", rel(args.output_md), "--output_png", rel(args.output_png)]
    if args.title != DEFAULT_TITLE:
        words += ["--title", args.title]
    if args.study != STUDIES[0]:
        words += ["--study", args.study]
    return shlex.join(words)


def _run(args: argparse.Namespace) -> None:
    if args.study == "third":
        from espnet_pcc.study import claims, raw
        from espnet_pcc.study.claims_report import write_report

        study = raw.read_raw(args.raw_dir)
        print(claims.block_status(study))
        if args.skip_incomplete == "true" and claims.missing_runs(study):
            print(f"{args.output_md} is written once every arm of every seed block is in")
            return
        print("\n".join(write_report(args.raw_dir, args.output_md, args.output_png, args.title,
                                     rebuild_command(args))))
    else:
        from espnet_pcc.study.results import write_study_report

        print(write_study_report(args.raw_dir, args.output_md, args.output_png, args.title,
                                 rebuild_command(args)))
    print(f"wrote {args.output_md} and {args.output_png}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_main(get_parser(), argv, _run)


if __name__ == "__main__":
    main()
