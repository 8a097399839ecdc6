"""Canary transcription accuracy of one decoded checkpoint (memorisation, Wang et al. 2023).

Usage::

    python -m espnet_pcc.bin.score_canary_accuracy --canary_dir data/canaries \\
        --hyp_text exp/asr_x/decode_asr/canaries/text exp/asr_x/decode_asr/references/text \\
        --output_dir exp/asr_x/decode_asr/canary_accuracy

Every ``--hyp_text`` is a Kaldi text of hypotheses of canaries and/or references listed in
``<canary_dir>/manifest.json``.  Every canary, and every reference of ``--reference_dir`` (the
sample decoded; default: the references with a hypothesis), is scored against its manifest
text; one without a hypothesis is scored as an empty one.
Writes ``utterances.tsv`` (one row per utterance: id, repeat count (0 = reference), CER, WER,
exact) and ``summary.json`` (per repeat count: mean CER / WER / exact-match fraction with 95 %
bootstrap intervals over the utterances), and prints the summary.  The work, and both files'
layouts, are :mod:`espnet_pcc.study.accuracy`'s.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from espnet_pcc.errors import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="score_canary_accuracy", description=__doc__.splitlines()[0])
    p.add_argument("--canary_dir", type=Path, required=True, help="output of make_canaries")
    p.add_argument("--hyp_text", type=Path, nargs="+", required=True,
                   help="Kaldi texts of decoded canaries / references")
    p.add_argument("--output_dir", type=Path, required=True)
    p.add_argument("--reference_dir", type=Path, default=None,
                   help="the data dir of the references decoded (a sample of the canary dir's): "
                   "each is scored, a missing hypothesis as empty; default: the references "
                   "with a hypothesis")
    return p


def _run(args: argparse.Namespace) -> None:
    from espnet_pcc.study.accuracy import score_canary_accuracy, summary_lines

    summary = score_canary_accuracy(args.canary_dir, args.hyp_text, args.output_dir,
                                    args.reference_dir)
    for line in summary_lines(summary):
        print(line)


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_main(get_parser(), argv, _run)


if __name__ == "__main__":
    main()
