"""Stage 9's memorisation section over runs on hand-made model dirs whose statistics are known
by hand: two modes x two seeds, four canaries, two references, two scored epochs."""
import json
import shutil
from pathlib import Path

import pytest
import yaml

from espnet_pcc.bin import report as report_cli
from espnet_pcc.errors import UserError
from espnet_pcc.study import analysis, raw
from espnet_pcc.study.export import export_study
from espnet_pcc.study.results import TWO_RUNS, over_runs

CANARIES = {"canary-x01-0": 1, "canary-x01-1": 1, "canary-x16-0": 16, "canary-x16-1": 16}
REFS = {"canaryref-0": 0, "canaryref-1": 0}
DECODE, EPOCH_DECODE = "decode_x_valid.acc.ave_3best", "decode_x_{epoch}epoch"
# validation loss at epochs 1, 2 per model
VALID = {"asr_base_seed0": (10.0, 6.0), "asr_base_seed1": (10.0, 5.0),
         "asr_pcc_seed0": (12.0, 8.0), "asr_pcc_seed1": (11.0, 7.0)}


def train_log(losses) -> str:
    return "".join(f"INFO: {e}epoch results: [train] loss=1.0, train_time=1.0, [valid] acc=0.5, "
                   f"loss={v}, time=1 seconds\n" for e, v in enumerate(losses, start=1))


def write_checkpoint(d: Path, exposure_name: str, decode: str, rank, cer):
    (d / exposure_name).mkdir(parents=True)
    (d / exposure_name / "exposure.json").write_text(json.dumps({"canaries": [
        {"id": c, "text": "A", "repeat_count": n, "score": 1.0, "num_tokens": 1, "rank": 1,
         "rank_exposure": rank(i), "extrapolated_exposure": rank(i) + 1}
        for i, (c, n) in enumerate(CANARIES.items())]}))
    (d / exposure_name / "summary.json").write_text(json.dumps({
        "format": "espnet-pcc-exposure/1", "num_references": 2, "rank_exposure_cap": 1.58,
        "chance_rank_exposure": 1.0, "score": "att_nll",
        "repeat_counts": [{"repeat_count": n, "rank_exposure": {"mean": 1.0},
                           "extrapolated_exposure": {"mean": 1.0}} for n in (1, 16)]}))
    acc = d / decode / "canary_accuracy"
    acc.mkdir(parents=True)
    rows = ["utt_id\trepeat_count\tcer\twer\texact\tref\thyp"]
    for i, (u, n) in enumerate({**CANARIES, **REFS}.items()):
        rows.append(f"{u}\t{n}\t{cer(i, n)}\t{cer(i, n)}\t{int(cer(i, n) == 0)}\tA\tA")
    (acc / "utterances.tsv").write_text("\n".join(rows) + "\n")


def make_study(tmp: Path) -> Path:
    exp = tmp / "exp"
    for tag, losses in VALID.items():
        d = exp / tag
        seed = int(tag[-1])
        base = "base" in tag
        d.mkdir(parents=True)
        clip = {"clip": "global", "clip_conf": {"max_norm": 5.0}} if base else \
            {"clip": "per_core", "clip_conf": {"max_norm": 5.0, "num_cores": 4}}
        (d / "config.yaml").write_text(yaml.safe_dump(clip))
        (d / "train.log").write_text(train_log(losses))
        dec = d / DECODE / "test"
        for unit in ("wer", "cer"):
            (dec / f"score_{unit}").mkdir(parents=True)
            (dec / f"score_{unit}" / "result.json").write_text(json.dumps(  # WER 10 + s, 20 + s
                {"Snt": 2, "Wrd": 4, "Corr": 0, "Sub": 0, "Del": 0, "Ins": 0,
                 "Err": (10.0 if base else 20.0) + seed, "S.Err": 0}))
        # final model: base rank exposure 2 + seed; pcc lower by 1 + 0.5 i for canary i
        write_checkpoint(d, "exposure", DECODE,
                         (lambda i, s=seed: 2.0 + s) if base else (lambda i, s=seed: 2.0 + s - (1 + 0.5 * i)),
                         (lambda i, n: 0.1 if n else 0.9) if base else (lambda i, n: 0.3 if n else 0.9))
        # epoch 1: rank 1 everywhere; epoch 2: base 3, pcc 2
        for e, val in ((1, 1.0), (2, 3.0 if base else 2.0)):
            write_checkpoint(d, f"exposure_{e}epoch", EPOCH_DECODE.format(epoch=e),
                             lambda i, v=val: v, lambda i, n: 0.5)
    return exp


