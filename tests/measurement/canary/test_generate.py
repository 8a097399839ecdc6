"""Canary generation: determinism, disjointness, voices/speed applied, Kaldi dirs, errors."""
import json

import pytest
import soundfile as sf

from espnet_pcc import kaldi_dir
from espnet_pcc.bin import make_canaries
from espnet_pcc.measurement.canary import tts
from espnet_pcc.measurement.canary.generate import CanaryConfig, CanaryError, generate, plan
from espnet_pcc.measurement.canary.vocab import clean_words, load_vocab
from shared_helpers import CANARY_SMALL, CANARY_VOCAB  # the canary_dir fixture's settings


def test_plan_is_deterministic_and_seed_dependent():
    a = plan(CANARY_VOCAB, CanaryConfig(**CANARY_SMALL))
    b = plan(CANARY_VOCAB, CanaryConfig(**CANARY_SMALL))
    c = plan(CANARY_VOCAB, CanaryConfig(**{**CANARY_SMALL, "seed": 8}))
    assert a == b
    assert [u.text for u in a[0]] != [u.text for u in c[0]]


def test_plan_ids_counts_and_disjoint_texts():
    can, ref = plan(CANARY_VOCAB, CanaryConfig(**CANARY_SMALL))
    assert [u.utt_id for u in can][:3] == ["canary-x01-000", "canary-x01-001", "canary-x02-000"]
    assert [u.repeat_count for u in can] == [1, 1, 2, 2, 4, 4]
    assert [u.utt_id for u in ref][-1] == "canaryref-00005" and {u.repeat_count for u in ref} == {0}
    texts = [u.text for u in can + ref]
    assert len(set(texts)) == len(texts)  # no reference duplicates a canary
    assert all(len(t.split()) == 4 and set(t.split()) <= set(CANARY_VOCAB) for t in texts)
    assert len({u.voice for u in can + ref}) > 1
    assert {u.voice.name for u in can + ref} <= set(tts.ENGLISH_VOICES)
    upper, _ = plan(CANARY_VOCAB, CanaryConfig(**{**CANARY_SMALL, "text_case": "upper"}))
    assert [u.text for u in upper] == [u.text.upper() for u in can]


@pytest.mark.parametrize(
    "change, match",
    [
        ({"num_references": 1}, "num_references must be >= 2, got 1"),
        ({"speed": 0.0}, "speed must be > 0, got 0.0"),
        ({"speed": -2.0}, "speed must be > 0, got -2.0"),
        ({"repeat_counts": (1, 0)}, r"repeat counts must be >= 1, got \[1, 0\]"),
        ({"num_words": 1, "num_references": 100}, "vocabulary of 12 words is too small"),
    ],
)
def test_bad_config(change, match):
    with pytest.raises(CanaryError if "speed" not in change else tts.TTSError, match=match):
        plan(CANARY_VOCAB, CanaryConfig(**{**CANARY_SMALL, **change}))
    with pytest.raises(CanaryError, match="empty vocabulary"):
        plan([], CanaryConfig(**CANARY_SMALL))


def test_vocab_cleaning_and_wordfreq(tmp_path):
    assert clean_words(["The", "x", "fuck", "don't", "'tis", "lgbt", "café", "shitty", "ok", "dog"]) == [
        "dog", "don't", "the"]
    words = load_vocab("wordfreq", size=3000)
    assert 2000 < len(words) < 3000 and words == sorted(set(words))
    assert "the" in words and "fuck" not in words
    (tmp_path / "w.txt").write_text("Hello\nworld\nhello\n")
    assert load_vocab(tmp_path / "w.txt") == ["hello", "world"]
    (tmp_path / "text").write_text("utt1 HELLO BIG WORLD\nutt2 BIG cat\n")
    assert load_vocab(tmp_path / "text") == ["big", "cat", "hello", "world"]
    (tmp_path / "bad.txt").write_text("x\n12\n")
    with pytest.raises(Exception, match="empty vocabulary"):
        load_vocab(tmp_path / "bad.txt")


@pytest.mark.needs_tts
def test_generated_dirs_manifest_and_audio(canary_dir):
    man = json.loads((canary_dir / "manifest.json").read_text())
    assert man["config"]["seed"] == 7 and man["tools"]["espeak-ng"] and man["tools"]["sox"]
    can = kaldi_dir.read(canary_dir / "canaries")  # read() validates sorting and consistency
    ref = kaldi_dir.read(canary_dir / "references")
    assert len(can) == 6 and len(ref) == 6
    assert set(can.utt2spk) == {c["id"] for c in man["canaries"]}
    for e in man["canaries"] + man["references"]:
        info = sf.info(str(canary_dir / e["wav"]))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert info.frames == e["num_samples"]
        assert (can.wav_scp.get(e["id"]) or ref.wav_scp[e["id"]]) == str((canary_dir / e["wav"]).resolve())
    assert not [p for p in canary_dir.parent.iterdir() if p.name.startswith(".")]  # no temp dirs


