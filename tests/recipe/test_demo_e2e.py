"""The synthetic demo at its smallest size, end to end: corpus -> data -> canaries -> tokens ->
stats -> train baseline / PCC / APCC -> decode -> WER -> exposure -> report; then a rerun that
skips every finished stage. A few minutes on 2 CPU cores (mostly espnet2 import time)."""
from pathlib import Path

import yaml

from recipe_helpers import run
from shared_helpers import CLIP_MODES, EGS2

DEMO = EGS2 / "synth_demo" / "asr1"


def test_demo_tiny_end_to_end(tmp_path: Path):
    cmd = ["./run.sh", "--demo_size", "tiny", "--datadir", str(tmp_path / "data"),
           "--expdir", str(tmp_path / "exp")]
    proc = run(cmd, cwd=DEMO, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-4000:]
    exp = tmp_path / "exp"

    # The comparison table is printed and written, with one row per clipping mode.
    header = "|model|clip|WER dev|WER test|exposure x1|exposure x4|s/step|epochs|"
    assert header in proc.stdout
    rows = [l for l in proc.stdout.splitlines() if l.startswith("|asr_train_asr_tiny_")]
    assert [r.split("|")[2].split(" ")[0] for r in rows] == list(CLIP_MODES.values())
    results = (exp / "RESULTS.md").read_text()
    assert header in results and "## Environments" in results and "### WER" in results
    assert (exp / "pcc_comparison.png").read_bytes()[:4] == b"\x89PNG"

    for variant, mode in CLIP_MODES.items():
        d = exp / f"asr_train_asr_tiny_{variant}"
        assert yaml.safe_load((d / "config.yaml").read_text())["clip"] == mode
        assert (d / "valid.acc.ave.pth").exists() and (d / ".done").is_file()
        for s in ("dev", "test"):
            dec = d / "decode_decode_asr_tiny_valid.acc.ave" / s
            assert len((dec / "text").read_text().splitlines()) == 8
            assert (dec / "score_wer" / "result.json").is_file()
        assert (d / "exposure" / "summary.json").is_file()
    # Stage 3 checked the text against the token list: the tiny test set has a letter ('J')
    # that the tiny training text lacks, which is a warning for a set that is only scored.
    warnings = [l for l in proc.stderr.splitlines() if l.startswith("check_data: warning: ")]
    assert any("data/test: utterance" in w and "'J'" in w for w in warnings), proc.stderr
    # Canaries went into the training set only.
    assert "canary-x04-" in (tmp_path / "data" / "train_canary" / "text").read_text()
    assert "canary" not in (tmp_path / "data" / "test" / "text").read_text()

    # Rerun: every stage finds its outputs and skips (no retraining, no re-decoding).
    rerun = run(cmd, cwd=DEMO, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    for variant in CLIP_MODES:
        assert f"asr_train_asr_tiny_{variant} is trained: skipped" in rerun.stderr
        assert f"asr_train_asr_tiny_{variant}/exposure: skipped" in rerun.stderr
    assert header in rerun.stdout
