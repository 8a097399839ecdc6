"""Checks that catch bad training data before ESPnet meets it.

- audio: every utterance's audio opens (soundfile) and has at least one sample;
  a corrupt or empty file would otherwise crash a training epoch hours in.
- text: every transcript is covered by the token list (char) or the
  sentencepiece model (bpe); ESPnet would silently train on `<unk>` instead.

Each check raises one `UserError` naming the first bad utterance and how many
more there are.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

import soundfile

from espnet_pcc.errors import UserError
from espnet_pcc.kaldi_dir import KaldiDir

logger = logging.getLogger(__name__)


class DataCheckError(UserError):
    """Bad audio or text in a data dir."""


def _fail(name: str, what: str, bad: List[Tuple[str, str]], hint: str) -> None:
    utt, why = bad[0]
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    raise DataCheckError(f"{name}: utterance {utt}: {why}{more}; {hint}")


def _audio_problem(entry: str) -> Optional[str]:
    """Why the wav.scp entry is unusable, or None. Pipe commands are not run."""
    if entry.rstrip().endswith("|"):
        return None
    path = entry.strip()
    try:
        info = soundfile.info(path)
    except Exception as e:  # soundfile raises RuntimeError/LibsndfileError/OSError
        return f"audio {path} is unreadable ({str(e).splitlines()[0]})"
    if info.frames == 0:
        return f"audio {path} is empty (0 samples)"
    return None


def check_audio(kd: KaldiDir, name: str, nj: int = 4, log_every: int = 20000) -> None:
    """Every utterance's audio opens and is non-empty (headers only: fast)."""
    utts = kd.utt_ids
    bad: List[Tuple[str, str]] = []
    with ThreadPoolExecutor(max_workers=max(1, nj)) as pool:
        for i, (utt, problem) in enumerate(
                zip(utts, pool.map(lambda u: _audio_problem(kd.wav_of(u)), utts)), 1):
            if problem is not None:
                bad.append((utt, problem))
            if i % log_every == 0:
                logger.info(f"{name}: checked audio of {i}/{len(utts)} utterances")
    if bad:
        _fail(name, "audio", bad, "fix or remove it from wav.scp/text/utt2spk and rerun")


def _uncovered_chars(texts: Iterable[Tuple[str, str]], tokens: set) -> List[Tuple[str, str]]:
    bad = []
    for utt, text in texts:
        missing = sorted({("<space>" if c == " " else c) for c in text} - tokens)
        if missing:
            bad.append((utt, f"characters {' '.join(repr(c) for c in missing)} "
                              f"are not in the token list"))
    return bad


def _uncovered_by_bpe(texts: Iterable[Tuple[str, str]], bpemodel: Path) -> List[Tuple[str, str]]:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(bpemodel))
    unk = sp.unk_id()
    bad = []
    for utt, text in texts:
        # Pieces keep the surface text of what maps to <unk>; the id lookup is a table lookup.
        unknown = sorted({p for p in sp.encode(text, out_type=str) if sp.piece_to_id(p) == unk})
        if unknown:
            bad.append((utt, f"{' '.join(repr(p) for p in unknown)} encode to <unk> "
                              f"with {bpemodel}"))
    return bad


def check_text(kd: KaldiDir, name: str, token_list: Path, token_type: str,
               bpemodel: Optional[Path] = None) -> None:
    """Every transcript is expressible without `<unk>`."""
    texts = [(utt, kd.text[utt]) for utt in kd.utt_ids]
    if token_type == "char":
        if token_list is None:
            raise DataCheckError("check_text: token_type char needs a token_list")
        tokens = set(Path(token_list).read_text(encoding="utf-8").split())
        bad = _uncovered_chars(texts, tokens)
    elif token_type == "bpe":
        if bpemodel is None:
            raise DataCheckError("check_text: token_type bpe needs a bpemodel")
        bad = _uncovered_by_bpe(texts, Path(bpemodel))
    else:
        raise DataCheckError(f"check_text: unknown token_type {token_type!r} (char or bpe)")
    if bad:
        _fail(name, "text", bad, "normalise the transcripts (e.g. case) or rebuild the "
                                 "token list from this text")
