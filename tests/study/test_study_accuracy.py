"""Canary transcription accuracy: per-utterance CER/WER/exact by hand."""
import pytest

from espnet_pcc import kaldi_dir
from espnet_pcc.study import accuracy, accuracy_schema


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


def test_summary_json_body_and_printed_lines_by_hand():
    rows = accuracy.score_utterances({"c1": "A B", "r1": "C D"}, {"c1": "A B", "r1": "C"},
                                     {"c1": 4, "r1": 0})
    body = accuracy_schema.summary_json(accuracy.summarise(rows), "canaries", ["hyp"])
    assert body["format"] == accuracy_schema.SUMMARY_FORMAT
    assert (body["canary_dir"], body["hyp_text"]) == ("canaries", ["hyp"])
    assert [g["repeat_count"] for g in body["repeat_counts"]] == [0, 4]
    assert body["repeat_counts"][0]["wer"]["value"] == 0.5
    lines = accuracy.summary_lines(accuracy.summarise(rows))
    assert [line.split(":")[0] for line in lines] == ["references", "canaries x4"]


def _canary_dir(tmp_path):
    import json

    from espnet_pcc.measurement.canary.generate import MANIFEST_FORMAT

    d = tmp_path / "canaries"
    d.mkdir()
    (d / "manifest.json").write_text(json.dumps({
        "format": MANIFEST_FORMAT,
        "canaries": [{"id": "canary-x16-0", "text": "GOOD DAY", "repeat_count": 16}],
        "references": [{"id": "canaryref-0", "text": "NO WAY", "repeat_count": 0}]}))
    # The Kaldi dirs the one canary-dir reader checks against the manifest.
    for sub, utt, text in (("canaries", "canary-x16-0", "GOOD DAY"),
                           ("references", "canaryref-0", "NO WAY")):
        (d / sub).mkdir()
        kaldi_dir.write_files(kaldi_dir.KaldiDir(wav_scp={utt: f"{utt}.wav"}, text={utt: text},
                                                 utt2spk={utt: utt}), d / sub)
    return d


def test_cli_writes_utterances_and_summary(tmp_path, capsys):
    import json

    from espnet_pcc.bin import score_canary_accuracy as cli

    d = _canary_dir(tmp_path)
    (tmp_path / "hyp").write_text("canary-x16-0 GOOD DAY\ncanaryref-0 NO\n")
    cli.main(["--canary_dir", str(d), "--hyp_text", str(tmp_path / "hyp"),
              "--output_dir", str(tmp_path / "out")])
    rows = (tmp_path / "out" / "utterances.tsv").read_text().splitlines()
    assert rows[0].split("\t") == list(accuracy_schema.UTTERANCE_COLUMNS)
    assert rows[1].startswith("canary-x16-0\t16\t0.000000\t0.000000\t1\t")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [g["repeat_count"] for g in summary["repeat_counts"]] == [0, 16]
    assert summary["repeat_counts"][0]["wer"]["value"] == 0.5
    assert "canaries x16: n=1 CER 0.000" in capsys.readouterr().out


def test_cli_scores_a_missing_hypothesis_as_empty(tmp_path, caplog):
    from espnet_pcc.bin import score_canary_accuracy as cli

    d = _canary_dir(tmp_path)
    # The decoder lost the canary: it counts as transcribed wrongly, not as absent.
    (tmp_path / "hyp").write_text("canaryref-0 NO WAY\n")
    cli.main(["--canary_dir", str(d), "--hyp_text", str(tmp_path / "hyp"),
              "--output_dir", str(tmp_path / "out")])
    rows = (tmp_path / "out" / "utterances.tsv").read_text().splitlines()[1:]
    assert [r.split("\t")[:5] for r in rows] == [
        ["canary-x16-0", "16", "1.000000", "1.000000", "0"],
        ["canaryref-0", "0", "0.000000", "0.000000", "1"]]
    assert "1 of the 2 canaries and decoded references have no hypothesis" in caplog.text


def test_cli_scores_the_decoded_reference_sample(tmp_path):
    """References are a decoded sample: one outside it is not scored; one of the sample
    without a hypothesis counts as empty (--reference_dir)."""
    import json

    from espnet_pcc import kaldi_dir
    from espnet_pcc.bin import score_canary_accuracy as cli

    d = _canary_dir(tmp_path)
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["references"].append({"id": "canaryref-1", "text": "NOT DECODED", "repeat_count": 0})
    (d / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "hyp").write_text("canary-x16-0 GOOD DAY\ncanaryref-0 NO WAY\n")
    out = tmp_path / "out"
    cli.main(["--canary_dir", str(d), "--hyp_text", str(tmp_path / "hyp"), "--output_dir", str(out)])
    ids = [r.split("\t")[0] for r in (out / "utterances.tsv").read_text().splitlines()[1:]]
    assert ids == ["canary-x16-0", "canaryref-0"]
    sample = tmp_path / "sample"
    sample.mkdir()
    kaldi_dir.write_files(kaldi_dir.KaldiDir(wav_scp={"canaryref-1": "x.wav"},
                                             text={"canaryref-1": "NOT DECODED"},
                                             utt2spk={"canaryref-1": "canaryref-1"}), sample)
    cli.main(["--canary_dir", str(d), "--hyp_text", str(tmp_path / "hyp"), "--output_dir", str(out),
              "--reference_dir", str(sample)])
    rows = [r.split("\t")[:3] for r in (out / "utterances.tsv").read_text().splitlines()[1:]]
    assert rows == [["canary-x16-0", "16", "0.000000"], ["canaryref-1", "0", "1.000000"]]


def test_cli_errors_are_one_line(tmp_path, capsys):
    from espnet_pcc.bin import score_canary_accuracy as cli

    d = _canary_dir(tmp_path)
    (tmp_path / "hyp").write_text("canary-x99-0 A\n")
    for hyp, message in ((tmp_path / "hyp", "1 utterances not in"), (tmp_path / "nope", "missing")):
        with pytest.raises(SystemExit) as e:
            cli.main(["--canary_dir", str(d), "--hyp_text", str(hyp), "--output_dir",
                      str(tmp_path / "out")])
        assert e.value.code == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written
