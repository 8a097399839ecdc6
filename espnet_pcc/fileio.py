"""Write outputs atomically, and tell whether an output is up to date.

Every output of espnet-pcc (a data dir, a JSON summary, a wav, a plot) is either absent or
complete: it is written under a temporary name in the same directory (so the final rename never
crosses a file system), flushed to disk, and renamed into place. A crash, Ctrl-C or an error
leaves at most a hidden ``.<name>.*.tmp*`` file or dir beside the target, never a truncated
target that a later stage would take as done.

JSON has one style everywhere: 2-space indent, sorted keys (so the same content gives the same
bytes), a trailing newline, and ``Infinity``/``NaN`` for non-finite numbers (exposure can be
+inf; Python's json reads them back).
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, List, Union

PathLike = Union[str, Path]


def dumps_json(obj: Any) -> str:
    """``obj`` as JSON text in the one house style (see the module doc)."""
    return json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n"


def _temp_name(path: Path) -> Path:
    """A fresh hidden name beside ``path`` that keeps its suffix.

    The suffix is kept because tools pick the format from it (sox: ``.wav``, matplotlib:
    ``.png``); the random part lets two writers of the same target not clobber each other.
    """
    return path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories cannot be synced)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems (network, FUSE) refuse fsync on a directory
        pass
    finally:
        os.close(fd)


def move_into_place(src: PathLike, dst: PathLike) -> Path:
    """Flush the complete file ``src`` to disk and rename it to ``dst`` (same file system)."""
    src, dst = Path(src), Path(dst)
    _fsync_file(src)
    os.replace(src, dst)
    _fsync_dir(dst.parent)
    return dst


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temp file path beside ``path`` for a tool to write; on success move it into place.

    For writers that want a file name (sox, matplotlib's ``savefig``). The temp file is created
    empty first, which reserves the name; on an exception it is removed and ``path`` is left as
    it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    # "x": exclusive create, and the file gets the umask's permissions like a plain open().
    open(tmp, "x").close()
    try:
        yield tmp
        move_into_place(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding=encoding) as f:
            f.write(text)
    return Path(path)


def atomic_write_json(path: PathLike, obj: Any) -> Path:
    """Write ``obj`` as JSON (:func:`dumps_json` style) to ``path`` atomically."""
    return atomic_write_text(path, dumps_json(obj))


def _fsync_tree(root: Path) -> None:
    # Files first, then their directories bottom-up, so the entries point at flushed data.
    for dirpath, _, filenames in os.walk(root, topdown=False):
        for name in filenames:
            p = Path(dirpath) / name
            if not p.is_symlink():
                _fsync_file(p)
        _fsync_dir(Path(dirpath))


def _swap_in(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``, replacing an existing ``target`` only at this last step.

    A directory cannot be renamed over a non-empty one, so the old one is first renamed aside
    (into a hidden sibling), then the new one in, then the old one deleted; if the second
    rename fails the old one is put back.
    """
    if not target.exists():
        os.rename(tmp, target)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
    os.rename(target, aside / "d")
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(aside / "d", target)
        shutil.rmtree(aside)
        raise
    shutil.rmtree(aside)


@contextlib.contextmanager
def atomic_dir(path: PathLike) -> Iterator[Path]:
    """Yield a fresh temp dir beside ``path`` to build in; on success it replaces ``path``.

    The temp dir's files are flushed to disk before the rename. On an exception the temp dir is
    removed and ``path`` (if it existed) is untouched: an old ``path`` is replaced only once the
    new one is complete, never deleted first. Whether an existing ``path`` may be replaced at
    all is the caller's decision.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp.", dir=path.parent))
    try:
        yield tmp
        _fsync_tree(tmp)
        _swap_in(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _as_paths(paths: Union[PathLike, Iterable[PathLike]]) -> List[Path]:
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    return [Path(p) for p in paths]


def is_up_to_date(
    outputs: Union[PathLike, Iterable[PathLike]], inputs: Union[PathLike, Iterable[PathLike]]
) -> bool:
    """Whether every output exists and none is older than any input (make's rule).

    A missing input makes the outputs stale (the caller then reruns and reports the missing
    input itself). Equal timestamps count as up to date, as in make: file times have the
    kernel clock's tick (a few ms), so an input read and an output written within one tick
    share a time, and calling that stale would redo every fast step.

    Args:
        outputs: one path or several; files or directories (a directory's own mtime counts).
        inputs: one path or several.

    Returns:
        True if nothing needs to be redone.
    """
    outs, ins = _as_paths(outputs), _as_paths(inputs)
    if not outs:
        raise ValueError("is_up_to_date needs at least one output")
    if not all(p.exists() for p in outs) or not all(p.exists() for p in ins):
        return False
    if not ins:
        return True
    oldest_output = min(p.stat().st_mtime_ns for p in outs)
    newest_input = max(p.stat().st_mtime_ns for p in ins)
    return oldest_output >= newest_input
