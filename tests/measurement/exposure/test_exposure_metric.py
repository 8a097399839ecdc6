"""The exposure metric on hand-computed cases, and that it imports without torch or ESPnet."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from espnet_pcc.measurement.exposure import metric as ex


def test_rank_one_of_1023_is_10_bits():
    refs = np.arange(1, 1024, dtype=float)  # 1023 references, scores 1..1023
    assert ex.rank_exposure([0.5], refs)[0] == pytest.approx(10.0, abs=1e-12)
    # worse than every reference: rank 1024 of |R| = 1024 -> 0 bits
    assert ex.rank_exposure([5000.0], refs)[0] == pytest.approx(0.0, abs=1e-12)
    # between the 511th and 512th reference: rank 512 -> 1 bit
    assert ex.rank_exposure([511.5], refs)[0] == pytest.approx(1.0)
    # TF-Privacy's convention: log2(n) - log2(rank)
    assert ex.rank_exposure([0.5], refs, include_canary=False)[0] == pytest.approx(math.log2(1023))


def test_ranks_ties_favour_the_canary():
    refs = [1.0, 2.0, 2.0, 3.0]
    assert ex.ranks([2.0, 0.0, 3.5, 2.5, float("nan")], refs).tolist() == [2, 1, 5, 4, 5]
    assert ex.rank_exposure([1.0], [1.0, 1.0, 1.0])[0] == pytest.approx(2.0)  # all tied: rank 1


def test_an_infinite_canary_score_ranks_last_behind_infinite_references():
    inf = float("inf")
    assert ex.ranks([inf, float("nan")], [1.0, 2.0, inf, inf]).tolist() == [5, 5]
    assert ex.rank_exposure([inf], [1.0, inf])[0] == 0.0


def test_chance_exposure_is_about_log2_e():
    assert ex.chance_rank_exposure(2000) == pytest.approx(math.log2(math.e), abs=0.01)
    rng = np.random.default_rng(0)
    refs, can = rng.normal(size=2000), rng.normal(size=4000)  # same distribution: no memorisation
    assert ex.rank_exposure(can, refs).mean() == pytest.approx(ex.chance_rank_exposure(2000), abs=0.1)


def test_extrapolation_matches_skewnorm_and_exceeds_rank_cap():
    from scipy.stats import skewnorm

    rng = np.random.default_rng(1)
    refs = skewnorm.rvs(3.0, loc=2.0, scale=0.5, size=1000, random_state=rng)
    params = ex.fit_skewnorm(refs)
    assert params[0] > 0 and params[1] == pytest.approx(2.0, abs=0.2)
    s = np.array([refs.min() - 1.0, np.median(refs)])
    e = ex.extrapolated_exposure(s, params)
    assert e[1] == pytest.approx(1.0, abs=0.15)  # median -> CDF 1/2 -> 1 bit
    assert e[1] == pytest.approx(-math.log2(skewnorm.cdf(s[1], *params)))
    cap = math.log2(len(refs) + 1)
    assert ex.rank_exposure(s[:1], refs)[0] == pytest.approx(cap)
    assert e[0] > cap + 5  # far below all references: extrapolation goes past the rank cap
    assert np.isfinite(ex.extrapolated_exposure([refs.min() - 5.0], params)[0])


#: 7 references -> |R| = 8, cap 3 bits; canaries a, b inserted 4 times, c, d once.
HAND_REFS = [float(i) for i in range(1, 8)]
HAND_SCORES = {"a": 0.5, "b": 4.5, "c": 0.1, "d": 9.0}
HAND_COUNTS = {"a": 4, "b": 4, "c": 1, "d": 1}


def test_compute_exposures_summary_hand_case():
    per, summ = ex.compute_exposures(HAND_SCORES, HAND_COUNTS, HAND_REFS)
    byid = {p["id"]: p for p in per}
    assert [byid[i]["rank"] for i in "abcd"] == [1, 5, 1, 8]
    assert byid["b"]["rank_exposure"] == pytest.approx(3 - math.log2(5))
    g = {x["repeat_count"]: x for x in summ["repeat_counts"]}
    assert list(g) == [1, 4] and g[4]["num_canaries"] == 2
    assert g[4]["rank_exposure"]["mean"] == pytest.approx((3 + 3 - math.log2(5)) / 2)
    assert g[4]["rank_exposure"]["std"] == pytest.approx(math.log2(5) / 2)
    assert g[1]["rank_exposure"]["max"] == pytest.approx(3.0)
    assert summ["rank_exposure_cap"] == pytest.approx(3.0)
    with pytest.raises(ex.ExposureError, match="need >= 2 references, got 1"):
        ex.compute_exposures(HAND_SCORES, HAND_COUNTS, [1.0])


def test_summary_table_one_builder_for_stdout_and_tsv():
    _, summ = ex.compute_exposures(HAND_SCORES, HAND_COUNTS, HAND_REFS)
    from espnet_pcc.measurement.exposure import schema

    table = schema.format_summary({**summ, "score": "att_nll"})
    assert "rank_exp_mean" in table and "3.000" in table
    tsv = schema.summary_tsv(summ).splitlines()
    # the same columns and rows as the printed table, tab-separated, one row per repeat count
    assert tsv[0].split("\t") == table.splitlines()[0].split() == list(schema.TABLE_COLUMNS)
    assert [r.split("\t")[0] for r in tsv[1:]] == ["1", "4"]
    assert float(tsv[2].split("\t")[2]) == pytest.approx((3 + 3 - math.log2(5)) / 2, rel=1e-5)
    assert schema.mean_per_repeat_count(summ, schema.RANK_EXPOSURE)[1] == pytest.approx(
        summ["repeat_counts"][0]["rank_exposure"]["mean"])


def test_summary_json_keeps_infinity():
    """A +inf exposure (logcdf underflow) survives the JSON round trip as Infinity."""
    from espnet_pcc.fileio import dumps_json

    per, summ = ex.compute_exposures({"a": -1e6, "b": 4.5}, {"a": 1, "b": 1}, HAND_REFS)
    assert per[0]["extrapolated_exposure"] == math.inf
    back = json.loads(dumps_json(summ))
    assert back["repeat_counts"][0]["extrapolated_exposure"]["max"] == math.inf
    assert back["repeat_counts"][0]["extrapolated_exposure"]["std"] == math.inf


def test_summary_and_exposure_json_round_trip_through_their_one_writer_and_reader(tmp_path):
    from espnet_pcc.errors import UserError
    from espnet_pcc.measurement.exposure import schema

    per, summ = ex.compute_exposures(HAND_SCORES, HAND_COUNTS, HAND_REFS)
    per = [{**p, schema.CANARY_TEXT: "a", schema.NUM_TOKENS: 1} for p in per]
    schema.write_summary_json(tmp_path / schema.SUMMARY_JSON, summ)
    schema.write_exposure_json(tmp_path / schema.EXPOSURE_JSON, per)
    assert schema.read_summary_json(tmp_path / schema.SUMMARY_JSON) == summ
    assert schema.read_exposure_json(tmp_path / schema.EXPOSURE_JSON) == per
    # A reader of another layout, or of nothing, stops with one line naming stage 8.
    (tmp_path / "old.json").write_text(json.dumps({**summ, "format": "espnet-pcc-exposure/0"}))
    with pytest.raises(UserError, match=r"unknown format 'espnet-pcc-exposure/0' \(rerun stage 8"):
        schema.read_summary_json(tmp_path / "old.json")
    with pytest.raises(UserError, match=r"nope.json missing \(produced by stage 8"):
        schema.read_summary_json(tmp_path / "nope.json")
    with pytest.raises(ValueError, match="summary format None"):
        schema.write_summary_json(tmp_path / "bad.json", {"num_references": 3})
    assert not (tmp_path / "bad.json").exists()


def test_metric_and_schema_import_without_torch_or_espnet():
    code = ("import sys; import espnet_pcc.measurement.exposure.metric, espnet_pcc.measurement.exposure.schema; "
            "print(sorted(m for m in ('torch', 'espnet', 'espnet2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
