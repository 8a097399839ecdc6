"""Insert canaries (each repeated its count times) into a copy of a training data dir.

Usage::

    python -m espnet_pcc.bin.insert_canaries --train_dir data/train \\
        --canary_dir data/canaries --output_dir data/train_canary

The source dir is never modified; re-running is a no-op; id collisions are errors
(see :mod:`espnet_pcc.measurement.canary.insert`).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from espnet_pcc.errors import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="insert_canaries",
        description="Merge repeated canaries into a training data dir (source untouched).",
    )
    p.add_argument("--train_dir", type=Path, required=True)
    p.add_argument("--canary_dir", type=Path, required=True, help="make_canaries output dir")
    p.add_argument("--output_dir", type=Path, required=True)
    return p


def _run(args: argparse.Namespace) -> None:
    from espnet_pcc.measurement.canary.insert import insert

    n = insert(args.train_dir, args.canary_dir, args.output_dir)
    print(f"{args.output_dir}: {n['train']} training + {n['inserted']} canary utterances "
          f"= {n['total']}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_main(get_parser(), argv, _run)


if __name__ == "__main__":
    main()
