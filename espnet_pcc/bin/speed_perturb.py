"""Speed perturbation of a training data dir (ESPnet's ``--speed_perturb_factors``).

Usage::

    python -m espnet_pcc.bin.speed_perturb --data_dir data/train_clean_100 \\
        --factors 0.9 1.0 1.1 --output_dir data/train_clean_100_sp --nj 8

The output dir holds every factor's copy (ids ``sp<factor>-...``; 1.0 = the original ids) and
the perturbed audio under ``<output_dir>/audio/`` (see :mod:`espnet_pcc.recipe.speed_perturb`).
The source dir is never modified; an interrupted run resumes.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from espnet_pcc.errors import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="speed_perturb", description=__doc__.splitlines()[0])
    p.add_argument("--data_dir", type=Path, required=True, help="the training data dir (read only)")
    p.add_argument("--factors", nargs="+", required=True, help='e.g. 0.9 1.0 1.1 (as ESPnet)')
    p.add_argument("--output_dir", type=Path, required=True)
    p.add_argument("--nj", type=int, default=1, help="parallel processes writing audio")
    return p


def _run(args: argparse.Namespace) -> None:
    from espnet_pcc.recipe.speed_perturb import perturb

    n = perturb(args.data_dir, args.factors, args.output_dir, nj=args.nj)
    print(f"{args.output_dir}: {n} utterances (factors {' '.join(args.factors)})")


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_main(get_parser(), argv, _run)


if __name__ == "__main__":
    main()
