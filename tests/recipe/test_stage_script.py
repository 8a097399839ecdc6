"""The shared stage script: option errors, missing inputs, stage selection, idempotence, and
the LibriSpeech 100 h recipe's stages 1-4 on a tiny directory in the real layout."""
import json
from pathlib import Path

import pytest
import yaml

from recipe_helpers import make_librispeech, run
from shared_helpers import CONF, EGS2, TEMPLATE

LS100 = EGS2 / "librispeech_100" / "asr1"
CONFIGS = "conf/train_asr_tiny_baseline.yaml conf/train_asr_tiny_pcc.yaml"


def stage_script(tmp: Path, *args: str, corpus: Path = None):
    base = ["./pcc_asr.sh", "--datadir", str(tmp / "data"), "--expdir", str(tmp / "exp"),
            "--asr_configs", CONFIGS, "--inference_config", "conf/decode_asr_tiny.yaml",
            "--train_set", "train", "--train_splits", "train-clean-100",
            "--valid_set", "dev", "--valid_splits", "dev-clean", "--test_splits", "dev-clean",
            "--token_type", "char"]
    if corpus is not None:
        base += ["--corpus_dir", str(corpus)]
    return run(base + list(args), cwd=LS100)


def one_line_error(proc) -> str:
    assert proc.returncode != 0, proc.stdout + proc.stderr
    errors = [l for l in proc.stderr.splitlines() if "error:" in l]
    assert len(errors) == 1, proc.stderr
    return errors[0]


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    return make_librispeech(tmp_path, {"train-clean-100": [19, 26, 32], "dev-clean": [84]})


def test_help_and_bad_options(tmp_path: Path):
    proc = run([str(TEMPLATE / "pcc_asr.sh"), "--help"], cwd=LS100)
    assert proc.returncode == 0 and "--stop_stage" in proc.stdout
    assert "unknown option --stgae" in one_line_error(stage_script(tmp_path, "--stgae", "3"))
    err = one_line_error(stage_script(tmp_path, "--asr_configs", "conf/train_asr_nope.yaml"))
    assert "no such config conf/train_asr_nope.yaml" in err and "conf/train_asr_tiny_pcc.yaml" in err
    assert "--token_type word" in one_line_error(stage_script(tmp_path, "--token_type", "word"))
    assert "--model_jobs 0: must be a positive integer" in one_line_error(
        stage_script(tmp_path, "--model_jobs", "0"))
    assert "--model_jobs 2 needs --ngpu 0 and --gpu_inference false" in one_line_error(
        stage_script(tmp_path, "--model_jobs", "2", "--gpu_inference", "true"))


def test_missing_corpus_and_split(tmp_path: Path, corpus: Path):
    err = one_line_error(stage_script(tmp_path, "--stop_stage", "1", corpus=tmp_path / "nowhere"))
    assert "LibriSpeech directory" in err and "nowhere does not exist" in err
    err = one_line_error(stage_script(tmp_path, "--stop_stage", "1", "--test_splits", "test-other",
                                      corpus=corpus))
    assert "split test-other missing from" in err
    assert not (tmp_path / "data" / "test_other").exists()


def test_missing_inputs_name_the_producing_stage(tmp_path: Path):
    err = one_line_error(stage_script(tmp_path, "--stage", "3", "--stop_stage", "3"))
    assert f"stage 3: training text {tmp_path}/data/train/text missing (produced by stage 1" in err
    err = one_line_error(stage_script(tmp_path, "--stage", "5", "--stop_stage", "5"))
    assert "train_canary/wav.scp missing (produced by stage 2" in err
    err = one_line_error(stage_script(tmp_path, "--stage", "6", "--stop_stage", "6"))
    assert "valid.acc.ave.pth missing (produced by stage 5" in err
    err = one_line_error(stage_script(tmp_path, "--stage", "9", "--stop_stage", "9"))
    assert "result.json missing (produced by stage 7" in err
    assert not (tmp_path / "exp" / "RESULTS.md").exists()


