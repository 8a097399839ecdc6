"""Canary generation: random word sequences -> espeak-ng speech -> Kaldi dirs + manifest.

The plan (texts, voices, ids) is a pure function of (vocabulary, :class:`CanaryConfig`): one
``random.Random(seed)`` draws, in this fixed order, every canary text (repeat counts ascending,
then index), every reference text, then one voice per canary and per reference. Texts are unique
across canaries *and* references, so a reference can never be a copy of an inserted canary.

Output layout of :func:`generate` (built in a temp dir, renamed into place at the end)::

    DIR/wav/<utt-id>.wav         16 kHz mono 16-bit, sped up by ``speed`` (sox tempo)
    DIR/canaries/                Kaldi dir: one utterance per canary, speaker id = utt id
    DIR/references/              Kaldi dir: |R| references, never inserted into training
    DIR/manifest.json            everything needed to reproduce / score (schema below)

Ids: canaries ``<prefix>-x<count>-<index>`` (e.g. ``canary-x16-007``), references
``<prefix>ref-<index>`` (e.g. ``canaryref-01999``); zero-padded so C-order sort is natural.

``manifest.json`` (keys sorted, no timestamps or absolute paths, so the same seed and tool
versions give a byte-identical file)::

    {"format": "espnet-pcc-canaries/1",
     "config": {num_words, repeat_counts, canaries_per_count, num_references, speed, seed,
                id_prefix, text_case, voices, sample_rate},
     "vocab": {"source", "size", "sha256"},
     "tools": {"espeak-ng", "sox", "wordfreq", "espnet_pcc"},
     "canaries":   [{"id", "text", "repeat_count", "voice": {name, variant, rate, pitch},
                     "speed", "wav": "wav/<id>.wav", "duration", "num_samples"}, ...],
     "references": [... same, "repeat_count": 0 ...]}
"""
from __future__ import annotations

import dataclasses
import logging
import random
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from espnet_pcc import fileio, kaldi_dir
from espnet_pcc.measurement.canary import tts
from espnet_pcc.measurement.canary.canary_dir import CANARIES, ID, MANIFEST_FORMAT, REFERENCES, \
    REPEAT_COUNT, TEXT, CanaryError, read_manifest, write_manifest
from espnet_pcc.measurement.canary.vocab import vocab_digest

logger = logging.getLogger(__name__)



