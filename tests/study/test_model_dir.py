"""The one reader of a trained model dir: train.log epochs, cores per step and labels from
config.yaml, the epsilon a run reported."""
from pathlib import Path

import pytest

from espnet_pcc.recipe.report import epsilon_cell
from espnet_pcc.study.model_dir import ModelResult, clip_settings, cores_per_step, parse_train_log
from shared_helpers import TRAIN_LOG


def test_parse_train_log_keeps_epoch_numbers_where_the_log_lacks_epochs(tmp_path: Path):
    # A log with epochs 1 and 3 only (2 was logged elsewhere): epoch 3 stays at index 2.
    (tmp_path / "train.log").write_text(
        "x INFO: 1epoch results: [valid] loss=9.0\nx INFO: 3epoch results: [valid] loss=7.0\n")
    epochs = parse_train_log(tmp_path / "train.log")
    assert [e.get("valid", {}).get("loss") for e in epochs] == [9.0, None, 7.0]




def test_parse_train_log_last_line_of_an_epoch_wins(tmp_path: Path):
    (tmp_path / "train.log").write_text(TRAIN_LOG)
    epochs = parse_train_log(tmp_path / "train.log")
    assert len(epochs) == 2
    assert epochs[0]["train"]["train_time"] == 1.763
    assert epochs[0]["valid"]["loss"] == 118.201
    assert epochs[1]["valid"]["loss"] == 80.5  # the resumed epoch 2




@pytest.mark.parametrize("config, cores", [
    ({}, 1),                                                       # one process, no accumulation
    ({"accum_grad": 4, "clip_conf": {"num_cores": 2}}, 8),
    ({"accum_grad": 4, "ngpu": 4, "dist_world_size": 4, "clip_conf": {"num_cores": 1}}, 16),
    ({"accum_grad": 2, "ngpu": 2, "dist_world_size": 8, "clip_conf": {"num_cores": 3}}, 48),  # 4 nodes
    ({"accum_grad": 4, "ngpu": 4, "multiprocessing_distributed": True, "dist_world_size": None}, 16),
])
def test_cores_per_step_is_ranks_x_accum_grad_x_num_cores(config, cores):
    assert cores_per_step(config) == cores




#: The trainer section of an ESPnet3 model's config.yaml (ESPnet3 writes the whole training
#: config into it): the per-core strategy, 2 devices x accumulation 4.
ESPNET3_TRAINER = {"devices": 2, "num_nodes": 1, "accumulate_grad_batches": 4,
                   "gradient_clip_val": None,
                   "strategy": {"_target_": "espnet_pcc.lightning.per_core_strategy",
                                "clip": "per_core", "clip_conf": {"max_norm": 5.0,
                                                                  "num_cores": 2}}}


@pytest.mark.parametrize("trainer, clip, clip_conf", [
    (ESPNET3_TRAINER, "per_core", {"max_norm": 5.0, "num_cores": 2}),
    # the strategy's global: its C is Lightning's gradient_clip_val
    ({**ESPNET3_TRAINER, "gradient_clip_val": 1.0,
      "strategy": {"clip": "global", "clip_conf": {"num_cores": 1}}},
     "global", {"max_norm": 1.0, "num_cores": 1}),
    # Lightning's own loop: global at gradient_clip_val, or no clipping at all
    ({"strategy": "auto", "gradient_clip_val": 5.0}, "global", {"max_norm": 5.0}),
    ({"strategy": "auto", "gradient_clip_val": None}, "none", {}),
])
def test_an_espnet3_configs_clipping_is_its_lightning_trainers(trainer, clip, clip_conf):
    # espnet2's defaults are in ESPnet3's config.yaml too, and say nothing about the training
    config = {"trainer": trainer, "grad_clip": 5.0, "accum_grad": 1, "clip": "global"}
    assert clip_settings(config) == (clip, clip_conf)


def test_an_espnet2_configs_clipping_is_its_own_keys():
    assert clip_settings({"clip": "per_core", "clip_conf": {"max_norm": 2.0}}) == (
        "per_core", {"max_norm": 2.0})
    assert clip_settings({"grad_clip": 3.0}) == ("global", {"max_norm": 3.0})


def test_cores_per_step_of_an_espnet3_model_is_devices_x_accumulation_x_num_cores():
    assert cores_per_step({"trainer": ESPNET3_TRAINER, "accum_grad": 1}) == 2 * 4 * 2
    assert cores_per_step({"trainer": {"strategy": "auto"}}) == 1


