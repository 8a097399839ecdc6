"""WER/CER with jiwer in sclite's numbers."""
import json
from pathlib import Path

import pytest

from espnet_pcc.bin import score_wer
from espnet_pcc.measurement.wer import ScoringError, markdown_table, score, score_dir


def test_score_hand_computed():
    refs = {"a": "THE CAT SAT", "b": "ON THE MAT"}
    hyps = {"a": "THE BAT SAT DOWN", "b": "ON THE MAT"}
    r = score(refs, hyps, "wer")
    # 6 words: 5 correct, 1 substitution, 1 insertion; one of two sentences wrong
    assert r == {"Snt": 2, "Wrd": 6, "Corr": 83.3, "Sub": 16.7, "Del": 0.0, "Ins": 16.7,
                 "Err": 33.3, "S.Err": 50.0}
    c = score({"a": "AB C"}, {"a": "AC C"}, "cer")  # A B <space> C: one substitution
    assert c["Wrd"] == 4 and c["Sub"] == 25.0 and c["Err"] == 25.0


def test_missing_hypothesis_counts_as_deletions():
    r = score({"a": "ONE TWO"}, {}, "wer")
    assert r["Del"] == 100.0 and r["Err"] == 100.0


def _write(path: Path, lines):
    path.write_text("".join(f"{k} {v}\n" for k, v in lines))


def test_score_dir_writes_trn_and_json(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    _write(data / "text", [("s1-u1", "HELLO WORLD"), ("s1-u2", "GOOD DAY")])
    _write(data / "utt2spk", [("s1-u1", "s1"), ("s1-u2", "s1")])
    _write(tmp_path / "hyp", [("s1-u1", "HELLO WORD"), ("s1-u2", "GOOD DAY")])
    res = score_dir(data, tmp_path / "hyp", tmp_path / "out")
    assert res["wer"]["Err"] == 25.0
    assert json.loads((tmp_path / "out" / "score_wer" / "result.json").read_text()) == res["wer"]
    assert (tmp_path / "out" / "score_wer" / "hyp.trn").read_text().startswith("HELLO WORD\t(s1-s1-u1)")
    table = markdown_table([("decode/test", res["wer"])])
    assert table.splitlines()[0] == "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|"
    assert table.splitlines()[2] == "|decode/test|2|4|75.0|25.0|0.0|0.0|25.0|50.0|"


def test_incomplete_decoding_is_an_error(tmp_path: Path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    _write(data / "text", [("u1", "A"), ("u2", "B")])
    _write(data / "utt2spk", [("u1", "u1"), ("u2", "u2")])
    _write(tmp_path / "hyp", [("u1", "A")])
    with pytest.raises(ScoringError, match=r"lacks 1 utterances .* rerun stage 6"):
        score_dir(data, tmp_path / "hyp", tmp_path / "out")
    with pytest.raises(SystemExit) as e:
        score_wer.main(["--data_dir", str(data), "--hyp_text", str(tmp_path / "nohyp"),
                        "--output_dir", str(tmp_path / "o")])
    assert e.value.code == 2
    assert "produced by stage 6" in capsys.readouterr().err
