"""PCCTrainer.run around espnet2's Trainer.run: checkpoints never half-written (kills at random
moments, one forced inside a checkpoint write), no epoch after a resumed early stop (every clip
mode), and the per-epoch progress lines on stderr."""
import dataclasses
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from asr_train_helpers import assert_resumed_equals_whole, train_args
from espnet2.train.reporter import Reporter
from espnet_pcc.bin import asr_train
from espnet_pcc.espnet2.checkpoints import atomic_torch_saves, load_checkpoint, remove_temp_files
from espnet_pcc.espnet2.progress import PROGRESS_PREFIX, format_progress

# A child asr_train that, when KILL_DURING_SAVE names a file, SIGKILLs itself in the middle of
# writing it: half of the bytes are on disk (under whatever name torch.save was given: the
# target itself with espnet2's plain save, its hidden temp name with PCCTrainer's).
CHILD = r'''
import io, os, signal, sys
import torch
from espnet_pcc.bin import asr_train
target = os.environ.get("KILL_DURING_SAVE")
if target:
    real_save = torch.save
    stem = "." + target[:-len(".pth")] + "."
    def save(obj, f, *args, **kwargs):
        name = os.path.basename(str(f))
        if name == target or name.startswith(stem):
            buffer = io.BytesIO()
            real_save(obj, buffer)
            data = buffer.getvalue()
            with open(f, "wb") as out:
                out.write(data[:len(data) // 2])
                out.flush()
                os.fsync(out.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, f, *args, **kwargs)
    torch.save = save
asr_train.main(sys.argv[1:])
'''

KILL_CONF = {"clip": "per_core", "clip_conf": {"max_norm": 1.0, "num_cores": 2},
             "max_epoch": 4, "batch_size": 2}  # 4 steps per epoch


