"""The synthetic demo at its smallest size, end to end: corpus -> data -> canaries -> tokens ->
stats -> train baseline / PCC / APCC -> decode -> WER -> exposure -> report -> pack; a packed
model decoded by stock espnet2; then a rerun that skips every finished stage. A few minutes on
2 CPU cores (mostly espnet2 import time)."""
import subprocess
import sys
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
    header = "|model|clip|WER dev|WER test|exposure x1|exposure x4|s/step|cores/step|epochs|"
    assert header in proc.stdout
    rows = [l for l in proc.stdout.splitlines() if l.startswith("|asr_train_asr_tiny_")]
    assert [r.split("|")[2].split(" ")[0] for r in rows] == list(CLIP_MODES.values())
    assert [r.split("|")[-3] for r in rows] == ["2"] * 3  # one process x accum_grad 2 x 1 core
    results = (exp / "RESULTS.md").read_text()
    assert header in results and "## Environments" in results and "### WER" in results
    assert (exp / "pcc_comparison.png").read_bytes()[:4] == b"\x89PNG"

    for variant, mode in CLIP_MODES.items():
        d = exp / f"asr_train_asr_tiny_{variant}"
        # The trainer's progress line reached the terminal; the log has the whole output.
        assert f") {d} epoch 1/1 loss " in proc.stderr, proc.stderr[-3000:]
        assert "1epoch results:" in (d / "train.log").read_text()
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

    # Stage 10: each model packed as ESPnet shares one; stock espnet2 unpacks and decodes it in a
    # process that never imports espnet_pcc, with the pipeline's hypothesis.
    model = exp / "asr_train_asr_tiny_pcc"
    packed = model / "pack" / "asr_train_asr_tiny_pcc_valid.acc.ave.zip"
    assert packed.is_file()
    utt, wav = (tmp_path / "data" / "test" / "wav.scp").read_text().split("\n")[0].split()
    hyp = decode_with_stock_espnet2(packed, tmp_path / "unpacked", Path(wav), DEMO / "conf" / "decode_asr_tiny.yaml")
    pipeline = dict(l.split(" ", 1) if " " in l else (l, "") for l in
                    (model / "decode_decode_asr_tiny_valid.acc.ave" / "test" / "text").read_text().splitlines())
    assert hyp == pipeline[utt]

    # Rerun: every stage finds its outputs and skips (no retraining, no re-decoding).
    rerun = run(cmd, cwd=DEMO, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    for variant in CLIP_MODES:
        assert f"asr_train_asr_tiny_{variant} is trained: skipped" in rerun.stderr
        assert f"asr_train_asr_tiny_{variant}/exposure: skipped" in rerun.stderr
        assert f"asr_train_asr_tiny_{variant}/pack/asr_train_asr_tiny_{variant}_valid.acc.ave.zip: skipped" in rerun.stderr
    assert header in rerun.stdout


STOCK_DECODE = """
import sys, soundfile, yaml
from espnet2.bin.asr_inference import Speech2Text
from espnet2.main_funcs.pack_funcs import unpack
zip_file, out_dir, wav, decode_config = sys.argv[1:]
speech2text = Speech2Text(**unpack(zip_file, out_dir), **yaml.safe_load(open(decode_config)), device="cpu")
text = speech2text(soundfile.read(wav)[0])[0][0]
assert not [m for m in sys.modules if m.startswith("espnet_pcc")], "espnet_pcc was imported"
print("HYP=" + text)
"""


def decode_with_stock_espnet2(packed: Path, out_dir: Path, wav: Path, decode_config: Path) -> str:
    """Unpack ``packed`` and decode ``wav`` with espnet2's own Speech2Text, in a fresh process
    (isolated: no PYTHONPATH, the repository not on sys.path) that must not import espnet_pcc."""
    proc = subprocess.run([sys.executable, "-I", "-c", STOCK_DECODE, str(packed), str(out_dir), str(wav),
                           str(decode_config)], cwd=out_dir.parent, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return next(l[4:] for l in proc.stdout.splitlines() if l.startswith("HYP="))