@pytest.mark.needs_tts
def test_voice_and_speed_applied(canary_dir):
    """Re-speak a canary at speed 1 with the recorded voice: the canary is 1.6x shorter."""
    man = json.loads((canary_dir / "manifest.json").read_text())
    e = man["canaries"][0]
    slow = tts.speak(e["text"], canary_dir.parent / "slow.wav", voice=tts.Voice(**e["voice"]))
    fast = sf.info(str(canary_dir / e["wav"])).duration
    assert slow / fast == pytest.approx(1.6, rel=0.03)
    tts.speak(e["text"], canary_dir.parent / "same.wav", voice=tts.Voice(**e["voice"]), speed=1.6)
    assert (canary_dir.parent / "same.wav").read_bytes() == (canary_dir / e["wav"]).read_bytes()
    other = dict(e["voice"], name="en-gb-scotland" if e["voice"]["name"] != "en-gb-scotland" else "en-us")
    tts.speak(e["text"], canary_dir.parent / "other.wav", voice=tts.Voice(**other), speed=1.6)
    assert (canary_dir.parent / "other.wav").read_bytes() != (canary_dir / e["wav"]).read_bytes()


@pytest.mark.needs_tts
def test_same_seed_byte_identical_manifest_and_idempotent(canary_dir, tmp_path):
    out = tmp_path / "again"
    generate(out, CANARY_VOCAB, CanaryConfig(**CANARY_SMALL), vocab_source="test", nj=1)
    assert (out / "manifest.json").read_bytes() == (canary_dir / "manifest.json").read_bytes()
    assert (out / "canaries" / "text").read_bytes() == (canary_dir / "canaries" / "text").read_bytes()
    mtime = (out / "manifest.json").stat().st_mtime_ns
    generate(out, CANARY_VOCAB, CanaryConfig(**CANARY_SMALL), vocab_source="test")  # same settings: no-op
    assert (out / "manifest.json").stat().st_mtime_ns == mtime
    with pytest.raises(CanaryError, match="already exists with other settings"):
        generate(out, CANARY_VOCAB, CanaryConfig(**{**CANARY_SMALL, "seed": 1}), vocab_source="test")


@pytest.mark.needs_tts
def test_cli_errors_one_line_no_traceback(tmp_path, capsys):
    for argv, msg in [
        (["--speed", "0"], "make_canaries: error: speed must be > 0, got 0.0"),
        (["--num_references", "1"], "num_references must be >= 2, got 1"),
        (["--voices", "xx-nope"], "unknown espeak-ng voice 'xx-nope'"),
        (["--vocab", str(tmp_path / "missing.txt")], "missing.txt does not exist"),
    ]:
        with pytest.raises(SystemExit) as e:
            make_canaries.main(["--output_dir", str(tmp_path / "o")] + argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err
        assert not (tmp_path / "o").exists()
    with pytest.raises(tts.TTSError):  # --verbose shows the real exception
        make_canaries.main(["--output_dir", str(tmp_path / "o"), "--speed", "-1", "--verbose"])


@pytest.mark.needs_tts
def test_cli_end_to_end(tmp_path, capsys):
    vocab = tmp_path / "v.txt"
    vocab.write_text("\n".join(CANARY_VOCAB) + "\n")
    make_canaries.main(["--output_dir", str(tmp_path / "o"), "--vocab", str(vocab), "--num_words", "3",
                        "--repeat_counts", "1", "3", "--canaries_per_count", "1",
                        "--num_references", "2", "--speed", "1.3", "--seed", "0", "--nj", "2"])
    assert "2 canaries, 2 references" in capsys.readouterr().out
    man = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert [c["repeat_count"] for c in man["canaries"]] == [1, 3]
    assert {e["speed"] for e in man["canaries"] + man["references"]} == {1.3}


@pytest.mark.needs_tts
def test_cli_missing_tool_message(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # neither espeak-ng nor sox on PATH
    with pytest.raises(SystemExit) as e:
        make_canaries.main(["--output_dir", str(tmp_path / "o"), "--num_references", "2"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert "espeak-ng not found: install it with `apt-get install -y espeak-ng`" in err
    assert not (tmp_path / "o").exists()
