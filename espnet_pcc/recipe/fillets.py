"""Real human speech: the voice acting of the game *Fish Fillets NG* (GPL-2), from Debian.

Debian's packages ``fillets-ng-data`` (the transcripts: ``script/<level>/dialogs_<lang>.lua``)
and ``fillets-ng-data-<lang>`` (the audio: ``sound/<level>/<lang>/<id>.ogg``, Ogg Vorbis
22.05 kHz mono) hold about two hours of acted dialogue per language, in ``usr/share/games/
fillets-ng`` once extracted (``apt-get download`` and ``dpkg-deb -x``: no install).

A transcript file is a list of ::

    dialogId("<id>", "<font>", "<English gloss>")
    dialogStr("<native text>")

The native text is what is spoken.  The font is the character's (``font_small`` the small
fish, ``font_big`` the big one, a named font such as ``font_parrot`` one character): it is
the speaker.  A plain colour font (``font_cyan``...) is a minor character of one level, so
its speaker is the colour and the level.  Dropped, with a count each: lines without audio,
audio without a line, lines whose text is empty once normalised (sound effects), and lines
spoken by both fish together (``font_both``).

`build_corpus` writes the corpus in LibriSpeech's layout (``<split>/<speaker>/fillets/
<speaker>-fillets-<n>.flac`` + ``.trans.txt``), 16 kHz flac, so the shared stage script prepares
it like every other corpus (`espnet_pcc.recipe.librispeech`), and ``corpus.json`` with its
counts, hours and what was dropped.  The split is by level (`split_levels`): every dialogue,
and its context, lies in one split.
"""
from __future__ import annotations

import json
import logging
import random
import re
import shutil
import subprocess
import unicodedata
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple

import soundfile

from espnet_pcc import fileio
from espnet_pcc.errors import UserError

logger = logging.getLogger(__name__)

#: The Debian packages of each language: the transcripts, and that language's audio.
PACKAGES = {"cs": ("fillets-ng-data", "fillets-ng-data-cs"),
            "nl": ("fillets-ng-data", "fillets-ng-data-nl")}
#: Where the game's data lies in an extracted package.
GAME_DIR = Path("usr/share/games/fillets-ng")
#: Fonts that are a colour, not a character: a different minor character in each level.
COLOUR_FONTS = {"black", "blue", "brown", "cyan", "darkgrey", "green", "grey", "lightgrey",
                "magenta", "orange", "red", "white", "yellow"}
SPLITS = ("train", "dev", "test")
CORPUS_JSON = "corpus.json"
SAMPLE_RATE = 16000

_DIALOG = re.compile(
    r'dialogId\(\s*"((?:[^"\\]|\\.)*)"\s*,\s*(?:"((?:[^"\\]|\\.)*)"|nil)\s*(?:,\s*"(?:[^"\\]|\\.)*"\s*)?\)'
    r'\s*dialogStr\(\s*"((?:[^"\\]|\\.)*)"\s*\)')


class FilletsError(UserError):
    """A missing or unusable Fish Fillets corpus (one line)."""


@dataclass(frozen=True)
class Line:
    """One transcribed line of one level."""

    level: str
    dialog_id: str
    font: str
    text: str  # as written (native language)

    @property
    def speaker(self) -> str:
        return speaker_of(self.font, self.level)


@dataclass(frozen=True)
class Utterance:
    """A line with its audio, kept for the corpus."""

    level: str
    dialog_id: str
    speaker: str
    text: str  # normalised
    audio: Path


