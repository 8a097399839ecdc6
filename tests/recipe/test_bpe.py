"""Stage 3's sentencepiece model (espnet_pcc.recipe.bpe) and its command line."""
from pathlib import Path

import pytest

from espnet_pcc.bin import train_bpe as train_bpe_cli
from espnet_pcc.errors import UserError
from espnet_pcc.recipe.bpe import train_bpe, transcripts

WORDS = "THE QUICK BROWN FOX JUMPS OVER A LAZY DOG AND RUNS AWAY FROM HOME AGAIN".split()


def kaldi_text(path: Path, n: int = 60) -> Path:
    lines = [f"utt{i:03d} " + " ".join(WORDS[(i + k) % len(WORDS)] for k in range(6))
             for i in range(n)]
    path.write_text("\n".join(lines + ["utt999"]) + "\n", encoding="utf-8")
    return path


def test_transcripts_drop_the_ids_and_lines_without_words(tmp_path: Path):
    text = kaldi_text(tmp_path / "text", n=2)
    assert transcripts(text) == ["THE QUICK BROWN FOX JUMPS OVER", "QUICK BROWN FOX JUMPS OVER A"]


def test_a_model_and_vocab_are_written_and_nothing_else(tmp_path: Path, capsys):
    text = kaldi_text(tmp_path / "text")
    prefix = tmp_path / "token_list" / "bpe"
    train_bpe_cli.main(["--text", str(text), "--vocab_size", "30", "--model_type", "unigram",
                        "--output_prefix", str(prefix)])
    assert sorted(p.name for p in prefix.parent.iterdir()) == ["bpe.model", "bpe.vocab"]
    assert len(prefix.with_suffix(".vocab").read_text().splitlines()) == 30
    assert "vocab 30, 60 sentences" in capsys.readouterr().out


def test_a_missing_text_or_a_vocabulary_too_large_is_one_line(tmp_path: Path):
    with pytest.raises(UserError, match="missing"):
        train_bpe(tmp_path / "nope", 30, "unigram", tmp_path / "bpe")
    with pytest.raises(UserError, match=r"lower --nbpe for 60 sentences") as e:
        train_bpe(kaldi_text(tmp_path / "text"), 5000, "unigram", tmp_path / "out" / "bpe")
    assert "\n" not in str(e.value)
    assert list((tmp_path / "out").iterdir()) == []  # nothing half-written
