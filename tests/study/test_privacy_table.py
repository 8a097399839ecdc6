"""espnet_pcc.study.privacy_table and its command line: the accountant's ε and the noise, as a
Markdown table."""
import math

import dp_accounting
import pytest
from dp_accounting import rdp

from espnet_pcc import registry
from espnet_pcc.bin import privacy_table
from espnet_pcc.core import accounting
from espnet_pcc.study.privacy_table import fmt_num

# A small custom setup: N = 1000 utterances, S = 100 speakers, d = 10,000 parameters.
SMALL = ["--num_utterances", "1000", "--num_speakers", "100", "--params", "1e4",
         "--sigmas", "1", "2", "--batch_sizes", "50", "--epochs", "3", "--num_cores", "4"]


def table_rows(text):
    """{(unit, layout, σ, batch): row as a dict of the header's columns}."""
    lines = [line for line in text.splitlines()
             if line.startswith("|") and not line.startswith("|---")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[1:]:
        if line.startswith("|setup|"):
            continue
        row = dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))
        rows[row["unit"], row["layout"], row["σ"], row["expected batch (utt.)"]] = row
    return rows


def run(argv, capsys):
    privacy_table.main(argv)
    return capsys.readouterr().out


def rdp_by_hand(q, noise_multiplier, steps, delta):
    accountant = rdp.RdpAccountant()
    accountant.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(
        q, dp_accounting.GaussianDpEvent(noise_multiplier)), steps))
    return accountant.get_epsilon(delta)


def test_a_row_is_the_rdp_accountant_by_hand(capsys):
    rows = table_rows(run(SMALL, capsys))
    # per utterance, per_core, σ = 2: q = 50/1000, 3 epochs of round(1/q) = 20 steps,
    # δ = 0.01/1000, sensitivity 2C: noise multiplier 2/2 = 1.
    row = rows["utterance", "per_core", "2", "50"]
    assert (row["q"], row["steps"], row["δ"]) == ("0.05", "60", "1e-05")
    expected = rdp_by_hand(0.05, 2 / 2, 60, 1e-5)
    assert expected == accounting.epsilon(2.0, 0.05, 60, 1e-5, sensitivity=2)
    assert row["ε"] == f"{expected:.3g}"
    # per speaker: q = K/S = 4/100, round(25) = 25 steps an epoch, δ = 0.01/100; each speaker
    # brings <= 50 // 4 = 12 utterances, and the 100 speakers have 10 on average.
    row = rows["speaker", "per_core", "2", "≤ 40"]
    assert (row["q"], row["steps"], row["δ"]) == ("0.04", "75", "0.0001")
    assert row["ε"] == f"{rdp_by_hand(0.04, 1.0, 75, 1e-4):.3g}"


def test_per_example_differs_from_per_core_by_the_sensitivity(capsys):
    rows = table_rows(run(SMALL, capsys))
    # Sensitivity C against 2C: per_example at σ = 1 is per_core at σ = 2.
    assert (rows["utterance", "per_example", "1", "50"]["ε"]
            == rows["utterance", "per_core", "2", "50"]["ε"])
    assert (float(rows["utterance", "per_example", "2", "50"]["ε"])
            < float(rows["utterance", "per_core", "2", "50"]["ε"]))


def test_noise_columns_are_sigma_c_over_d(capsys):
    rows = table_rows(run(SMALL + ["--max_norm", "0.5"], capsys))
    # per_core: D = K = 4; per_example: D = B = 50.  sqrt(d) = 100.
    assert rows["utterance", "per_core", "2", "50"]["noise std / coord. of u"] == "0.25"
    assert rows["utterance", "per_core", "2", "50"]["noise / signal norm"] == "50"
    assert rows["utterance", "per_example", "2", "50"]["noise std / coord. of u"] == "0.02"
    assert rows["utterance", "per_example", "2", "50"]["noise / signal norm"] == "4"
    assert rows["speaker", "per_core", "1", "≤ 40"]["noise std / coord. of u"] == "0.125"


@pytest.mark.parametrize("extra,named", [
    (["--sigmas", "1", "-0.5"], "--sigmas -0.5"),
    (["--sigmas", "0"], "--sigmas 0"),
    (["--batch_sizes", "1000"], "--batch_sizes 1000"),
    (["--setup", "timit"], "'timit'"),
    (["--num_cores", "101"], "--num_cores 101"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(extra, named, tmp_path, capsys):
    out = tmp_path / "table.md"
    with pytest.raises(SystemExit) as exc:
        privacy_table.main(SMALL + extra + ["--out", str(out)])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("privacy_table: error: ") and named in err[0], err
    assert captured.out == "" and not out.exists()


def test_presets_give_both_setups(tmp_path, capsys):
    out = tmp_path / "table.md"
    run(["--sigmas", "2", "--epochs", "1", "--batch_sizes", "256", "--out", str(out)], capsys)
    text = out.read_text()
    assert "## librispeech960" in text and "## demo" in text
    assert "N = 281,241 utterances, S = 2,338 speakers" in text
    assert "N = 1,414 utterances, S = 142 speakers" in text
    rows = [line for line in text.splitlines() if line.startswith("|demo|")]
    assert len(rows) == 3  # one σ, one B, one epoch count: the three units / layouts
    # demo, per utterance, per_core: q = 256/1414, round(1/q) = 6 steps, δ = 0.01/1414.
    q = 256 / 1414
    eps = accounting.epsilon(2.0, q, 6, 0.01 / 1414, sensitivity=2)
    assert f"|demo|utterance|per_core|2|1|256|{q:.3g}|6|7.07e-06|{eps:.3g}|" in text


def test_formatting_of_epsilon():
    assert fmt_num(math.inf) == "inf"
    assert fmt_num(2.5e6) == ">1e6"
    assert fmt_num(1234.5) == "1230"
    assert fmt_num(0.01234) == "0.0123"


def test_is_a_console_script():
    assert (registry.CONSOLE_SCRIPTS["espnet-pcc-privacy-table"]
            == "espnet_pcc.bin.privacy_table:main")


def test_a_preset_and_a_custom_setup_side_by_side_keep_their_names(capsys):
    text = run(["--setup", "demo"] + SMALL + ["--name", "mine"], capsys)
    assert "## demo" in text and "## mine" in text
    assert "N = 1,000 utterances, S = 100 speakers" in text
