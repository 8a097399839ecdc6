"""A tiny memorisation study end to end through the demo's stage script: two configs x two
seeds, the checkpoints of both epochs scored (canary decoding + exposure), canary accuracy
with a reference control, the comparison over runs; a rerun skips everything, a changed decoding
option redoes the decoding."""
from pathlib import Path

from recipe_helpers import run
from shared_helpers import EGS2

DEMO = EGS2 / "synth_demo" / "asr1"
TAGS = [f"asr_train_asr_tiny_{v}_seed{s}" for v in ("baseline", "pcc") for s in (0, 1)]


def test_tiny_study_end_to_end(tmp_path: Path):
    exp = tmp_path / "exp"
    cmd = ["./run.sh", "--demo_size", "tiny", "--datadir", str(tmp_path / "data"),
           "--expdir", str(exp), "--results_md", str(exp / "RESULTS.md"),
           "--results_png", str(exp / "cmp.png"),
           "--asr_configs", "conf/train_asr_tiny_baseline.yaml conf/train_asr_tiny_pcc.yaml",
           "--seeds", "0 1", "--score_epochs", "1 2", "--num_decoded_references", "3",
           "--asr_args", "--max_epoch 2 --keep_nbest_models 2", "--model_jobs", "2"]
    proc = run(cmd, cwd=DEMO, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "training: 4/4 done" in proc.stderr  # progress of the fan-out
    for tag in TAGS:
        d = exp / tag
        assert f"--seed {tag[-1]}" in (d / "train.log").read_text()
        for e in (1, 2):
            assert (d / f"{e}epoch.pth").exists()
            assert (d / f"exposure_{e}epoch" / "exposure.json").is_file()
            acc = d / f"decode_decode_asr_tiny_{e}epoch" / "canary_accuracy" / "utterances.tsv"
            rows = acc.read_text().splitlines()[1:]
            assert len(rows) == 4 + 3  # canaries x1, x4 (2 each) + 3 references
        final = d / "decode_decode_asr_tiny_valid.acc.ave"
        assert (final / "canary_accuracy" / "summary.json").is_file()
        assert not (final / "references" / "score_wer").exists()  # the control is not a test set
    # The two seeds are different models (init and data order).
    seed0 = (exp / TAGS[0] / "exposure" / "exposure.json").read_bytes()
    assert seed0 != (exp / TAGS[1] / "exposure" / "exposure.json").read_bytes()
    results = (exp / "RESULTS.md").read_text()
    # the memorisation section over runs, rendered from the raw data written beside it
    assert "|baseline|2|" in results and "|pcc − baseline|" in results and "L* = " in results
    assert (exp / "cmp_study.png").read_bytes()[:4] == b"\x89PNG"
    assert len((exp / "RESULTS_raw" / "runs.tsv").read_text().splitlines()) == 1 + 4 * 3

    # Rerun: everything is up to date.
    rerun = run(cmd, cwd=DEMO, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert rerun.stderr.count("is trained: skipped") == 4
    assert rerun.stderr.count("all sets decoded: skipped") == 4 * 3
    # A changed decoding option is a different output: decoded again, exposure kept.
    changed = run(cmd + ["--stage", "6", "--stop_stage", "8", "--inference_args", "--nbest 1"],
                  cwd=DEMO, timeout=900)
    assert changed.returncode == 0, changed.stderr[-4000:]
    assert "all sets decoded: skipped" not in changed.stderr
    assert changed.stderr.count("exposure") and "exposure_1epoch: skipped" in changed.stderr
