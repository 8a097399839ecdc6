"""Build the Fish Fillets NG real-speech corpus (Debian's packages) in LibriSpeech's layout.

Usage::

    python -m espnet_pcc.bin.make_fillets_corpus --lang cs --download_dir downloads/debs \\
        --output_dir downloads/FilletsCS
    python -m espnet_pcc.bin.make_fillets_corpus --lang cs --corpus_dir /path/to/extracted \\
        --output_dir downloads/FilletsCS

With --download_dir the packages are fetched with ``apt-get download`` and extracted with
``dpkg-deb -x`` (nothing is installed); --corpus_dir is an extracted copy instead (the
packages' root, or its usr/share/games/fillets-ng).  Re-running with the same settings keeps
the corpus.  Prints the counts and hours of each split (espnet_pcc.recipe.fillets).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from espnet_pcc.errors import UserError, run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="make_fillets_corpus", description=__doc__.splitlines()[0])
    p.add_argument("--lang", default="cs", help="cs (Czech) or nl (Dutch)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus_dir", type=Path, help="an extracted copy of the packages")
    source.add_argument("--download_dir", type=Path,
                        help="apt-get download the packages into this dir and extract them")
    p.add_argument("--output_dir", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0, help="of the split by level")
    p.add_argument("--dev_share", type=float, default=0.1)
    p.add_argument("--test_share", type=float, default=0.1)
    p.add_argument("--nj", type=int, default=2, help="parallel sox conversions")
    return p


def _run(args: argparse.Namespace) -> None:
    from espnet_pcc.recipe import fillets

    if args.lang not in fillets.PACKAGES:
        raise UserError(f"--lang {args.lang!r}: choose one of {', '.join(fillets.PACKAGES)}")
    for name in ("dev_share", "test_share"):
        value = getattr(args, name)
        if not 0 < value < 0.5:
            raise UserError(f"--{name} {value!r} must be in (0, 0.5)")
    root = args.corpus_dir if args.corpus_dir is not None else \
        fillets.download(args.download_dir, args.lang)
    summary = fillets.build_corpus(fillets.find_game_dir(root), args.lang, args.output_dir,
                                   nj=args.nj, seed=args.seed, dev_share=args.dev_share,
                                   test_share=args.test_share)
    print(f"{args.output_dir}:\n{fillets.describe(summary)}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_main(get_parser(), argv, _run)


if __name__ == "__main__":
    main()