def _start(args, kill_during_save=None):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if kill_during_save:
        env["KILL_DURING_SAVE"] = kill_during_save
    return subprocess.Popen([sys.executable, "-c", CHILD, *args], env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_after(proc, batches, delay, on_first_batch=lambda: None):
    """SIGKILL `proc` `delay` s after its `batches`-th training batch (log_interval 1: one
    line per batch); its exit status (0 if it finished first)."""
    seen = 0
    try:
        for line in proc.stderr:
            if re.search(r"\d+epoch:train:\d+-\d+batch", line):
                seen += 1
                if seen == 1:
                    on_first_batch()
                if seen == batches:
                    time.sleep(delay)
                    proc.send_signal(signal.SIGKILL)
                    break
    finally:
        proc.stderr.close()
        proc.wait(timeout=300)
    return proc.returncode


def _assert_no_half_written_file(out, when):
    """Every (non-hidden) model file loads completely: nothing half-written to resume from."""
    for path in sorted(out.glob("*.pth")):
        if path.name.startswith(".") or (path.is_symlink() and not path.exists()):
            continue  # temp files; a link to an epoch file that a later epoch removed
        try:
            load_checkpoint(path)
        except Exception as e:  # a truncated file
            pytest.fail(f"{path.name} does not load ({when}): {e}")


def test_kills_at_random_moments_then_resume_match_an_uninterrupted_run(corpus, tmp_path):
    seed = random.SystemRandom().randrange(2 ** 32)
    rng = random.Random(seed)
    why = f"random seed {seed}"
    out = tmp_path / "killed"
    args = train_args(corpus, out, KILL_CONF, extra=["--resume", "true"])

    # 1. Killed in the middle of writing checkpoint.pth (end of epoch 1): the half-written
    #    bytes are in a hidden temp file; no checkpoint.pth claims to be complete.
    assert _start(args, kill_during_save="checkpoint.pth").wait(timeout=300) == -signal.SIGKILL
    assert not (out / "checkpoint.pth").exists(), why
    assert [p.name for p in out.glob(".checkpoint.*.tmp.pth")], why
    _assert_no_half_written_file(out, why)

    # 2. Killed while writing 2epoch.pth, i.e. after checkpoint.pth of epoch 2: the resume
    #    writes 2epoch.pth from the checkpoint (else n-best averaging would miss it).
    assert _start(args, kill_during_save="2epoch.pth").wait(timeout=300) == -signal.SIGKILL
    assert load_checkpoint(out / "checkpoint.pth")["reporter"]["epoch"] == 2
    assert not (out / "2epoch.pth").exists()
    _assert_no_half_written_file(out, why)

    # 3. Two kills at random moments: after a random training batch of the remaining epochs
    #    (the resumed run redoes epoch 3 from the epoch-2 checkpoint), plus up to 1.5 s, which
    #    lands anywhere: training, validation, a checkpoint write.
    restored = []
    for kill in range(2):
        done = load_checkpoint(out / "checkpoint.pth")["reporter"]["epoch"]
        if done == KILL_CONF["max_epoch"]:
            break
        batches = rng.randint(1, 4 * (KILL_CONF["max_epoch"] - done))
        delay = rng.uniform(0.0, 1.5)
        code = _kill_after(_start(args), batches, delay,
                           on_first_batch=lambda: restored.append((out / "2epoch.pth").exists()))
        when = f"{why}: kill {kill + 1} after batch {batches} + {delay:.2f} s"
        assert code in (-signal.SIGKILL, 0), when
        _assert_no_half_written_file(out, when)
    assert restored[0], "2epoch.pth was not restored on resume"

    # 4. The last resume finishes; the result is the uninterrupted run's.
    asr_train.main(args)
    whole = tmp_path / "whole"
    asr_train.main(train_args(corpus, whole, KILL_CONF))
    assert_resumed_equals_whole(whole, out, f"({why})")
    assert not list(out.glob(".*.tmp.pth")), why  # stale temp files are removed
    for link in ("latest.pth", "valid.loss.best.pth", "valid.loss.ave.pth"):
        assert (out / link).resolve().exists(), (link, why)
    assert sorted(p.name for p in out.glob("*epoch.pth")) == \
        sorted(p.name for p in whole.glob("*epoch.pth")), why


# --- resume after early stopping -----------------------------------------------------------

MODES = [
    ("none", {}),
    ("global", {"max_norm": 1.0}),
    ("per_core", {"max_norm": 1.0, "num_cores": 2}),
    ("adaptive_per_core", {"num_cores": 2}),
    ("per_example", {"max_norm": 1.0}),
    ("global_of_cores", {"max_norm": 1.0, "num_cores": 2}),
]
# lr 0: the validation loss never improves, so epoch 1 stays the best and patience 0 stops
# the run after epoch 2.
EARLY_STOP = {"optim_conf": {"lr": 0.0}, "patience": 0, "max_epoch": 5}
PROGRESS = re.compile(re.escape(PROGRESS_PREFIX) + r"(?P<dir>\S+) epoch (?P<epoch>\d+)/5 "
                      r"loss (?P<loss>[\d.]+) valid_loss (?P<valid>[\d.]+) "
                      r"(?P<speed>[\d.]+|-) s/epoch ETA (?P<eta>\S+)(?:; (?P<note>.*))?$")


def _epochs(out):
    return load_checkpoint(out / "checkpoint.pth")["reporter"]["epoch"]


def _progress_lines(text):
    return [line for line in text.splitlines() if line.startswith(PROGRESS_PREFIX)]


@pytest.mark.parametrize("clip,clip_conf", MODES, ids=[m for m, _ in MODES])
def test_resume_after_early_stopping_trains_nothing(corpus, tmp_path, capfd, clip, clip_conf):
    out = tmp_path / clip
    conf = dict(EARLY_STOP, clip=clip, clip_conf=clip_conf)
    asr_train.main(train_args(corpus, out, conf))
    assert _epochs(out) == 2
    first = [PROGRESS.match(line) for line in _progress_lines(capfd.readouterr().err)]
    assert all(first) and [m["epoch"] for m in first] == ["1", "2"]
    assert first[0]["dir"] == str(out) and first[0]["speed"] != "-" and first[0]["note"] is None
    assert first[1]["eta"] == "0s" and first[1]["note"] == "early stop"

    before = (out / "checkpoint.pth").stat().st_mtime_ns
    asr_train.main(train_args(corpus, out, conf, extra=["--resume", "true"]))
    assert _epochs(out) == 2  # espnet2 202511 alone trains epoch 3 here
    assert (out / "checkpoint.pth").stat().st_mtime_ns == before
    assert not (out / "3epoch.pth").exists()
    (line,) = _progress_lines(capfd.readouterr().err)
    m = PROGRESS.match(line)
    assert m and m["epoch"] == "2" and m["speed"] == "-" and m["eta"] == "0s"
    assert m["note"] == "stopped early before: nothing to train"


@pytest.mark.parametrize("release", ["202511", "202611"])
def test_a_resumed_early_stop_is_checked_once(corpus, tmp_path, monkeypatch, release):
    """espnet2 202611's Trainer.run skips the loop of a resumed early-stopped run itself: there
    the options reach it unchanged (its rule runs, ours only reports); on 202511 the loop
    would train epoch N+1 first, so max_epoch becomes N."""
    from packaging.version import Version

    from espnet_pcc.espnet2 import checkpoints

    out = tmp_path / "run"
    conf = dict(EARLY_STOP, clip="per_core", clip_conf={"max_norm": 1.0})
    asr_train.main(train_args(corpus, out, conf))
    reporter = _reporter(out)

    @dataclasses.dataclass
    class Options:
        patience: int = 0
        early_stopping_criterion: tuple = ("valid", "loss", "min")
        max_epoch: int = 5

    notes = []
    monkeypatch.setattr(checkpoints, "espnet_release", lambda: Version(release))
    options = checkpoints.epochs_to_train(reporter, Options(), notes.append)
    assert notes == ["stopped early before: nothing to train"]
    assert options.max_epoch == (5 if release == "202611" else 2)


def test_resume_with_a_larger_patience_continues(corpus, tmp_path):
    """The stop is decided with the resumed run's patience, as in ESPnet's current trainer."""
    out = tmp_path / "per_core"
    conf = dict(EARLY_STOP, clip="per_core", clip_conf={"max_norm": 1.0})
    asr_train.main(train_args(corpus, out, conf))
    assert _epochs(out) == 2
    asr_train.main(train_args(corpus, out, dict(conf, patience=1), extra=["--resume", "true"]))
    assert _epochs(out) == 3


def test_resume_of_a_finished_run_says_so(corpus, tmp_path, capfd):
    out = tmp_path / "global"
    conf = {"clip": "global", "max_epoch": 1}
    asr_train.main(train_args(corpus, out, conf))
    capfd.readouterr()
    asr_train.main(train_args(corpus, out, conf, extra=["--resume", "true"]))
    assert _progress_lines(capfd.readouterr().err) == [
        format_progress(out, _reporter(out), 1, None, 0, "finished before: nothing to train")]


def _reporter(out):
    reporter = Reporter()
    reporter.load_state_dict(load_checkpoint(out / "checkpoint.pth")["reporter"])
    return reporter


# --- the pieces, without training -----------------------------------------------------------

def test_a_failed_save_leaves_the_previous_file(tmp_path, monkeypatch):
    import espnet2.train.trainer as espnet_trainer

    target = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 1}, target)
    saved = []

    def broken_save(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"PK\x03\x04 half")
        raise OSError("disk full")

    with atomic_torch_saves(lambda obj, path: saved.append(path)):
        assert espnet_trainer.torch.nn is torch.nn  # everything else is torch's own
        espnet_trainer.torch.save({"epoch": 2}, target)
        assert saved == [target]
        monkeypatch.setattr(torch, "save", broken_save)
        with pytest.raises(OSError, match="disk full"):
            espnet_trainer.torch.save({"epoch": 3}, target)
        monkeypatch.undo()
    assert espnet_trainer.torch is torch  # restored
    assert torch.load(target) == {"epoch": 2}
    assert saved == [target]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth"]


