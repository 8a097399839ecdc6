"""`python -m bench.lightning_step --quick` runs end to end and writes its table and JSON."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_prints_every_mode_against_stock(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench.lightning_step", "--quick", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for mode in ("global", "per_core", "adaptive_per_core"):
        assert f"| {mode} |" in proc.stdout
    rows = json.loads((tmp_path / "lightning_step.json").read_text())["rows"]
    assert [r["mode"] for r in rows] == ["global", "per_core", "adaptive_per_core"]
    assert rows[0]["vs_stock"] == 1.0 and all(r["steps"] == 3 and r["median_s"] > 0 for r in rows)
