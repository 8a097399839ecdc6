"""The cross-seed study report on hand-made model dirs whose statistics are known by hand:
two modes x two seeds, four canaries, two references, two scored epochs."""
import json
from pathlib import Path

import pytest
import yaml

from espnet_pcc.bin import report as report_cli
from espnet_pcc.recipe.report import collect
from espnet_pcc.study import report, stats

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
        {"id": c, "repeat_count": n, "rank_exposure": rank(i), "extrapolated_exposure": rank(i) + 1}
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
    (tmp / "data" / "test").mkdir(parents=True)
    (tmp / "data" / "test" / "text").write_text("u1 A B\nu2 C D\n")
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
            (dec / f"score_{unit}" / "result.json").write_text(json.dumps(
                {"Snt": 2, "Wrd": 4, "Corr": 0, "Sub": 0, "Del": 0, "Ins": 0, "Err": 0, "S.Err": 0}))
        # base: one word error of 4 at seed 0, none at seed 1; pcc: 2 and 1
        wrong = {("base", 0): 1, ("base", 1): 0, ("pcc", 0): 2, ("pcc", 1): 1}[("base" if base else "pcc", seed)]
        hyps = ["u1 A B", "u2 C D"] if wrong == 0 else (["u1 A B", "u2 C X"] if wrong == 1 else ["u1 A X", "u2 C X"])
        (dec / "text").write_text("\n".join(hyps) + "\n")
        # final model: base rank exposure 2 + seed; pcc lower by 1 + 0.5 i for canary i
        write_checkpoint(d, "exposure", DECODE,
                         (lambda i, s=seed: 2.0 + s) if base else (lambda i, s=seed: 2.0 + s - (1 + 0.5 * i)),
                         (lambda i, n: 0.1 if n else 0.9) if base else (lambda i, n: 0.3 if n else 0.9))
        # epoch 1: rank 1 everywhere; epoch 2: base 3, pcc 2
        for e, val in ((1, 1.0), (2, 3.0 if base else 2.0)):
            write_checkpoint(d, f"exposure_{e}epoch", EPOCH_DECODE.format(epoch=e),
                             lambda i, v=val: v, lambda i, n: 0.5)
    return exp


def build(exp: Path) -> report.Study:
    results = collect(exp, list(VALID), DECODE, ["test"])
    return report.build(results, exp, DECODE, {"test": exp.parent / "data" / "test"}, [1, 2],
                        True, EPOCH_DECODE)


def test_split_tag():
    assert report.split_tag("asr_x_seed12") == ("asr_x", 12)
    assert report.split_tag("asr_x") == ("asr_x", None)


def test_modes_group_seeds_and_wer_is_a_t_interval_over_seeds(tmp_path: Path):
    study = build(make_study(tmp_path))
    assert [m.name for m in study.modes] == ["asr_base", "asr_pcc"]
    assert study.modes[0].seeds == [0, 1]
    wer = report.wer_interval(study.modes[0], "test")
    assert wer == stats.seed_interval([25.0, 0.0])  # 1/4 and 0/4 words wrong
    assert wer.value == pytest.approx(12.5)
    # CER: one of 6 characters (A <space> B, C <space> D) wrong at seed 0, none at seed 1
    assert report.wer_interval(study.modes[0], "test", "cer").value == pytest.approx(100 / 12)


def test_paired_exposure_difference_by_hand(tmp_path: Path):
    study = build(make_study(tmp_path))
    rows = {r[1]: r for r in study.paired_rows("rank_exposure")}
    # every canary lower by 1 + 0.5 i: d = -(1, 1.5, 2, 2.5); all negative -> exact p = 2/16
    pooled = rows["all"]
    assert pooled[0] == "pcc" and pooled[2] == "4"
    assert pooled[5].startswith("-1.75 [")
    assert float(pooled[6]) == pytest.approx(0.125)
    assert pooled[7] == f"{-1.75 / 0.6454972:.2f}"  # d_z = mean / sd(ddof=1)
    # per repeat count: x1 has d = -(1, 1.5): both negative -> exact p = 2/4
    assert float(rows["x1"][6]) == pytest.approx(0.5)


