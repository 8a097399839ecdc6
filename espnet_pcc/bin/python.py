#!/usr/bin/env python3
"""espnet-pcc-python: the Python interpreter, with PCC's asr_train for ESPnet's recipes.

ESPnet's ``egs2/*/asr1/asr.sh`` runs every Python step as ``${python} -m <module> ...`` and has
a ``--python`` option.  This command runs the interpreter it was installed with
(``sys.executable``, where espnet_pcc is importable) with the same arguments, except that
every ``-m espnet2.bin.asr_train`` becomes ``-m espnet_pcc.bin.asr_train``, so

    ./asr.sh --python espnet-pcc-python --asr_config conf/train_asr_pcc.yaml ...

collects stats (stage 10) and trains (stage 11, through ``espnet2.bin.launch``) with per-core
clipping, and every other step runs exactly as with ``python3``.  Arguments, standard streams,
signals and the exit status are the interpreter's own: the process is replaced (``exec``).

    espnet-pcc-python -m espnet2.bin.asr_train --config conf/train_asr_pcc.yaml ...
    espnet-pcc-python -c 'import sys; print(sys.version)'    # anything else: plain Python
"""
from __future__ import annotations

import os
import sys
from typing import List, Optional, Sequence

STOCK = "espnet2.bin.asr_train"
PCC = "espnet_pcc.bin.asr_train"


def rewrite(argv: Sequence[str]) -> List[str]:
    """`argv` with each ``-m espnet2.bin.asr_train`` (also ``-mespnet2.bin.asr_train``)
    replaced by ``-m espnet_pcc.bin.asr_train``, wherever it occurs (asr.sh's training stage
    passes it after ``espnet2.bin.launch ... --``)."""
    out: List[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "-m" and i + 1 < len(argv) and argv[i + 1] == STOCK:
            out += ["-m", PCC]
            i += 2
            continue
        out.append("-m" + PCC if argv[i] == "-m" + STOCK else argv[i])
        i += 1
    return out


def command(argv: Sequence[str]) -> List[str]:
    """The interpreter command this launcher runs for `argv`."""
    return [sys.executable, *rewrite(argv)]


def main(argv: Optional[Sequence[str]] = None) -> None:
    cmd = command(sys.argv[1:] if argv is None else argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
