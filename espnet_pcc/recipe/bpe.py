"""Stage 3's sentencepiece model, trained on the transcripts of a Kaldi ``text`` file, with
ESPnet's asr.sh options (character_coverage 1.0, input_sentence_size 1e8).

Command line: :mod:`espnet_pcc.bin.train_bpe`.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import List

from espnet_pcc import fileio
from espnet_pcc.errors import UserError


def transcripts(text: Path) -> List[str]:
    """The transcripts of a Kaldi ``text`` file (utterance id, then the words), in order; a
    line with an id alone has no transcript to learn from and is left out."""
    if not text.is_file():
        raise UserError(f"{text} missing (produced by stage 2 / stage 1)")
    lines: List[str] = []
    for line in text.read_text(encoding="utf-8").splitlines():
        parts = line.split(maxsplit=1)
        if len(parts) == 2:
            lines.append(parts[1])
    return lines


def train_bpe(text: Path, vocab_size: int, model_type: str, output_prefix: Path,
              user_defined_symbols: str = "") -> int:
    """Writes ``<output_prefix>.model`` and ``.vocab`` (trained under a temp name, then
    renamed, so neither is ever half-written); returns the number of sentences."""
    import sentencepiece as spm

    lines = transcripts(text)
    output_prefix.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output_prefix.parent, prefix=".spm.") as tmp:
        train_txt = Path(tmp) / "train.txt"
        train_txt.write_text("\n".join(lines) + "\n", encoding="utf-8")
        kwargs = dict(
            input=str(train_txt), vocab_size=vocab_size, model_type=model_type,
            model_prefix=str(Path(tmp) / "bpe"), character_coverage=1.0,
            input_sentence_size=100000000, minloglevel=1,
        )
        if user_defined_symbols:
            kwargs["user_defined_symbols"] = user_defined_symbols
        try:
            spm.SentencePieceTrainer.train(**kwargs)
        except RuntimeError as e:  # e.g. vocab_size larger than the text allows
            raise UserError(f"sentencepiece: {str(e).splitlines()[-1]} "
                            f"(lower --nbpe for {len(lines)} sentences)") from None
        # sentencepiece names its outputs after model_prefix: train in a temp dir, then move.
        for ext in ("model", "vocab"):
            fileio.move_into_place(Path(tmp) / f"bpe.{ext}", f"{output_prefix}.{ext}")
    return len(lines)


__all__ = ["train_bpe", "transcripts"]