def export(exp: Path) -> raw.RawStudy:
    return export_study(exp, list(VALID), [1, 2], DECODE, EPOCH_DECODE, ["test"])


def test_modes_are_compared_over_runs_by_hand(tmp_path: Path):
    m = analysis.compare_modes(export(make_study(tmp_path)), "espnet")
    assert m.reference == "base" and list(m.arms) == ["base", "pcc"] and not m.too_few_runs
    # final models: base runs 2, 3; pcc runs 2 + s - mean(1, 1.5, 2, 2.5) = 0.25, 1.25
    final = m.finals[0].result
    assert (final.mean_a, final.mean_b) == pytest.approx((0.75, 2.5))
    assert final.difference.value == pytest.approx(-1.75)
    assert final.exact and final.p_value == pytest.approx(1 / 3) and final.at_floor
    # L* = 8 (pcc seed 0's last epoch); interpolated: base 2.0, 1.8; pcc 2.0, 1.75
    assert m.level == 8.0
    assert m.at_level[0].result.difference.value == pytest.approx(1.875 - 1.9)


def test_the_papers_baseline_is_the_reference_where_there_is_one(tmp_path: Path):
    """The demo's arms (paper's baseline, PCC, APCC): each is compared with the paper's
    baseline, whatever the order of the raw data."""
    from dataclasses import replace

    study = export(make_study(tmp_path))
    rename = lambda row: replace(row, arm="paperbase") if row.arm == "base" else row  # noqa: E731
    study.runs = sorted((rename(r) for r in study.runs), key=lambda r: r.arm != "pcc")
    study.canaries = [rename(c) for c in study.canaries]
    m = analysis.compare_modes(study, "espnet")
    assert list(m.arms) == ["pcc", "paperbase"] and m.reference == "paperbase"
    assert [c.name for c in m.finals] == ["pcc − paperbase"]


def test_mode_values_are_per_run_with_the_references_as_control(tmp_path: Path):
    m = analysis.compare_modes(export(make_study(tmp_path)), "espnet")
    base = analysis.mode_values(m.arms["base"], m.canaries, ["test"], m.level)
    assert base["WER test %"] == pytest.approx([10.0, 11.0])
    assert base["exposure ×16"] == pytest.approx([2.0, 3.0])
    # canary CER 0.1, references 0.9: -80 points in every run
    assert base["canary − reference CER"] == pytest.approx([-80.0, -80.0])
    assert base["pooled at L*"] == pytest.approx([2.0, 1.8])


def test_report_cli_writes_the_section_the_plot_and_the_raw_data(tmp_path: Path, capsys):
    exp = make_study(tmp_path)
    md, png = tmp_path / "RESULTS.md", tmp_path / "cmp.png"
    report_cli.main(["--expdir", str(exp), "--asr_tags", *VALID, "--decode_tag", DECODE,
                     "--test_sets", "test", "--output_md", str(md), "--output_png", str(png),
                     "--score_epochs", "1", "2", "--canary_accuracy", "true",
                     "--epoch_decode_tag", EPOCH_DECODE])
    text = md.read_text()
    for section in ("### Memorisation over training runs (exploratory)", "### Per model",
                    "|pcc − base|0.75|2.50|-1.75 ", "|≤ 0.334|2 vs 2|final model|",
                    "L* = 8.000"):
        assert section in text, section
    # two runs per arm: the runs' values, not a t-interval over two, and what that means
    assert "|base|2|10.50 (runs 10.00, 11.00)|2.50 (runs 2.00, 3.00)|" in text
    assert "\n" + TWO_RUNS.format(arms="base, pcc") + "\n" in text
    assert (tmp_path / "cmp_study.png").read_bytes()[:4] == b"\x89PNG"
    assert "![exposure over runs](cmp_study.png)" in text
    # the section is rendered from the raw data it wrote: the same from the files alone
    rebuilt = analysis.compare_modes(raw.read_raw(tmp_path / "RESULTS_raw"), "espnet")
    assert rebuilt.finals[0].result == analysis.compare_modes(export(exp), "espnet").finals[0].result
    assert "### Memorisation over training runs" in capsys.readouterr().out


def test_a_cell_over_runs_shows_two_runs_values_and_more_runs_interval():
    assert over_runs([57.9, 65.5]) == "61.70 (runs 57.90, 65.50)"
    assert over_runs([1.0, 2.0, 3.0]) == "2.00 [-0.48, 4.48]"  # 2 ± t(0.975, 2) · 1/√3 · √3
    assert over_runs([4.2]) == "4.20"
    assert over_runs([4.2, float("nan")]) == "n/a"


