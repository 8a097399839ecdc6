"""Canary insertion: counts, unique ids, own speakers, source untouched, idempotent, collisions."""
import json

import pytest

from espnet_pcc import kaldi_dir
from espnet_pcc.bin import insert_canaries
from espnet_pcc.kaldi_dir import KaldiDir, KaldiDirError
from espnet_pcc.measurement.canary.insert import InsertError, insert

pytestmark = pytest.mark.needs_tts  # every test uses the generated canary_dir


def make_train(path, extra=None):
    kd = KaldiDir(
        wav_scp={f"spk{i}-utt{j}": f"/data/{i}_{j}.wav" for i in range(2) for j in range(3)},
        text={f"spk{i}-utt{j}": "some words here" for i in range(2) for j in range(3)},
        utt2spk={f"spk{i}-utt{j}": f"spk{i}" for i in range(2) for j in range(3)},
        extra=extra or {},
    )
    return kaldi_dir.write(kd, path)


def snapshot(d):
    return {p.name: p.read_bytes() for p in d.iterdir()}


def test_insert_counts_ids_speakers(canary_dir, tmp_path):
    train = make_train(tmp_path / "train")
    before = snapshot(train)
    n = insert(train, canary_dir, tmp_path / "train_canary")
    assert n == {"train": 6, "inserted": 2 * (1 + 2 + 4), "total": 20}
    assert snapshot(train) == before  # source untouched
    out = kaldi_dir.read(tmp_path / "train_canary")
    man = json.loads((canary_dir / "manifest.json").read_text())
    can = kaldi_dir.read(canary_dir / "canaries")
    for c in man["canaries"]:
        reps = [u for u, s in out.utt2spk.items() if s == c["id"]]
        assert len(reps) == c["repeat_count"]
        assert sorted(reps) == [f"{c['id']}-rep{k:02d}" for k in range(1, c["repeat_count"] + 1)]
        assert {out.text[u] for u in reps} == {c["text"]}
        assert {out.wav_scp[u] for u in reps} == {can.wav_scp[c["id"]]}
    refs = {r["id"] for r in man["references"]}
    assert not refs & set(out.utt2spk)  # references are never inserted
    assert all(out.text[u] == "some words here" for u in out.utt2spk if u.startswith("spk"))


def test_insert_idempotent_and_refuses_foreign_output(canary_dir, tmp_path):
    train = make_train(tmp_path / "train")
    insert(train, canary_dir, tmp_path / "out")
    first = snapshot(tmp_path / "out")
    mtime = (tmp_path / "out" / "text").stat().st_mtime_ns
    insert(train, canary_dir, tmp_path / "out")
    assert snapshot(tmp_path / "out") == first
    assert (tmp_path / "out" / "text").stat().st_mtime_ns == mtime  # not rewritten
    with pytest.raises(InsertError, match="must differ"):
        insert(train, canary_dir, train)
    make_train(tmp_path / "foreign")
    with pytest.raises(InsertError, match="not made by insert_canaries"):
        insert(train, canary_dir, tmp_path / "foreign")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign", "out", "train"]


def test_insert_twice_is_a_collision(canary_dir, tmp_path, capsys):
    train = make_train(tmp_path / "train")
    insert(train, canary_dir, tmp_path / "once")
    with pytest.raises(KaldiDirError, match=r"utterance id\(s\) already present, e\.g\. canary-x01-000-rep01"):
        insert(tmp_path / "once", canary_dir, tmp_path / "twice")
    with pytest.raises(SystemExit) as e:
        insert_canaries.main(["--train_dir", str(tmp_path / "once"), "--canary_dir", str(canary_dir),
                              "--output_dir", str(tmp_path / "twice")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "already present" in err and "Traceback" not in err
    assert not (tmp_path / "twice").exists()


def test_speaker_collision(canary_dir, tmp_path):
    kd = KaldiDir(wav_scp={"x1": "/a"}, text={"x1": "a b"}, utt2spk={"x1": "canary-x04-001"})
    kaldi_dir.write(kd, tmp_path / "train")
    with pytest.raises(KaldiDirError, match=r"speaker id\(s\) already present, e.g. canary-x04-001"):
        insert(tmp_path / "train", canary_dir, tmp_path / "out")


def test_insert_carries_utt2dur_and_cli(canary_dir, tmp_path, capsys):
    train = make_train(tmp_path / "train",
                       extra={"utt2dur": {f"spk{i}-utt{j}": "1.0" for i in range(2) for j in range(3)}})
    insert_canaries.main(["--train_dir", str(train), "--canary_dir", str(canary_dir),
                          "--output_dir", str(tmp_path / "o")])
    assert "6 training + 14 canary utterances = 20" in capsys.readouterr().out
    out = kaldi_dir.read(tmp_path / "o")
    assert len(out.extra["utt2dur"]) == 20
    assert 0.5 < float(out.extra["utt2dur"]["canary-x04-001-rep04"]) < 5


def test_insert_with_segments(canary_dir, tmp_path):
    kd = KaldiDir(wav_scp={"rec1": "/r1.wav"}, text={"s-1": "a b", "s-2": "c d"},
                  utt2spk={"s-1": "s", "s-2": "s"}, segments={"s-1": "rec1 0.0 1.0", "s-2": "rec1 1.0 2.5"})
    kaldi_dir.write(kd, tmp_path / "train")
    insert(tmp_path / "train", canary_dir, tmp_path / "out")
    out = kaldi_dir.read(tmp_path / "out")
    rec, start, end = out.segments["canary-x02-001-rep02"].split()
    assert rec == "canary-x02-001-rep02" and float(start) == 0.0 and 0.5 < float(end) < 5
    assert out.wav_of("canary-x02-001-rep02").endswith("wav/canary-x02-001.wav")
    assert len(out) == 2 + 14
