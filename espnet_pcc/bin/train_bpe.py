"""Stage 3: train a sentencepiece model on the transcripts of a Kaldi ``text`` file.

Usage::

    python -m espnet_pcc.bin.train_bpe --text data/train_clean_100/text --vocab_size 5000 \\
        --model_type unigram --output_prefix data/token_list/bpe_unigram5000/bpe

Writes ``<prefix>.model`` and ``<prefix>.vocab`` (atomically: trained under a temp name, then
renamed). Options follow ESPnet's asr.sh (character_coverage 1.0, input_sentence_size 1e8).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence

from espnet_pcc import fileio
from espnet_pcc.errors import UserError, run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train_bpe", description=__doc__.splitlines()[0])
    p.add_argument("--text", type=Path, required=True, help="Kaldi text (utt-id then words)")
    p.add_argument("--vocab_size", type=int, required=True)
    p.add_argument("--model_type", default="unigram", choices=["unigram", "bpe", "char", "word"])
    p.add_argument("--output_prefix", type=Path, required=True)
    p.add_argument("--user_defined_symbols", default="", help="comma separated")
    return p


def _run(args: argparse.Namespace) -> None:
    import sentencepiece as spm

    if not args.text.is_file():
        raise UserError(f"{args.text} missing (produced by stage 2 / stage 1)")
    lines: List[str] = []
    for line in args.text.read_text(encoding="utf-8").splitlines():
        parts = line.split(maxsplit=1)
        if len(parts) == 2:
            lines.append(parts[1])
    out = args.output_prefix
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".spm.") as tmp:
        train_txt = Path(tmp) / "train.txt"
        train_txt.write_text("\n".join(lines) + "\n", encoding="utf-8")
        kwargs = dict(
            input=str(train_txt), vocab_size=args.vocab_size, model_type=args.model_type,
            model_prefix=str(Path(tmp) / "bpe"), character_coverage=1.0,
            input_sentence_size=100000000, minloglevel=1,
        )
        if args.user_defined_symbols:
            kwargs["user_defined_symbols"] = args.user_defined_symbols
        try:
            spm.SentencePieceTrainer.train(**kwargs)
        except RuntimeError as e:  # e.g. vocab_size larger than the text allows
            raise UserError(f"sentencepiece: {str(e).splitlines()[-1]} "
                            f"(lower --nbpe for {len(lines)} sentences)") from None
        # sentencepiece names its outputs after model_prefix: train in a temp dir, then move.
        for ext in ("model", "vocab"):
            fileio.move_into_place(Path(tmp) / f"bpe.{ext}", f"{out}.{ext}")
    print(f"{out}.model: {args.model_type}, vocab {args.vocab_size}, {len(lines)} sentences")


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_main(get_parser(), argv, _run)


if __name__ == "__main__":
    main()
