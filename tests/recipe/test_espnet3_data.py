"""The synthetic demo's data for ESPnet3: the Kaldi data dir as an ESPnet3 dataset, the corpus
builder's checks, the tokenizer's text."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from espnet_pcc.recipe.espnet3_data import DemoDataError, KaldiDirDataset, SynthCorpusBuilder, \
    training_text
from espnet_pcc.recipe.synth_corpus import PRESETS


def _kaldi_dir(root: Path, wav_scp_value=None) -> Path:
    """``root/train``: utterances a-1 (0.1 s) and b-1 (0.2 s)."""
    d = root / "train"
    d.mkdir(parents=True)
    lines = []
    for utt, seconds in (("a-1", 0.1), ("b-1", 0.2)):
        path = root / f"{utt}.wav"
        soundfile.write(path, np.full(int(16000 * seconds), 0.1, np.float32), 16000)
        lines.append(f"{utt} {wav_scp_value or path}")
    (d / "wav.scp").write_text("\n".join(lines) + "\n")
    (d / "text").write_text("a-1 FIRST ONE\nb-1 SECOND ONE\n")
    (d / "utt2spk").write_text("a-1 a\nb-1 b\n")
    (d / "spk2utt").write_text("a a-1\nb b-1\n")
    return d


def test_a_kaldi_dir_is_an_espnet3_dataset(tmp_path: Path):
    _kaldi_dir(tmp_path)
    dataset = KaldiDirDataset(split="train", data_dir=str(tmp_path))
    assert len(dataset) == 2
    first = dataset[0]
    assert first["text"] == "FIRST ONE" and "utt_id" not in first  # no strings in a batch
    assert first["speech"].dtype == np.float32 and first["speech"].shape == (1600,)
    with_ids = KaldiDirDataset(split="train", data_dir=str(tmp_path), utt_ids=True)
    assert [with_ids[i]["utt_id"] for i in range(2)] == ["a-1", "b-1"]
    assert training_text(str(tmp_path / "train")) == ["FIRST ONE", "SECOND ONE"]


def test_a_wav_scp_command_is_refused_in_one_line(tmp_path: Path):
    _kaldi_dir(tmp_path, wav_scp_value="sox x.flac -t wav - |")
    with pytest.raises(DemoDataError, match=r"train/wav.scp has a command \('sox x.flac"):
        KaldiDirDataset(split="train", data_dir=str(tmp_path))


def test_the_corpus_counts_as_prepared_only_with_the_same_settings(tmp_path: Path):
    builder = SynthCorpusBuilder()
    corpus = tmp_path / "SynthSpeech_tiny"
    assert not builder.is_source_prepared(corpus_dir=str(corpus), corpus_size="tiny")
    corpus.mkdir()
    settings = json.loads(json.dumps(dataclasses.asdict(PRESETS["tiny"])))
    (corpus / "corpus.json").write_text(json.dumps({"config": settings}))
    assert builder.is_source_prepared(corpus_dir=str(corpus), corpus_size="tiny",
                                      data_dir="ignored")  # the whole block is passed
    assert not builder.is_source_prepared(corpus_dir=str(corpus), corpus_size="full")
    with pytest.raises(DemoDataError, match="create_dataset.corpus_size 'small': use one of "
                                            "full, tiny"):
        builder.is_source_prepared(corpus_dir=str(corpus), corpus_size="small")
    assert not builder.is_built(data_dir=str(tmp_path / "data"))
