"""The third study's analysis (espnet_pcc.study.claims) on simulated studies whose answer is
known: a known effect is found, a known null is rejected at about the nominal rate, memorisation
is compared at equal validation loss (an arm that only converges faster is not called one that
memorises less), and the report and its command rebuild from the raw data alone."""
import math

import numpy as np
import pytest

from espnet_pcc.study import claims, raw, stats
from espnet_pcc.study.claims import APCC, ARMS, BASELINE, EPOCHS, PAPER_BASELINE, PCC, \
    SAMPLER, SEEDS, TEST_SET
from espnet_pcc.study.raw import FINAL, CanaryScore, RawStudy, RunEpoch


def simulated_study(rng, *, memorisation_effect=None, loss_effect=None, seeds=SEEDS,
                    canaries_per_count=4, repeat_counts=(1, 4, 16), run_sd=0.5, canary_sd=2.0,
                    noise_sd=1.5, loss_sd=0.5) -> RawStudy:
    """A third study's raw data drawn from a model with known effects, for the calibration of
    the analysis: each run's validation loss falls over the epochs (an arm's ``loss_effect``
    added to every epoch, a run effect of sd ``loss_sd`` and noise), each canary's
    extrapolated exposure grows as the loss falls and with its repeat count (a canary effect,
    a run effect, noise; an arm's ``memorisation_effect`` added), the rank exposure is it
    capped at log2(1001); the test WER follows the last loss."""
    memorisation_effect = memorisation_effect or {}
    loss_effect = loss_effect or {}
    canaries = [f"canary-x{n:02d}-{i}" for n in repeat_counts for i in range(canaries_per_count)]
    canary_effect = {c: rng.normal(0.0, canary_sd) for c in canaries}
    cap = math.log2(1001)
    runs, rows = [], []
    for arm in ARMS:
        for seed in seeds:
            run_loss = rng.normal(0.0, loss_sd)
            run_memo = rng.normal(0.0, run_sd)
            losses = [45.0 - 4.5 * e + loss_effect.get(arm, 0.0) + run_loss
                      + rng.normal(0.0, 0.3) for e in EPOCHS]
            tag = f"asr_train_asr_{SAMPLER}_{arm}_seed{seed}"
            for epoch, loss in [*zip(map(str, EPOCHS), losses), (FINAL, losses[-1] - 1.0)]:
                final = epoch == FINAL
                runs.append(RunEpoch(arm, SAMPLER, seed, tag, epoch,
                                     math.nan if final else loss, math.nan, 1000,
                                     {TEST_SET: (2.0 * losses[-1] + 20.0, losses[-1])}
                                     if final else {}))
                for c in canaries:
                    n = int(c.split("-x")[1][:2])
                    x = (max(0.0, (45.0 - loss) * 0.3) * (1.0 + math.log2(n))
                         + canary_effect[c] + run_memo + memorisation_effect.get(arm, 0.0)
                         + rng.normal(0.0, noise_sd))
                    rows.append(CanaryScore(arm, SAMPLER, seed, epoch, c, n, 1.0, 1,
                                            min(max(x, 0.0), cap), x, math.nan))
    return RawStudy(runs=runs, canaries=rows, test_sets=[TEST_SET], made_by="simulated")


def test_a_known_effect_is_found_in_every_primary_endpoint():
    """PCC and APCC 4 bits below the paper's baseline at every loss, and 3 lower in validation
    loss: every primary endpoint rejects after Holm, each interval below 0 around the truth."""
    study = simulated_study(np.random.default_rng(1),
                            memorisation_effect={PCC: -4.0, APCC: -4.0},
                            loss_effect={PCC: -3.0, APCC: -3.0})
    family = claims.primary_family(study, n_resamples=999)
    assert [t.endpoint for t in family] == list(claims.PRIMARY)
    for t in family:
        assert t.adjusted_p < 0.05, t
        assert t.result.difference.high < 0, t
    assert family[0].result.difference.value == pytest.approx(-4.0, abs=1.2)
    assert family[2].result.difference.value == pytest.approx(-3.0, abs=0.8)
    assert [t.adjusted_p for t in family] == pytest.approx(
        stats.holm([t.result.p_value for t in family]))


