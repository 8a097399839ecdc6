"""The stage script's completion rule (nothing stale), its job commands (ESPnet's cmd.sh) and
the training progress on the terminal, with a stand-in for every tool (fake_tools.py): stages
5-10 on hand-made inputs, in seconds.

What is redone when: an unchanged rerun redoes nothing; a changed decoding option redoes the
decoding and scoring only; a model retrained under the same settings (a new model file) redoes
its decodes, exposure and pack; a changed config, training option or training data retrains
(the earlier model is set aside, never resumed under other settings); an interrupted training
of the same settings is resumed in place.
"""
import re
import sys
from pathlib import Path
from typing import List

import pytest

from recipe_helpers import run
from shared_helpers import CONF, EGS2

LS100 = EGS2 / "librispeech_100" / "asr1"
FAKE = Path(__file__).with_name("fake_tools.py")
TAGS = ("asr_a", "asr_b")


def kaldi_dir(d: Path, utts: List[str]) -> None:
    d.mkdir(parents=True)
    (d / "wav.scp").write_text("".join(f"{u} /nowhere/{u}.flac\n" for u in utts))
    (d / "text").write_text("".join(f"{u} HELLO\n" for u in utts))
    (d / "utt2spk").write_text("".join(f"{u} {u}\n" for u in utts))
    (d / "spk2utt").write_text("".join(f"{u} {u}\n" for u in utts))


@pytest.fixture()
def setup(tmp_path: Path):
    """Inputs of stages 5-10 as stages 1-4 leave them, two configs, the fake interpreter."""
    data, exp = tmp_path / "data", tmp_path / "exp"
    kaldi_dir(data / "train_canary", ["u1", "u2", "u3"])
    kaldi_dir(data / "dev", ["d1", "d2"])
    kaldi_dir(data / "dev_clean", ["d1", "d2"])
    kaldi_dir(data / "canaries" / "canaries", ["c1"])
    kaldi_dir(data / "canaries" / "references", ["r1", "r2"])
    (data / "canaries" / "manifest.json").write_text("{}")
    (data / "token_list" / "char").mkdir(parents=True)
    (data / "token_list" / "char" / "tokens.txt").write_text("<blank>\n<unk>\nH\n<sos/eos>\n")
    (exp / "asr_stats_raw_char" / "train").mkdir(parents=True)
    (exp / "asr_stats_raw_char" / "train" / "feats_stats.npz").write_bytes(b"stats")
    for tag in TAGS:
        (tmp_path / f"{tag[4:]}.yaml").write_text((CONF / "train_asr_tiny_pcc.yaml").read_text())
    return tmp_path


def stage_script(tmp: Path, *args: str, fail: str = ""):
    record = tmp / "record.txt"
    record.write_text("")
    cmd = ["env", f"FAKE_RECORD={record}", f"FAKE_FAIL={fail}", "./pcc_asr.sh",
           "--python", f"{sys.executable} {FAKE}",
           "--stage", "5", "--stop_stage", "10", "--datadir", str(tmp / "data"),
           "--expdir", str(tmp / "exp"), "--token_type", "char", "--train_set", "train",
           "--valid_set", "dev", "--test_splits", "dev-clean", "--decode_canaries", "false",
           "--asr_configs", f"{tmp}/a.yaml {tmp}/b.yaml",
           "--inference_config", "conf/decode_asr_tiny.yaml", "--inference_nj", "1", *args]
    proc = run(cmd, cwd=LS100, timeout=300)
    calls = []
    for line in record.read_text().splitlines():
        tag = re.search(r"/(asr_[ab])(/|\s|$)", line)
        calls.append(f"{line.split()[0].rsplit('.', 1)[-1]} {tag.group(1) if tag else '-'}")
    return proc, sorted(calls)


def everything(*tags: str) -> List[str]:
    return sorted([f"{m} {t}" for t in tags
                   for m in ("asr_train", "decode", "score_wer", "score_exposure", "pack")] + ["report -"])


