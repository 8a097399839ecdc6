"""espeak-ng + sox wrapper: real synthesis, format, speed, determinism, errors."""
import os
import random

import pytest
import soundfile as sf

from espnet_pcc.measurement.canary import tts

pytestmark = pytest.mark.needs_tts

TEXT = "seven purple elephants quietly borrowed my calendar"


def test_speak_format_16k_mono_16bit(tmp_path):
    out = tmp_path / "a.wav"
    dur = tts.speak(TEXT, out, voice="en-gb", variant="f2", rate=170, pitch=40)
    info = sf.info(str(out))
    assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
    assert dur == pytest.approx(info.frames / 16000)
    assert 1.0 < dur < 10.0
    audio, _ = sf.read(str(out))
    assert abs(audio).max() < 1.0  # gain -1: no clipping
    assert abs(audio).max() > 0.05  # real speech, not silence


@pytest.mark.parametrize("speed", [1.6, 0.8])
def test_speed_changes_duration_by_factor(tmp_path, speed):
    base = tts.speak(TEXT, tmp_path / "base.wav", voice="en-us")
    fast = tts.speak(TEXT, tmp_path / "fast.wav", voice="en-us", speed=speed)
    assert base / fast == pytest.approx(speed, rel=0.03)


def test_voice_changes_audio_and_is_deterministic(tmp_path):
    a = tts.speak(TEXT, tmp_path / "a.wav", voice="en-us", speed=1.6)
    b = tts.speak(TEXT, tmp_path / "b.wav", voice="en-us", speed=1.6)
    tts.speak(TEXT, tmp_path / "c.wav", voice="en-gb-scotland", variant="f4", speed=1.6)
    raw = [(tmp_path / f"{n}.wav").read_bytes() for n in "abc"]
    assert raw[0] == raw[1] and a == b
    assert raw[0] != raw[2]


def test_speak_batch_matches_speak(tmp_path):
    rng = random.Random(0)
    jobs = [
        tts.TTSJob(f"u{i}", TEXT, tmp_path / f"u{i}.wav", tts.random_voice(rng), 1.6)
        for i in range(4)
    ]
    durs = tts.speak_batch(jobs, nj=2, log_every=2)
    assert sorted(durs) == ["u0", "u1", "u2", "u3"]
    one = tts.speak(TEXT, tmp_path / "ref.wav", voice=jobs[2].voice, speed=1.6)
    assert (tmp_path / "ref.wav").read_bytes() == (tmp_path / "u2.wav").read_bytes()
    assert durs["u2"] == one


def test_random_voice_is_english_and_seeded():
    v1 = [tts.random_voice(random.Random(3)) for _ in range(2)]
    assert v1[0] == v1[1]
    vs = {tts.random_voice(random.Random(s)) for s in range(50)}
    assert {v.name for v in vs} <= set(tts.ENGLISH_VOICES)
    assert len({v.name for v in vs}) > 3
    for v in vs:
        tts.validate_voice(v)  # every voice the generator picks is a real espeak-ng voice


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"voice": "xx-klingon"}, "unknown espeak-ng voice 'xx-klingon'"),
        ({"variant": "nope"}, "variant 'nope'"),
        ({"speed": 0}, "speed must be > 0, got 0"),
        ({"speed": -1.5}, "speed must be > 0, got -1.5"),
    ],
)
def test_bad_input_clear_error_no_file(tmp_path, kwargs, match):
    out = tmp_path / "x.wav"
    with pytest.raises(tts.TTSError, match=match):
        tts.speak(TEXT, out, **kwargs)
    assert not out.exists() and os.listdir(tmp_path) == []


def test_missing_tool_message(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(tts.TTSError, match=r"espeak-ng not found: install it with `apt-get install -y espeak-ng`"):
        tts.check_tools()


def test_tool_versions():
    v = tts.tool_versions()
    assert v["espeak-ng"][0].isdigit() and v["sox"][0].isdigit()


def test_a_voice_must_speak_the_canaries_language():
    tts.validate_voice(tts.Voice(name="cs"), language="cs")
    with pytest.raises(tts.TTSError, match="voice 'en-us' does not speak 'cs'"):
        tts.validate_voice(tts.Voice(name="en-us"), language="cs")
    with pytest.raises(tts.TTSError, match="is not an English voice"):
        tts.validate_voice(tts.Voice(name="cs"), language="en")