def _unescape(s: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": " ", "t": " "}.get(m.group(1), m.group(1)), s)


def parse_dialogs(source: str, level: str) -> List[Line]:
    """The (id, font, native text) of every dialogId/dialogStr pair of one dialogs_<lang>.lua."""
    return [Line(level, _unescape(m.group(1)), _unescape(m.group(2) or ""),
                 _unescape(m.group(3))) for m in _DIALOG.finditer(source)]


def speaker_of(font: str, level: str) -> str:
    """The speaker of a line, from its font: the character's name (``font_small`` -> small);
    a colour font is a minor character of its level (``cyan_<level>``); no font: unknown_<level>."""
    name = font[len("font_"):] if font.startswith("font_") else font
    name = re.sub(r"[^0-9A-Za-z]+", "", name).lower()
    if not name:
        return f"unknown_{_level_token(level)}"
    if name in COLOUR_FONTS:
        return f"{name}_{_level_token(level)}"
    return name


def _level_token(level: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "", level).lower()


def normalize_text(text: str) -> str:
    """Upper case, NFC, the language's letters (diacritics kept), digits and word-internal
    apostrophes; every other character a word break; single spaces."""
    text = unicodedata.normalize("NFC", text).replace("’", "'").upper()
    kept = "".join(c if c.isalnum() or c == "'" else " " for c in text)
    words = [w.strip("'") for w in kept.split()]
    return " ".join(w for w in words if w)


def find_game_dir(corpus_dir: Path) -> Path:
    """The game's data dir (holding script/ and sound/) inside `corpus_dir`: the dir itself, or
    an extracted package root (usr/share/games/fillets-ng under it)."""
    corpus_dir = Path(corpus_dir)
    for candidate in (corpus_dir, corpus_dir / GAME_DIR):
        if (candidate / "script").is_dir() and (candidate / "sound").is_dir():
            return candidate
    raise FilletsError(f"--corpus_dir {corpus_dir}: no Fish Fillets data (script/ and sound/, "
                       f"or {GAME_DIR}/ of the extracted packages) in it")


def download(download_dir: Path, lang: str) -> Path:
    """`apt-get download` the language's packages into `download_dir` and extract them with
    `dpkg-deb -x` (no install); returns the extracted root.  Kept when already extracted."""
    packages = PACKAGES[lang]
    download_dir = Path(download_dir)
    root = download_dir / "extracted"
    done = download_dir / f".extracted_{lang}"
    if done.is_file():
        return root
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise FilletsError(f"{tool} not found: download the Debian packages "
                               f"{' '.join(packages)} by hand, extract them with 'dpkg-deb -x "
                               "PKG.deb DIR' and pass DIR as --corpus_dir")
    download_dir.mkdir(parents=True, exist_ok=True)
    for package in packages:
        if not list(download_dir.glob(f"{package}_*.deb")):
            logger.info("apt-get download %s", package)
            result = subprocess.run(["apt-get", "download", package], cwd=download_dir,
                                    capture_output=True, text=True)
            if result.returncode != 0:
                last = (result.stderr.strip().splitlines() or ["(no message)"])[-1]
                raise FilletsError(f"apt-get download {package} failed ({last}); run "
                                   "'apt-get update', or download the package by hand and pass "
                                   "its extracted copy as --corpus_dir")
        deb = sorted(download_dir.glob(f"{package}_*.deb"))[-1]
        result = subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], capture_output=True,
                                text=True)
        if result.returncode != 0:
            raise FilletsError(f"dpkg-deb -x {deb} failed: {result.stderr.strip()[-200:]}")
    done.write_text(" ".join(packages) + "\n", encoding="utf-8")
    return root


def collect(game_dir: Path, lang: str) -> Tuple[List[Utterance], Dict[str, int]]:
    """Every usable utterance of `lang`, and the count of each kind of dropped line."""
    game_dir = Path(game_dir)
    dropped: Counter = Counter()
    utterances: List[Utterance] = []
    scripts = sorted(game_dir.glob(f"script/*/dialogs_{lang}.lua"))
    if not scripts:
        raise FilletsError(f"{game_dir}/script has no dialogs_{lang}.lua: install or extract "
                           f"{PACKAGES.get(lang, ('fillets-ng-data',))[0]}")
    with_audio = 0
    for script in scripts:
        level = script.parent.name
        audio_dir = game_dir / "sound" / level / lang
        audio = {p.stem: p for p in audio_dir.glob("*.ogg")} if audio_dir.is_dir() else {}
        with_audio += len(audio)
        seen = set()
        for line in parse_dialogs(script.read_text(encoding="utf-8"), level):
            if line.dialog_id in seen:
                dropped["duplicate id"] += 1
                continue
            seen.add(line.dialog_id)
            text = normalize_text(line.text)
            if not text:
                dropped["no text (sound effect)"] += 1
            elif line.dialog_id not in audio:
                dropped["no audio"] += 1
            elif line.font == "font_both":
                dropped["two speakers (font_both)"] += 1
            else:
                utterances.append(Utterance(level, line.dialog_id, line.speaker, text,
                                            audio[line.dialog_id]))
        dropped["audio without a line"] += len(set(audio) - seen)
    if not with_audio:
        raise FilletsError(f"{game_dir}/sound has no */{lang}/*.ogg: install or extract "
                           f"{PACKAGES.get(lang, ('', 'fillets-ng-data-' + lang))[1]}")
    return utterances, {k: v for k, v in sorted(dropped.items()) if v}


def split_levels(utterances: Sequence[Utterance], dev_share: float = 0.1,
                 test_share: float = 0.1, seed: int = 0) -> Dict[str, str]:
    """level -> train | dev | test: the levels in a seeded random order, the first ones to
    test until it holds `test_share` of the utterances, then to dev likewise, the rest to train.
    A level is never in two splits."""
    per_level = Counter(u.level for u in utterances)
    levels = sorted(per_level)
    random.Random(seed).shuffle(levels)
    total, split_of = sum(per_level.values()), {}
    counts = {"test": 0, "dev": 0}
    for level in levels:
        if counts["test"] < test_share * total:
            split = "test"
        elif counts["dev"] < dev_share * total:
            split = "dev"
        else:
            split = "train"
        split_of[level] = split
        if split in counts:
            counts[split] += per_level[level]
    return split_of


