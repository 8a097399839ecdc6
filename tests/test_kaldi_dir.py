"""Kaldi data dirs: round trip, sorting, validation errors, atomic writes, merge collisions."""
import pytest

from espnet_pcc import kaldi_dir as kd
from espnet_pcc.kaldi_dir import KaldiDir, KaldiDirError


def small() -> KaldiDir:
    return KaldiDir(
        wav_scp={"b-2": "/x/b2.wav", "a-1": "/x/a1.wav", "a-10": "flac -d -c /x/a10.flac |"},
        text={"b-2": "HELLO THERE", "a-1": "", "a-10": "it's me"},
        utt2spk={"b-2": "b", "a-1": "a", "a-10": "a"},
        extra={"utt2dur": {"b-2": "1.5", "a-1": "2.0", "a-10": "0.7"}},
    )


def test_round_trip_sorted_c_order(tmp_path):
    out = kd.write(small(), tmp_path / "d", strict_sort=True)
    assert (out / "utt2spk").read_text() == "a-1 a\na-10 a\nb-2 b\n"
    assert (out / "spk2utt").read_text() == "a a-1 a-10\nb b-2\n"
    assert (out / "text").read_text() == "a-1\na-10 it's me\nb-2 HELLO THERE\n"
    assert (out / "wav.scp").read_text().splitlines()[1] == "a-10 flac -d -c /x/a10.flac |"
    back = kd.read(out)
    assert back == small()
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no temp dir left behind


def test_c_order_is_bytewise(tmp_path):
    d = KaldiDir(wav_scp={"B": "1", "a": "2", "_": "3"}, text={"B": "x", "a": "y", "_": "z"},
                 utt2spk={"B": "B", "a": "a", "_": "_"})
    kd.write(d, tmp_path / "d")
    assert [l.split()[0] for l in (tmp_path / "d" / "text").read_text().splitlines()] == ["B", "_", "a"]


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d.text.pop("a-1"), r"differ between utt2spk and text, e.g. 'a-1' missing"),
        (lambda d: d.wav_scp.update({"zz": "/x"}), r"e.g. 'zz' not in utt2spk but in wav.scp"),
        (lambda d: d.extra["utt2dur"].pop("b-2"), "utt2dur"),
    ],
)
def test_validate_rejects_inconsistent(tmp_path, mutate, match):
    d = small()
    mutate(d)
    with pytest.raises(KaldiDirError, match=match):
        kd.write(d, tmp_path / "d")
    assert not (tmp_path / "d").exists()
    assert list(tmp_path.iterdir()) == []


def test_strict_sort_needs_speaker_prefix(tmp_path):
    d = KaldiDir(wav_scp={"u1": "a", "u2": "b"}, text={"u1": "x", "u2": "y"},
                 utt2spk={"u1": "zz", "u2": "aa"})
    kd.write(d, tmp_path / "ok")  # fine for ESPnet
    with pytest.raises(KaldiDirError, match="speaker"):
        kd.write(d, tmp_path / "strict", strict_sort=True)


def test_read_detects_unsorted_duplicates_and_bad_spk2utt(tmp_path):
    out = kd.write(small(), tmp_path / "d")
    (out / "text").write_text("b-2 x\na-1 y\na-10 z\n")
    with pytest.raises(KaldiDirError, match="text is not sorted"):
        kd.read(out)
    (out / "text").write_text("a-1 y\na-1 z\nb-2 x\n")
    with pytest.raises(KaldiDirError, match="duplicate key 'a-1'"):
        kd.read(out)
    kd.write(small(), out, overwrite=True)
    (out / "spk2utt").write_text("a a-1\nb b-2\n")
    with pytest.raises(KaldiDirError, match="spk2utt is not the inverse"):
        kd.read(out)
    with pytest.raises(KaldiDirError, match="does not exist"):
        kd.read(tmp_path / "nope")


def test_atomic_dir_failure_leaves_target_untouched(tmp_path):
    target = kd.write(small(), tmp_path / "d")
    before = (target / "text").read_bytes()
    with pytest.raises(RuntimeError):
        with kd.atomic_dir(target, overwrite=True) as tmp:
            (tmp / "text").write_text("half")
            raise RuntimeError("crash")
    assert (target / "text").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["d"]
    with pytest.raises(KaldiDirError, match="already exists"):
        kd.write(small(), target)


def test_merge_and_collisions():
    extra = KaldiDir(wav_scp={"c-1": "/c"}, text={"c-1": "hi"}, utt2spk={"c-1": "c"},
                     extra={"utt2dur": {"c-1": "1.0"}})
    m = kd.merge(small(), extra)
    assert len(m) == 4 and m.spk2utt["c"] == "c-1" and m.extra["utt2dur"]["c-1"] == "1.0"
    with pytest.raises(KaldiDirError, match=r"1 utterance id\(s\) already present, e.g. b-2"):
        kd.merge(small(), KaldiDir({"b-2": "/y"}, {"b-2": "x"}, {"b-2": "q"}))
    with pytest.raises(KaldiDirError, match="speaker id"):
        kd.merge(small(), KaldiDir({"n-1": "/y"}, {"n-1": "x"}, {"n-1": "a"}))


def test_segments(tmp_path):
    d = KaldiDir(wav_scp={"rec": "/r.wav"}, text={"s1": "a", "s2": "b"},
                 utt2spk={"s1": "s", "s2": "s"}, segments={"s1": "rec 0.0 1.5", "s2": "rec 1.5 3.0"})
    back = kd.read(kd.write(d, tmp_path / "d"))
    assert back.wav_of("s2") == "/r.wav"
    d.segments["s2"] = "nope 0 1"
    with pytest.raises(KaldiDirError, match="recording 'nope' not in wav.scp"):
        kd.validate(d)
