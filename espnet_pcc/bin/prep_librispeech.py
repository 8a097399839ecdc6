"""Stage 1: LibriSpeech splits -> a Kaldi data dir.

Usage::

    python -m espnet_pcc.bin.prep_librispeech --corpus_dir /data/LibriSpeech \\
        --splits train-clean-100 train-clean-360 train-other-500 --output_dir data/train_960

Several splits are combined into one dir. An existing valid output dir is kept (resumable).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from espnet_pcc.errors import get_verbose, run_cli, setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prep_librispeech", description=__doc__.splitlines()[0])
    p.add_argument("--corpus_dir", type=Path, required=True, help="the extracted LibriSpeech/ dir")
    p.add_argument("--splits", nargs="+", required=True, help="e.g. train-clean-100 dev-clean")
    p.add_argument("--output_dir", type=Path, required=True)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)

    def body() -> None:
        from espnet_pcc.recipe.librispeech import prepare

        n = prepare(args.corpus_dir, args.splits, args.output_dir, overwrite=args.overwrite)
        print(f"{args.output_dir}: {n} utterances from {' '.join(args.splits)}")

    run_cli(body, verbose=args.verbose or get_verbose(argv), prog="prep_librispeech")


if __name__ == "__main__":
    main()