@dataclasses.dataclass(frozen=True)
class CanaryConfig:
    """What to generate. Defaults: docs/design.md, 'Canaries' (tempo 1.6, |R| = 2000, 10 per count)."""

    num_words: int = 6
    repeat_counts: Tuple[int, ...] = (1, 2, 4, 8, 16)
    canaries_per_count: int = 10
    num_references: int = 2000
    speed: float = 1.6
    seed: int = 0
    id_prefix: str = "canary"
    text_case: str = "lower"  # "upper" for corpora transcribed in upper case (LibriSpeech)
    voices: Tuple[str, ...] = tuple(tts.ENGLISH_VOICES)
    sample_rate: int = tts.SAMPLE_RATE
    language: str = "en"  # the canaries' language: every voice must speak it

    def validate(self) -> None:
        if self.num_words < 1:
            raise CanaryError(f"num_words must be >= 1, got {self.num_words}")
        if not self.repeat_counts or any(c < 1 for c in self.repeat_counts):
            raise CanaryError(f"repeat counts must be >= 1, got {list(self.repeat_counts)}")
        if len(set(self.repeat_counts)) != len(self.repeat_counts):
            raise CanaryError(f"repeat counts must be distinct, got {list(self.repeat_counts)}")
        if self.canaries_per_count < 1:
            raise CanaryError(f"canaries_per_count must be >= 1, got {self.canaries_per_count}")
        if self.num_references < 2:
            raise CanaryError(
                f"num_references must be >= 2, got {self.num_references} "
                f"(exposure needs a reference distribution)"
            )
        tts.validate_speed(self.speed)
        if self.text_case not in ("lower", "upper"):
            raise CanaryError(f"text_case must be lower or upper, got {self.text_case!r}")
        if not self.id_prefix or not all(c.isalnum() or c in "_-" for c in self.id_prefix):
            raise CanaryError(f"id_prefix must be non-empty [A-Za-z0-9_-], got {self.id_prefix!r}")
        if not self.voices:
            raise CanaryError("no voices given")

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["repeat_counts"] = list(self.repeat_counts)
        d["voices"] = list(self.voices)
        if d["language"] == "en":
            # Manifests written before the option have no key: they are English, and stay
            # the same settings.
            del d["language"]
        return d


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One planned canary (``repeat_count`` >= 1) or reference (``repeat_count`` == 0)."""

    utt_id: str
    text: str
    repeat_count: int
    voice: tts.Voice
    speed: float

    @property
    def wav(self) -> str:
        return f"wav/{self.utt_id}.wav"


def _width(n: int, minimum: int) -> int:
    return max(minimum, len(str(n)))


def plan(vocab: Sequence[str], cfg: CanaryConfig) -> Tuple[List[Utterance], List[Utterance]]:
    """Deterministic (canaries, references) for ``vocab`` and ``cfg``; no I/O, no TTS."""
    cfg.validate()
    if not vocab:
        raise CanaryError("empty vocabulary")
    n_can = len(cfg.repeat_counts) * cfg.canaries_per_count
    total = n_can + cfg.num_references
    # Unique texts need enough sequences; demand 4x headroom so rejection sampling stays fast.
    if len(vocab) ** cfg.num_words < 4 * total:
        raise CanaryError(
            f"vocabulary of {len(vocab)} words is too small for {total} distinct "
            f"{cfg.num_words}-word texts"
        )
    rng = random.Random(cfg.seed)
    seen = set()

    def draw_text() -> str:
        while True:
            words = [vocab[rng.randrange(len(vocab))] for _ in range(cfg.num_words)]
            text = " ".join(words)
            if text not in seen:
                seen.add(text)
                return text.upper() if cfg.text_case == "upper" else text

    counts = sorted(cfg.repeat_counts)
    cw, iw = _width(max(counts), 2), _width(cfg.canaries_per_count - 1, 3)
    rw = _width(cfg.num_references - 1, 5)
    can_specs = [
        (f"{cfg.id_prefix}-x{c:0{cw}d}-{j:0{iw}d}", draw_text(), c)
        for c in counts
        for j in range(cfg.canaries_per_count)
    ]
    ref_specs = [(f"{cfg.id_prefix}ref-{i:0{rw}d}", draw_text(), 0) for i in range(cfg.num_references)]
    voices = list(cfg.voices)

    def mk(spec):
        uid, text, count = spec
        return Utterance(uid, text, count, tts.random_voice(rng, voices=voices), cfg.speed)

    return [mk(s) for s in can_specs], [mk(s) for s in ref_specs]


def _package_version(name: str) -> Optional[str]:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # not installed: recorded as null
        return None


def _kaldi(utts: List[Utterance], wav_root: Path) -> kaldi_dir.KaldiDir:
    """Kaldi dir with absolute wav paths; every utterance is its own speaker."""
    return kaldi_dir.KaldiDir(
        wav_scp={u.utt_id: str(wav_root / u.wav) for u in utts},
        text={u.utt_id: u.text for u in utts},
        utt2spk={u.utt_id: u.utt_id for u in utts},
    )


def _entry(u: Utterance, dur: float, sample_rate: int) -> Dict[str, Any]:
    return {
        ID: u.utt_id,
        TEXT: u.text,
        REPEAT_COUNT: u.repeat_count,
        "voice": u.voice.to_dict(),
        "speed": u.speed,
        "wav": u.wav,
        "duration": round(dur, 5),
        "num_samples": int(round(dur * sample_rate)),
    }


def generate(
    output_dir: Path,
    vocab: Sequence[str],
    cfg: CanaryConfig,
    vocab_source: str = "wordfreq",
    nj: int = 2,
    overwrite: bool = False,
    log_every: int = 200,
) -> Dict[str, Any]:
    """Plan, synthesise and write everything (see module doc); return the manifest.

    If ``output_dir`` already holds a manifest with the same config and vocabulary, nothing is
    redone (idempotent re-runs in recipes); with other settings it is an error unless
    ``overwrite``.
    """
    output_dir = Path(output_dir)
    canaries, references = plan(vocab, cfg)
    vocab_info = {"source": str(vocab_source), "size": len(vocab), "sha256": vocab_digest(list(vocab))}
    if output_dir.exists():
        try:
            old = read_manifest(output_dir)
        except (CanaryError, ValueError):
            old = None
        if old is not None and old["config"] == cfg.to_dict() and old["vocab"] == vocab_info:
            logger.info("%s is up to date (same config and vocabulary): nothing to do", output_dir)
            return old
        if not overwrite:
            raise CanaryError(
                f"{output_dir} already exists with other settings (remove it or use --overwrite)"
            )
    tts.check_tools()
    for v in cfg.voices:
        tts.validate_voice(tts.Voice(name=v), language=cfg.language)

    final_root = output_dir.resolve()
    with fileio.atomic_dir(output_dir) as tmp:
        jobs = [
            tts.TTSJob(u.utt_id, u.text.lower(), tmp / u.wav, u.voice, u.speed)
            for u in canaries + references
        ]
        logger.info(
            "synthesising %d canaries + %d references (speed %.2f, nj=%d)",
            len(canaries), len(references), cfg.speed, nj,
        )
        durs = tts.speak_batch(jobs, nj=nj, log_every=log_every)
        kaldi_dir.write_files(_kaldi(canaries, final_root), _mkdir(tmp / CANARIES))
        kaldi_dir.write_files(_kaldi(references, final_root), _mkdir(tmp / REFERENCES))
        kaldi_dir.validate_files(tmp / CANARIES)
        kaldi_dir.validate_files(tmp / REFERENCES)
        manifest = {
            "format": MANIFEST_FORMAT,
            "config": cfg.to_dict(),
            "vocab": vocab_info,
            "tools": {
                **tts.tool_versions(),
                "wordfreq": _package_version("wordfreq"),
                "espnet_pcc": _package_version("espnet-pcc"),
            },
            CANARIES: [_entry(u, durs[u.utt_id], cfg.sample_rate) for u in canaries],
            REFERENCES: [_entry(u, durs[u.utt_id], cfg.sample_rate) for u in references],
        }
        write_manifest(tmp, manifest)
    logger.info("wrote %s", output_dir)
    return manifest


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p
