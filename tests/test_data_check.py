"""Data checks: corrupt / empty audio and text the tokenizer does not cover."""
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from espnet_pcc import kaldi_dir
from espnet_pcc.bin import check_data
from espnet_pcc.kaldi_dir import KaldiDir


def make_dir(tmp_path, texts, audio=None):
    """A Kaldi dir of 0.1 s tones; `audio` maps utt → 'empty' | 'corrupt'."""
    audio = audio or {}
    wav_scp = {}
    for utt in texts:
        path = tmp_path / f"{utt}.wav"
        if audio.get(utt) == "corrupt":
            path.write_bytes(b"RIFF\x00\x00not a wav at all")
        else:
            n = 0 if audio.get(utt) == "empty" else 1600
            soundfile.write(path, np.full(n, 0.1, dtype=np.float32), 16000, subtype="PCM_16")
        wav_scp[utt] = str(path)
    kd = KaldiDir(wav_scp=wav_scp, text=dict(texts), utt2spk={u: u for u in texts})
    return kaldi_dir.write(kd, tmp_path / "data")


def run(argv, capsys):
    with pytest.raises(SystemExit) as e:
        check_data.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return e.value.code, err


def test_good_dir_passes(tmp_path, capsys):
    d = make_dir(tmp_path, {"a": "AB C", "b": "CAB"})
    (tmp_path / "tokens.txt").write_text("<blank>\n<unk>\n<space>\nA\nB\nC\n<sos/eos>\n")
    check_data.main(["--data_dir", str(d), "--token_type", "char",
                     "--token_list", str(tmp_path / "tokens.txt")])
    assert "2 utterances OK (audio, text vs char tokens)" in capsys.readouterr().out


@pytest.mark.parametrize("fault,message", [
    ("empty", "utterance b: audio {d}/b.wav is empty (0 samples)"),
    ("corrupt", "utterance b: audio {d}/b.wav is unreadable"),
])
def test_bad_audio_is_one_line(tmp_path, capsys, fault, message):
    d = make_dir(tmp_path, {"a": "X", "b": "Y", "c": "Z"}, audio={"b": fault})
    code, err = run(["--data_dir", str(d)], capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("check_data: error: ") and message.format(d=tmp_path) in err[0]


def test_characters_outside_the_token_list(tmp_path, capsys):
    d = make_dir(tmp_path, {"a": "AB", "b": "A é", "c": "A!"})
    (tmp_path / "tokens.txt").write_text("<blank>\n<unk>\n<space>\nA\nB\n<sos/eos>\n")
    code, err = run(["--data_dir", str(d), "--skip_audio", "--token_type", "char",
                     "--token_list", str(tmp_path / "tokens.txt")], capsys)
    assert code == 2 and len(err) == 1, err
    assert "utterance b: characters 'é' are not in the token list (and 1 more)" in err[0]


def test_warn_only_reports_and_goes_on(tmp_path, capsys):
    (tmp_path / "bad").mkdir()
    (tmp_path / "good").mkdir()
    bad = make_dir(tmp_path / "bad", {"a": "A é"})
    good = make_dir(tmp_path / "good", {"b": "AB"})
    (tmp_path / "tokens.txt").write_text("<blank>\n<unk>\n<space>\nA\nB\n<sos/eos>\n")
    check_data.main(["--data_dir", str(bad), str(good), "--skip_audio", "--warn_only",
                     "--token_type", "char", "--token_list", str(tmp_path / "tokens.txt")])
    out, err = capsys.readouterr()
    assert err.strip().startswith("check_data: warning: ") and "characters 'é'" in err
    assert "1 utterances OK" in out and str(good) in out and str(bad) not in out


def test_text_that_bpe_maps_to_unk(tmp_path, capsys):
    import sentencepiece as spm

    corpus = tmp_path / "train.txt"
    corpus.write_text("\n".join(["THE CAT SAT ON THE MAT", "A CAT AND A HAT"] * 20) + "\n")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tmp_path / "bpe"),
                                   vocab_size=16, character_coverage=1.0, minloglevel=2)
    d = make_dir(tmp_path, {"a": "THE CAT", "b": "THE DOG"})
    code, err = run(["--data_dir", str(d), "--skip_audio", "--token_type", "bpe",
                     "--bpemodel", str(tmp_path / "bpe.model")], capsys)
    assert code == 2 and len(err) == 1, err
    assert "utterance b:" in err[0] and "encode to <unk>" in err[0]


def test_verbose_shows_the_traceback(tmp_path):
    d = make_dir(tmp_path, {"a": "X"}, audio={"a": "corrupt"})
    result = subprocess.run([sys.executable, "-m", "espnet_pcc.bin.check_data",
                             "--data_dir", str(d), "--verbose"], capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" in result.stderr
    quiet = subprocess.run([sys.executable, "-m", "espnet_pcc.bin.check_data",
                            "--data_dir", str(d)], capture_output=True, text=True)
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr
