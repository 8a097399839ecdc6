"""Canary vocabularies: real English words from wordfreq, or the words of a text file.

Another language (``language`` other than ``en``, for the real-speech recipes: the words of
their training transcripts) keeps words of Unicode letters (its diacritics included) with at
most one inner apostrophe and at least one vowel of the Latin script, accents included; the
blocklist is English only.

Every word is normalised to lower case and kept only if it matches ``[a-z]+('[a-z]+)?`` (letters,
at most one inner apostrophe: "don't" yes, "'tis"/"rock'n'roll" no), is at least ``min_len``
letters long (drops "x", "b", "mr"...: TTS and a listener both struggle with them) and is not in
:data:`BLOCKLIST` (wordfreq's top words include profanity; canaries are spoken aloud and end up in
reports). The result is sorted and de-duplicated, so the same source gives the same list.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Iterable, List, Optional, Union

from espnet_pcc.errors import UserError

WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)?")
#: Any language: Unicode letters, at most one inner apostrophe.
LETTERS_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
#: Latin-script vowels with their accents (a word without one gets spelled out).
VOWELS = "aeiouyáàâäãåéèêëěíìîïóòôöõúùûüůýÿ"

#: Profanity, slurs and sexual terms to keep out of spoken canaries (checked after lower-casing;
#: words containing one of the STEMS are dropped too).
BLOCKLIST = frozenset(
    """
    anal anus arse ass asses asshole bastard bitch bitches bitchy blowjob bollocks boner boob
    boobs booty butt butthole clit cock cocks coon crap cum cunt damn dick dicks dildo dyke fag
    faggot fags fuck fucked fucker fuckers fucking fucks goddamn hell homo horny jerk jizz kike
    milf nigga nigger niggas nude nudes orgasm penis piss pissed porn porno prick pussy queer rape
    raped rapist retard retarded scrotum semen sex sexy shit shits shitty slut sluts spic tit tits
    titty twat vagina wank wanker whore whores
    """.split()
)
STEMS = ("fuck", "shit", "cunt", "nigg", "fagg", "whore", "porn", "bitch", "dick", "cock", "pussy")

VocabSource = Union[str, Path]


class VocabError(UserError):
    """The vocabulary source is missing, unreadable or yields no usable word."""


def clean_words(words: Iterable[str], min_len: int = 3, language: str = "en") -> List[str]:
    """Normalise and filter ``words`` (see module doc); sorted, unique."""
    pattern, vowels = (WORD_RE, "aeiouy") if language == "en" else (LETTERS_RE, VOWELS)
    out = set()
    for w in words:
        w = w.lower()
        if len(w.replace("'", "")) < min_len or not pattern.fullmatch(w):
            continue
        if not any(v in w for v in vowels):  # acronyms like "lgbt" get spelled out
            continue
        if w in BLOCKLIST or any(s in w for s in STEMS):
            continue
        out.add(w)
    return sorted(out)


def wordfreq_words(size: int = 10000, lang: str = "en") -> List[str]:
    """The ``size`` most frequent words of wordfreq's list for ``lang`` (before filtering)."""
    try:
        import wordfreq
    except ImportError as e:  # pragma: no cover - wordfreq is an install requirement
        raise VocabError("wordfreq not installed: install it with `pip install wordfreq`") from e
    return list(wordfreq.top_n_list(lang, size))


def detect_format(lines: List[str]) -> str:
    """'words' if every non-empty line has one token, else 'kaldi_text' (utt-id then words)."""
    return "words" if all(len(l.split()) <= 1 for l in lines) else "kaldi_text"


def file_words(path: VocabSource, fmt: str = "auto") -> List[str]:
    """Raw words of a text file: one word per line (``words``) or a Kaldi ``text`` file."""
    path = Path(path)
    if not path.is_file():
        raise VocabError(f"vocabulary file {path} does not exist (use 'wordfreq' or a text file)")
    lines = [l for l in path.read_text(encoding="utf-8", errors="replace").splitlines() if l.strip()]
    if fmt == "auto":
        fmt = detect_format(lines)
    if fmt == "words":
        return [l.strip() for l in lines]
    if fmt == "kaldi_text":
        return [w for l in lines for w in l.split()[1:]]
    raise VocabError(f"unknown vocabulary format {fmt!r} (auto, words, kaldi_text)")


def load_vocab(
    source: VocabSource = "wordfreq",
    size: Optional[int] = 10000,
    fmt: str = "auto",
    min_len: int = 3,
    language: str = "en",
) -> List[str]:
    """Load and clean a vocabulary. ``source``: ``"wordfreq"`` or a path; ``size`` caps wordfreq's
    list (most frequent first, before filtering). Raises :class:`VocabError` if nothing is left."""
    if str(source) == "wordfreq":
        raw = wordfreq_words(size or 10000, lang=language)
    else:
        raw = file_words(source, fmt)
    vocab = clean_words(raw, min_len=min_len, language=language)
    if not vocab:
        letters = "[a-z']" if language == "en" else "letters"
        raise VocabError(
            f"empty vocabulary from {source}: no word of >= {min_len} {letters}"
        )
    return vocab


def vocab_digest(vocab: List[str]) -> str:
    """sha256 of the newline-joined vocabulary (recorded in the manifest)."""
    return hashlib.sha256("\n".join(vocab).encode("utf-8")).hexdigest()
