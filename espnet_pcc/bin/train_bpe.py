"""Stage 3: train a sentencepiece model on the transcripts of a Kaldi ``text`` file.

Usage::

    python -m espnet_pcc.bin.train_bpe --text data/train_clean_100/text --vocab_size 5000 \\
        --model_type unigram --output_prefix data/token_list/bpe_unigram5000/bpe

Writes ``<prefix>.model`` and ``<prefix>.vocab`` atomically (:mod:`espnet_pcc.recipe.bpe`).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from espnet_pcc.errors import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train_bpe", description=__doc__.splitlines()[0])
    p.add_argument("--text", type=Path, required=True, help="Kaldi text (utt-id then words)")
    p.add_argument("--vocab_size", type=int, required=True)
    p.add_argument("--model_type", default="unigram", choices=["unigram", "bpe", "char", "word"])
    p.add_argument("--output_prefix", type=Path, required=True)
    p.add_argument("--user_defined_symbols", default="", help="comma separated")
    return p


def _run(args: argparse.Namespace) -> None:
    from espnet_pcc.recipe.bpe import train_bpe

    sentences = train_bpe(args.text, args.vocab_size, args.model_type, args.output_prefix,
                          args.user_defined_symbols)
    print(f"{args.output_prefix}.model: {args.model_type}, vocab {args.vocab_size}, "
          f"{sentences} sentences")


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_main(get_parser(), argv, _run)


if __name__ == "__main__":
    main()
