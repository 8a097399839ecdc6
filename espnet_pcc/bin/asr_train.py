#!/usr/bin/env python3
"""espnet2's asr_train with per-core clipping: every asr_train option, plus
`--clip` and `--clip_conf` (or `clip:` / `clip_conf:` in the YAML)."""
from typing import Optional, Sequence

from espnet_pcc.import_noise import hidden

# What espnet2's optional dependencies print at import is left out here, at the entry point,
# so that a bad setting's one-line error is the last line of stderr (espnet_pcc.import_noise).
with hidden("asr_train"):
    from espnet_pcc.espnet2.task import PCCASRTask


def get_parser():
    return PCCASRTask.get_parser()


def main(cmd: Optional[Sequence[str]] = None) -> None:
    r"""ASR training with per-core clipping.

    Example:
        % python -m espnet_pcc.bin.asr_train --print_config --clip per_core
        % python -m espnet_pcc.bin.asr_train --config conf/train_asr_pcc.yaml ...
    """
    PCCASRTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
