"""Stage 9: the model dirs read (espnet_pcc.study.model_dir), the comparison table, the plots and
the memorisation section over runs."""
import json
from pathlib import Path

import pytest
import yaml

from espnet_pcc.bin import report as report_cli
from espnet_pcc.recipe.report import comparison_table
from espnet_pcc.study.model_dir import ModelDirError, ModelResult, collect
from shared_helpers import TRAIN_LOG



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
    (d / "train.log").write_text(TRAIN_LOG)
    for s in ("dev", "test"):
        for unit in ("wer", "cer"):
            p = d / "decode_x" / s / f"score_{unit}"
            p.mkdir(parents=True)
            (p / "result.json").write_text(json.dumps(
                {"Snt": 10, "Wrd": 50, "Corr": 80.0, "Sub": 10.0, "Del": 5.0, "Ins": 5.0, "Err": wer, "S.Err": 60.0}))
    (d / "exposure").mkdir()
    (d / "exposure" / "summary.json").write_text(json.dumps(summary(means)))
    # per canary (two per repeat count, both at the count's mean): the raw data's rows
    (d / "exposure" / "exposure.json").write_text(json.dumps({"canaries": [
        {"id": f"canary-x{c:02d}-{i}", "text": "A", "repeat_count": c, "score": 1.0,
         "num_tokens": 1, "rank": 1, "rank_exposure": m,
         "extrapolated_exposure": m + 1} for c, m in means.items() for i in range(2)]}))


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
                     "--output_png", str(png)])
    text = md.read_text()
    assert text.startswith("# RESULTS\n## Environments\n")
    assert "|decode_x/test|10|50|80.0|10.0|5.0|5.0|20.0|60.0|" in text
    assert "![exposure and validation loss](plot.png)" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "|asr_base|global (C=5.0)|" in capsys.readouterr().out
    # one run per mode: values over runs, but no contrast (no run-to-run variation)
    assert "### Memorisation over training runs (exploratory)" in text
    assert "|base|1|20.00|20.00|1.50|9.00|5.25|" in text
    assert "No contrast for base, pcc (the reference arm base among them)" in text
    assert (tmp_path / "RESULTS_raw" / "canaries.tsv").is_file()
    assert "Raw per-run, per-canary data: `RESULTS_raw`." in text


def test_missing_inputs_name_the_stage(tmp_path: Path):
    exp = tmp_path / "exp"
    make_model(exp, "asr_base", "global", {}, {1: 1.0}, 10.0)
    (exp / "asr_base" / "exposure" / "summary.json").unlink()
    with pytest.raises(ModelDirError, match=r"summary.json missing \(produced by stage 8"):
        collect(exp, ["asr_base"], "decode_x", ["dev"])
    with pytest.raises(ModelDirError, match=r"result.json missing \(produced by stage 7"):
        collect(exp, ["asr_base"], "decode_x", ["other"])
    with pytest.raises(ModelDirError, match=r"config.yaml missing \(produced by stage 5"):
        collect(exp, ["asr_nope"], "decode_x", ["dev"])


def test_comparison_table_has_an_epsilon_column_only_with_noise():
    plain = ModelResult(tag="a", clip="per_core")
    assert "epsilon" not in comparison_table([plain], [])
    noisy = ModelResult(tag="b", clip="per_core",
                        epochs=[{"train": {"dp_epsilon": 12.345}, "valid": {}}])
    table = comparison_table([plain, noisy], []).splitlines()
    assert table[0].endswith("|epsilon|")
    assert table[2].endswith("|∞ (no noise)|") and table[3].endswith("|12.3|")


def test_the_plot_draws_each_arm_in_one_colour_and_each_seed_in_its_style():
    from matplotlib.colors import to_hex

    from espnet_pcc.recipe.report import comparison_figure

    arms = {"baseline": ("global", {"max_norm": 5.0}), "control": ("none", {"num_cores": 4}),
            "pcc": ("per_core", {"max_norm": 5.0, "num_cores": 4})}
    results = [ModelResult(tag=f"asr_train_asr_demo_{arm}_seed{seed}", clip=clip, clip_conf=conf,
                           exposure={1: 2.0 + seed, 8: 9.0},
                           epochs=[{"valid": {"loss": 40.0 - seed}}, {"valid": {"loss": 30.0}}])
               for arm, (clip, conf) in arms.items() for seed in (0, 1)]
    fig = comparison_figure(results)
    labels = ["baseline: global (C=5.0)", "control: none (4 cores)",
              "pcc: per_core (C=5.0, 4 cores)"]
    for ax in fig.axes:  # one legend entry per arm, in both panels
        assert [t.get_text() for t in ax.get_legend().get_texts()] == labels
        lines = ax.get_lines()
        assert len(lines) == 6
        colours = [to_hex(line.get_color()) for line in lines]
        assert colours[0] == colours[1] and len(set(colours)) == 3  # an arm's runs alike
        assert [line.get_linestyle() for line in lines] == ["-", "--"] * 3  # seeds apart
        assert lines[0].get_marker() != lines[1].get_marker()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["seed 0", "seed 1"]
    import matplotlib.pyplot as plt
    plt.close(fig)
