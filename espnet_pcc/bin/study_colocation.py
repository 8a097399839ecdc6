"""How often copies of a canary share a batch and a core, per sampler (the study's raw data).

Usage::

    python -m espnet_pcc.bin.study_colocation \\
        --shape_file exp/study/asr_stats_raw_char/train/speech_shape \\
        --shape_file exp/study/asr_stats_raw_char/train/text_shape.char \\
        --batch_size 16 --fold_length 80000 150 --num_cores 4 --seeds 0 1 2 3 4 \\
        --epochs 1 2 3 4 5 6 --output_dir study/raw

Writes ``colocation.json`` beside the study's other raw data (:mod:`espnet_pcc.study.raw`).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from espnet_pcc.errors import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="study_colocation", description=__doc__.splitlines()[0])
    p.add_argument("--shape_file", action="append", required=True,
                   help="training shape files, speech first (as asr_train's)")
    p.add_argument("--batch_size", type=int, required=True)
    p.add_argument("--fold_length", type=int, nargs="+", required=True)
    p.add_argument("--num_cores", type=int, required=True)
    p.add_argument("--seeds", type=int, nargs="+", required=True)
    p.add_argument("--epochs", type=int, nargs="+", required=True)
    p.add_argument("--output_dir", type=Path, required=True)
    return p


def _run(args: argparse.Namespace) -> None:
    from espnet_pcc.measurement.colocation import colocation_by_sampler
    from espnet_pcc.study import raw

    found = colocation_by_sampler(args.shape_file, args.batch_size, args.fold_length,
                                  args.num_cores, args.seeds, args.epochs)
    raw.write_colocation(args.output_dir, args.num_cores,
                         {name: c.as_dict() for name, c in found.items()})
    for name, c in found.items():
        print(f"{name}: {c.pairs} pairs of copies; same batch {100 * c.same_batch:.1f} %, "
              f"same core {100 * c.same_core:.1f} %")


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_main(get_parser(), argv, _run)


if __name__ == "__main__":
    main()
