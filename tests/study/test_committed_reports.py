"""The committed studies' reports are what their committed raw data give: the command each
RESULTS.md prints under "Rebuilding", run on a copy of its raw data, writes it again byte for
byte (and its plot)."""
import shlex
import shutil
from pathlib import Path

import pytest

from espnet_pcc.bin import study_report
from shared_helpers import EGS2

#: (recipe dir, the study's dir in it, its plot): each committed report with its raw data.
STUDIES = [(EGS2 / "synth_demo" / "asr1", "study", "pcc_comparison.png"),
           (EGS2 / "synth_demo" / "asr1", "study3", "claims.png"),
           (EGS2 / "fillets_cs" / "asr1", "study", "pcc_comparison.png")]


def printed_command(results_md: Path) -> list:
    lines = results_md.read_text().splitlines()
    start = lines.index("## Rebuilding")
    command = next(l for l in lines[start:] if l.startswith("python -m espnet_pcc.bin.study_report"))
    return shlex.split(command)[3:]


@pytest.mark.parametrize("recipe,study,plot", STUDIES,
                         ids=lambda v: v.parent.name if isinstance(v, Path) else v)
def test_the_printed_command_rebuilds_the_committed_report(recipe: Path, study: str, plot: str,
                                                           tmp_path: Path, monkeypatch, capsys):
    committed = recipe / study
    shutil.copytree(committed / "raw", tmp_path / study / "raw")
    monkeypatch.chdir(tmp_path)
    study_report.main(printed_command(committed / "RESULTS.md"))
    assert (tmp_path / study / "RESULTS.md").read_text() == (committed / "RESULTS.md").read_text()
    assert (tmp_path / study / plot).read_bytes() == (committed / plot).read_bytes()
    assert f"wrote {study}/RESULTS.md" in capsys.readouterr().out


def test_the_notes_travel_with_the_raw_data_into_the_report(tmp_path: Path, monkeypatch):
    from espnet_pcc.study import raw
    committed = STUDIES[0][0] / "study"
    study = raw.read_raw(committed / "raw")
    study.notes = "Made on a test machine."
    raw.write_raw(tmp_path / "raw", study)
    shutil.copy(committed / "raw" / raw.COLOCATION_JSON, tmp_path / "raw")
    monkeypatch.chdir(tmp_path)
    study_report.main(["--raw_dir", "raw", "--output_md", "R.md", "--output_png", "p.png"])
    text = (tmp_path / "R.md").read_text()
    assert text.startswith("# RESULTS (memorisation study)\n\nMade on a test machine.\n")
    # the default title is left out of the printed command, so it is the shortest one
    assert "python -m espnet_pcc.bin.study_report --raw_dir raw --output_md R.md " \
           "--output_png p.png\n" in text
