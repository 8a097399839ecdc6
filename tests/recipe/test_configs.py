"""The shared configs: clip variants differ only in the clip keys; every key is an option of
our asr_train; recipes name configs that exist."""
import re
from pathlib import Path

import pytest
import yaml

from shared_helpers import CLIP_MODES, CONF, EGS2

CLIP_KEYS = {"clip", "clip_conf"}
FAMILIES = sorted({p.name.rsplit("_", 1)[0] for p in CONF.glob("train_asr_*_baseline.yaml")})


def variants(family: str) -> list:
    """Every ``<family>_<variant>.yaml`` (not those of a longer family such as ``..._960h``)."""
    longer = [f for f in FAMILIES if f != family and f.startswith(family + "_")]
    return [p for p in sorted(CONF.glob(f"{family}_*.yaml"))
            if not any(p.name.startswith(f + "_") for f in longer)]


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_families_exist():
    assert FAMILIES == ["train_asr_conformer", "train_asr_conformer_960h", "train_asr_demo",
                        "train_asr_fillets", "train_asr_shuffled", "train_asr_study",
                        "train_asr_tiny"]


@pytest.mark.parametrize("family", FAMILIES)
def test_variants_differ_only_in_clip_keys(family: str):
    base = load(CONF / f"{family}_baseline.yaml")
    modes = {}
    # The real-speech study's arms have no APCC; every other family has all three.
    expected = {v: m for v, m in CLIP_MODES.items()
                if v != "apcc" or family != "train_asr_fillets"}
    for variant in expected:
        cfg = load(CONF / f"{family}_{variant}.yaml")
        assert {k: v for k, v in cfg.items() if k not in CLIP_KEYS} == \
            {k: v for k, v in base.items() if k not in CLIP_KEYS}, variant
        modes[variant] = cfg["clip"]
    assert modes == expected
    # Further variants of a family (the study's granularity / C sweep) differ only in clip keys too.
    for path in variants(family):
        cfg = load(path)
        assert {k: v for k, v in cfg.items() if k not in CLIP_KEYS} == \
            {k: v for k, v in base.items() if k not in CLIP_KEYS}, path.name


def test_configs_are_valid_asr_train_options():
    from espnet_pcc.core.clip_config import ClipConfig
    from espnet_pcc.espnet2.task import PCCASRTask

    dests = {a.dest for a in PCCASRTask.get_parser()._actions}
    for path in sorted(CONF.glob("train_asr_*.yaml")):
        cfg = load(path)
        unknown = set(cfg) - dests
        assert not unknown, f"{path.name}: unknown keys {unknown}"
        ClipConfig.from_options(cfg["clip"], cfg["clip_conf"])  # raises on a bad combination


def test_recipes_name_existing_configs():
    for run_sh in sorted(EGS2.glob("*/asr1/run.sh")):
        text = run_sh.read_text()
        names = set(re.findall(r"conf/[\w${}]+\.yaml", text))
        assert names, run_sh
        for name in names:
            for size in ("demo", "tiny"):
                resolved = name.replace("${model}", size).replace("${decode}", size)
                assert (run_sh.parent / resolved).is_file(), f"{run_sh}: {resolved}"


def test_privacy_arms_are_the_study_pcc_on_the_poisson_sampler():
    """The privacy study's three arms: the study's PCC with batch_sampler poisson, differing
    from it and from each other only in the clip keys."""
    pcc = load(CONF / "train_asr_study_pcc.yaml")
    for name in ("pcc", "noise", "spk"):
        cfg = load(CONF / f"train_asr_privacy_{name}.yaml")
        assert cfg.pop("batch_sampler") == "poisson"
        assert {k: v for k, v in cfg.items() if k not in CLIP_KEYS} == \
            {k: v for k, v in pcc.items() if k not in CLIP_KEYS}, name
        assert cfg["clip"] == "per_core" and cfg["clip_conf"]["max_norm"] == 5.0


def test_the_live_batchnorm_arm_is_the_privacy_pcc_without_the_freeze():
    """The arm that measures what freezing BatchNorm's statistics costs differs from the
    privacy study's PCC (sigma = 0) in running_stats alone."""
    frozen = load(CONF / "train_asr_privacy_pcc.yaml")
    live = load(CONF / "train_asr_privacy_bnlive.yaml")
    assert frozen["clip_conf"].pop("running_stats") == "freeze"
    assert "running_stats" not in live["clip_conf"]
    assert live == frozen


@pytest.mark.parametrize("family", ["train_asr_shuffled", "train_asr_demo"])
def test_the_papers_baseline_is_pcc_with_the_average_clipped(family: str):
    """The paper's baseline: PCC's config with the cores' average clipped instead of each core
    (the same C and cores; only the clip mode differs)."""
    pcc = load(CONF / f"{family}_pcc.yaml")
    paper = load(CONF / f"{family}_paperbase.yaml")
    assert {k: v for k, v in paper.items() if k != "clip"} == \
        {k: v for k, v in pcc.items() if k != "clip"}
    assert (pcc["clip"], paper["clip"]) == ("per_core", "global_of_cores")


def test_the_third_study_trains_five_arms_of_one_family():
    """./run.sh --demo_size study3: the five arms are the shuffled family's configs, which
    differ from PCC's only in the clip keys (test_variants_differ_only_in_clip_keys), in the
    clip modes the plan names (docs/study.md, "Third study")."""
    run_sh = (EGS2 / "synth_demo" / "asr1" / "run.sh").read_text()
    block = run_sh[run_sh.index("    study3)"):]
    block = block[:block.index(";;")]
    configs = re.findall(r"conf/(train_asr_\w+)\.yaml", block)
    modes = {c.rsplit("_", 1)[1]: load(CONF / f"{c}.yaml")["clip"] for c in configs}
    assert modes == {"baseline": "global", "paperbase": "global_of_cores", "control": "none",
                     "pcc": "per_core", "apcc": "adaptive_per_core"}
    assert all(c.startswith("train_asr_shuffled_") for c in configs)


def test_noisy_conformer_configs_freeze_the_batch_norm_statistics():
    """With noise a model whose layers keep running statistics is refused unless they are
    frozen (espnet_pcc.core.release), and the conformer's convolution module has a BatchNorm1d."""
    noisy = [p for p in sorted(CONF.glob("train_asr_*.yaml"))
             if (load(p).get("clip_conf") or {}).get("noise_multiplier")]
    assert noisy
    for path in noisy:
        cfg = load(path)
        if cfg.get("encoder") == "conformer" and cfg["encoder_conf"].get("use_cnn_module"):
            assert cfg["clip_conf"].get("running_stats") == "freeze", path.name