def test_what_is_redone_when(setup: Path):
    tmp, exp = setup, setup / "exp"
    proc, calls = stage_script(tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert calls == everything(*TAGS)
    # The terminal shows each epoch's progress line while train.log gets the whole output.
    for tag in TAGS:
        assert re.search(rf"\) {exp}/{tag} epoch 2/2 loss 1.000 .* ETA 0s$", proc.stderr, re.M), proc.stderr
        assert "2epoch results" in (exp / tag / "train.log").read_text()
    assert (exp / "asr_a" / "pack" / "asr_a_valid.acc.ave.zip").is_file()

    # Unchanged: nothing is made again (the report is always rewritten).
    proc, calls = stage_script(tmp)
    assert proc.returncode == 0 and calls == ["report -"], (calls, proc.stderr[-3000:])
    assert proc.stderr.count("is trained: skipped") == 2 and proc.stderr.count("pack/asr_a_valid.acc.ave.zip: skipped") == 1

    # A decoding option: decoding and scoring again, the models, exposure and packs kept.
    proc, calls = stage_script(tmp, "--inference_args", "--nbest 1")
    assert proc.returncode == 0
    assert calls == sorted([f"{m} {t}" for t in TAGS for m in ("decode", "score_wer")] + ["report -"])

    # The same settings trained again (a new model file): its decodes, exposure and pack are
    # made again; the training key alone would not tell.
    proc, calls = stage_script(tmp, "--inference_args", "--nbest 1", "--stage", "5", "--stop_stage", "5",
                               "--force", "true")
    assert proc.returncode == 0 and calls == ["asr_train asr_a", "asr_train asr_b"]
    proc, calls = stage_script(tmp, "--inference_args", "--nbest 1", "--stage", "6")
    assert proc.returncode == 0
    assert calls == [c for c in everything(*TAGS) if not c.startswith("asr_train")]

    # A changed config (same file name): that model only is retrained, and the earlier model
    # is set aside, not resumed.
    with open(tmp / "a.yaml", "a") as f:
        f.write("patience: 3\n")
    proc, calls = stage_script(tmp, "--inference_args", "--nbest 1")
    assert proc.returncode == 0
    assert calls == everything("asr_a")
    assert "asr_a was made with other settings" in proc.stderr
    assert len(list(exp.glob("asr_a.replaced.*"))) == 1
    # A changed training option, or changed training data: every model.
    proc, calls = stage_script(tmp, "--inference_args", "--nbest 1", "--asr_args", "--max_epoch 3")
    assert proc.returncode == 0 and calls == everything(*TAGS)
    with open(tmp / "data" / "train_canary" / "text", "a") as f:
        f.write("u4 HELLO\n")
    proc, calls = stage_script(tmp, "--inference_args", "--nbest 1", "--asr_args", "--max_epoch 3",
                               "--stop_stage", "5")
    assert proc.returncode == 0 and calls == ["asr_train asr_a", "asr_train asr_b"]


def test_interrupted_training_resumes_in_place(setup: Path):
    tmp, exp = setup, setup / "exp"
    proc, _ = stage_script(tmp, "--stop_stage", "5", fail="espnet_pcc.bin.asr_train")
    assert proc.returncode != 0
    assert "stage 5: training" in proc.stderr and "failing as asked" in proc.stderr
    assert not (exp / "asr_a" / ".done").exists() and (exp / "asr_a" / ".started").exists()
    proc, calls = stage_script(tmp, "--stop_stage", "5")
    assert proc.returncode == 0 and calls == ["asr_train asr_a", "asr_train asr_b"]
    assert "made with other settings" not in proc.stderr and not list(exp.glob("*.replaced.*"))
    log = (exp / "asr_a" / "train.log").read_text()
    assert "failing as asked" in log and "2epoch results" in log  # appended: both attempts


def write_job_command(path: Path, record: Path, kaldi: bool) -> str:
    """A recording job command: Kaldi style (run.pl: CMD [--opt v] LOG COMMAND...) or a prefix."""
    body = f'echo "$*" >>{record}\nwhile [[ "$1" == --* ]]; do shift 2; done\n'  # its own options
    if kaldi:
        body += ('log=$1; shift\nmkdir -p "$(dirname "$log")"\n'
                 'echo "# $*" >"$log"; "$@" >>"$log" 2>&1; rc=$?\necho "# ended (code $rc)" >>"$log"; exit $rc\n')
    else:
        body += 'exec "$@"\n'
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)
    return str(path)


def test_job_commands(setup: Path):
    """--train_cmd (a Kaldi .pl: gets --gpu and the log file) runs training; --decode_cmd (a
    prefix such as srun) runs decoding and exposure scoring; packing and scoring run here."""
    tmp, exp = setup, setup / "exp"
    train_rec, decode_rec = tmp / "train_jobs.txt", tmp / "decode_jobs.txt"
    train_cmd = write_job_command(tmp / "queue.pl", train_rec, kaldi=True)
    decode_cmd = write_job_command(tmp / "srun", decode_rec, kaldi=False)
    proc, calls = stage_script(tmp, "--train_cmd", train_cmd, "--decode_cmd", f"{decode_cmd} --ntasks 1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert calls == everything(*TAGS)
    train_jobs = train_rec.read_text().splitlines()
    assert len(train_jobs) == 2
    for tag in TAGS:
        job = next(j for j in train_jobs if f"--output_dir {exp}/{tag} " in j)
        assert job.startswith(f"--gpu 0 {exp}/{tag}/train.job.log ") and "-m espnet_pcc.bin.asr_train" in job
        # The job's log went into train.log; its progress lines to the terminal as it ran.
        log = (exp / tag / "train.log").read_text()
        assert "2epoch results" in log and "# ended (code 0)" in log
        assert not (exp / tag / "train.job.log").exists()
        assert f"{exp}/{tag} epoch 2/2" in proc.stderr
    decode_jobs = decode_rec.read_text().splitlines()
    assert sorted(j.split()[5] for j in decode_jobs) == sorted(
        ["espnet_pcc.bin.decode"] * 2 + ["espnet_pcc.bin.score_exposure"] * 2)
    assert all(j.startswith("--ntasks 1 ") for j in decode_jobs)
