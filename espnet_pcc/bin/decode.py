"""Stage 6: decode several data dirs with espnet2's asr_inference in ONE process.

Each espnet2 process spends ~20 s importing (measured on the 2-core demo machine), so one job
decodes all its sets in turn instead of one process per set. Every set goes through
``espnet2.bin.asr_inference``'s own parser and ``inference()``, exactly as its CLI would::

    python -m espnet_pcc.bin.decode --asr_train_config exp/x/config.yaml \\
        --asr_model_file exp/x/valid.acc.ave.pth --config conf/decode_asr.yaml \\
        --set data/test_clean/wav.scp exp/x/decode/test_clean/logdir/keys.1.scp exp/x/decode/test_clean/logdir/output.1 \\
        --set ... [-- extra asr_inference options]

Each ``--set`` is WAV_SCP KEY_FILE OUTPUT_DIR; the output dir gets ``1best_recog/text`` etc.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional, Sequence

from espnet_pcc.errors import run_main
from espnet_pcc.import_noise import hidden


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="decode", description=__doc__.splitlines()[0])
    p.add_argument("--asr_train_config", required=True)
    p.add_argument("--asr_model_file", required=True)
    p.add_argument("--config", default=None, help="decoding YAML (beam_size, ctc_weight, ...)")
    p.add_argument("--ngpu", type=int, default=0)
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--set", nargs=3, action="append", required=True,
                   metavar=("WAV_SCP", "KEY_FILE", "OUTPUT_DIR"))
    return p


def _run(args: argparse.Namespace, extra: List[str]) -> None:
    with hidden("decode"):  # what espnet2's optional dependencies print at import
        from espnet2.bin import asr_inference

    for wav_scp, key_file, output_dir in args.set:
        cmd = [
            "--asr_train_config", args.asr_train_config,
            "--asr_model_file", args.asr_model_file,
            "--ngpu", str(args.ngpu),
            "--batch_size", str(args.batch_size),
            "--data_path_and_name_and_type", f"{wav_scp},speech,sound",
            "--key_file", key_file,
            "--output_dir", output_dir,
        ] + (["--config", args.config] if args.config else []) + extra
        logging.info("asr_inference %s", " ".join(cmd))
        asr_inference.main(cmd)


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: List[str] = []
    if "--" in argv:  # everything after -- goes to asr_inference unchanged
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    run_main(get_parser(), argv, lambda args: _run(args, extra))


if __name__ == "__main__":
    main()
