"""Stage 7: WER/CER of one decoded set with jiwer (sclite-style numbers and trn files).

Usage::

    python -m espnet_pcc.bin.score_wer --data_dir data/test_clean \\
        --hyp_text exp/asr_x/decode_asr_model/test_clean/text \\
        --output_dir exp/asr_x/decode_asr_model/test_clean
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from espnet_pcc.errors import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="score_wer", description=__doc__.splitlines()[0])
    p.add_argument("--data_dir", type=Path, required=True, help="Kaldi dir with the reference text")
    p.add_argument("--hyp_text", type=Path, required=True, help="Kaldi text of hypotheses")
    p.add_argument("--output_dir", type=Path, required=True, help="gets score_wer/ and score_cer/")
    return p


def _run(args: argparse.Namespace) -> None:
    from espnet_pcc.measurement.wer import score_dir

    res = score_dir(args.data_dir, args.hyp_text, args.output_dir)
    print(f"{args.output_dir}: WER {res['wer']['Err']} % ({res['wer']['Wrd']} words), "
          f"CER {res['cer']['Err']} %")


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_main(get_parser(), argv, _run)


if __name__ == "__main__":
    main()
