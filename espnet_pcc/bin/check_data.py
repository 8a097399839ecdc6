#!/usr/bin/env python3
"""Check Kaldi data dirs before training: readable, non-empty audio; text the tokenizer covers.

Usage::

    python -m espnet_pcc.bin.check_data --data_dir data/train data/dev --nj 4
    python -m espnet_pcc.bin.check_data --data_dir data/train --skip_audio \\
        --token_type char --token_list data/token_list/char/tokens.txt
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from espnet_pcc.errors import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="check_data", description=__doc__.splitlines()[0])
    p.add_argument("--data_dir", type=Path, nargs="+", required=True)
    p.add_argument("--skip_audio", action="store_true", help="check the text only")
    p.add_argument("--token_type", choices=["char", "bpe"], default=None,
                   help="check the text against this tokenizer")
    p.add_argument("--token_list", type=Path, default=None)
    p.add_argument("--bpemodel", type=Path, default=None)
    p.add_argument("--nj", type=int, default=4, help="threads reading audio headers")
    p.add_argument("--warn_only", action="store_true",
                   help="report a failed check as a warning and exit 0 (sets only scored, "
                        "never trained on)")
    return p


def _check(args: argparse.Namespace, path: Path) -> None:
    from espnet_pcc import data_check, kaldi_dir

    kd = kaldi_dir.read(path)
    checked = []
    if not args.skip_audio:
        data_check.check_audio(kd, str(path), nj=args.nj)
        checked.append("audio")
    if args.token_type is not None:
        data_check.check_text(kd, str(path), args.token_list, args.token_type, args.bpemodel)
        checked.append(f"text vs {args.token_type} tokens")
    print(f"{path}: {len(kd)} utterances OK ({', '.join(checked) or 'layout'})")


def _run(args: argparse.Namespace) -> None:
    from espnet_pcc.data_check import DataCheckError

    for path in args.data_dir:
        try:
            _check(args, path)
        except DataCheckError as e:
            if not args.warn_only:
                raise
            print(f"check_data: warning: {e}", file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_main(get_parser(), argv, _run)


if __name__ == "__main__":
    main()
