"""DDP faults: a rank that dies or hangs makes the job fail within a bounded time."""
import os
import signal
import subprocess
import time

import pytest

from asr_train_helpers import torchrun_asr_train, train_args


def children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


def launch(corpus, out, dist_timeout):
    conf = {"clip": "per_core", "clip_conf": {"max_norm": 1.0}, "max_epoch": 100,
            "batch_size": 2}
    args = train_args(corpus, out, conf, extra=[
        "--dist_backend", "gloo", "--multiprocessing_distributed", "false",
        "--dist_timeout", str(dist_timeout)])
    return subprocess.Popen(torchrun_asr_train(args), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def wait_for_training(proc):
    for line in proc.stderr:
        if "1epoch:train:" in line:  # both ranks are inside the training loop
            return
    pytest.fail("training never started")


@pytest.mark.parametrize("fault", ["kill", "hang"])
def test_a_faulty_rank_fails_the_job_in_bounded_time(corpus, tmp_path, fault):
    proc = launch(corpus, tmp_path / fault, dist_timeout=20)
    try:
        wait_for_training(proc)
        rank1 = children(proc.pid)[-1]
        start = time.monotonic()
        # SIGKILL: a crashed rank; SIGSTOP: a hung one (only the timeout ends the wait).
        os.kill(rank1, signal.SIGKILL if fault == "kill" else signal.SIGSTOP)
        stderr = proc.communicate(timeout=240)[1]
        elapsed = time.monotonic() - start
    finally:
        proc.kill()
        for pid in children(proc.pid) if proc.poll() is None else []:
            os.kill(pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert elapsed < 180, elapsed
    if fault == "hang":
        assert "timed out" in stderr.lower() or "timeout" in stderr.lower(), stderr[-2000:]