def test_memorisation_is_compared_at_equal_validation_loss():
    """PCC converges faster (its loss 3 lower every epoch) and memorises alike for its loss:
    at equal loss nothing is found, while at an equal epoch it looks like more memorisation."""
    study = simulated_study(np.random.default_rng(2), loss_effect={PCC: -3.0})
    family = claims.primary_family(study, n_resamples=999)
    at_level, convergence = family[0], family[2]
    assert at_level.endpoint.at == claims.AT_LEVEL
    assert at_level.result.difference.low < 0 < at_level.result.difference.high
    assert convergence.result.difference.high < 0  # the faster convergence is seen
    loaded = claims.load(study)
    at_epoch = loaded.compare(claims.Endpoint(PCC, PAPER_BASELINE, claims.EXTRAPOLATED,
                                              claims.at_epoch(EPOCHS[-1])), n_resamples=999)
    assert at_epoch.result.difference.low > 0


def test_a_known_null_is_rejected_at_about_the_nominal_rate():
    """Five arms from one distribution: each primary test rejects about 5 % of simulated
    studies unadjusted, and Holm's family rejects anything in at most about 5 %."""
    rng = np.random.default_rng(3)
    trials = 150
    unadjusted = np.zeros(len(claims.PRIMARY))
    family = 0
    for _ in range(trials):
        study = claims.load(simulated_study(rng, canaries_per_count=2))
        p = [study.compare(e, n_resamples=252).result.p_value for e in claims.PRIMARY]
        unadjusted += [x < 0.05 for x in p]
        # Holm's family rejects anything exactly when its smallest p is below alpha / 4
        # (statsmodels' Holm, tested above, runs a gc.collect() per call: too slow here).
        family += min(p) <= 0.05 / len(p)
    # 150 trials at 5 %: sd 1.8 %; 3 sd either side.  The four tests share the paper's
    # baseline's runs, so the family's rate is below their sum.
    rates = unadjusted / trials
    assert all(rates <= 0.105), rates
    assert rates.mean() >= 0.015, rates
    assert family / trials <= 0.105, family


def test_the_level_is_the_worst_last_epoch_loss_of_all_25_runs():
    study = simulated_study(np.random.default_rng(4))
    loaded = claims.load(study)
    last = [r.valid_loss for r in study.runs if r.epoch == str(EPOCHS[-1])]
    assert len(last) == 25 and loaded.level == max(last)
    assert sorted(loaded.arms) == sorted(ARMS)
    assert all([r.seed for r in runs] == list(SEEDS) for runs in loaded.arms.values())


def test_missing_runs_are_a_one_line_error_and_the_blocks_are_counted():
    study = simulated_study(np.random.default_rng(5))
    assert claims.missing_runs(study) == []
    assert claims.block_status(study) == \
        "third study: 5 of 5 seed blocks complete (seeds 0 1 2 3 4)"
    partial = RawStudy(runs=[r for r in study.runs if r.seed < 2 or (r.seed == 2 and
                                                                      r.arm == PCC)],
                       canaries=[c for c in study.canaries if c.seed < 2], test_sets=[TEST_SET])
    assert claims.block_status(partial) == \
        "third study: 2 of 5 seed blocks complete (seeds 0 1); incomplete: seeds 2"
    with pytest.raises(raw.RawDataError, match=r"needs seeds 0, 1, 2, 3, 4 of every arm .*"
                                               r"missing: baseline seed 2, paperbase seed 2"):
        claims.load(partial)


