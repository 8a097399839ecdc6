"""Atomic writes and the up-to-date rule (espnet_pcc.fileio)."""
import json
import math
import os
import threading
import time

import pytest

from espnet_pcc import fileio


def names(d):
    return sorted(p.name for p in d.iterdir())


def test_json_style_is_one_and_round_trips_infinity(tmp_path):
    out = fileio.atomic_write_json(tmp_path / "a.json", {"b": 1, "a": [math.inf]})
    assert out.read_text() == '{\n  "a": [\n    Infinity\n  ],\n  "b": 1\n}\n'
    assert json.loads(out.read_text())["a"][0] == math.inf
    assert names(tmp_path) == ["a.json"]  # no temp file left


def test_text_replaces_old_file_and_keeps_it_on_failure(tmp_path):
    p = tmp_path / "sub" / "r.md"
    fileio.atomic_write_text(p, "old\n")  # creates the parent dir
    fileio.atomic_write_text(p, "new\n")
    assert p.read_text() == "new\n"
    with pytest.raises(RuntimeError):
        with fileio.atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert p.read_text() == "new\n" and names(p.parent) == ["r.md"]


def test_file_appears_only_complete(tmp_path):
    """A reader polling the target sees nothing, then the whole text, never a part of it."""
    p = tmp_path / "big.txt"
    text = "x" * 2_000_000
    seen = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            if p.exists():
                seen.append(len(p.read_text()))

    t = threading.Thread(target=watch)
    t.start()
    try:
        with fileio.atomic_path(p) as tmp:
            with open(tmp, "w") as f:
                for i in range(0, len(text), 100_000):
                    f.write(text[i:i + 100_000])
                    f.flush()
                    time.sleep(0.001)
            assert not p.exists()  # still under its temp name
    finally:
        done.set()
        t.join()
    assert p.read_text() == text
    assert all(n == len(text) for n in seen)


def test_temp_file_keeps_the_suffix(tmp_path):
    """Tools pick the format from the suffix (sox: .wav, matplotlib: .png)."""
    with fileio.atomic_path(tmp_path / "x.wav") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".wav" and tmp.name.startswith(".x.")
        tmp.write_bytes(b"RIFF")
    assert (tmp_path / "x.wav").read_bytes() == b"RIFF"


def test_atomic_dir_builds_then_replaces(tmp_path):
    target = tmp_path / "d"
    with fileio.atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b").write_text("2")
        assert not target.exists()  # nothing visible until the end
    assert (target / "sub" / "b").read_text() == "2"
    with fileio.atomic_dir(target) as tmp:
        (tmp / "c").write_text("3")
        assert (target / "a").read_text() == "1"  # the old dir stays until the new one is done
    assert names(target) == ["c"]  # replaced as a whole
    assert names(tmp_path) == ["d"]


def test_atomic_dir_failure_keeps_old_dir_and_leaves_no_temp(tmp_path):
    target = tmp_path / "d"
    target.mkdir()
    (target / "a").write_text("old")
    with pytest.raises(RuntimeError):
        with fileio.atomic_dir(target) as tmp:
            (tmp / "a").write_text("half")
            raise RuntimeError("crash")
    assert (target / "a").read_text() == "old"
    assert names(tmp_path) == ["d"]
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C too
        with fileio.atomic_dir(tmp_path / "new"):
            raise KeyboardInterrupt
    assert names(tmp_path) == ["d"]


def touch(p, t):
    p.write_text(p.name)
    os.utime(p, ns=(t, t))
    return p


def test_is_up_to_date(tmp_path):
    s = 10**9
    a, b = touch(tmp_path / "a", 100 * s), touch(tmp_path / "b", 200 * s)
    out = touch(tmp_path / "out", 300 * s)
    assert fileio.is_up_to_date(out, [a, b])
    assert fileio.is_up_to_date([out], a)  # one path or several
    assert fileio.is_up_to_date(out, [])  # nothing to be older than
    touch(b, 400 * s)  # an input changed after the output was written
    assert not fileio.is_up_to_date(out, [a, b])
    touch(out, 400 * s)  # same time: up to date (make's rule)
    assert fileio.is_up_to_date(out, [a, b])
    assert not fileio.is_up_to_date([out, tmp_path / "missing"], [a])  # an output is missing
    assert not fileio.is_up_to_date(out, [a, tmp_path / "missing"])  # an input is missing
    old = touch(tmp_path / "old", 50 * s)
    assert not fileio.is_up_to_date([out, old], [a])  # the oldest output counts
    with pytest.raises(ValueError):
        fileio.is_up_to_date([], [a])
