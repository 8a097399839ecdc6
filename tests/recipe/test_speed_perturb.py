"""Speed perturbation (ESPnet's --speed_perturb_factors) on a sample in LibriSpeech's layout:
ids sp<factor>-, 1.0 = the original data, audio 1/f as long, resumable, one-line errors."""
from pathlib import Path

import numpy as np
import pytest
import soundfile

from espnet_pcc import kaldi_dir
from espnet_pcc.bin import speed_perturb as cli
from espnet_pcc.core.data_loader.units import recording_of
from espnet_pcc.recipe.librispeech import prepare
from espnet_pcc.recipe.speed_perturb import LIBRISPEECH_FACTORS, SpeedPerturbError, perturb, \
    perturbed_length, prefix
from recipe_helpers import make_librispeech


@pytest.fixture()
def train_dir(tmp_path: Path) -> Path:
    corpus = make_librispeech(tmp_path, {"train-clean-100": [19, 26]}, utts_per_chapter=2)
    prepare(corpus, ["train-clean-100"], tmp_path / "data" / "train")
    return tmp_path / "data" / "train"


def test_three_speeds_with_espnet_ids(train_dir: Path, tmp_path: Path):
    out = tmp_path / "data" / "train_sp"
    assert perturb(train_dir, ["0.9", "1.0", "1.1"], out, nj=2) == 12
    src, sp = kaldi_dir.read(train_dir), kaldi_dir.read(out)
    kaldi_dir.validate(sp, strict_sort=True)
    assert sp.utt_ids[:4] == ["19-191-0000", "19-191-0001", "26-261-0000", "26-261-0001"]
    assert sp.utt2spk["sp0.9-19-191-0001"] == "sp0.9-19-191"  # speaker prefixed too, as ESPnet
    assert sp.utt2spk["19-191-0001"] == "19-191"
    for utt in src.utt_ids:
        assert sp.wav_scp[utt] == src.wav_scp[utt]  # 1.0: the original audio
        n = soundfile.info(src.wav_scp[utt]).frames
        for f in ("0.9", "1.1"):
            assert sp.text[f"sp{f}-{utt}"] == src.text[utt]
            info = soundfile.info(sp.wav_scp[f"sp{f}-{utt}"])
            assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
            assert info.frames == perturbed_length(n, f) == -(-n * 10 // int(float(f) * 10))
            assert sp.wav_scp[f"sp{f}-{utt}"].startswith(str((out / "audio" / f"sp{f}").resolve()))
    # A tone at 1 kHz played 1.1 times faster is at 1.1 kHz.
    tone = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000).astype("float32")
    soundfile.write(src.wav_scp["19-191-0000"], 0.5 * tone, 16000, subtype="PCM_16")
    perturb(train_dir, ["1.1"], tmp_path / "tone", nj=1)
    y, _ = soundfile.read(kaldi_dir.read(tmp_path / "tone").wav_scp["sp1.1-19-191-0000"])
    assert abs(np.argmax(np.abs(np.fft.rfft(y))) * 16000 / len(y) - 1100) < 5


def test_resumes_and_starts_over_for_another_request(train_dir: Path, tmp_path: Path):
    out = tmp_path / "sp"
    perturb(train_dir, ["0.9", "1.0"], out)
    kept = out / "audio" / "sp0.9" / "19-191" / "sp0.9-19-191-0000.flac"
    mtime = kept.stat().st_mtime_ns
    (out / "audio" / "sp0.9" / "26-261" / "sp0.9-26-261-0001.flac").unlink()  # an interrupted run
    perturb(train_dir, ["0.9", "1.0"], out)
    assert kept.stat().st_mtime_ns == mtime
    assert (out / "audio" / "sp0.9" / "26-261" / "sp0.9-26-261-0001.flac").is_file()
    perturb(train_dir, ["1.1", "1.0"], out)  # other factors: the old audio goes
    assert not (out / "audio" / "sp0.9").exists()
    assert sorted(kaldi_dir.read(out).utt_ids)[-1] == "sp1.1-26-261-0001"
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != ".done"]


@pytest.mark.parametrize("factors, message", [
    (["0.9", "0.90"], "speed factor '0.90' given twice (as '0.9')"),
    (["0"], "speed factor '0' must be a positive number"),
    (["fast"], "speed factor 'fast' is not a number"),
    ([".9"], "speed factor '.9': write it as digits with an optional decimal part (e.g. 0.9)"),
])
def test_bad_factors_are_one_line(train_dir: Path, tmp_path: Path, capsys, factors, message):
    with pytest.raises(SystemExit) as e:
        cli.main(["--data_dir", str(train_dir), "--factors", *factors, "--output_dir", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err == [f"speed_perturb: error: {message}"]
    assert not (tmp_path / "o").exists()


def test_recording_of_undoes_prefix_and_nothing_else():
    for factor in LIBRISPEECH_FACTORS + ("2", "0.75"):
        assert recording_of(prefix(factor) + "spk1-utt3") == "spk1-utt3"
    assert recording_of("sp0.9-sp1.1-a") == "sp1.1-a"  # one prefix: perturbation is not nested
    assert recording_of("spk1-utt3") == "spk1-utt3"
    assert recording_of("sp-x") == "sp-x"


def test_source_must_name_audio_files(train_dir: Path, tmp_path: Path):
    wav = (train_dir / "wav.scp").read_text().splitlines()
    (train_dir / "wav.scp").write_text("\n".join(
        [wav[0].split()[0] + " flac -c -d -s x.flac |"] + wav[1:]) + "\n")
    with pytest.raises(SpeedPerturbError, match=r"utterance 19-191-0000: .* is not an audio file"):
        perturb(train_dir, ["0.9"], tmp_path / "o")