def test_missing_epoch_output_names_the_stage(tmp_path: Path):
    exp = make_study(tmp_path)
    (exp / "asr_pcc_seed1" / "exposure_2epoch" / "exposure.json").unlink()
    with pytest.raises(UserError, match=r"exposure_2epoch/exposure.json missing \(produced by stage 8"):
        export(exp)


def test_two_configs_ending_alike_are_refused_not_merged(tmp_path: Path):
    exp = make_study(tmp_path)
    (exp / "asr_x_base_seed0").symlink_to(exp / "asr_base_seed0")
    with pytest.raises(raw.RawDataError, match=r"asr_base_seed0 and asr_x_base_seed0 are both arm 'base', seed 0"):
        export_study(exp, [*VALID, "asr_x_base_seed0"], [1, 2], DECODE, EPOCH_DECODE, ["test"])


def add_control_arm(exp: Path, shift: float) -> list:
    """A control arm: copies of the pcc runs with every final-model rank exposure raised by
    ``shift`` (so pcc − control = −shift exactly); returns the model tags, control in the middle."""
    for seed in (0, 1):
        d = exp / f"asr_control_seed{seed}"
        shutil.copytree(exp / f"asr_pcc_seed{seed}", d)
        path = d / "exposure" / "exposure.json"
        doc = json.loads(path.read_text())
        for c in doc["canaries"]:
            c["rank_exposure"] += shift
        path.write_text(json.dumps(doc))
    return ["asr_base_seed0", "asr_base_seed1", "asr_control_seed0", "asr_control_seed1",
            "asr_pcc_seed0", "asr_pcc_seed1"]


def test_a_control_arm_adds_each_clipped_arm_against_it(tmp_path: Path):
    exp = make_study(tmp_path)
    tags = add_control_arm(exp, shift=0.5)
    m = analysis.compare_modes(export_study(exp, tags, [1, 2], DECODE, EPOCH_DECODE, ["test"]),
                               "espnet")
    assert [c.name for c in m.finals] == ["control − base", "pcc − base", "pcc − control"]
    assert [c.name for c in m.at_level] == [c.name for c in m.finals]
    by_name = {c.name: c.result for c in m.finals}
    # control = pcc + 0.5 in every run: 1.25 and 0.75 below the baseline's 2.5
    assert by_name["pcc − control"].difference.value == pytest.approx(-0.5)
    assert by_name["control − base"].difference.value == pytest.approx(1.25 - 2.5)
    # the epochs are the pcc runs' own: no difference at L*
    assert {c.name: c.result.difference.value for c in m.at_level}["pcc − control"] == \
        pytest.approx(0.0)


def test_a_reference_with_one_run_keeps_the_contrasts_against_the_control(tmp_path: Path):
    exp = make_study(tmp_path)
    tags = [t for t in add_control_arm(exp, shift=0.5) if t != "asr_base_seed1"]
    m = analysis.compare_modes(export_study(exp, tags, [1, 2], DECODE, EPOCH_DECODE, ["test"]),
                               "espnet")
    assert m.too_few_runs == ["base"]
    # no contrast against one run, but pcc and control both have two
    assert [c.name for c in m.finals] == ["pcc − control"]
    assert m.finals[0].result.difference.value == pytest.approx(-0.5)


def test_runs_already_below_the_level_at_their_first_scored_epoch_are_flagged(tmp_path: Path):
    from espnet_pcc.study import results

    exp = make_study(tmp_path)
    # base seed 0 at 7.5 after epoch 1: below L* = 8.0 (pcc seed 0's last epoch) from the start
    (exp / "asr_base_seed0" / "train.log").write_text(train_log((7.5, 6.0)))
    m = analysis.compare_modes(export(exp), "espnet")
    assert m.level == 8.0
    assert {arm: analysis.past_level(runs, m.level) for arm, runs in m.arms.items()} == \
        {"base": 1, "pcc": 0}
    text = results.render_modes([m], ["test"], "raw")
    assert "**Not like for like at L\\*:** 1 of the 2 base runs are already below L*" in text
    untouched = analysis.compare_modes(export(make_study(tmp_path / "again")), "espnet")
    assert "Not like for like" not in results.render_modes([untouched], ["test"], "raw")


