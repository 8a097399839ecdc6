"""Text-to-speech with espeak-ng + sox, for canaries and the synthetic demo corpus.

One utterance = two subprocesses::

    espeak-ng --stdin --stdout -v VOICE[+VARIANT] -s RATE -p PITCH      (22.05 kHz wav on stdout)
      | sox -R -t wav - -r 16000 -c 1 -b 16 OUT.wav gain -1 [tempo SPEED] rate 16000

* ``gain -1`` comes *before* resampling: espeak-ng output peaks near full scale and the
  resampler's ringing would otherwise clip.
* ``tempo SPEED`` shortens the audio by the factor ``SPEED`` (WSOLA) with the pitch preserved,
  so a sped-up utterance lasts ``duration / SPEED``.
* ``-R`` makes sox's dither repeatable: the same text and voice give byte-identical wavs.

Public API::

    speak(text, out_wav, voice="en-us", rate=170, pitch=50, variant=None, speed=1.0) -> seconds
    speak_batch(jobs: Iterable[TTSJob], nj=2, log_every=200) -> {utt_id: seconds}
    random_voice(rng) -> Voice            # a random English voice from ENGLISH_VOICES × VARIANTS
    tool_versions() -> {"espeak-ng": "...", "sox": "..."}
    check_tools()                          # raises TTSError with an install hint if missing

Errors are :class:`TTSError` (a :class:`~espnet_pcc.errors.UserError`), one line, naming
the bad value (unknown voice, non-positive speed, missing tool ...).
"""
from __future__ import annotations

import dataclasses
import logging
import random
import re
import shutil
import subprocess
import wave
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Union

from espnet_pcc import fileio
from espnet_pcc.errors import UserError

logger = logging.getLogger(__name__)

#: English espeak-ng voices that sound distinct and speak intelligibly (docs/design.md, 'Demo
#corpus').
ENGLISH_VOICES: Sequence[str] = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-029",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-us-nyc",
)
#: espeak-ng voice variants (``!v/<name>``) used for random voices; None = the voice's default.
VARIANTS: Sequence[Optional[str]] = (None, "m3", "f2", "f4")
#: Ranges for random voices: words per minute and pitch (espeak-ng's 0..99 scale).
RATE_RANGE = (150, 190)
PITCH_RANGE = (30, 70)

SAMPLE_RATE = 16000

_INSTALL_HINT = {
    "espeak-ng": "install it with `apt-get install -y espeak-ng`",
    "sox": "install it with `apt-get install -y sox`",
}


class TTSError(UserError):
    """A TTS problem the user can fix (missing tool, bad voice, bad speed)."""


@dataclasses.dataclass(frozen=True)
class Voice:
    """An espeak-ng voice: name (``-v``), optional variant (``+m3``), rate (wpm), pitch (0-99)."""

    name: str = "en-us"
    variant: Optional[str] = None
    rate: int = 170
    pitch: int = 50

    @property
    def espeak_name(self) -> str:
        return self.name if not self.variant else f"{self.name}+{self.variant}"

    def to_dict(self) -> Dict[str, Union[str, int, None]]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TTSJob:
    """One utterance to synthesise into ``out_wav``."""

    utt_id: str
    text: str
    out_wav: Union[str, Path]
    voice: Voice = Voice()
    speed: float = 1.0


