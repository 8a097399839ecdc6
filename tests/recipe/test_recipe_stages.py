"""The recipes' run.sh around the stage script: the steps of run.sh itself (the corpus, a
study's export and report) run only where their stage is selected, and each demo size hands
pcc_asr.sh its arms, seeds and stage bounds.  run.sh runs from a copy of its recipe directory
with stand-ins for pcc_asr.sh and python3 that record their calls, in milliseconds."""
import os
import shutil
from pathlib import Path
from typing import List, Tuple

import pytest

from recipe_helpers import run
from shared_helpers import EGS2

RECORD_CALLS = '#!/usr/bin/env bash\nprintf "%s %s\\n" "${0##*/}" "$*" >>"$FAKE_RECORD"\n'


def recipe_copy(tmp: Path, recipe: str) -> Path:
    """``tmp/<recipe>``: its run.sh, an empty path.sh, a pcc_asr.sh and (on PATH) a python3
    that only record their command lines."""
    d = tmp / recipe
    d.mkdir(parents=True)
    shutil.copy(EGS2 / recipe / "asr1" / "run.sh", d / "run.sh")
    (d / "path.sh").write_text("")
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in (d / "pcc_asr.sh", bin_dir / "python3"):
        tool.write_text(RECORD_CALLS)
        tool.chmod(0o755)
    return d


def run_recipe(tmp: Path, recipe: str, *args: str) -> Tuple[int, str, List[str]]:
    d = recipe_copy(tmp, recipe) if not (tmp / recipe).exists() else tmp / recipe
    record = tmp / "record.txt"
    record.write_text("")
    proc = run(["env", f"PATH={tmp / 'bin'}{os.pathsep}{os.environ['PATH']}",
                f"FAKE_RECORD={record}", "./run.sh", *args], cwd=d, timeout=60)
    return proc.returncode, proc.stderr, record.read_text().splitlines()


def called(calls: List[str], what: str) -> List[str]:
    """The calls of pcc_asr.sh (``what`` = "pcc_asr.sh") or of a module of ours."""
    prefix = what if what == "pcc_asr.sh" else f"python3 -m espnet_pcc.bin.{what}"
    return [c for c in calls if c.startswith(prefix + " ")]


STUDY_STEPS = ("study_export", "study_colocation", "study_report")


def test_fillets_data_preparation_alone_runs_no_study_step(tmp_path: Path):
    """ESPnet's usual "data prep only" (--stage 1 --stop_stage 1) stops after stage 1: the
    study's export and report belong to stage 9 and would need the trained models."""
    rc, err, calls = run_recipe(tmp_path, "fillets_cs", "--fillets_dir", "/game",
                                "--stage", "1", "--stop_stage", "1")
    assert rc == 0, err
    assert called(calls, "make_fillets_corpus --lang cs --corpus_dir /game")
    [asr] = called(calls, "pcc_asr.sh")
    assert "--stage 1 --stop_stage 1" in asr
    assert not [c for step in STUDY_STEPS for c in called(calls, step)], calls


def test_fillets_stage_9_alone_is_the_reports_without_the_corpus(tmp_path: Path):
    rc, err, calls = run_recipe(tmp_path, "fillets_cs", "--stage", "9")
    assert rc == 0, err
    assert not called(calls, "make_fillets_corpus")
    assert "--stage 9 --stop_stage 9" in called(calls, "pcc_asr.sh")[0]
    assert all(called(calls, step) for step in STUDY_STEPS), calls
    # no corpus here: the notes say so instead of failing
    assert "corpus.json missing: run stage 1" in called(calls, "study_export")[0]


def test_fillets_full_run_and_training_alone(tmp_path: Path):
    rc, err, calls = run_recipe(tmp_path, "fillets_cs")
    assert rc == 0, err
    assert "--stage 1 --stop_stage 9" in called(calls, "pcc_asr.sh")[0]
    assert all(called(calls, step) for step in STUDY_STEPS), calls
    rc, err, calls = run_recipe(tmp_path, "fillets_cs", "--stage", "5", "--stop_stage", "8")
    assert rc == 0, err
    assert not called(calls, "make_fillets_corpus")
    assert not [c for step in STUDY_STEPS for c in called(calls, step)], calls