def test_equal_utility_level_and_interpolation_by_hand(tmp_path: Path):
    study = build(make_study(tmp_path))
    # best scored-epoch losses 6, 5, 8, 7 -> the level every model reaches is 8
    assert report.equal_utility_level(study.pair_models(study.modes[1]), [1, 2]) == 8.0
    assert report.equal_utility_level(study.modes[0].models, [1, 2]) == 6.0  # base alone
    base0 = study.modes[0].models[0]
    # base seed 0: 10 -> 6, halfway at 8: rank 1 -> 3 gives 2
    assert report.at_level(base0, [1, 2], 8.0, "rank_exposure", ["canary-x01-0"]) == {"canary-x01-0": 2.0}
    levels, text = study.equal_utility()
    assert levels == {"pcc": 8.0}
    # base: (2 + 1.8) / 2 = 1.9; pcc: (2 + 1.75) / 2 = 1.875
    assert "|pcc|8.00|all|4|1.88|1.90|-0.02 [-0.02, -0.02]|0.1250|" in text  # -0.025 each


def test_accuracy_table_has_references_as_control(tmp_path: Path):
    study = build(make_study(tmp_path))
    table = study.accuracy_table().splitlines()
    assert table[0] == "|mode|references CER|CER x1|CER x16|CER all|exact x16|"
    assert table[2].startswith("|base|90.0 [90.0, 90.0]|10.0 [10.0, 10.0]|")


def test_report_cli_writes_study_sections_and_plot(tmp_path: Path, capsys):
    exp = make_study(tmp_path)
    md, png = tmp_path / "RESULTS.md", tmp_path / "cmp.png"
    report_cli.main(["--expdir", str(exp), "--asr_tags", *VALID, "--decode_tag", DECODE,
                     "--test_sets", "test", "--output_md", str(md), "--output_png", str(png),
                     "--datadir", str(tmp_path / "data"), "--score_epochs", "1", "2",
                     "--canary_accuracy", "true", "--epoch_decode_tag", EPOCH_DECODE])
    text = md.read_text()
    for section in ("### Utility", "### Memorisation: exposure of the final model",
                    "### Memorisation: canary transcription", "### Against the baseline (base)",
                    "### Validation loss per epoch", "### At equal utility", "### Per model",
                    "### Privacy-utility, one row per setting"):
        assert section in text, section
    assert (tmp_path / "cmp_study.png").read_bytes()[:4] == b"\x89PNG"
    assert "![study plots](cmp_study.png)" in text
    assert "### Against the baseline" in capsys.readouterr().out


def test_missing_epoch_output_names_the_stage(tmp_path: Path):
    exp = make_study(tmp_path)
    (exp / "asr_pcc_seed1" / "exposure_2epoch" / "exposure.json").unlink()
    with pytest.raises(report.StudyReportError, match=r"exposure_2epoch/exposure.json missing \(produced by stage 8"):
        build(exp)


def test_privacy_table_shows_epsilon_only_when_a_mode_is_noisy(tmp_path: Path):
    exp = make_study(tmp_path)
    assert "epsilon" not in build(exp).privacy_utility_table()
    for seed, eps in ((0, 7.5), (1, 8.25)):  # pcc noisy: the larger epsilon of its seeds
        log = exp / f"asr_pcc_seed{seed}" / "train.log"
        log.write_text(log.read_text().replace("[train] loss=1.0,",
                                                f"[train] loss=1.0, dp_epsilon={eps},"))
    table = build(exp).privacy_utility_table()
    assert "epsilon (delta: clip_conf.delta, default 0.01/N)" in table
    base_row, pcc_row = [line for line in table.splitlines() if line.startswith("|base|") or
                         line.startswith("|pcc|")]
    assert base_row.endswith("|∞ (no noise)|") and pcc_row.endswith("|8.25|")
