"""The synthetic demo through ESPnet3 (egs3/synth_demo/esp2_asr): its arms' configs, the check
that keeps them one experiment, and the whole recipe at its tiny size, end to end through
ESPnet3's stages and the project's canary, scoring, exposure and report steps (about half a
minute on 2 CPU cores)."""
import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from espnet_pcc.recipe.espnet3_demo import DemoConfigError, check_arms, load_training_config
from recipe_helpers import run
from shared_helpers import REPO

RECIPE = REPO / "egs3" / "synth_demo" / "esp2_asr"
#: Each arm's clipping: the paper's baseline (PCC's cores, their average clipped), PCC, APCC.
ARMS = {"baseline": ("global_of_cores", {"max_norm": 5.0, "num_cores": 4}),
        "pcc": ("per_core", {"max_norm": 5.0, "num_cores": 4}),
        "apcc": ("adaptive_per_core", {"num_cores": 4})}
LABELS = {"baseline": "global_of_cores (C=5.0, 4 cores)", "pcc": "per_core (C=5.0, 4 cores)",
          "apcc": "adaptive_per_core (4 cores)"}
TINY_ARMS = [f"conf/tiny/training_{arm}.yaml" for arm in ARMS]


@pytest.mark.parametrize("size", ["", "tiny/"])
def test_the_arms_differ_only_in_the_strategys_clip_keys(size: str):
    rest = {}
    for arm, (clip, clip_conf) in ARMS.items():
        config = OmegaConf.to_container(
            load_training_config(RECIPE / "conf" / f"{size}training_{arm}.yaml"))
        trainer = config["trainer"]
        assert trainer["gradient_clip_val"] is None  # the strategy clips, Lightning does not
        strategy = trainer["strategy"]
        assert strategy["_target_"] == "espnet_pcc.lightning.per_core_strategy"
        assert (strategy.pop("clip"), strategy.pop("clip_conf")) == (clip, clip_conf)
        assert config.pop("exp_tag") == f"training_{arm}"
        rest[arm] = config
    assert rest["pcc"] == rest["baseline"] and rest["apcc"] == rest["baseline"]
    # Batches drawn afresh every epoch: a canary's copies are not kept in one step.
    assert rest["pcc"]["dataloader"]["train"]["iter_factory"]["shuffle_within_batch"] is True


def test_arms_that_differ_in_more_than_their_clipping_are_refused(tmp_path: Path):
    pcc = RECIPE / "conf" / "training_pcc.yaml"
    other = tmp_path / "training_deeper.yaml"
    other.write_text(yaml.safe_dump({"defaults": [str(pcc.with_suffix("")), "_self_"],
                                     "model": {"encoder_conf": {"num_blocks": 6}}}))
    with pytest.raises(DemoConfigError, match=r"training_deeper.yaml differs from .*"
                                              r"training_pcc.yaml in model.encoder_conf.num_blocks"):
        check_arms([pcc, other])
    with pytest.raises(DemoConfigError, match="two training configs share a name"):
        check_arms([pcc, RECIPE / "conf" / "tiny" / "training_pcc.yaml"])
    check_arms([pcc, RECIPE / "conf" / "training_apcc.yaml"])


def _copy_recipe(tmp_path: Path) -> Path:
    recipe = tmp_path / "esp2_asr"
    shutil.copytree(RECIPE, recipe,
                    ignore=shutil.ignore_patterns("data", "exp", "downloads", "__pycache__"))
    return recipe


def _keys(path: Path):
    return [line.split(" ", 1)[0] for line in path.read_text().splitlines()]


@pytest.mark.needs_tts
def test_tiny_demo_end_to_end(tmp_path: Path):
    recipe = _copy_recipe(tmp_path)
    proc = run([sys.executable, "run.py", "--training_config", *TINY_ARMS,
                "--inference_config", "conf/tiny/inference.yaml",
                "--metrics_config", "conf/metrics.yaml"], cwd=recipe, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]

    # The report's table: one row per arm, in its clipping mode; one process x 4 cores a step.
    rows = [line.split("|") for line in proc.stdout.splitlines() if line.startswith("|training_")]
    assert [r[1] for r in rows] == [f"training_{arm}" for arm in ARMS]
    assert [r[2] for r in rows] == list(LABELS.values())
    for r in rows:
        wer_dev, wer_test, exposure_x1, exposure_x4 = map(float, r[3:7])  # numbers, not "-"
        assert r[-3:-1] == ["4", "1"]  # cores/step, epochs
    exp, data = recipe / "exp" / "tiny", recipe / "data" / "tiny"
    results = (exp / "RESULTS.md").read_text()
    assert "|model|clip|WER dev|WER test|exposure x1|exposure x4|s/step|cores/step|epochs|" \
        in results and "Trained through ESPnet3" in results and "last.ckpt" in results
    assert (exp / "pcc_comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert len((exp / "RESULTS_raw" / "runs.tsv").read_text().splitlines()) == 1 + 3

    for arm, (clip, _) in ARMS.items():
        d = exp / f"training_{arm}"
        config = yaml.safe_load((d / "config.yaml").read_text())  # ESPnet3's, for espnet2
        assert config["trainer"]["strategy"]["clip"] == clip
        # The strategy trained: its telemetry is in ESPnet3's epoch summary; APCC's bound is
        # the step's smallest core norm, the others' C.
        summary = next(line for line in (d / "train.log").read_text().splitlines()
                       if "epoch_summary:1epoch:train:" in line)
        assert "num_cores=" in summary
        assert ("clip_bound=5," in summary) == (arm != "apcc")
        for test_set in ("dev", "test"):
            set_dir = d / "inference" / test_set
            assert _keys(set_dir / "text.scp") == _keys(data / test_set / "text")
            ours = json.loads((set_dir / "score_wer" / "result.json").read_text())["Err"]
            espnet3 = json.loads((d / "inference" / "metrics.json").read_text())
            assert espnet3["espnet3.systems.esp2_asr.metrics.wer.WER"][test_set]["WER"] \
                == pytest.approx(ours, abs=0.05)
        assert (d / "exposure" / "summary.json").is_file()

    # Canaries went into the training data only; the tokenizer saw the corpus text alone.
    assert "canary-x04-" in (data / "train_canary" / "text").read_text()
    for test_set in ("dev", "test"):
        assert "canary" not in (data / test_set / "text").read_text()
    tokenizer_text = (data / "train_tokenizer" / "train.txt").read_text().splitlines()
    assert len(tokenizer_text) == len((data / "train" / "text").read_text().splitlines())
