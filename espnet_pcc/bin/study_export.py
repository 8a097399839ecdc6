"""The memorisation study's raw data (runs.tsv, canaries.tsv, meta.json) from its model dirs.

Usage::

    python -m espnet_pcc.bin.study_export --expdir exp/study \\
        --asr_tags asr_train_asr_shuffled_pcc_seed0 ... --score_epochs 1 2 3 4 5 6 \\
        --decode_tag decode_decode_asr_demo_valid.acc.ave_3best \\
        --epoch_decode_tag 'decode_decode_asr_demo_{epoch}epoch' --test_sets dev test \\
        --output_dir study/raw

Layout of the files: :mod:`espnet_pcc.study.raw`.  Adds to what ``--output_dir`` holds with
``--merge true``: the sorted-batch arms beside the primary ones, or a study's seed block beside
the blocks exported before (a run of the same arm, sampler and seed is replaced).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Optional, Sequence

from espnet2.utils.types import str2bool

from espnet_pcc.errors import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="study_export", description=__doc__.splitlines()[0])
    p.add_argument("--expdir", type=Path, required=True)
    p.add_argument("--asr_tags", nargs="+", required=True, help="model dirs (<name>_seed<N>)")
    p.add_argument("--score_epochs", type=int, nargs="+", required=True)
    p.add_argument("--decode_tag", required=True, help="decode dir of the final model")
    p.add_argument("--epoch_decode_tag", required=True, help="decode dir of epoch {epoch}")
    p.add_argument("--test_sets", nargs="+", required=True)
    p.add_argument("--output_dir", type=Path, required=True)
    p.add_argument("--merge", type=str2bool, default=False,
                   help="keep --output_dir's other runs (another sampler's, or earlier seed "
                        "blocks; a run of the same arm, sampler and seed is replaced) and notes")
    p.add_argument("--canary_accuracy", type=str2bool, default=True,
                   help="read the canaries' transcription (stage 7); false where they were not "
                        "decoded (pcc_asr.sh --decode_canaries false: the CER columns are NaN)")
    p.add_argument("--notes", default="",
                   help="how these runs were made (a paragraph, kept in meta.json; the report "
                        "prints it)")
    return p


def _run(args: argparse.Namespace) -> None:
    from espnet_pcc.study import raw
    from espnet_pcc.study.export import export_study

    made_by = "python -m espnet_pcc.bin.study_export " + shlex.join(sys.argv[1:])
    study = export_study(args.expdir, args.asr_tags, args.score_epochs, args.decode_tag,
                         args.epoch_decode_tag, args.test_sets, made_by=made_by,
                         progress=lambda line: print(line, file=sys.stderr, flush=True),
                         canary_accuracy=args.canary_accuracy)
    study.notes = args.notes
    if args.merge and (args.output_dir / raw.META_JSON).is_file():
        study = raw.merge(raw.read_raw(args.output_dir), study, args.output_dir)
    raw.write_raw(args.output_dir, study)
    print(f"wrote {args.output_dir}: {len(study.runs)} run rows, {len(study.canaries)} canary rows")


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_main(get_parser(), argv, _run)


if __name__ == "__main__":
    main()
