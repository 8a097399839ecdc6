"""Stage 1 data prep on a tiny LibriSpeech directory in the real layout (flac + trans.txt)."""
from pathlib import Path

import pytest
import soundfile

from espnet_pcc import kaldi_dir
from espnet_pcc.bin import prep_librispeech
from espnet_pcc.recipe.librispeech import DataPrepError, prepare
from recipe_helpers import make_librispeech


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    return make_librispeech(tmp_path, {"train-clean-100": [19, 26], "dev-clean": [84]})


def test_prepare_writes_valid_kaldi_dir(corpus: Path, tmp_path: Path):
    n = prepare(corpus, ["train-clean-100"], tmp_path / "data" / "train")
    assert n == 6
    kd = kaldi_dir.read(tmp_path / "data" / "train")
    kaldi_dir.validate(kd, strict_sort=True)
    assert kd.utt_ids[0] == "19-191-0000"
    assert kd.utt2spk["19-191-0000"] == "19-191"  # speaker = <spk>-<chapter>, as ESPnet
    assert kd.text["19-191-0000"] == "A LAZY DOG"
    wav = Path(kd.wav_scp["26-261-0002"])
    assert wav.is_absolute() and wav.suffix == ".flac"
    assert soundfile.info(str(wav)).samplerate == 16000
    assert (tmp_path / "data" / "train" / "spk2utt").read_text().startswith("19-191 19-191-0000 ")


def test_prepare_combines_splits_and_is_idempotent(corpus: Path, tmp_path: Path):
    out = tmp_path / "data" / "all"
    assert prepare(corpus, ["train-clean-100", "dev-clean"], out) == 9
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert prepare(corpus, ["train-clean-100", "dev-clean"], out) == 9  # kept, not rewritten
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_missing_corpus_and_split(corpus: Path, tmp_path: Path):
    with pytest.raises(DataPrepError, match=r"LibriSpeech directory .*nope does not exist"):
        prepare(tmp_path / "nope", ["dev-clean"], tmp_path / "d")
    with pytest.raises(DataPrepError, match=r"split test-other missing from .*found: dev-clean, train-clean-100"):
        prepare(corpus, ["test-other"], tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_missing_audio_leaves_nothing(corpus: Path, tmp_path: Path):
    (corpus / "dev-clean" / "84" / "841" / "84-841-0001.flac").unlink()
    with pytest.raises(DataPrepError, match=r"audio .*84-841-0001.flac is missing"):
        prepare(corpus, ["dev-clean"], tmp_path / "d")
    assert not (tmp_path / "d").exists()
    assert not list(tmp_path.glob(".d.*"))


def test_not_a_librispeech_split(tmp_path: Path):
    (tmp_path / "LS" / "dev-clean").mkdir(parents=True)
    with pytest.raises(DataPrepError, match="not an extracted LibriSpeech split"):
        prepare(tmp_path / "LS", ["dev-clean"], tmp_path / "d")


def test_cli_one_line_error(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as e:
        prep_librispeech.main(["--corpus_dir", str(tmp_path / "x"), "--splits", "dev-clean",
                               "--output_dir", str(tmp_path / "d")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("prep_librispeech: error: LibriSpeech directory")


@pytest.mark.parametrize("damage", [b"fLaC" + b"\x00" * 40, b""])
def test_corrupt_or_empty_flac_is_one_line_and_leaves_nothing(corpus: Path, tmp_path: Path, capsys,
                                                              damage: bytes):
    flac = corpus / "dev-clean" / "84" / "841" / "84-841-0001.flac"
    flac.write_bytes(damage)  # garbage after the magic, or a zero-byte file
    with pytest.raises(SystemExit) as e:
        prep_librispeech.main(["--corpus_dir", str(corpus), "--splits", "dev-clean",
                               "--output_dir", str(tmp_path / "d")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1, err
    assert "utterance 84-841-0001: audio" in err[0] and str(flac) in err[0]
    assert "is unreadable" in err[0]
    assert not (tmp_path / "d").exists()


def test_corpus_dir_or_its_parent(corpus: Path, tmp_path: Path):
    """LIBRISPEECH may be the extracted LibriSpeech/ or its parent (ESPnet's db.sh); anything
    else is one line that says so."""
    assert prepare(corpus.parent, ["dev-clean"], tmp_path / "a") == 3
    assert prepare(corpus, ["dev-clean"], tmp_path / "b") == 3
    assert (tmp_path / "a" / "wav.scp").read_text() == (tmp_path / "b" / "wav.scp").read_text()
    (tmp_path / "other").mkdir()
    with pytest.raises(DataPrepError, match=r"split dev-clean missing from .*other \(found: nothing\).*"
                                            r"LIBRISPEECH .* must be the extracted LibriSpeech/ directory "
                                            r"or the directory that contains it"):
        prepare(tmp_path / "other", ["dev-clean"], tmp_path / "c")


def test_kept_only_when_made_from_the_same_splits(corpus: Path, tmp_path: Path):
    out = tmp_path / "d"
    prepare(corpus, ["dev-clean"], out)
    with pytest.raises(DataPrepError, match=r"d exists but was not made from train-clean-100 .*--overwrite"):
        prepare(corpus, ["train-clean-100"], out)
    assert prepare(corpus, ["train-clean-100"], out, overwrite=True) == 6
