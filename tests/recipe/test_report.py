"""Stage 9: train-log parsing, exposure summary reading, the comparison table and plot."""
import json
from pathlib import Path

import pytest
import yaml

from espnet_pcc.bin import report as report_cli
from espnet_pcc.recipe.report import (ReportError, collect, comparison_table, cores_per_step,
                                      parse_train_log)

LOG = """\
[vm] 2026-11-26 08:01:01,399 (trainer:394) INFO: 1epoch results: [train] iter_time=0.042, loss=58.156, grad_norm=112.231, train_time=1.763, time=12.92 seconds, total_count=15, [valid] loss_ctc=130.092, acc=0.050, loss=118.201, time=0.72 seconds, total_count=2
[vm] 2026-11-26 08:01:20,000 (trainer:394) INFO: 2epoch results: [train] loss=40.0, train_time=1.5, time=12 seconds, total_count=30, [valid] acc=0.2, loss=90.5, time=1 seconds, total_count=4
[vm] 2026-11-26 08:02:20,000 (trainer:394) INFO: 2epoch results: [train] loss=40.0, train_time=1.7, time=12 seconds, total_count=30, [valid] acc=0.2, loss=80.5, time=1 seconds, total_count=4
"""


def summary(means):
    return {
        "format": "espnet-pcc-exposure/1", "score": "att_nll", "num_references": 2000,
        "rank_exposure_cap": 10.97, "chance_rank_exposure": 1.44,
        "repeat_counts": [
            {"repeat_count": c, "num_canaries": 10, "rank_exposure": {"mean": m, "std": 0, "max": m},
             "extrapolated_exposure": {"mean": m + 1, "std": 0, "max": m + 1},
             "score": {"mean": 1.0, "std": 0.1}} for c, m in means.items()],
    }


def make_model(exp: Path, tag: str, clip: str, clip_conf: dict, means: dict, wer: float):
    d = exp / tag
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump({"clip": clip, "clip_conf": clip_conf, "grad_clip": 5.0}))
    (d / "train.log").write_text(LOG)
    for s in ("dev", "test"):
        for unit in ("wer", "cer"):
            p = d / "decode_x" / s / f"score_{unit}"
            p.mkdir(parents=True)
            (p / "result.json").write_text(json.dumps(
                {"Snt": 10, "Wrd": 50, "Corr": 80.0, "Sub": 10.0, "Del": 5.0, "Ins": 5.0, "Err": wer, "S.Err": 60.0}))
        # hypotheses and references: what the study report's per-utterance WER reads
        (d / "decode_x" / s / "text").write_text("u1 A B\nu2 C D\n")
        (exp.parent / "data" / s).mkdir(parents=True, exist_ok=True)
        (exp.parent / "data" / s / "text").write_text("u1 A B\nu2 C X\n")
    (d / "exposure").mkdir()
    (d / "exposure" / "summary.json").write_text(json.dumps(summary(means)))
    # per canary (two per repeat count, both at the count's mean): what the study report reads
    (d / "exposure" / "exposure.json").write_text(json.dumps({"canaries": [
        {"id": f"canary-x{c:02d}-{i}", "repeat_count": c, "rank_exposure": m,
         "extrapolated_exposure": m + 1} for c, m in means.items() for i in range(2)]}))


def test_parse_train_log_keeps_epoch_numbers_where_the_log_lacks_epochs(tmp_path: Path):
    # A log with epochs 1 and 3 only (2 was logged elsewhere): epoch 3 stays at index 2.
    (tmp_path / "train.log").write_text(
        "x INFO: 1epoch results: [valid] loss=9.0\nx INFO: 3epoch results: [valid] loss=7.0\n")
    epochs = parse_train_log(tmp_path / "train.log")
    assert [e.get("valid", {}).get("loss") for e in epochs] == [9.0, None, 7.0]


def test_parse_train_log_last_line_of_an_epoch_wins(tmp_path: Path):
    (tmp_path / "train.log").write_text(LOG)
    epochs = parse_train_log(tmp_path / "train.log")
    assert len(epochs) == 2
    assert epochs[0]["train"]["train_time"] == 1.763
    assert epochs[0]["valid"]["loss"] == 118.201
    assert epochs[1]["valid"]["loss"] == 80.5  # the resumed epoch 2