def test_remove_temp_files_only_removes_temp_files(tmp_path):
    names = [".checkpoint.0123abcd.tmp.pth", ".3epoch.deadbeef.tmp.pth", "checkpoint.pth",
             "3epoch.pth", ".checkpoint.pth", "notes.0123abcd.tmp.pth", ".dist_init_x"]
    for name in names:
        (tmp_path / name).write_text("x")
    remove_temp_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:])


def test_progress_line_format():
    reporter = Reporter()
    for epoch, (loss, valid) in enumerate([(50.0, 60.0), (45.2104, 50.3717)], 1):
        reporter.set_epoch(epoch)
        for phase, value in (("train", loss), ("valid", valid)):
            with reporter.observe(phase) as sub:
                sub.register({"loss": value})
                sub.next()
    line = format_progress("exp/asr_pcc", reporter, 20, 12.34, 209.0)
    assert line == ("[progress] exp/asr_pcc epoch 2/20 loss 45.210 valid_loss 50.372 "
                    "12.3 s/epoch ETA 3m29s")
    assert format_progress("exp/a", reporter, 20, None, 3 * 3600 + 125, "early stop") == (
        "[progress] exp/a epoch 2/20 loss 45.210 valid_loss 50.372 - s/epoch ETA 3h02m; "
        "early stop")
