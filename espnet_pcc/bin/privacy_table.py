"""Markdown table of the (epsilon, delta) and the noise of noisy PCC at a data set's scale.

Usage::

    python -m espnet_pcc.bin.privacy_table --setup librispeech960 demo
    python -m espnet_pcc.bin.privacy_table --num_utterances 50000 --num_speakers 400 \\
        --params 30e6 --sigmas 1 2 --batch_sizes 512 --epochs 20 --out privacy.md

No training: every number comes from the accountant; the rows, their formulas and the
presets: :mod:`espnet_pcc.study.privacy_table`.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from espnet_pcc.errors import run_main
from espnet_pcc.study.privacy_table import (DEFAULT_MAX_NORM, DEFAULT_NUM_CORES, DEFAULT_SIGMAS,
                                      PRESETS, check, quiet_accountant, render, setups_from)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="privacy_table", description=__doc__.splitlines()[0])
    p.add_argument("--setup", nargs="+", default=None, metavar="NAME",
                   help=f"presets: {', '.join(PRESETS)} (default: all of them, unless "
                        "--num_utterances gives a custom setup)")
    p.add_argument("--num_utterances", type=int, default=None, help="N of a custom setup")
    p.add_argument("--num_speakers", type=int, default=None, help="S of a custom setup")
    p.add_argument("--name", default="custom", help="the custom setup's name in the table")
    p.add_argument("--sigmas", type=float, nargs="+", default=list(DEFAULT_SIGMAS),
                   help="noise multipliers σ (noise std σC on the sum of the clipped cores)")
    p.add_argument("--batch_sizes", type=int, nargs="+", default=None,
                   help="utterances per step in expectation (default per setup: "
                        "librispeech960 256 1024 4096, demo 16 64 256)")
    p.add_argument("--epochs", type=int, nargs="+", default=None,
                   help="default per setup: librispeech960 10 50, demo 6")
    p.add_argument("--num_cores", type=int, default=DEFAULT_NUM_CORES,
                   help="K: per_core hashed cores per step (= speaker slots per step)")
    p.add_argument("--max_norm", type=float, default=DEFAULT_MAX_NORM, help="C")
    p.add_argument("--params", type=float, default=None,
                   help="the model's parameter count d (default per preset: librispeech960 "
                        "116.1e6, demo 3.07e6; required for a custom setup)")
    p.add_argument("--out", type=Path, default=None,
                   help="write the Markdown here (atomically) instead of printing it")
    return p


def _run(args: argparse.Namespace) -> None:
    setups = setups_from(args.setup, args.num_utterances, args.num_speakers, args.params,
                         args.name, args.batch_sizes)
    grid = dict(sigmas=args.sigmas, max_norm=args.max_norm, num_cores=args.num_cores,
                params=args.params, epochs=args.epochs, batch_sizes=args.batch_sizes)
    check(setups, **grid)
    with quiet_accountant(not args.verbose):
        text = render(setups, **grid)
    if args.out is None:
        print(text, end="")
        return
    from espnet_pcc.fileio import atomic_write_text

    atomic_write_text(args.out, text)
    print(f"wrote {args.out}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_main(get_parser(), argv, _run)


if __name__ == "__main__":
    main()
