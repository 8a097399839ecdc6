"""The second study's pipeline: model dirs -> raw data -> the pre-registered analysis ->
RESULTS.md, on a small simulated study whose answer is known."""
import json
import math

import numpy as np
import pytest

from espnet_pcc.study import analysis, raw, stats
from espnet_pcc.study.raw import FINAL, CanaryScore, RawStudy, RunEpoch

CANARIES = [f"canary-x{c}-{i}" for c in (1, 4) for i in range(6)]
EPOCHS = 4


def simulated(effect=0.0, seeds=range(5), sampler="shuffled", seed=0,
              scored=range(1, EPOCHS + 1)) -> RawStudy:
    """3 arms; exposure falls with the validation loss, PCC lower by `effect` bits; the
    checkpoints of the epochs `scored`."""
    rng = np.random.default_rng(seed)
    runs, rows = [], []
    canary_effect = {c: rng.normal(0, 0.5) for c in CANARIES}
    for arm in analysis.ARMS:
        shift = -effect if arm == "pcc" else 0.0
        for s in seeds:
            losses = [40.0 - 5 * e + rng.normal(0, 0.5) for e in range(1, EPOCHS + 1)]
            run_effect = rng.normal(0, 0.2)
            for e, loss in [(str(e), losses[e - 1]) for e in scored] + [(FINAL, 0)]:
                epoch_level = 1.0 + (EPOCHS if e == FINAL else int(e)) * 0.5
                runs.append(RunEpoch(arm, sampler, s, f"asr_train_asr_{sampler}_{arm}_seed{s}", e,
                                     math.nan if e == FINAL else loss, 0.5, 1000,
                                     {"test": (60.0, 30.0)} if e == FINAL else {}))
                for c in CANARIES:
                    x = epoch_level + canary_effect[c] + run_effect + shift + rng.normal(0, 0.3)
                    rows.append(CanaryScore(arm, sampler, s, e, c, int(c.split("-x")[1][0]),
                                            2.0, 10, float(x), float(x + 1), 0.4))
    return RawStudy(runs=runs, canaries=rows, test_sets=["test"], made_by="test")


def test_raw_data_round_trips_exactly(tmp_path):
    study = simulated()
    raw.write_raw(tmp_path, study)
    back = raw.read_raw(tmp_path)
    # repr: the final rows hold NaN, which is not equal to itself
    assert repr(back.runs) == repr(study.runs) and back.canaries == study.canaries
    assert back.test_sets == ["test"] and back.made_by == "test"
    header = (tmp_path / raw.RUNS_TSV).read_text().splitlines()[0].split("\t")
    assert header[-2:] == ["wer_test", "cer_test"]


def test_raw_data_errors_are_one_line(tmp_path):
    with pytest.raises(raw.RawDataError, match="meta.json missing"):
        raw.read_raw(tmp_path)
    raw.write_raw(tmp_path, simulated(seeds=[0]))
    meta = json.loads((tmp_path / raw.META_JSON).read_text())
    (tmp_path / raw.META_JSON).write_text(json.dumps(dict(meta, format="other/9")))
    with pytest.raises(raw.RawDataError, match="format 'other/9'"):
        raw.read_raw(tmp_path)


def test_every_other_epoch_scored_reads_at_those_epochs():
    study = simulated(scored=[2, 4])
    a = analysis.analyse(study, "shuffled", aa_trials=50)
    run = a.arms["pcc"][0]
    assert len(run.losses) == 2 and len(run.epochs["rank_exposure"][CANARIES[0]]) == 2
    assert a.level == max(r.losses[-1] for runs in a.arms.values() for r in runs)


def test_runs_scored_at_other_epochs_are_one_line_error():
    study = simulated(seeds=[0, 1])
    dropped = lambda r: r.arm == "pcc" and r.seed == 1 and r.epoch == "3"  # noqa: E731
    study.runs = [r for r in study.runs if not dropped(r)]
    study.canaries = [c for c in study.canaries if not dropped(c)]
    with pytest.raises(raw.RawDataError,
                       match=r"run pcc seed 1: scored epochs \[1, 2, 4\], but run .* has "
                             r"\[1, 2, 3, 4\]"):
        analysis.analyse(study, "shuffled", aa_trials=50)


def test_the_level_is_the_worst_last_epoch_loss():
    study = simulated()
    result = analysis.analyse(study, aa_trials=50)
    last = [r.valid_loss for r in study.runs if r.epoch == str(EPOCHS)]
    assert result.level == max(last)


