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
bootstrap intervals over the utterances), and prints the summary.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Optional, Sequence

from espnet_pcc.errors import UserError, run_main

SUMMARY_FORMAT = "espnet-pcc-canary-accuracy/1"


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
    from espnet_pcc import fileio, kaldi_dir
    from espnet_pcc.study.accuracy import UTTERANCES_TSV
    from espnet_pcc.canary.canary_dir import read_canary_dir
    from espnet_pcc.study.accuracy import score_utterances, summarise, write_utterances_tsv

    found = read_canary_dir(args.canary_dir)
    known = {u["id"]: u for u in found.entries("canaries") + found.entries("references")}
    hyps = {}
    for path in args.hyp_text:
        if not path.is_file():
            raise UserError(f"hypotheses {path} missing (produced by stage 6)")
        table = kaldi_dir.read_table(path, allow_empty_value=True)
        if not table:
            logging.warning(f"{path} lists no hypothesis")
        unknown = sorted(set(table) - set(known))
        if unknown:
            raise UserError(f"{path}: {len(unknown)} utterances not in {args.canary_dir}/manifest.json, "
                            f"e.g. {unknown[0]}")
        hyps.update(table)
    if not hyps:
        raise UserError(f"no hypotheses in {' '.join(map(str, args.hyp_text))}")
    # Every canary is scored, a missing hypothesis as empty: dropping it would raise the
    # canaries' accuracy.  The references decoded are a sample (--num_decoded_references):
    # those of --reference_dir when it is given (a missing hypothesis as empty), else those
    # with a hypothesis.
    refs = {u["id"]: u["text"] for u in found.entries("canaries")}
    if args.reference_dir is not None:
        sample = set(kaldi_dir.read(args.reference_dir).utt2spk)
        unknown = sorted(sample - {u["id"] for u in found.entries("references")})
        if unknown:
            raise UserError(f"{args.reference_dir}: {len(unknown)} utterances are not references "
                            f"of {args.canary_dir}, e.g. {unknown[0]}")
    else:
        sample = set(hyps)
    refs.update({u["id"]: u["text"] for u in found.entries("references") if u["id"] in sample})
    missing = len(set(refs) - set(hyps))
    if missing:
        logging.warning(f"{missing} of the {len(refs)} canaries and decoded references have no "
                        "hypothesis in the decoded texts: scored as empty")
    rows = score_utterances(refs, hyps, {k: known[k]["repeat_count"] for k in refs})
    summary = summarise(rows)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    write_utterances_tsv(args.output_dir / UTTERANCES_TSV, rows)
    fileio.atomic_write_json(args.output_dir / "summary.json", {
        "format": SUMMARY_FORMAT,
        "canary_dir": str(args.canary_dir),
        "hyp_text": [str(p) for p in args.hyp_text],
        "repeat_counts": [
            {"repeat_count": c, **{m: iv.as_dict() for m, iv in metrics.items()}}
            for c, metrics in summary.items()
        ],
    })
    for c, metrics in summary.items():
        what = "references" if c == 0 else f"canaries x{c}"
        print(f"{what}: n={metrics['cer'].n} CER {metrics['cer'].fmt(3)} WER {metrics['wer'].fmt(3)} "
              f"exact {metrics['exact'].fmt(3)}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_main(get_parser(), argv, _run)


if __name__ == "__main__":
    main()
