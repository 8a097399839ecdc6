"""A small synthetic corpus in LibriSpeech's on-disk layout, spoken by espeak-ng (no download).

Each "speaker" is a random espeak-ng voice (docs/design.md, 'Demo corpus') reading one
"chapter" of random sentences drawn from wordfreq's frequent English words, upper case like
LibriSpeech. Splits have disjoint speakers. Output (built in a temp dir, renamed into place)::

    <out>/<split>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac      16 kHz mono
    <out>/<split>/<spk>/<chapter>/<spk>-<chapter>.trans.txt
    <out>/corpus.json                                               settings, voices, sizes

so the LibriSpeech data prep (:mod:`espnet_pcc.recipe.librispeech`) reads it unchanged.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import random
import shutil
from pathlib import Path
from typing import Dict, List, Tuple

import soundfile

from espnet_pcc import fileio
from espnet_pcc.errors import UserError
from espnet_pcc.measurement.canary import tts
from espnet_pcc.measurement.canary.vocab import load_vocab

logger = logging.getLogger(__name__)

FORMAT = "espnet-pcc-synth-corpus/1"


class SynthCorpusError(UserError):
    """Bad corpus settings, or an existing corpus built with other settings."""


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
    """Sizes per split as (speakers, utterances per speaker); sentence length in words."""

    splits: Tuple[Tuple[str, int, int], ...] = (("train", 92, 12), ("dev", 4, 10), ("test", 6, 10))
    min_words: int = 3
    max_words: int = 6
    vocab_size: int = 200
    seed: int = 1

    def validate(self) -> None:
        if not self.splits:
            raise SynthCorpusError("no splits")
        for name, spk, utt in self.splits:
            if spk < 1 or utt < 1:
                raise SynthCorpusError(f"split {name}: speakers and utterances must be >= 1")
        if not 1 <= self.min_words <= self.max_words:
            raise SynthCorpusError(f"need 1 <= min_words <= max_words, got {self.min_words}, {self.max_words}")


#: Named sizes: "full" is the demo: 1104 training utterances (92 voices, ~1.6 s each) over
#: wordfreq's 200 most frequent words, so that test words are seen in training and a tiny model
#: reaches a meaningful WER in 6 epochs; with 310 canary repeats three models train side by
#: side on a 2-core CPU in ~13 min. "tiny" is for CI.
PRESETS: Dict[str, CorpusConfig] = {
    "full": CorpusConfig(),
    "tiny": CorpusConfig(splits=(("train", 6, 8), ("dev", 2, 4), ("test", 2, 4)), max_words=6),
}


def plan(cfg: CorpusConfig) -> List[dict]:
    """Every utterance (split, speaker, chapter, id, text, voice): a pure function of ``cfg``."""
    cfg.validate()
    vocab = [w.upper() for w in load_vocab("wordfreq", size=cfg.vocab_size, min_len=2)]
    rng = random.Random(cfg.seed)
    utts: List[dict] = []
    spk_id = 100  # LibriSpeech-like numeric ids; unique across splits so speakers are disjoint
    for split, n_spk, n_utt in cfg.splits:
        for _ in range(n_spk):
            spk_id += 1
            chapter = 1000 + spk_id
            voice = tts.random_voice(rng)
            for u in range(n_utt):
                n = rng.randint(cfg.min_words, cfg.max_words)
                text = " ".join(rng.choice(vocab) for _ in range(n))
                utts.append(dict(split=split, spk=str(spk_id), chapter=str(chapter),
                                 id=f"{spk_id}-{chapter}-{u:04d}", text=text, voice=voice))
    return utts


def _settings(cfg: CorpusConfig) -> dict:
    """``cfg`` as corpus.json records it."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def corpus_matches(output_dir: Path, cfg: CorpusConfig) -> bool:
    """Whether ``output_dir`` holds a complete corpus built with the settings ``cfg``."""
    meta_path = Path(output_dir) / "corpus.json"
    return meta_path.is_file() and json.loads(meta_path.read_text()).get("config") == _settings(cfg)


def build(output_dir: Path, cfg: CorpusConfig, nj: int = 2, overwrite: bool = False) -> dict:
    """Synthesise the corpus into ``output_dir``; an existing one with the same settings is kept."""
    output_dir = Path(output_dir)
    settings = _settings(cfg)
    meta_path = output_dir / "corpus.json"
    if output_dir.exists() and not overwrite:
        if corpus_matches(output_dir, cfg):
            logger.info("%s exists with the same settings: skipped", output_dir)
            return json.loads(meta_path.read_text())
        raise SynthCorpusError(
            f"{output_dir} exists but was built with other settings (or is incomplete); "
            f"remove it or pass --overwrite"
        )
    utts = plan(cfg)
    # The old corpus (when overwriting) stays in place until the new one is complete.
    with fileio.atomic_dir(output_dir) as tmp:
        wav_dir = tmp / ".wav"
        jobs = [tts.TTSJob(u["id"], u["text"], wav_dir / f"{u['id']}.wav", voice=u["voice"]) for u in utts]
        durations = tts.speak_batch(jobs, nj=nj)
        trans: Dict[Path, List[str]] = {}
        for u in utts:
            chapter_dir = tmp / u["split"] / u["spk"] / u["chapter"]
            chapter_dir.mkdir(parents=True, exist_ok=True)
            audio, sr = soundfile.read(wav_dir / f"{u['id']}.wav", dtype="int16")
            soundfile.write(chapter_dir / f"{u['id']}.flac", audio, sr, format="FLAC", subtype="PCM_16")
            trans.setdefault(chapter_dir / f"{u['spk']}-{u['chapter']}.trans.txt", []).append(
                f"{u['id']} {u['text']}")
        for path, lines in trans.items():
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        shutil.rmtree(wav_dir)
        hours = {s: round(sum(durations[u["id"]] for u in utts if u["split"] == s) / 3600, 3)
                 for s, _, _ in cfg.splits}
        meta = {
            "format": FORMAT,
            "config": settings,
            "tools": tts.tool_versions(),
            "hours": hours,
            "utterances": {s: sum(1 for u in utts if u["split"] == s) for s, _, _ in cfg.splits},
            "speakers": {u["spk"]: u["voice"].to_dict() for u in utts},
        }
        fileio.atomic_write_json(tmp / "corpus.json", meta)
    logger.info("built %s: %s utterances, %s hours", output_dir, meta["utterances"], meta["hours"])
    return meta