def test_a_nonfinite_extrapolated_exposure_becomes_the_largest_finite_one():
    study = simulated_study(np.random.default_rng(6))
    top = max(c.extrapolated_exposure for c in study.canaries)
    study.canaries = [c if not (c.arm == PCC and c.seed == 0 and c.epoch == "6")
                      else CanaryScore(*[math.inf if f == "extrapolated_exposure" else v
                                         for f, v in zip(CanaryScore.__dataclass_fields__,
                                                         vars(c).values())])
                      for c in study.canaries]
    loaded = claims.load(study)
    assert loaded.filled == 12 and loaded.fill == top
    assert all(math.isfinite(v) for r in loaded.arms[PCC]
               for series in r.epochs[claims.EXTRAPOLATED].values() for v in series)


def test_report_rebuilds_from_the_raw_data_alone(tmp_path, capsys):
    from espnet_pcc.bin import study_report

    study = simulated_study(np.random.default_rng(7), memorisation_effect={PCC: -4.0},
                            loss_effect={APCC: 3.0})
    study.notes = "Seed blocks 0-4, simulated."
    raw.write_raw(tmp_path / "raw", study)
    args = ["--raw_dir", str(tmp_path / "raw"), "--output_md", str(tmp_path / "RESULTS.md"),
            "--output_png", str(tmp_path / "plot.png"), "--study", "third"]
    study_report.main(args)
    md = (tmp_path / "RESULTS.md").read_text()
    assert md.startswith("# RESULTS (memorisation study)\n\nSeed blocks 0-4, simulated.\n")
    for section in ("## The paper's claims, in plain words", "## Primary family (Holm over four)",
                    "## Secondary family (Holm over six)", "## Calibration of the test",
                    "Saturation of the rank exposure at L*", "## Exploratory",
                    f"|{BASELINE}|5|", "|pcc − paperbase|extrapolated exposure (bits), at L*|"):
        assert section in md, section
    assert "**Shown:** pcc memorises less than paperbase (extrapolated exposure" in md
    assert "**Shown:** apcc has converged less far than paperbase (validation loss, after " \
           "epoch 3" in md
    assert "**Not shown:** apcc − paperbase in extrapolated exposure (bits), at L*" in md
    assert "--study third" in md and (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"
    first = md
    study_report.main(args)  # deterministic
    assert (tmp_path / "RESULTS.md").read_text() == first
    assert "**Shown:** pcc memorises less" in capsys.readouterr().out


def test_report_of_an_unfinished_study_is_one_line_and_writes_nothing(tmp_path, capsys):
    from espnet_pcc.bin import study_report

    study = simulated_study(np.random.default_rng(8), seeds=[0, 1])
    raw.write_raw(tmp_path / "raw", study)
    with pytest.raises(SystemExit) as e:
        study_report.main(["--raw_dir", str(tmp_path / "raw"), "--output_md",
                           str(tmp_path / "R.md"), "--output_png", str(tmp_path / "p.png"),
                           "--study", "third"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "missing: baseline seed 2, paperbase seed 2" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "R.md").exists() and not (tmp_path / "p.png").exists()


def test_a_block_at_a_time_names_the_blocks_in_and_writes_nothing(tmp_path, capsys):
    """run.sh's stage 9 after each seed block: with --skip_incomplete true an unfinished study
    says which blocks are in and exits 0; the report comes with the last block."""
    from espnet_pcc.bin import study_report

    raw.write_raw(tmp_path / "raw", simulated_study(np.random.default_rng(9), seeds=[0]))
    study_report.main(["--raw_dir", str(tmp_path / "raw"), "--output_md", str(tmp_path / "R.md"),
                       "--output_png", str(tmp_path / "p.png"), "--study", "third",
                       "--skip_incomplete", "true"])
    out = capsys.readouterr().out
    assert "third study: 1 of 5 seed blocks complete (seeds 0)" in out
    assert "is written once every arm of every seed block is in" in out
    assert not (tmp_path / "R.md").exists()
