"""The synthetic demo's pipeline at its smallest size, end to end, through the demo's stage
script (one run covers what the demo and the study do): corpus -> data -> canaries -> tokens
-> stats -> train baseline / PCC x two seeds -> decode every scored
checkpoint (both epochs and the final model; canaries and decoded references too) -> WER ->
exposure -> canary accuracy with a reference control -> the comparison over runs -> pack; a
packed model decoded by stock espnet2; a rerun skips everything; a changed decoding option
redoes the decoding. A few minutes on 2 CPU cores (mostly espnet2 import time)."""
import subprocess
import sys
from pathlib import Path

import yaml

from recipe_helpers import run
from shared_helpers import CLIP_MODES, EGS2

DEMO = EGS2 / "synth_demo" / "asr1"
# APCC trains through the same asr_train (tests/espnet2/test_asr_train.py): the pipeline's cost is
# per model, so two modes x two seeds are what this test runs.
TAGS = [f"asr_train_asr_tiny_{v}_seed{s}" for v in ("baseline", "pcc") for s in (0, 1)]
HEADER = "|model|clip|WER dev|WER test|exposure x1|exposure x4|s/step|cores/step|epochs|"


def test_tiny_demo_and_study_end_to_end(tmp_path: Path):
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

    # The per-model table is printed and written, one row per model, in its clipping mode;
    # one process x accum_grad 2 x 1 core = 2 cores a step.
    assert HEADER in proc.stdout
    rows = [l for l in proc.stdout.splitlines() if l.startswith("|asr_train_asr_tiny_")]
    assert [r.split("|")[1] for r in rows] == TAGS
    modes = [CLIP_MODES[t.split("_")[4]] for t in TAGS]
    assert [r.split("|")[2].split(" ")[0] for r in rows] == modes
    assert [r.split("|")[-3] for r in rows] == ["2"] * len(TAGS)
    for tag, mode in zip(TAGS, modes):
        d = exp / tag
        # The trainer's progress line reached the terminal; the log has the whole output.
        assert f") {d} epoch 2/2 loss " in proc.stderr, proc.stderr[-3000:]
        log = (d / "train.log").read_text()
        assert "1epoch results:" in log and f"--seed {tag[-1]}" in log
        assert yaml.safe_load((d / "config.yaml").read_text())["clip"] == mode
        assert (d / "valid.acc.ave.pth").exists() and (d / ".done").is_file()
        final = d / "decode_decode_asr_tiny_valid.acc.ave"
        for s in ("dev", "test"):
            assert len((final / s / "text").read_text().splitlines()) == 8
            assert (final / s / "score_wer" / "result.json").is_file()
        assert (final / "canary_accuracy" / "summary.json").is_file()
        assert not (final / "references" / "score_wer").exists()  # the control is not a test set
        assert (d / "exposure" / "summary.json").is_file()
        for e in (1, 2):
            assert (d / f"{e}epoch.pth").exists()
            assert (d / f"exposure_{e}epoch" / "exposure.json").is_file()
            acc = d / f"decode_decode_asr_tiny_{e}epoch" / "canary_accuracy" / "utterances.tsv"
            assert len(acc.read_text().splitlines()[1:]) == 4 + 3  # canaries x1, x4 + 3 refs
    # The two seeds are different models (init and data order).
    seed0 = (exp / TAGS[0] / "exposure" / "exposure.json").read_bytes()
    assert seed0 != (exp / TAGS[1] / "exposure" / "exposure.json").read_bytes()
    # The memorisation section over runs, rendered from the raw data written beside it.
    results = (exp / "RESULTS.md").read_text()
    assert HEADER in results and "## Environments" in results and "### WER" in results
    assert "|baseline|2|" in results and "|pcc − baseline|" in results and "L* = " in results
    assert (exp / "cmp.png").read_bytes()[:4] == b"\x89PNG"
    assert (exp / "cmp_study.png").read_bytes()[:4] == b"\x89PNG"
    assert len((exp / "RESULTS_raw" / "runs.tsv").read_text().splitlines()) == 1 + 4 * 3
    # Stage 3 checked the text against the token list: the tiny test set has a letter ('J')
    # that the tiny training text lacks, which is a warning for a set that is only scored.
    warnings = [l for l in proc.stderr.splitlines() if l.startswith("check_data: warning: ")]
    assert any("data/test: utterance" in w and "'J'" in w for w in warnings), proc.stderr
    # Canaries went into the training set only.
    assert "canary-x04-" in (tmp_path / "data" / "train_canary" / "text").read_text()
    assert "canary" not in (tmp_path / "data" / "test" / "text").read_text()

    # Stage 10: each model packed as ESPnet shares one; stock espnet2 unpacks and decodes it in a
    # process that never imports espnet_pcc, with the pipeline's hypothesis.
    model = exp / TAGS[2]
    packed = model / "pack" / f"{TAGS[2]}_valid.acc.ave.zip"
    assert packed.is_file()
    utt, wav = (tmp_path / "data" / "test" / "wav.scp").read_text().split("\n")[0].split()
    hyp = decode_with_stock_espnet2(packed, tmp_path / "unpacked", Path(wav),
                                    DEMO / "conf" / "decode_asr_tiny.yaml")
    pipeline = dict(l.split(" ", 1) if " " in l else (l, "") for l in
                    (model / "decode_decode_asr_tiny_valid.acc.ave" / "test" / "text").read_text().splitlines())
    assert hyp == pipeline[utt]

    # Rerun: every stage finds its outputs and skips (no retraining, no re-decoding).
    rerun = run(cmd, cwd=DEMO, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert rerun.stderr.count("is trained: skipped") == len(TAGS)
    assert rerun.stderr.count("all sets decoded: skipped") == len(TAGS) * 3
    for tag in TAGS:
        assert f"{tag}/exposure: skipped" in rerun.stderr
        assert f"{tag}/pack/{tag}_valid.acc.ave.zip: skipped" in rerun.stderr
    assert HEADER in rerun.stdout
    # A changed decoding option is a different output: decoded again (every scored checkpoint's
    # sets), exposure kept. One model shows it (the rule is per model; the stand-in tools of
    # test_stage_keys.py cover every model and stage).
    one_model = list(cmd)
    one_model[one_model.index("--seeds") + 1] = "0"
    one_model[one_model.index("--asr_configs") + 1] = "conf/train_asr_tiny_pcc.yaml"
    changed = run(one_model + ["--stage", "6", "--stop_stage", "8", "--inference_args", "--nbest 1"],
                  cwd=DEMO, timeout=900)
    assert changed.returncode == 0, changed.stderr[-4000:]
    assert "all sets decoded: skipped" not in changed.stderr
    assert "asr_train_asr_tiny_pcc_seed0" in changed.stderr
    assert "asr_train_asr_tiny_baseline" not in changed.stderr
    assert changed.stderr.count("exposure") and "exposure_1epoch: skipped" in changed.stderr


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