def test_a_known_effect_is_found_and_no_effect_is_not():
    found = analysis.analyse(simulated(effect=1.5), aa_trials=50)
    assert found.primary.arm_a == "pcc" and found.primary.arm_b == "control"
    assert found.primary.result.p_value == pytest.approx(2 / 252)  # at the floor: separated
    assert found.primary.result.difference.high < 0
    assert found.primary.result.difference.value == pytest.approx(-1.5, abs=0.4)
    null = analysis.analyse(simulated(effect=0.0, seed=1), aa_trials=50)
    assert null.primary.result.p_value > 0.05
    assert null.primary.result.difference.low < 0 < null.primary.result.difference.high
    # the A/A check on the real runs: every arm's 5 runs split 10 ways, at the same level
    assert sorted(null.splits) == sorted(analysis.ARMS)
    pcc = analysis.at_level(null.arms["pcc"], "rank_exposure", null.level, CANARIES)
    assert null.splits["pcc"] == stats.split_check(pcc)
    assert null.splits["pcc"].splits == 10 and null.splits["pcc"].runs_rejected == 0


def test_primary_value_is_the_interpolated_pooled_exposure_by_hand():
    study = simulated(seeds=[0, 1])
    result = analysis.analyse(study, aa_trials=10)
    run = result.arms["pcc"][0]
    by_hand = np.mean([stats.interpolate_at(run.losses, run.epochs["rank_exposure"][c],
                                            result.level) for c in CANARIES])
    ya = analysis.at_level(result.arms["pcc"], "rank_exposure", result.level, CANARIES)
    assert ya.mean(axis=1)[0] == pytest.approx(by_hand)
    assert result.primary.result.mean_a == pytest.approx(ya.mean())


def test_equal_epoch_contrasts_read_each_scored_epoch_by_hand():
    result = analysis.analyse(simulated(effect=1.5, scored=[2, 4]), aa_trials=10)
    assert [epoch for epoch, _ in result.by_epoch] == [2, 4]
    for i, (_, contrast) in enumerate(result.by_epoch):
        pcc = [np.mean([r.epochs["rank_exposure"][c][i] for c in CANARIES])
               for r in result.arms["pcc"]]
        assert (contrast.arm_a, contrast.arm_b) == analysis.PRIMARY
        assert contrast.result.mean_a == pytest.approx(np.mean(pcc))
        assert contrast.result.difference.value == pytest.approx(-1.5, abs=0.4)
    null = analysis.analyse(simulated(effect=0.0, seed=1), aa_trials=10)
    assert all(c.result.difference.low < 0 < c.result.difference.high
               for _, c in null.by_epoch)


def test_secondaries_are_holm_adjusted():
    result = analysis.analyse(simulated(effect=0.5), aa_trials=10)
    raw_p = [c.result.p_value for c in result.secondary]
    assert [c.adjusted_p for c in result.secondary] == pytest.approx(stats.holm(raw_p))
    assert [(c.arm_a, c.arm_b, c.measure) for c in result.secondary] == list(analysis.SECONDARY)


def test_report_rebuilds_from_the_raw_data_alone(tmp_path, capsys):
    from espnet_pcc.bin import study_report

    study = simulated(effect=1.5)
    sorted_runs = simulated(sampler="espnet", seeds=range(3), seed=5)
    study.runs += sorted_runs.runs
    study.canaries += sorted_runs.canaries
    raw.write_raw(tmp_path / "raw", study)
    raw.write_colocation(tmp_path / "raw", 4, {
        "espnet": {"pairs": 10, "same_batch": 0.7, "same_core": 0.2},
        "shuffled": {"pairs": 60, "same_batch": 0.01, "same_core": 0.002}})
    args = ["--raw_dir", str(tmp_path / "raw"), "--output_md", str(tmp_path / "RESULTS.md"),
            "--output_png", str(tmp_path / "plot.png")]
    study_report.main(args)
    md = (tmp_path / "RESULTS.md").read_text()
    assert "## Primary endpoint" in md and "p (Holm)" in md
    assert "pcc is lower than control in rank exposure" in md
    assert "≤ 0.008" in md  # the floor of 252 relabellings, not a made-up precision
    assert "The same analysis on espnet batches (exploratory)" in md
    assert "python -m espnet_pcc.bin.study_report --raw_dir" in md
    assert "|espnet|10|70.0 %|20.0 %|" in md
    assert "(10 splits per arm, 30 in all;" in md  # the A/A on the runs: 5 shuffled, not 3 sorted
    assert (tmp_path / "plot.png").stat().st_size > 0
    first = md
    study_report.main(args)  # deterministic
    assert (tmp_path / "RESULTS.md").read_text() == first
    assert "pcc is lower than control" in capsys.readouterr().out


