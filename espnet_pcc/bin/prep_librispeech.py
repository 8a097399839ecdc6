"""Stage 1: LibriSpeech splits -> a Kaldi data dir.

Usage::

    python -m espnet_pcc.bin.prep_librispeech --corpus_dir /data/LibriSpeech \\
        --splits train-clean-100 train-clean-360 train-other-500 --output_dir data/train_960

Several splits are combined into one dir. An existing output dir made from the same corpus and
splits is kept; one made from anything else needs --overwrite.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from espnet_pcc.errors import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prep_librispeech", description=__doc__.splitlines()[0])
    p.add_argument("--corpus_dir", type=Path, required=True,
                   help="the extracted LibriSpeech/ dir, or its parent (ESPnet's db.sh)")
    p.add_argument("--splits", nargs="+", required=True, help="e.g. train-clean-100 dev-clean")
    p.add_argument("--output_dir", type=Path, required=True)
    p.add_argument("--overwrite", action="store_true")
    return p


def _run(args: argparse.Namespace) -> None:
    from espnet_pcc.recipe.librispeech import prepare

    n = prepare(args.corpus_dir, args.splits, args.output_dir, overwrite=args.overwrite)
    print(f"{args.output_dir}: {n} utterances from {' '.join(args.splits)}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_main(get_parser(), argv, _run)


if __name__ == "__main__":
    main()