def test_stage_selection_and_idempotence(tmp_path: Path, corpus: Path):
    proc = stage_script(tmp_path, "--stage", "1", "--stop_stage", "1", corpus=corpus)
    assert proc.returncode == 0, proc.stderr
    assert "Stage 1:" in proc.stderr and "Stage 2:" not in proc.stderr
    data = tmp_path / "data"
    assert sorted(p.name for p in data.iterdir()) == ["dev", "dev_clean", "train"]
    assert not (data / "canaries").exists() and not (data / "token_list").exists()
    stamp = {p: p.stat().st_mtime_ns for p in data.glob("*/*")}
    proc = stage_script(tmp_path, "--stage", "1", "--stop_stage", "1", corpus=corpus)
    assert proc.returncode == 0, proc.stderr
    assert {p: p.stat().st_mtime_ns for p in data.glob("*/*")} == stamp  # kept as is
    assert f"{data}/train is up to date: skipped" in proc.stderr
    # A changed corpus file is another input: that set is made again, the others kept.
    trans = next((corpus / "dev-clean").glob("*/*/*.trans.txt"))
    trans.write_text(trans.read_text().replace("THE", "A"))
    proc = stage_script(tmp_path, "--stage", "1", "--stop_stage", "1", corpus=corpus)
    assert proc.returncode == 0, proc.stderr
    assert "A" in (data / "dev" / "text").read_text() and f"{data}/train is up to date: skipped" in proc.stderr
    assert f"{data}/dev is up to date" not in proc.stderr
    stamp = {p: p.stat().st_mtime_ns for p in data.glob("*/*")}
    # --force redoes the stage
    proc = stage_script(tmp_path, "--stage", "1", "--stop_stage", "1", "--force", "true", corpus=corpus)
    assert proc.returncode == 0, proc.stderr
    assert (data / "train" / "text").stat().st_mtime_ns != stamp[data / "train" / "text"]


def test_librispeech_100_recipe_stages_1_to_4(tmp_path: Path, corpus: Path):
    """egs2/librispeech_100/asr1/run.sh itself (speed perturbation, BPE tokens, canaries upper
    case), sized down; LIBRISPEECH as in ESPnet's db.sh (the corpus's parent); the stats jobs
    through a recording Kaldi-style job command (--train_cmd)."""
    jobs = tmp_path / "jobs.txt"
    run_pl = tmp_path / "run.pl"
    run_pl.write_text(f'#!/usr/bin/env bash\necho "$*" >>{jobs}\nwhile [[ "$1" == --* ]]; do shift 2; done\n'
                      'log=$1; shift; mkdir -p "$(dirname "$log")"; "$@" >"$log" 2>&1\n')
    run_pl.chmod(0o755)
    args = ["./run.sh", "--stage", "1", "--stop_stage", "4", "--train_cmd", str(run_pl),
            "--datadir", str(tmp_path / "data"), "--expdir", str(tmp_path / "exp"),
            "--train_splits", "train-clean-100", "--valid_splits", "dev-clean",
            "--test_splits", "dev-clean", "--nbpe", "30", "--nj", "1", "--inference_nj", "1",
            "--canary_opts", "--text_case upper --num_words 3 --repeat_counts 1 2 "
            "--canaries_per_count 1 --num_references 3 --speed 1.6 --seed 0"]
    proc = run(["env", f"LIBRISPEECH={tmp_path}"] + args, cwd=LS100)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data, exp = tmp_path / "data", tmp_path / "exp"
    train = (data / "train_clean_100_sp_canary" / "text").read_text().splitlines()
    # 9 utterances at speeds 0.9, 1.0, 1.1 (ESPnet's ids), then the canaries x1 and x2, each
    # exactly its repeat count times and never perturbed.
    assert len(train) == 3 * 9 + 1 + 2
    assert sum(l.startswith("sp0.9-19-191-") for l in train) == 3 and sum(l.startswith("19-191-") for l in train) == 3
    assert sum(l.startswith("canary-x02-") for l in train) == 2
    assert not any(l.startswith("sp") and "canary" in l for l in train)
    assert (data / "train_clean_100" / "text").read_text().count("\n") == 9  # tokens: the corpus text
    stats_jobs = jobs.read_text().splitlines()
    assert len(stats_jobs) == 1 and stats_jobs[0].startswith(f"--gpu 0 {exp}/asr_stats_raw_bpe_unigram30.tmp/logdir/stats.1.log ")
    assert "--collect_stats true" in stats_jobs[0]
    assert not any("canary" in l for l in (data / "dev" / "text").read_text().splitlines())
    assert (data / "token_list" / "bpe_unigram30" / "bpe.model").is_file()
    tokens = (data / "token_list" / "bpe_unigram30" / "tokens.txt").read_text().split()
    assert tokens[:2] == ["<blank>", "<unk>"] and tokens[-1] == "<sos/eos>" and len(tokens) == 30  # as asr.sh: <unk> <s> </s> replaced
    stats = exp / "asr_stats_raw_bpe_unigram30"
    assert (stats / "train" / "feats_stats.npz").is_file()
    shapes = (stats / "train" / "text_shape.bpe").read_text().splitlines()
    assert len(shapes) == 30 and shapes[0].endswith(",30")
    assert not list(exp.glob("*.tmp")) and not list((data / "token_list").glob("*.tmp"))
    manifest = json.loads((data / "canaries" / "manifest.json").read_text())
    assert manifest["canaries"][0]["text"].isupper()
    # Rerun: every stage finds its outputs complete and skips.
    proc = run(["env", f"LIBRISPEECH={tmp_path}"] + args, cwd=LS100)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "train_clean_100_sp is up to date: skipped" in proc.stderr
    assert "tokens.txt exists: skipped" in proc.stderr
    assert "asr_stats_raw_bpe_unigram30 exists: skipped" in proc.stderr
    # Other speed factors: the perturbed set and the set with canaries are made again; the
    # corpus sets, the canaries and the tokens (corpus text only) are kept.
    proc = run(["env", f"LIBRISPEECH={tmp_path}"] + args + ["--speed_perturb_factors", "1.0 1.1",
                                                             "--stop_stage", "3"], cwd=LS100)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "train_clean_100 is up to date: skipped" in proc.stderr
    assert "train_clean_100_sp is up to date" not in proc.stderr and "canaries is up to date: skipped" in proc.stderr
    assert "train_clean_100_sp_canary is up to date" not in proc.stderr
    assert "tokens.txt exists: skipped" in proc.stderr
    train = (data / "train_clean_100_sp_canary" / "text").read_text().splitlines()
    assert len(train) == 2 * 9 + 1 + 2 and not any(l.startswith("sp0.9-") for l in train)

    # Stage 5 with models side by side (--model_jobs): each failing model prints its own error
    # and the stage stops naming them all.
    bad = []
    for name, max_norm in (("bad_a", -1.0), ("bad_b", 0.0)):
        cfg = yaml.safe_load((CONF / "train_asr_tiny_pcc.yaml").read_text())
        cfg["clip_conf"]["max_norm"] = max_norm
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        bad.append(str(path))
    proc = run(["env", f"LIBRISPEECH={tmp_path}"] + args
               + ["--stage", "5", "--stop_stage", "5", "--ngpu", "0", "--gpu_inference", "false",
                  "--model_jobs", "2", "--asr_configs", " ".join(bad)],
               cwd=LS100)
    assert proc.returncode != 0
    errors = [l for l in proc.stderr.splitlines() if "error:" in l]
    assert len(errors) == 3, proc.stderr[-3000:]
    assert sum("training" in e and "max_norm" in e for e in errors) == 2, errors
    assert "stage 5: failed for asr_bad_a asr_bad_b" in errors[-1]
    assert not (exp / "asr_bad_a" / ".done").exists()