# --------------------------------------------------------------------------- tools
def _which(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise TTSError(f"{tool} not found: {_INSTALL_HINT[tool]}")
    return path


def check_tools() -> None:
    """Raise :class:`TTSError` (with the apt-get command) unless espeak-ng and sox are on PATH."""
    _which("espeak-ng")
    _which("sox")


@lru_cache(maxsize=None)
def tool_versions() -> Dict[str, str]:
    """Version strings of espeak-ng and sox (recorded in manifests for reproducibility)."""
    out = subprocess.run(
        [_which("espeak-ng"), "--version"], capture_output=True, text=True, check=False
    ).stdout
    m = re.search(r"text-to-speech:\s*(\S+)", out)
    espeak = m.group(1) if m else out.strip()
    out = subprocess.run(
        [_which("sox"), "--version"], capture_output=True, text=True, check=False
    ).stdout
    m = re.search(r"v(\d[\w.]*)", out)
    sox = m.group(1) if m else out.strip()
    return {"espeak-ng": espeak, "sox": sox}


@lru_cache(maxsize=None)
def _known_voices() -> frozenset:
    """All voice names and variant names espeak-ng accepts (from --voices and --voices=variant)."""
    names = set()
    for arg in ("--voices", "--voices=variant"):
        out = subprocess.run(
            [_which("espeak-ng"), arg], capture_output=True, text=True, check=False
        ).stdout
        for line in out.splitlines()[1:]:
            cols = line.split()
            if len(cols) >= 5:
                names.add(cols[1])  # language code, e.g. en-gb-scotland
                names.add(cols[3])  # voice name, e.g. English_(Scotland)
                names.add(cols[4].split("/")[-1])  # file, e.g. gmw/en-GB-scotland, !v/m3
    return frozenset(n.lower() for n in names)


@lru_cache(maxsize=None)
def language_voices(language: str) -> frozenset:
    """Names (language codes and file names, lower case) of espeak-ng's voices of `language`
    (its code, e.g. en, cs, nl)."""
    out = subprocess.run(
        [_which("espeak-ng"), f"--voices={language}"], capture_output=True, text=True,
        check=False
    ).stdout
    names = set()
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5 and cols[1].lower().startswith(language.lower()):
            names.add(cols[1].lower())
            names.add(cols[4].split("/")[-1].lower())
    return frozenset(names)


def english_voices() -> frozenset:
    """Names (language codes and file names, lower case) of espeak-ng's English voices."""
    return language_voices("en")


def validate_voice(voice: Voice, english: bool = False, language: Optional[str] = None) -> None:
    """Raise :class:`TTSError` if espeak-ng does not know the voice or variant (or, with
    ``english``, the voice is not English; with ``language``, not of that language), or
    rate/pitch are out of range."""
    known = _known_voices()
    if voice.name.lower() not in known:
        raise TTSError(
            f"unknown espeak-ng voice {voice.name!r} (see `espeak-ng --voices=en`; "
            f"supported English voices: {', '.join(ENGLISH_VOICES)})"
        )
    if language is not None and language != "en" and \
            voice.name.lower() not in language_voices(language):
        raise TTSError(f"espeak-ng voice {voice.name!r} does not speak {language!r} "
                       f"(see `espeak-ng --voices={language}`)")
    if (english or language == "en") and voice.name.lower() not in english_voices():
        raise TTSError(
            f"espeak-ng voice {voice.name!r} is not an English voice "
            f"(supported English voices: {', '.join(ENGLISH_VOICES)})"
        )
    if voice.variant and voice.variant.lower() not in known:
        raise TTSError(
            f"unknown espeak-ng voice variant {voice.variant!r} (see `espeak-ng --voices=variant`)"
        )
    if not 80 <= voice.rate <= 450:
        raise TTSError(f"espeak-ng rate {voice.rate} out of range [80, 450] words per minute")
    if not 0 <= voice.pitch <= 99:
        raise TTSError(f"espeak-ng pitch {voice.pitch} out of range [0, 99]")


def validate_speed(speed: float) -> None:
    """Speed must be a finite positive factor (sox tempo accepts roughly 0.1..10)."""
    if not (speed > 0) or speed != speed or speed == float("inf"):
        raise TTSError(f"speed must be > 0, got {speed}")
    if not 0.1 <= speed <= 10:
        raise TTSError(f"speed {speed} out of sox tempo range [0.1, 10]")


def random_voice(
    rng: random.Random,
    voices: Sequence[str] = ENGLISH_VOICES,
    variants: Sequence[Optional[str]] = VARIANTS,
) -> Voice:
    """A random English voice; draws exactly 4 values from ``rng`` (keeps seeding stable)."""
    name = voices[rng.randrange(len(voices))]
    variant = variants[rng.randrange(len(variants))]
    rate = rng.randint(*RATE_RANGE)
    pitch = rng.randint(*PITCH_RANGE)
    return Voice(name=name, variant=variant, rate=rate, pitch=pitch)


# --------------------------------------------------------------------------- synthesis
def wav_duration(path: Union[str, Path]) -> float:
    """Duration in seconds of a PCM wav (stdlib only)."""
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / float(w.getframerate())


def speak(
    text: str,
    out_wav: Union[str, Path],
    voice: Union[str, Voice] = "en-us",
    rate: int = 170,
    pitch: int = 50,
    variant: Optional[str] = None,
    speed: float = 1.0,
    sample_rate: int = SAMPLE_RATE,
    validate: bool = True,
) -> float:
    """Synthesise ``text`` into ``out_wav`` (mono, 16-bit, ``sample_rate`` Hz); return its duration.

    ``voice`` is an espeak-ng voice name (``rate``/``pitch``/``variant`` then apply) or a
    :class:`Voice`. ``speed`` > 1 shortens the audio by that factor, pitch preserved (sox tempo).
    The wav is written to a temp file in the same directory and renamed, so a crash never leaves
    a truncated wav behind.
    """
    if isinstance(voice, str):
        voice = Voice(name=voice, variant=variant, rate=rate, pitch=pitch)
    if not text.strip():
        raise TTSError("cannot speak an empty text")
    validate_speed(speed)
    if validate:
        validate_voice(voice)
    espeak, sox = _which("espeak-ng"), _which("sox")

    out_wav = Path(out_wav)
    out_wav.parent.mkdir(parents=True, exist_ok=True)
    # Text goes through stdin so words can never be parsed as options.
    tts = subprocess.run(
        [espeak, "--stdin", "--stdout", "-v", voice.espeak_name, "-s", str(voice.rate),
         "-p", str(voice.pitch)],
        input=text.encode("utf-8"),
        capture_output=True,
        check=False,
    )
    if tts.returncode != 0 or len(tts.stdout) <= 44:
        msg = tts.stderr.decode("utf-8", "replace").strip().splitlines()
        raise TTSError(
            f"espeak-ng failed for voice {voice.espeak_name!r}: {msg[-1] if msg else 'no audio'}"
        )
    effects: List[str] = ["gain", "-1"]
    if speed != 1.0:
        effects += ["tempo", "-s", repr(float(speed))]  # -s: tuned for speech
    effects += ["rate", str(sample_rate)]
    # sox picks the output format from the temp name's .wav suffix.
    with fileio.atomic_path(out_wav) as tmp:
        conv = subprocess.run(
            [sox, "-R", "-t", "wav", "-", "-r", str(sample_rate), "-c", "1", "-b", "16", str(tmp)]
            + effects,
            input=tts.stdout,
            capture_output=True,
            check=False,
        )
        if conv.returncode != 0:
            msg = conv.stderr.decode("utf-8", "replace").strip().splitlines()
            raise TTSError(f"sox failed for {out_wav}: {msg[-1] if msg else conv.returncode}")
    return wav_duration(out_wav)


def speak_batch(
    jobs: Iterable[TTSJob],
    nj: int = 2,
    log_every: int = 200,
) -> Dict[str, float]:
    """Synthesise many utterances with ``nj`` worker threads; return ``{utt_id: seconds}``.

    Threads suffice: the work happens in espeak-ng/sox subprocesses, the GIL is released while
    waiting on them. Voices and speeds are validated once up front, so a bad value fails before
    any audio is written. Logs progress every ``log_every`` utterances.
    """
    jobs = list(jobs)
    check_tools()
    for v in {j.voice for j in jobs}:
        validate_voice(v)
    for s in {j.speed for j in jobs}:
        validate_speed(s)
    ids = [j.utt_id for j in jobs]
    if len(set(ids)) != len(ids):
        raise TTSError("duplicate utt_id in TTS jobs")

    def run(job: TTSJob) -> float:
        return speak(job.text, job.out_wav, voice=job.voice, speed=job.speed, validate=False)

    durations: Dict[str, float] = {}
    with ThreadPoolExecutor(max_workers=max(1, int(nj))) as pool:
        for i, (job, dur) in enumerate(zip(jobs, pool.map(run, jobs)), start=1):
            durations[job.utt_id] = dur
            if log_every and (i % log_every == 0 or i == len(jobs)):
                logger.info("TTS: %d/%d utterances synthesised", i, len(jobs))
    return durations