def test_a_pair_is_also_compared_at_its_own_level_when_a_third_arm_sets_l_star(tmp_path: Path):
    from espnet_pcc.study import results

    exp = make_study(tmp_path)
    for seed in (0, 1):  # a worse-trained third arm: last-epoch loss 15, so L* = 15
        d = exp / f"asr_worse_seed{seed}"
        shutil.copytree(exp / f"asr_pcc_seed{seed}", d)
        (d / "train.log").write_text(train_log((20.0, 15.0)))
    tags = [*VALID, "asr_worse_seed0", "asr_worse_seed1"]
    m = analysis.compare_modes(export_study(exp, tags, [1, 2], DECODE, EPOCH_DECODE, ["test"]),
                               "espnet")
    assert m.level == 15.0
    # pcc − base at their own level 8.0 (pcc seed 0's last epoch), as without the third arm
    (level, pair), = [(lvl, c) for lvl, c in m.at_pair_level if c.name == "pcc − base"]
    alone = analysis.compare_modes(export(make_study(tmp_path / "alone")), "espnet")
    assert level == 8.0 == alone.level
    assert pair.result.difference.value == pytest.approx(alone.at_level[0].result.difference.value)
    assert "at L = 8.000 (the two arms' own level)" in results.render_modes([m], ["test"], "raw")


def test_a_pair_level_row_is_flagged_too_when_its_runs_start_below_it(tmp_path: Path):
    from espnet_pcc.study import results

    exp = make_study(tmp_path)
    for seed in (0, 1):
        d = exp / f"asr_worse_seed{seed}"
        shutil.copytree(exp / f"asr_pcc_seed{seed}", d)
        (d / "train.log").write_text(train_log((20.0, 15.0)))
    tags = [*VALID, "asr_worse_seed0", "asr_worse_seed1"]
    clean = results.render_modes([analysis.compare_modes(
        export_study(exp, tags, [1, 2], DECODE, EPOCH_DECODE, ["test"]), "espnet")], ["test"], "raw")
    assert "|at L = 8.000 (the two arms' own level)|" in clean
    # base seed 0 at 7.5 after epoch 1: below the pcc/base level 8.0 from the start
    (exp / "asr_base_seed0" / "train.log").write_text(train_log((7.5, 6.0)))
    flagged = results.render_modes([analysis.compare_modes(
        export_study(exp, tags, [1, 2], DECODE, EPOCH_DECODE, ["test"]), "espnet")], ["test"], "raw")
    assert ("|at L = 8.000 (the two arms' own level; not like for like either: runs below it "
            "at their first scored epoch)|") in flagged


def test_stage9_reads_the_final_canaries_from_the_exposure_dir_it_is_given(tmp_path: Path):
    """--exposure_name names the final model's exposure for both views: its summary for the
    per-model table and its exposure.json for the runs."""
    exp = make_study(tmp_path)
    for tag in VALID:
        (exp / tag / "exposure").rename(exp / tag / "exposure_renamed")
    md, png = tmp_path / "RESULTS.md", tmp_path / "cmp.png"
    report_cli.main(["--expdir", str(exp), "--asr_tags", *VALID, "--decode_tag", DECODE,
                     "--test_sets", "test", "--output_md", str(md), "--output_png", str(png),
                     "--score_epochs", "1", "2", "--canary_accuracy", "true",
                     "--epoch_decode_tag", EPOCH_DECODE, "--exposure_name", "exposure_renamed"])
    assert "|pcc − base|0.75|2.50|-1.75 " in md.read_text()


def test_a_scored_epoch_missing_from_train_log_is_one_line(tmp_path: Path):
    exp = make_study(tmp_path)
    (exp / "asr_pcc_seed0" / "train.log").write_text(train_log((12.0,)))
    with pytest.raises(raw.RawDataError,
                       match=r"model asr_pcc_seed0: train.log has no validation loss of epoch 2"):
        export(exp)


def test_collect_reads_every_scored_checkpoint_once(tmp_path: Path):
    from espnet_pcc.study.model_dir import collect

    exp = make_study(tmp_path)
    (result,) = collect(exp, ["asr_pcc_seed1"], DECODE, ["test"], per_canary=True,
                        score_epochs=[1, 2], epoch_decode_tag=EPOCH_DECODE, canary_accuracy=True)
    assert [s.epoch for s in result.scored] == [1, 2, None]  # the final model last
    final = result.scored[-1]
    assert final.exposure_dir == exp / "asr_pcc_seed1" / "exposure"
    assert final.num_references == 2
    assert [c["id"] for c in final.canaries] == list(CANARIES)
    assert {u.utt_id for u in final.utterances} == {*CANARIES, *REFS}
    (plain,) = collect(exp, ["asr_pcc_seed1"], DECODE, ["test"])
    assert plain.scored == []  # the utility table alone reads no canary file


def test_collect_with_canaries_needs_an_exposure_dir(tmp_path: Path):
    from espnet_pcc.study.model_dir import collect

    with pytest.raises(ValueError, match="exposure_name is none"):
        collect(make_study(tmp_path), ["asr_pcc_seed1"], DECODE, ["test"], "none",
                per_canary=True)