def test_report_without_the_primary_arms_is_one_line(tmp_path, capsys):
    from espnet_pcc.bin import study_report

    raw.write_raw(tmp_path / "raw", simulated(sampler="espnet", seeds=range(2)))
    with pytest.raises(SystemExit) as e:
        study_report.main(["--raw_dir", str(tmp_path / "raw"), "--output_md",
                           str(tmp_path / "R.md"), "--output_png", str(tmp_path / "p.png")])
    assert e.value.code == 2
    assert "no shuffled-batch runs" in capsys.readouterr().err
    assert not (tmp_path / "R.md").exists()


def _model_dir(root, tag, sampler, losses, exposures, cer):
    """A model dir as stages 5-8 leave it (what study_export reads)."""
    d = root / tag
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(f"batch_sampler: {sampler}\n")
    (d / "train.log").write_text("".join(
        f"x INFO: {e}epoch results: [train] loss=1.0, [valid] loss={v}, acc=0.5\n"
        for e, v in enumerate(losses, 1)))
    checkpoints = [(f"exposure_{e}epoch", f"decode_x_{e}epoch") for e in range(1, len(losses) + 1)]
    for (exp_dir, dec), x in zip(checkpoints + [("exposure", "decode_x_final")], exposures):
        (d / exp_dir).mkdir()
        (d / exp_dir / "exposure.json").write_text(json.dumps({"canaries": [
            {"id": "c1", "text": "A", "num_tokens": 1, "repeat_count": 4, "score": 1.5, "rank": 3,
             "rank_exposure": x,
             "extrapolated_exposure": x + 1}]}))
        (d / exp_dir / "summary.json").write_text(json.dumps({
            "format": "espnet-pcc-exposure/1", "num_references": 1000,
            "repeat_counts": [{"repeat_count": 4, "rank_exposure": {"mean": x},
                               "extrapolated_exposure": {"mean": x + 1}}]}))
        acc = d / dec / "canary_accuracy"
        acc.mkdir(parents=True)
        (acc / "utterances.tsv").write_text(
            "utt_id\trepeat_count\tcer\twer\texact\tref\thyp\n"
            f"c1\t4\t{cer}\t0\t0\tA\tA\nr1\t0\t0.5\t0\t0\tB\tB\nr2\t0\t0.7\t0\t0\tC\tC\n")
    for unit, value in (("wer", 55.0), ("cer", 22.0)):
        p = d / "decode_x_final" / "test" / f"score_{unit}"
        p.mkdir(parents=True)
        (p / "result.json").write_text(json.dumps({"Err": value}))


def test_export_reads_the_model_dirs(tmp_path):
    from espnet_pcc.bin import study_export

    _model_dir(tmp_path / "exp", "asr_train_asr_shuffled_pcc_seed3", "shuffled", [30.0, 20.0],
               [1.0, 2.0, 2.5], 0.25)
    out = tmp_path / "raw"
    study_export.main(["--expdir", str(tmp_path / "exp"), "--asr_tags",
                       "asr_train_asr_shuffled_pcc_seed3", "--score_epochs", "1", "2",
                       "--decode_tag", "decode_x_final", "--epoch_decode_tag",
                       "decode_x_{epoch}epoch", "--test_sets", "test", "--output_dir", str(out),
                       "--notes", "First export."])
    study = raw.read_raw(out)
    assert [(r.arm, r.seed, r.epoch, r.valid_loss) for r in study.runs][:2] == [
        ("pcc", 3, "1", 30.0), ("pcc", 3, "2", 20.0)]
    final = study.runs[-1]
    assert final.epoch == FINAL and final.errors == {"test": (55.0, 22.0)}
    assert final.reference_cer == pytest.approx(0.6)
    assert [(c.epoch, c.rank_exposure, c.cer) for c in study.canaries] == [
        ("1", 1.0, 0.25), ("2", 2.0, 0.25), (FINAL, 2.5, 0.25)]
    assert "study_export" in study.made_by and study.notes == "First export."
    # A merged export keeps the other sampler's runs and adds its paragraph to the notes.
    _model_dir(tmp_path / "exp", "asr_train_asr_study_pcc_seed3", "espnet", [31.0, 21.0],
               [1.0, 2.0, 2.5], 0.25)
    study_export.main(["--expdir", str(tmp_path / "exp"), "--asr_tags",
                       "asr_train_asr_study_pcc_seed3", "--score_epochs", "1", "2",
                       "--decode_tag", "decode_x_final", "--epoch_decode_tag",
                       "decode_x_{epoch}epoch", "--test_sets", "test", "--output_dir", str(out),
                       "--merge", "true", "--notes", "Second export."])
    merged = raw.read_raw(out)
    assert sorted({r.sampler for r in merged.runs}) == ["espnet", "shuffled"]
    assert merged.notes == "First export. Second export."


