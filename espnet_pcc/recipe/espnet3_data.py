"""The synthetic demo's data for ESPnet3 (egs3/synth_demo/esp2_asr): its dataset module's
classes and the tokenizer's training text.

ESPnet3 loads a recipe's ``dataset/__init__.py`` and uses its ``Dataset`` (items for training,
statistics and inference) and ``DatasetBuilder`` (its ``create_dataset`` stage); the recipe's
module re-exports the two classes here. The data stay Kaldi data dirs, as in the espnet2 demo,
so that the project's canary insertion, WER scoring and exposure scoring read them unchanged:

    <data_dir>/{train,dev,test}    the corpus's splits (LibriSpeech data prep)
    <data_dir>/canaries            make_canaries' output (the insert_canaries stage)
    <data_dir>/train_canary        train with the canaries inserted (the insert_canaries stage)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import soundfile
from espnet3.components.data.base_dataset import BaseDataset
from espnet3.components.data.dataset_builder import DatasetBuilder
from espnet3.contract import Field

from espnet_pcc import kaldi_dir
from espnet_pcc.errors import UserError

#: The corpus's splits: the LibriSpeech layout's split name is the data dir's name.
CORPUS_SPLITS = ("train", "dev", "test")


class DemoDataError(UserError):
    """A data dir or corpus setting the demo cannot use."""


class KaldiDirDataset(BaseDataset):
    """The utterances of the Kaldi data dir ``<data_dir>/<split>``, in its (sorted) order:
    ``{"speech": float32 waveform, "text": transcript}``, and with ``utt_ids`` the utterance id
    under ``utt_id`` too, which ESPnet3's inference and measure stages then write as the key
    of every line (otherwise the item's index; training batches must not hold strings)."""

    fields = (Field("speech", "audio"), Field("text", "text"))

    def __init__(self, split: str, data_dir: str, utt_ids: bool = False):
        self.path = Path(data_dir) / split
        kd = kaldi_dir.read(self.path)
        if kd.segments is not None:
            raise DemoDataError(f"{self.path} has segments: the demo's data dirs hold one "
                                f"utterance per audio file")
        self.utt_ids = kd.utt_ids
        self.with_utt_ids = bool(utt_ids)
        self.audio = [kd.wav_scp[u] for u in self.utt_ids]
        self.text = [kd.text[u] for u in self.utt_ids]
        pipes = [a for a in self.audio if a.rstrip().endswith("|")]
        if pipes:
            raise DemoDataError(f"{self.path}/wav.scp has a command ({pipes[0]!r}): the demo "
                                f"reads audio files only")

    def __len__(self) -> int:
        return len(self.utt_ids)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        speech, _ = soundfile.read(self.audio[int(index)], dtype="float32")
        item = {"speech": np.asarray(speech, dtype=np.float32), "text": self.text[int(index)]}
        if self.with_utt_ids:
            item["utt_id"] = self.utt_ids[int(index)]
        return item


class SynthCorpusBuilder(DatasetBuilder):
    """ESPnet3's ``create_dataset`` stage for the demo: the synthetic corpus (espeak-ng, no
    download) at ``corpus_dir``, then one Kaldi data dir per split under ``data_dir``. Its
    keyword arguments are the training config's ``create_dataset`` block (ESPnet3 passes the
    whole block to every method, so each takes what it needs and ignores the rest)."""

    @staticmethod
    def _corpus_config(corpus_size: str):
        from espnet_pcc.recipe.synth_corpus import PRESETS

        if corpus_size not in PRESETS:
            raise DemoDataError(f"create_dataset.corpus_size {corpus_size!r}: use one of "
                                f"{', '.join(PRESETS)}")
        return PRESETS[corpus_size]

    def is_source_prepared(self, corpus_dir: str, corpus_size: str, **_kwargs) -> bool:
        from espnet_pcc.recipe.synth_corpus import corpus_matches

        return corpus_matches(Path(corpus_dir), self._corpus_config(corpus_size))

    def prepare_source(self, corpus_dir: str, corpus_size: str, nj: int = 2,
                       **_kwargs) -> None:
        from espnet_pcc.recipe.synth_corpus import build

        build(Path(corpus_dir), self._corpus_config(corpus_size), nj=nj)

    def is_built(self, data_dir: str, **_kwargs) -> bool:
        return all((Path(data_dir) / s / "text").is_file() for s in CORPUS_SPLITS)

    def build(self, corpus_dir: str, data_dir: str, **_kwargs) -> None:
        from espnet_pcc.recipe.librispeech import prepare

        for split in CORPUS_SPLITS:
            prepare(Path(corpus_dir), [split], Path(data_dir) / split)


def training_text(data_dir: str) -> List[str]:
    """The transcripts of the Kaldi data dir ``data_dir`` (the tokenizer's training text,
    ESPnet3's ``tokenizer.text_builder``): the corpus's training set, without canaries, so
    that the tokenizer does not encode them, as in the espnet2 demo."""
    return list(kaldi_dir.read(Path(data_dir)).text.values())


__all__ = ["CORPUS_SPLITS", "DemoDataError", "KaldiDirDataset", "SynthCorpusBuilder",
           "training_text"]
