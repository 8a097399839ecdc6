"""Entry-point registries (espnet_pcc.registry) and the installed setup.py metadata."""
from importlib.metadata import entry_points

import pytest

from espnet_pcc import registry
from espnet_pcc.optim import PerCoreClipOptimizer
from espnet_pcc.tasks.asr import PCCASRTask
from espnet_pcc.trainer import PCCTrainer


def test_setup_py_declares_the_groups():
    assert {ep.name for ep in entry_points(group="espnet_pcc.optimizers")} >= {"per_core_clip"}
    assert {ep.name for ep in entry_points(group="espnet_pcc.trainers")} >= {"pcc"}
    assert {ep.name for ep in entry_points(group="espnet_pcc.tasks")} >= {"asr"}
    scripts = {ep.name for ep in entry_points(group="console_scripts")}
    assert {"espnet-pcc-asr-train", "espnet-pcc-make-canaries",
            "espnet-pcc-score-exposure", "espnet-pcc-check-data"} <= scripts


def test_load_resolves_registered_classes():
    assert registry.load("espnet_pcc.optimizers", "per_core_clip") is PerCoreClipOptimizer
    assert registry.load("espnet_pcc.trainers", "pcc") is PCCTrainer
    assert registry.load("espnet_pcc.tasks", "asr") is PCCASRTask


def test_unknown_name_is_one_line():
    with pytest.raises(ValueError, match="espnet_pcc.optimizers: no plug-in named 'dp_sgd'; "
                                         "registered: per_core_clip"):
        registry.load("espnet_pcc.optimizers", "dp_sgd")
