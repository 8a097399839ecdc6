"""Score canaries and references with a trained ESPnet ASR model; report exposure.

Usage::

    python -m espnet_pcc.bin.score_exposure --asr_train_config exp/x/config.yaml \\
        --asr_model_file exp/x/valid.acc.ave.pth --canary_dir data/canaries \\
        --output_dir exp/x/exposure [--batch_size 32 --device cpu --nj 2]

Writes scores.tsv, exposure.{tsv,json}, summary.{tsv,json} (summary layout in
:mod:`espnet_pcc.measurement.exposure.schema`) and prints the per-repeat-count table.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from espnet_pcc.errors import run_main
from espnet_pcc.import_noise import hidden


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="score_exposure",
        description="Per-token NLL scores and exposure (rank, skew-normal) of canaries.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--asr_train_config", type=Path, required=True)
    p.add_argument("--asr_model_file", type=Path, required=True)
    p.add_argument("--canary_dir", type=Path, required=True, help="make_canaries output dir")
    p.add_argument("--output_dir", type=Path, required=True)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    p.add_argument("--nj", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--log_every", type=int, default=500)
    p.add_argument("--exclude_canary_from_R", action="store_true",
                   help="TF-Privacy's log2(n) - log2(rank) instead of log2(n+1) - log2(rank)")
    return p


def _run(args: argparse.Namespace) -> None:
    from espnet_pcc.errors import UserError
    from espnet_pcc.measurement.exposure import format_summary, score_exposure

    if args.batch_size < 1:
        raise UserError(f"--batch_size must be >= 1, got {args.batch_size}")
    with hidden("score_exposure"):
        # The model's scoring imports espnet2 when it loads the model; imported here first,
        # what espnet2's optional dependencies print at import is left out.
        import espnet_pcc.espnet2.task  # noqa: F401
    summary = score_exposure(
        args.asr_train_config, args.asr_model_file, args.canary_dir, args.output_dir,
        batch_size=args.batch_size, device=args.device, nj=args.nj,
        log_every=args.log_every, include_canary=not args.exclude_canary_from_R,
    )
    print(format_summary(summary))


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_main(get_parser(), argv, _run)


if __name__ == "__main__":
    main()
