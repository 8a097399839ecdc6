"""Build the synthetic demo corpus (espeak-ng voices) in LibriSpeech's on-disk layout.

Usage::

    python -m espnet_pcc.bin.make_synth_corpus --output_dir downloads/SynthSpeech --size full

Re-running with the same settings does nothing; other settings need --overwrite.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Optional, Sequence

from espnet_pcc.errors import run_main


def get_parser() -> argparse.ArgumentParser:
    from espnet_pcc.recipe.synth_corpus import PRESETS

    p = argparse.ArgumentParser(prog="make_synth_corpus", description=__doc__.splitlines()[0])
    p.add_argument("--output_dir", type=Path, required=True)
    p.add_argument("--size", default="full", choices=sorted(PRESETS))
    p.add_argument("--seed", type=int, default=None, help="override the preset's seed")
    p.add_argument("--nj", type=int, default=2, help="parallel espeak-ng/sox processes")
    p.add_argument("--overwrite", action="store_true")
    return p


def _run(args: argparse.Namespace) -> None:
    from espnet_pcc.recipe.synth_corpus import PRESETS, build

    cfg = PRESETS[args.size]
    if args.seed is not None:
        cfg = dataclasses.replace(cfg, seed=args.seed)
    meta = build(args.output_dir, cfg, nj=args.nj, overwrite=args.overwrite)
    print(f"{args.output_dir}: {meta['utterances']} utterances, {meta['hours']} hours")


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_main(get_parser(), argv, _run)


if __name__ == "__main__":
    main()
