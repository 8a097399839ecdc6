"""Canary transcription accuracy: per-utterance CER/WER/exact by hand."""
import pytest

from espnet_pcc.study import accuracy


def test_error_counts_by_hand():
    assert accuracy.error_counts("A B C", "A X C", "wer") == (1, 3)
    # characters with <space>: "AB C" = A B <space> C (4); "AB" deletes <space> and C
    assert accuracy.error_counts("AB C", "AB", "cer") == (2, 4)
    assert accuracy.error_counts("AB", "", "cer") == (2, 2)
    with pytest.raises(ValueError, match="empty reference"):
        accuracy.error_counts("", "A", "wer")


def test_score_and_summarise_per_repeat_count():
    refs = {"c1": "HELLO WORLD", "c2": "GOOD DAY", "r1": "NO WAY"}
    hyps = {"c1": "HELLO WORLD", "c2": "GOOD DAT"}  # r1 missing: empty hypothesis
    rows = accuracy.score_utterances(refs, hyps, {"c1": 16, "c2": 16, "r1": 0})
    by_id = {r.utt_id: r for r in rows}
    assert by_id["c1"].cer == 0 and by_id["c1"].exact == 1
    assert by_id["c2"].wer == pytest.approx(0.5) and by_id["c2"].cer == pytest.approx(1 / 8)
    assert by_id["r1"].cer == 1.0 and by_id["r1"].exact == 0
    summary = accuracy.summarise(rows)
    assert list(summary) == [0, 16]
    assert summary[16]["exact"].value == pytest.approx(0.5)
    assert summary[16]["cer"].value == pytest.approx(1 / 16)
    assert summary[0]["cer"].n == 1