def test_stage_bounds_are_one_line_errors(tmp_path: Path):
    assert "--stage 12: the stages are 1-10" in one_line_error(stage_script(tmp_path, "--stage", "12"))
    assert "--stop_stage 0: the stages are 1-10" in one_line_error(
        stage_script(tmp_path, "--stop_stage", "0"))
    assert "--stop_stage 3 is before --stage 5" in one_line_error(
        stage_script(tmp_path, "--stage", "5", "--stop_stage", "3"))
    assert "--seeds: 'x' is not a non-negative integer" in one_line_error(
        stage_script(tmp_path, "--seeds", "0 x"))
    assert "--score_epochs: '0' is not an epoch number" in one_line_error(
        stage_script(tmp_path, "--score_epochs", "0"))


def test_help_prints_each_options_comment():
    proc = run([str(TEMPLATE / "pcc_asr.sh"), "--help"], cwd=LS100)
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    i = next(k for k, l in enumerate(lines) if l.split()[:1] == ["--seeds"])
    assert "every config trained once per seed" in lines[i]
    assert lines[i + 1].strip() == '(default: "")'
    assert any(l.split()[:1] == ["--fold_length"] for l in lines)


def test_data_stage_needs_no_configs(tmp_path: Path, corpus: Path):
    """Stage 1 alone runs without --asr_configs / --inference_config; stage 4 names them."""
    base = ["./pcc_asr.sh", "--datadir", str(tmp_path / "data"), "--expdir", str(tmp_path / "exp"),
            "--train_splits", "train-clean-100", "--valid_splits", "dev-clean",
            "--test_splits", "dev-clean", "--token_type", "char", "--corpus_dir", str(corpus)]
    proc = run(base + ["--stage", "1", "--stop_stage", "1"], cwd=LS100)
    assert proc.returncode == 0, proc.stderr
    err = one_line_error(run(base + ["--stage", "4", "--stop_stage", "4"], cwd=LS100))
    assert "stage 4: --asr_configs is empty" in err