def test_merge_adds_a_seed_block_and_replaces_the_same_runs(tmp_path):
    """A study run in seed blocks: each block's export merged into the raw data keeps the
    earlier blocks; a block exported again replaces its own runs, not another's."""
    first = simulated(seeds=[0])
    second = simulated(seeds=[1], seed=4)
    merged = raw.merge(first, second, tmp_path)
    assert sorted({(r.arm, r.seed) for r in merged.runs}) == \
        sorted((arm, s) for arm in analysis.ARMS for s in (0, 1))
    assert len(merged.canaries) == len(first.canaries) + len(second.canaries)
    again = raw.merge(merged, simulated(seeds=[1], seed=9), tmp_path)
    assert len(again.runs) == len(merged.runs)
    assert [c for c in again.canaries if c.seed == 0] == [c for c in first.canaries]
    assert [c for c in again.canaries if c.seed == 1] == simulated(seeds=[1], seed=9).canaries


def test_merge_replaces_a_samplers_runs_and_refuses_other_test_sets(tmp_path):
    old = simulated(sampler="espnet", seeds=range(2))
    old.made_by, old.notes = "first", "First."
    new = simulated(sampler="shuffled", seeds=range(2))
    new.made_by, new.notes = "second", "Second."
    merged = raw.merge(old, new, tmp_path)
    assert merged.runs == old.runs + new.runs
    assert merged.canaries == old.canaries + new.canaries
    assert (merged.made_by, merged.notes) == ("first\nsecond", "First. Second.")
    again = raw.merge(merged, simulated(sampler="shuffled", seeds=range(3)), tmp_path)
    assert {r.seed for r in again.runs if r.sampler == "shuffled"} == {0, 1, 2}
    new.test_sets = ["other"]
    with pytest.raises(raw.RawDataError, match="test sets"):
        raw.merge(old, new, tmp_path)


def test_export_without_canary_transcription_leaves_the_cer_nan(tmp_path):
    """pcc_asr.sh --decode_canaries false (the third study): no canary_accuracy to read, the
    CER columns NaN; without --canary_accuracy false the missing files are a one-line error."""
    import shutil

    from espnet_pcc.bin import study_export

    tag = "asr_train_asr_shuffled_apcc_seed2"
    _model_dir(tmp_path / "exp", tag, "shuffled", [30.0, 20.0], [1.0, 2.0, 2.5], 0.25)
    for acc in (tmp_path / "exp" / tag).glob("decode_x_*/canary_accuracy"):
        shutil.rmtree(acc)
    args = ["--expdir", str(tmp_path / "exp"), "--asr_tags", tag, "--score_epochs", "1", "2",
            "--decode_tag", "decode_x_final", "--epoch_decode_tag", "decode_x_{epoch}epoch",
            "--test_sets", "test", "--output_dir", str(tmp_path / "raw")]
    with pytest.raises(SystemExit) as e:
        study_export.main(args)
    assert e.value.code == 2 and not (tmp_path / "raw").exists()
    study_export.main(args + ["--canary_accuracy", "false"])
    study = raw.read_raw(tmp_path / "raw")
    assert [(c.epoch, c.rank_exposure) for c in study.canaries] == [
        ("1", 1.0), ("2", 2.0), (FINAL, 2.5)]
    assert all(math.isnan(c.cer) for c in study.canaries)
    assert all(math.isnan(r.reference_cer) for r in study.runs)
    assert study.runs[-1].errors == {"test": (55.0, 22.0)}
