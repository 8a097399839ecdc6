"""What ESPnet's dependencies print while espnet2 is imported, kept out of the CLIs' output.

Importing espnet2's ASR task prints lines that concern no run of ours: where the optional
flash-attn kernel is not installed, ``Failed to import Flash Attention, using ESPnet default:
No module named 'flash_attn'`` (on stdout in espnet 202511, stderr in 202611); and in espnet
202511, whose phoneme tokenizers import g2p_en at start-up, g2p_en's attempt to download its
NLTK data, which offline is eight ``[nltk_data] Error loading ...: <urlopen error ...>``
lines.  They came before, or in the middle of, a CLI's one-line error and filled every
train.log.

:func:`hidden` runs an import with the process's standard output and error sent to temporary
files: the file descriptors (what C code and streams bound before the import write to) and
``sys.stdout`` / ``sys.stderr`` (what Python code writes to, whatever they are).  Afterwards
each captured line that matches :data:`KNOWN_NOISE` is left out, and one line on stderr says
what was left out and what it means; every other line (a real warning) is written back to the
stream it was written to.  ``ESPNET_PCC_IMPORT_NOISE=show`` shows everything as printed.
Dependencies' files are not patched.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from typing import Dict, Iterator, List, Sequence, TextIO, Tuple

#: Set to ``show`` to see the import's output as printed.
SHOW_ENV = "ESPNET_PCC_IMPORT_NOISE"


@dataclass(frozen=True)
class Noise:
    """Lines a dependency prints at import that do not concern the run (a match of `pattern`
    at the start of the line), and what they mean, said in the note that replaces them."""

    pattern: str
    meaning: str


#: What is left out; a new kind of noise is one entry.  Only the lines that mean "an optional
#: part is missing": flash-attn installed but failing to load (another error) is shown.
KNOWN_NOISE: Tuple[Noise, ...] = (
    Noise(r"Failed to import Flash Attention, using ESPnet default: No module named "
          r"'flash_attn'",
          "flash-attn is not installed (optional, ESPnet's own attention is used)"),
    Noise(r"\[nltk_data\] ",
          "g2p_en's NLTK data download at import (only g2p_en phoneme tokenizers use it)"),
)


def split(text: str, known: Sequence[Noise] = KNOWN_NOISE) -> Tuple[str, Dict[Noise, int]]:
    """``text`` without the lines of ``known`` noise, and how many lines of each were left
    out."""
    kept: List[str] = []
    counts: Dict[Noise, int] = {}
    for line in text.splitlines(keepends=True):
        noise = next((n for n in known if re.match(n.pattern, line)), None)
        if noise is None:
            kept.append(line)
        else:
            counts[noise] = counts.get(noise, 0) + 1
    return "".join(kept), counts


def note(prog: str, counts: Dict[Noise, int]) -> str:
    """The one line that stands for the lines left out."""
    total = sum(counts.values())
    return (f"{prog}: note: not shown, from importing espnet2: "
            f"{'; '.join(n.meaning for n in counts)}. {SHOW_ENV}=show shows the {total} "
            f"line{'s' * (total != 1)}.")


class _Diverted:
    """A standard stream that writes into a capture file while the import runs, and into the
    stream it replaced afterwards: a dependency may keep a reference (nltk binds
    ``sys.stderr`` as a default argument when it is imported)."""

    def __init__(self, original: TextIO, capture_fd: int):
        self._original = original
        self._capture_fd = capture_fd
        self.diverting = True

    def write(self, text: str) -> int:
        if not self.diverting:
            return self._original.write(text)
        os.write(self._capture_fd, text.encode("utf-8", "replace"))
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if not self.diverting:
            self._original.flush()

    def __getattr__(self, name):
        return getattr(self._original, name)


@contextlib.contextmanager
def hidden(prog: str) -> Iterator[None]:
    """Run the body (an import) with the known noise it prints left out (module docstring);
    ``prog`` names the CLI in the note.  If the body raises, everything it printed is shown
    as printed."""
    streams = (sys.stdout, sys.stderr)
    if os.environ.get(SHOW_ENV) == "show" or None in streams or not _open(1) or not _open(2):
        yield  # asked for, or nowhere to show anything: as printed
        return
    for stream in streams:
        stream.flush()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        captures = (out, err)
        saved = [os.dup(fd) for fd in (1, 2)]
        diverted = [_Diverted(s, c.fileno()) for s, c in zip(streams, captures)]
        try:
            for fd, capture in zip((1, 2), captures):
                os.dup2(capture.fileno(), fd)
            sys.stdout, sys.stderr = diverted
            try:
                yield
            finally:
                for d in diverted:
                    d.diverting = False
                sys.stdout, sys.stderr = streams
                for fd, copy in zip((1, 2), saved):
                    os.dup2(copy, fd)
        except BaseException:
            _replay(captures, streams, prog, filter_noise=False)
            raise
        finally:
            for copy in saved:
                os.close(copy)
        _replay(captures, streams, prog, filter_noise=True)


def _open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _replay(captures, streams: Sequence[TextIO], prog: str, filter_noise: bool) -> None:
    """Write what was captured back to the stream each part was written to, with the noise
    left out and noted where ``filter_noise``."""
    counts: Dict[Noise, int] = {}
    for capture, stream in zip(captures, streams):
        capture.seek(0)
        text = capture.read().decode("utf-8", "replace")
        if filter_noise:
            text, found = split(text)
            for noise, n in found.items():
                counts[noise] = counts.get(noise, 0) + n
        stream.write(text)
        stream.flush()
    if counts:
        print(note(prog, counts), file=streams[1], flush=True)


__all__ = ["KNOWN_NOISE", "Noise", "SHOW_ENV", "hidden", "note", "split"]