def _convert(source: Path, target: Path) -> float:
    """ogg -> 16 kHz mono 16-bit flac (sox); returns the duration in seconds."""
    result = subprocess.run(["sox", str(source), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16",
                             str(target)], capture_output=True, text=True)
    if result.returncode != 0:
        raise FilletsError(f"sox could not convert {source}: {result.stderr.strip()[-200:]}")
    return soundfile.info(str(target)).duration


def build_corpus(game_dir: Path, lang: str, output_dir: Path, nj: int = 2, seed: int = 0,
                 dev_share: float = 0.1, test_share: float = 0.1) -> Dict:
    """Writes the corpus (module docstring) to `output_dir` atomically; returns corpus.json's
    content.  An `output_dir` whose corpus.json says it was made the same way is kept."""
    if shutil.which("sox") is None:
        raise FilletsError("sox not found: install it (Debian: apt-get install sox "
                           "libsox-fmt-all) to convert the game's ogg files")
    game_dir, output_dir = Path(game_dir), Path(output_dir)
    made_from = {"game_dir": str(game_dir.resolve()), "lang": lang, "seed": seed,
                 "dev_share": dev_share, "test_share": test_share}
    existing = output_dir / CORPUS_JSON
    if existing.is_file():
        summary = json.loads(existing.read_text(encoding="utf-8"))
        if summary.get("made_from") == made_from:
            logger.info("%s is up to date: kept", output_dir)
            return summary
        raise FilletsError(f"{output_dir} holds a corpus made otherwise ({existing}); remove it "
                           "or choose another --output_dir")
    utterances, dropped = collect(game_dir, lang)
    split_of = split_levels(utterances, dev_share, test_share, seed)
    with fileio.atomic_dir(output_dir) as tmp:
        jobs, trans = [], defaultdict(list)
        number: Counter = Counter()
        for u in sorted(utterances, key=lambda u: (u.speaker, u.level, u.dialog_id)):
            split = split_of[u.level]
            utt = f"{u.speaker}-fillets-{number[(split, u.speaker)]:04d}"
            number[(split, u.speaker)] += 1
            chapter = tmp / split / u.speaker / "fillets"
            chapter.mkdir(parents=True, exist_ok=True)
            jobs.append((u, split, utt, chapter / f"{utt}.flac"))
            trans[chapter / f"{u.speaker}-fillets.trans.txt"].append(f"{utt} {u.text}")
        with ThreadPoolExecutor(max(1, nj)) as pool:
            durations = list(pool.map(lambda job: _convert(job[0].audio, job[3]), jobs))
        for path, lines in trans.items():
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        index = ["utt_id\tsplit\tlevel\tdialog_id\tspeaker\tseconds\ttext"]
        splits: Dict[str, Dict] = {s: {"utterances": 0, "hours": 0.0, "speakers": set(),
                                       "levels": set(), "words": 0} for s in SPLITS}
        for (u, split, utt, _), seconds in zip(jobs, durations):
            index.append(f"{utt}\t{split}\t{u.level}\t{u.dialog_id}\t{u.speaker}\t"
                         f"{seconds:.3f}\t{u.text}")
            s = splits[split]
            s["utterances"] += 1
            s["hours"] += seconds / 3600
            s["speakers"].add(u.speaker)
            s["levels"].add(u.level)
            s["words"] += len(u.text.split())
        (tmp / "utterances.tsv").write_text("\n".join(index) + "\n", encoding="utf-8")
        summary = {
            "made_from": made_from,
            "splits": {name: {"utterances": s["utterances"], "hours": round(s["hours"], 3),
                              "speakers": len(s["speakers"]), "levels": len(s["levels"]),
                              "words": s["words"]} for name, s in splits.items()},
            "dropped": dropped,
            "speakers": dict(Counter(u.speaker for u in utterances).most_common()),
        }
        (tmp / CORPUS_JSON).write_text(fileio.dumps_json(summary), encoding="utf-8")
    return summary


def describe(summary: Mapping) -> str:
    """Counts and hours per split, and what was dropped, in a few lines."""
    lines = []
    for name in SPLITS:
        s = summary["splits"][name]
        lines.append(f"{name}: {s['utterances']} utterances, {s['hours']:.2f} h, {s['words']} "
                     f"words, {s['speakers']} speakers, {s['levels']} levels")
    dropped = ", ".join(f"{k}: {v}" for k, v in summary["dropped"].items()) or "nothing"
    lines.append(f"dropped: {dropped}")
    return "\n".join(lines)