def test_report_end_to_end(tmp_path: Path, capsys):
    exp = tmp_path / "exp"
    make_model(exp, "asr_base", "global", {"max_norm": None, "num_cores": 1}, {1: 1.5, 16: 9.0}, 20.0)
    make_model(exp, "asr_pcc", "per_core", {"max_norm": 1.0, "num_cores": 4}, {1: 1.4, 16: 3.0}, 21.5)
    results = collect(exp, ["asr_base", "asr_pcc"], "decode_x", ["dev", "test"])
    assert results[0].label == "global (C=5.0)"  # max_norm falls back to grad_clip
    assert results[1].label == "per_core (C=1.0, 4 cores)"
    assert results[0].sec_per_step == pytest.approx((1.763 + 1.7) / 2)
    table = comparison_table(results, ["dev", "test"]).splitlines()
    assert table[0] == "|model|clip|WER dev|WER test|exposure x1|exposure x16|s/step|cores/step|epochs|"
    assert table[3] == "|asr_pcc|per_core (C=1.0, 4 cores)|21.5|21.5|1.40|3.00|1.732|4|2|"

    md, png = tmp_path / "RESULTS.md", tmp_path / "plot.png"
    report_cli.main(["--expdir", str(exp), "--asr_tags", "asr_base", "asr_pcc", "--decode_tag",
                     "decode_x", "--test_sets", "dev", "test", "--output_md", str(md),
                     "--output_png", str(png), "--datadir", str(tmp_path / "data")])
    text = md.read_text()
    assert text.startswith("# RESULTS\n## Environments\n")
    assert "|decode_x/test|10|50|80.0|10.0|5.0|5.0|20.0|60.0|" in text
    assert "![exposure and validation loss](plot.png)" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "|asr_base|global (C=5.0)|" in capsys.readouterr().out


def test_missing_inputs_name_the_stage(tmp_path: Path):
    exp = tmp_path / "exp"
    make_model(exp, "asr_base", "global", {}, {1: 1.0}, 10.0)
    (exp / "asr_base" / "exposure" / "summary.json").unlink()
    with pytest.raises(ReportError, match=r"summary.json missing \(produced by stage 8"):
        collect(exp, ["asr_base"], "decode_x", ["dev"])
    with pytest.raises(ReportError, match=r"result.json missing \(produced by stage 7"):
        collect(exp, ["asr_base"], "decode_x", ["other"])
    with pytest.raises(ReportError, match=r"config.yaml missing \(produced by stage 5"):
        collect(exp, ["asr_nope"], "decode_x", ["dev"])


@pytest.mark.parametrize("config, cores", [
    ({}, 1),                                                       # one process, no accumulation
    ({"accum_grad": 4, "clip_conf": {"num_cores": 2}}, 8),
    ({"accum_grad": 4, "ngpu": 4, "dist_world_size": 4, "clip_conf": {"num_cores": 1}}, 16),
    ({"accum_grad": 2, "ngpu": 2, "dist_world_size": 8, "clip_conf": {"num_cores": 3}}, 48),  # 4 nodes
    ({"accum_grad": 4, "ngpu": 4, "multiprocessing_distributed": True, "dist_world_size": None}, 16),
])
def test_cores_per_step_is_ranks_x_accum_grad_x_num_cores(config, cores):
    assert cores_per_step(config) == cores


def test_label_names_noise_speaker_cores_and_the_adaptive_bound():
    from espnet_pcc.recipe.report import ModelResult

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
    from espnet_pcc.recipe.report import ModelResult

    (tmp_path / "train.log").write_text(
        "INFO: 1epoch results: [train] loss=1.0, dp_epsilon=3.5, [valid] loss=2.0\n"
        "INFO: 2epoch results: [train] loss=1.0, dp_epsilon=5.25, [valid] loss=2.0\n")
    result = ModelResult(tag="x", epochs=parse_train_log(tmp_path / "train.log"))
    assert result.dp_epsilon == 5.25
    assert ModelResult(tag="y").dp_epsilon is None


def test_an_unamplified_epsilon_is_read_and_labelled(tmp_path: Path):
    from espnet_pcc.recipe.report import ModelResult, epsilon_cell

    (tmp_path / "train.log").write_text(
        "INFO: 1epoch results: [train] loss=-inf, dp_epsilon_unamplified=7.5, [valid] loss=2.0\n")
    result = ModelResult(tag="x", epochs=parse_train_log(tmp_path / "train.log"))
    assert result.epochs[0]["train"]["loss"] == float("-inf")
    assert result.dp_epsilon == 7.5 and result.dp_epsilon_key == "dp_epsilon_unamplified"
    assert epsilon_cell(result.dp_epsilon, result.dp_epsilon_key) == "7.5 (no amplification)"


def test_comparison_table_has_an_epsilon_column_only_with_noise():
    from espnet_pcc.recipe.report import ModelResult, comparison_table

    plain = ModelResult(tag="a", clip="per_core")
    assert "epsilon" not in comparison_table([plain], [])
    noisy = ModelResult(tag="b", clip="per_core",
                        epochs=[{"train": {"dp_epsilon": 12.345}, "valid": {}}])
    table = comparison_table([plain, noisy], []).splitlines()
    assert table[0].endswith("|epsilon|")
    assert table[2].endswith("|∞ (no noise)|") and table[3].endswith("|12.3|")
