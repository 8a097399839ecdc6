"""Entry points: one list (espnet_pcc.registry) that setup.py declares, the installed metadata,
the plug-in loader, and a console script for every CLI a recipe runs."""
import re
import runpy
from importlib.metadata import entry_points
from pathlib import Path
from unittest import mock

import pytest
import torch

from espnet_pcc import registry
from espnet_pcc.core.optimizers import PerCoreClipOptimizer
from espnet_pcc.espnet2.checkpoints import load_checkpoint
from espnet_pcc.espnet2.task import PCCASRTask

ROOT = Path(__file__).resolve().parents[1]


def test_setup_py_declares_the_groups():
    assert {ep.name for ep in entry_points(group="espnet_pcc.optimizers")} >= {"per_core_clip"}
    scripts = {ep.name for ep in entry_points(group="console_scripts")}
    assert {"espnet-pcc-asr-train", "espnet-pcc-make-canaries",
            "espnet-pcc-score-exposure", "espnet-pcc-check-data"} <= scripts


def test_setup_py_declares_exactly_the_registry(monkeypatch):
    """setup.py takes its entry points from espnet_pcc/registry.py: one source of the names."""
    monkeypatch.chdir(ROOT)
    with mock.patch("setuptools.setup") as setup:
        runpy.run_path(str(ROOT / "setup.py"))
    declared = setup.call_args.kwargs["entry_points"]
    assert declared == registry.setup_entry_points()
    assert set(declared) == {"console_scripts", *registry.PLUGINS}
    assert "espnet-pcc-decode = espnet_pcc.bin.decode:main" in declared["console_scripts"]


def test_every_plugin_group_is_read_by_the_code(monkeypatch):
    """The only group is the optimizer wrapper, which PCCASRTask.build_optimizers loads."""
    assert set(registry.PLUGINS) == {registry.OPTIMIZERS}
    loaded = []
    real_load = registry.load
    monkeypatch.setattr(registry, "load",
                        lambda group, name: loaded.append((group, name)) or real_load(group, name))
    args = PCCASRTask.get_parser().parse_args([])
    args.clip, args.clip_conf = "per_core", {"max_norm": 1.0}
    args = PCCASRTask.check_args(args)
    (optimizer,) = PCCASRTask.build_optimizers(args, torch.nn.Linear(2, 2))
    assert loaded == [("espnet_pcc.optimizers", "per_core_clip")]
    assert isinstance(optimizer, PerCoreClipOptimizer)
    assert optimizer.clip_config is args.clip_config


def test_load_resolves_registered_classes():
    assert registry.load("espnet_pcc.optimizers", "per_core_clip") is PerCoreClipOptimizer


def test_unknown_name_is_one_line():
    with pytest.raises(ValueError, match="espnet_pcc.optimizers: no plug-in named 'dp_sgd'; "
                                         "registered: per_core_clip"):
        registry.load("espnet_pcc.optimizers", "dp_sgd")


def _recipe_clis():
    scripts = [ROOT / "egs2" / "TEMPLATE" / "asr1" / "pcc_asr.sh",
               *sorted((ROOT / "egs2").glob("*/asr1/run.sh"))]
    found = set()
    for script in scripts:
        found |= set(re.findall(r"-m espnet_pcc\.bin\.(\w+)", script.read_text()))
    return found


def test_every_cli_a_recipe_runs_is_a_console_script():
    clis = _recipe_clis()
    assert {"asr_train", "decode", "score_wer", "train_bpe"} <= clis
    for module in clis:
        name = registry.console_script(module)
        assert registry.CONSOLE_SCRIPTS.get(name) == f"espnet_pcc.bin.{module}:main", module
    assert registry.console_script("score_wer") == "espnet-pcc-score-wer"


def install_plugin_metadata(site: Path, name: str, target: str) -> None:
    """What `pip install` of another package that registers a wrapper leaves on sys.path:
    a dist-info directory whose entry_points.txt names it in the optimizer group."""
    info = site / "counting_wrapper_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: counting-wrapper-plugin\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{registry.OPTIMIZERS}]\n{name} = {target}\n")


def test_a_second_registered_wrapper_trains(corpus, tmp_path, monkeypatch):
    """The entry-point group is real: a wrapper another package registers through its
    entry-point metadata (not in registry.PLUGINS), which is not a PerCoreClipOptimizer, is
    chosen with --clip_wrapper and trains through asr_train."""
    from asr_train_helpers import train_args
    from espnet_pcc.bin import asr_train
    from trainer_helpers import CountingWrapper

    install_plugin_metadata(tmp_path / "site", "counting", "trainer_helpers:CountingWrapper")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert "counting" not in registry.PLUGINS[registry.OPTIMIZERS]
    assert registry.load(registry.OPTIMIZERS, "counting") is CountingWrapper
    monkeypatch.setattr(CountingWrapper, "cores_added", 0)
    out = tmp_path / "counting"
    asr_train.main(train_args(corpus, out, {"clip": "per_core", "max_epoch": 1,
                                            "clip_conf": {"max_norm": 1.0, "num_cores": 2}},
                              extra=["--clip_wrapper", "counting"]))
    # 8 utterances in 2 batches of 4, 2 cores each.
    assert CountingWrapper.cores_added == 4
    saved = load_checkpoint(out / "checkpoint.pth")["optimizers"][0]
    assert saved["pcc"]["steps"] == 2


def test_an_unregistered_wrapper_is_one_line(corpus, tmp_path, capsys):
    from asr_train_helpers import train_args
    from espnet_pcc.bin import asr_train

    with pytest.raises(SystemExit):
        asr_train.main(train_args(corpus, tmp_path / "x", {"clip": "per_core",
                                                           "clip_conf": {"max_norm": 1.0}},
                                  extra=["--clip_wrapper", "dp_sgd"]))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--clip_wrapper 'dp_sgd' is not registered" in err[0], err