@pytest.mark.parametrize("size", ["study", "study_sorted", "study3"])
def test_demo_study_sizes_prepare_data_alone(tmp_path: Path, size: str):
    rc, err, calls = run_recipe(tmp_path, "synth_demo", "--demo_size", size,
                                "--stage", "1", "--stop_stage", "1")
    assert rc == 0, err
    assert called(calls, "make_synth_corpus")
    assert "--stage 1 --stop_stage 1" in called(calls, "pcc_asr.sh")[0]
    assert not [c for step in STUDY_STEPS for c in called(calls, step)], calls


def test_a_seed_block_of_the_third_study(tmp_path: Path):
    """--demo_size study3 --seeds 0: the five arms of seed 0 through stage 8 in exp/study3,
    every epoch scored, no canary decoding; stage 9 merges the block into study3/raw and
    reports once every block is in."""
    rc, err, calls = run_recipe(tmp_path, "synth_demo", "--demo_size", "study3", "--seeds", "0")
    assert rc == 0, err
    [asr] = called(calls, "pcc_asr.sh")
    for part in ("--expdir exp/study3", "--seeds 0 ", "--score_epochs 1 2 3 4 5 6",
                 "--decode_canaries false", "--stage 1 --stop_stage 8",
                 "conf/train_asr_shuffled_baseline.yaml conf/train_asr_shuffled_paperbase.yaml "
                 "conf/train_asr_shuffled_control.yaml conf/train_asr_shuffled_pcc.yaml "
                 "conf/train_asr_shuffled_apcc.yaml"):
        assert part in asr, part
    [export] = called(calls, "study_export")
    tags = export.split("--asr_tags ")[1].split(" --")[0].split()
    assert tags == [f"asr_train_asr_shuffled_{arm}_seed0"
                    for arm in ("baseline", "paperbase", "control", "pcc", "apcc")]
    for part in ("--expdir exp/study3", "--canary_accuracy false", "--output_dir study3/raw",
                 "--merge true", "Seed block 0: ./run.sh --demo_size study3 --seeds '0'"):
        assert part in export, part
    [report] = called(calls, "study_report")
    assert "--study third --skip_incomplete true --raw_dir study3/raw" in report
    assert not called(calls, "study_colocation")
    # Stage 9 alone, every seed: the export of all 25 runs, no training.
    rc, err, calls = run_recipe(tmp_path, "synth_demo", "--demo_size", "study3", "--stage", "9")
    assert rc == 0, err
    assert not called(calls, "pcc_asr.sh") and not called(calls, "make_synth_corpus")
    assert len(called(calls, "study_export")[0].split("--asr_tags ")[1].split(" --")[0].split()) \
        == 25


def test_make_demo_trains_the_papers_baseline_pcc_and_apcc(tmp_path: Path):
    rc, err, calls = run_recipe(tmp_path, "synth_demo")
    assert rc == 0, err
    [asr] = called(calls, "pcc_asr.sh")
    for part in ("conf/train_asr_demo_paperbase.yaml conf/train_asr_demo_pcc.yaml "
                 "conf/train_asr_demo_apcc.yaml", "--seeds 0 1", "--decode_canaries false",
                 "--stage 1 --stop_stage 10", "--results_md RESULTS.md"):
        assert part in asr, part
    assert not [c for step in STUDY_STEPS for c in called(calls, step)], calls


@pytest.mark.parametrize("recipe", ["synth_demo", "fillets_cs"])
def test_bad_stage_bounds_are_one_line(tmp_path: Path, recipe: str):
    rc, err, calls = run_recipe(tmp_path, recipe, "--stage", "x")
    assert rc != 0 and "--stage/--stop_stage must be integers, got 'x'" in err
    assert not calls
    # a study size's stage 10 is nothing to run: an error, not a silent success
    extra = ["--demo_size", "study3"] if recipe == "synth_demo" else []
    rc, err, calls = run_recipe(tmp_path, recipe, *extra, "--stage", "10")
    assert rc != 0 and "--stage 10 --stop_stage 9: the stages are 1-10, in order" in err
    assert not calls