def test_espnet3_train_log_epochs_are_read_and_its_step_time_counts_accumulation(tmp_path: Path):
    """ESPnet3's epoch summaries, one line per section (validation first); a rerun's line wins;
    keys that are not words (lr-Adam) are kept; train_time is per batch, so a step of
    accumulate_grad_batches 4 takes 4 of them."""
    import yaml

    from espnet_pcc.study.model_dir import collect

    d = tmp_path / "exp" / "training_pcc"
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump({"trainer": ESPNET3_TRAINER}))
    (d / "train.log").write_text(
        "[vm] 2026-12-05 11:40:16 UTC (default_callbacks.py:416) INFO:\t[train] "
        "epoch_summary:1epoch:valid: valid_time=0.05, acc=0.015873, loss=53.4162\n"
        "[vm] 2026-12-05 11:40:16 UTC (default_callbacks.py:385) INFO:\t[train] "
        "epoch_summary:1epoch:train: train_time=0.10773, clip=100, loss=78.25, "
        "lr-Adam=0.000107143, num_cores=4\n"
        "x INFO: epoch_summary:2epoch:valid: valid_time=0.05, acc=0.1, loss=40.5\n"
        "x INFO: epoch_summary:2epoch:valid: valid_time=0.05, acc=0.2, loss=30.5\n")
    epochs = parse_train_log(d / "train.log")
    assert epochs[0]["valid"] == {"valid_time": 0.05, "acc": 0.015873, "loss": 53.4162}
    assert epochs[0]["train"]["lr-Adam"] == 0.000107143 and epochs[0]["train"]["clip"] == 100
    assert epochs[1] == {"valid": {"valid_time": 0.05, "acc": 0.2, "loss": 30.5}}
    [result] = collect(tmp_path / "exp", ["training_pcc"], "inference", [], "none",
                       require=False)
    assert (result.clip, result.cores_per_step) == ("per_core", 16)
    assert result.sec_per_step == pytest.approx(4 * 0.10773)


def test_label_names_noise_speaker_cores_and_the_adaptive_bound():
    noisy = ModelResult(tag="x", clip="per_core", clip_conf={
        "max_norm": 5.0, "num_cores": 4, "noise_multiplier": 0.001, "core_by": "position"})
    assert noisy.label == "per_core (C=5.0, 4 cores, σ=0.001)"
    speakers = ModelResult(tag="x", clip="per_core", clip_conf={
        "max_norm": 5.0, "num_cores": 4, "noise_multiplier": 0.0, "core_by": "speaker"})
    assert speakers.label == "per_core (C=5.0, 4 cores, cores by speaker)"
    adaptive = ModelResult(tag="x", clip="per_core", clip_conf={
        "target_quantile": 0.5, "initial_bound": 1.0})
    assert adaptive.label == "per_core (C→q0.5 from 1.0)"




def test_dp_epsilon_is_the_last_epochs(tmp_path: Path):
    (tmp_path / "train.log").write_text(
        "INFO: 1epoch results: [train] loss=1.0, dp_epsilon=3.5, [valid] loss=2.0\n"
        "INFO: 2epoch results: [train] loss=1.0, dp_epsilon=5.25, [valid] loss=2.0\n")
    result = ModelResult(tag="x", epochs=parse_train_log(tmp_path / "train.log"))
    assert result.dp_epsilon == 5.25
    assert ModelResult(tag="y").dp_epsilon is None




def test_an_unamplified_epsilon_is_read_and_labelled(tmp_path: Path):
    (tmp_path / "train.log").write_text(
        "INFO: 1epoch results: [train] loss=-inf, dp_epsilon_unamplified=7.5, [valid] loss=2.0\n")
    result = ModelResult(tag="x", epochs=parse_train_log(tmp_path / "train.log"))
    assert result.epochs[0]["train"]["loss"] == float("-inf")
    assert result.dp_epsilon == 7.5 and result.dp_epsilon_key == "dp_epsilon_unamplified"
    assert epsilon_cell(result.dp_epsilon, result.dp_epsilon_key) == "7.5 (no amplification)"


def test_load_exposure_reads_the_summary_through_its_one_checked_reader(tmp_path: Path):
    import json

    from espnet_pcc.errors import UserError
    from espnet_pcc.measurement.exposure import schema
    from espnet_pcc.study.model_dir import load_exposure

    summary = {"format": schema.SUMMARY_FORMAT, "num_references": 8, "rank_exposure_cap": 3.17,
               "chance_rank_exposure": 1.4, "score": "att_nll", "repeat_counts": [
                   {"repeat_count": 4, "rank_exposure": {"mean": 2.5},
                    "extrapolated_exposure": {"mean": 3.5}}]}
    schema.write_summary_json(tmp_path / "summary.json", summary)
    rank, extrapolated, info = load_exposure(tmp_path / "summary.json")
    assert (rank, extrapolated) == ({4: 2.5}, {4: 3.5})
    assert info == {"num_references": 8, "rank_exposure_cap": 3.17, "chance_rank_exposure": 1.4,
                    "score": "att_nll"}
    (tmp_path / "summary.json").write_text(json.dumps({**summary, "format": "other/9"}))
    with pytest.raises(UserError, match=r"unknown format 'other/9' \(rerun stage 8\)"):
        load_exposure(tmp_path / "summary.json")


def test_reading_model_dirs_loads_no_scoring_stack():
    """The one reader of a model dir reads its files through their layout modules alone: no
    metric (scipy), aligner (jiwer), torch or ESPnet is imported."""
    import subprocess
    import sys

    code = ("import sys, espnet_pcc.study.model_dir; "
            "print(sorted(m for m in ('jiwer', 'scipy', 'torch', 'espnet2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
