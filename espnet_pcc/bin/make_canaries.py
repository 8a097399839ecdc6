"""Generate canaries and references: random word sequences spoken by espeak-ng, sped up by sox.

Usage::

    python -m espnet_pcc.bin.make_canaries --output_dir data/canaries --vocab wordfreq \\
        --num_words 6 --repeat_counts 1 2 4 8 16 --canaries_per_count 10 \\
        --num_references 2000 --speed 1.6 --seed 0 --nj 2

Writes DIR/canaries/, DIR/references/ (Kaldi dirs), DIR/wav/*.wav and DIR/manifest.json
(see :mod:`espnet_pcc.measurement.canary.generate`). Re-running with the same settings does nothing.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Optional, Sequence

from espnet_pcc.errors import run_main
from espnet_pcc.measurement.canary import tts


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="make_canaries",
        description="Generate spoken canaries + references (espeak-ng, sox) as Kaldi data dirs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--output_dir", type=Path, required=True)
    p.add_argument("--vocab", default="wordfreq",
                   help="'wordfreq' or a text file (one word per line, or a Kaldi text file)")
    p.add_argument("--vocab_format", default="auto", choices=["auto", "words", "kaldi_text"])
    p.add_argument("--vocab_size", type=int, default=10000,
                   help="wordfreq: take the N most frequent English words (before filtering)")
    p.add_argument("--min_word_len", type=int, default=3)
    p.add_argument("--num_words", type=int, default=6, help="words per canary")
    p.add_argument("--repeat_counts", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--canaries_per_count", type=int, default=10)
    p.add_argument("--num_references", type=int, default=2000)
    p.add_argument("--speed", type=float, default=1.6, help="sox tempo factor (pitch preserved)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--id_prefix", default="canary")
    p.add_argument("--text_case", default="lower", choices=["lower", "upper"],
                   help="case of the transcripts; match the training text (LibriSpeech: upper)")
    p.add_argument("--language", default="en",
                   help="the canaries' language (an espeak-ng language code, e.g. cs); the "
                   "vocabulary keeps that language's letters and every voice must speak it")
    p.add_argument("--voices", nargs="+", default=None,
                   help="espeak-ng voices to draw from (default: the English voices for en, "
                   "else the language's own voice)")
    p.add_argument("--nj", type=int, default=2, help="parallel espeak-ng/sox processes")
    p.add_argument("--log_every", type=int, default=200)
    p.add_argument("--overwrite", action="store_true", help="replace an output dir with other settings")
    return p


def _run(args: argparse.Namespace) -> None:
    from espnet_pcc.measurement.canary.generate import CanaryConfig, generate
    from espnet_pcc.measurement.canary.vocab import load_vocab

    cfg = CanaryConfig(
        num_words=args.num_words,
        repeat_counts=tuple(args.repeat_counts),
        canaries_per_count=args.canaries_per_count,
        num_references=args.num_references,
        speed=args.speed,
        seed=args.seed,
        id_prefix=args.id_prefix,
        text_case=args.text_case,
        voices=tuple(args.voices or (tts.ENGLISH_VOICES if args.language == "en"
                                     else (args.language,))),
        language=args.language,
    )
    cfg.validate()
    vocab = load_vocab(args.vocab, size=args.vocab_size, fmt=args.vocab_format,
                       min_len=args.min_word_len, language=args.language)
    logging.info("vocabulary: %d words from %s", len(vocab), args.vocab)
    man = generate(args.output_dir, vocab, cfg, vocab_source=args.vocab, nj=args.nj,
                   overwrite=args.overwrite, log_every=args.log_every)
    print(f"{args.output_dir}: {len(man['canaries'])} canaries, "
          f"{len(man['references'])} references")


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_main(get_parser(), argv, _run)


if __name__ == "__main__":
    main()
