"""ESPnet3 training YAMLs that switch on per-core clipping by `_target_`, run through ESPnet3's
own config loading and trainer wrapper (`ESPnetLightningModule`, `ESPnet3LightningTrainer`) on
a tiny model: the LibriSpeech-100 e-branchformer with PCC, and the exactness of an ESPnet3 step
(its ``(utt_ids, dict)`` batches cut into cores) against `clipped_average`."""
import copy
from importlib import resources

import pytest
import torch
from espnet3.components.modeling.lightning_module import ESPnetLightningModule
from espnet3.components.trainers.trainer import ESPnet3LightningTrainer
from espnet3.utils.config_utils import load_and_merge_config
from omegaconf import OmegaConf

from espnet_pcc.core.clip_config import ClipConfigError
from espnet_pcc.core.clipping import clipped_average
from espnet_pcc.lightning import LightningCoreClipOptimizer, PerCoreSingleDeviceStrategy
from espnet_pcc.lightning.batches import split_into_cores
from espnet_pcc.lightning.strategy import lightning_clip_config
from espnet3_helpers import TinyModel, tiny_data_config
from shared_helpers import REPO

PCC_YAML = REPO / "egs3/librispeech_100/esp2_asr/conf/training_e_branchformer_pcc.yaml"
E_BRANCHFORMER = "conf/tuning/training_e_branchformer.yaml"
# The sections PCC leaves as the e-branchformer recipe has them.
UNCHANGED = ("task", "dataset", "create_dataset", "tokenizer", "model", "optimizer", "scheduler",
             "best_model_criterion", "collect_stats_train_mode", "parallel", "dataloader")


def _load(path):
    return load_and_merge_config(path, config_name="training.yaml", resolve=False)


def test_librispeech_pcc_is_the_e_branchformer_with_per_core_clipping():
    with resources.as_file(resources.files("egs3.librispeech_100.esp2_asr")
                           .joinpath(E_BRANCHFORMER)) as path:
        stock = _load(path)
    pcc, stock = (OmegaConf.to_container(c) for c in (_load(PCC_YAML), stock))
    for key in UNCHANGED:
        assert pcc[key] == stock[key], key
    trainer, stock_trainer = pcc["trainer"], stock["trainer"]
    assert stock_trainer.pop("gradient_clip_val") == 5.0
    assert trainer.pop("gradient_clip_val") is None
    assert stock_trainer.pop("strategy") == "auto"
    strategy = trainer.pop("strategy")
    assert trainer == stock_trainer
    assert strategy["clip"] == "per_core" and strategy["clip_conf"]["max_norm"] == 5.0


def _espnet3_trainer(config, exp_dir, model=None):
    module = ESPnetLightningModule(model or TinyModel(), config)
    return ESPnet3LightningTrainer(model=module, exp_dir=str(exp_dir), config=config.trainer,
                                   best_model_criterion=config.best_model_criterion)


def _tiny_run_of(loaded, tmp_path):
    """The YAML's trainer, optimizer and scheduler, on the tiny model and data, one epoch."""
    config = OmegaConf.create({
        "num_device": 1, "num_nodes": 1, "exp_dir": str(tmp_path / "exp"),
        "optimizer": loaded.optimizer, "scheduler": loaded.scheduler,
        "best_model_criterion": loaded.best_model_criterion, "trainer": loaded.trainer,
        **tiny_data_config(num_items=32, batch_size=4)})
    config.trainer.max_epochs = 1
    OmegaConf.resolve(config)
    return config


def test_librispeech_pcc_trains_through_espnet3s_trainer(tmp_path):
    config = _tiny_run_of(_load(PCC_YAML), tmp_path)
    espnet3_trainer = _espnet3_trainer(config, tmp_path / "exp")
    espnet3_trainer.fit()
    trainer = espnet3_trainer.trainer
    assert isinstance(trainer.strategy, PerCoreSingleDeviceStrategy)
    optimizer = trainer.optimizers[0]
    assert isinstance(optimizer, LightningCoreClipOptimizer)
    assert isinstance(optimizer.original_optimizer, torch.optim.Adam)
    assert trainer.global_step == 2  # 8 micro-batches, accumulate_grad_batches 4
    metrics = trainer.callback_metrics
    assert float(metrics["train/num_cores"]) == 4.0  # one per micro-batch
    assert float(metrics["train/clip_bound"]) == 5.0
    assert "valid/acc" in metrics


def test_the_recipes_own_gradient_clip_val_is_refused_with_pcc(tmp_path):
    config = _tiny_run_of(_load(PCC_YAML), tmp_path)
    config.trainer.gradient_clip_val = 5.0
    with pytest.raises(ClipConfigError, match="gradient_clip_val=5 .*clip: per_core"):
        _espnet3_trainer(config, tmp_path / "exp").fit()


@pytest.mark.parametrize("clip,clip_conf", [("per_core", {"max_norm": 1.0, "num_cores": 2}),
                                            ("adaptive_per_core", {"num_cores": 2})])
def test_an_espnet3_step_is_clipped_average_of_its_cores(tmp_path, clip, clip_conf):
    """SGD, so the update is visible in the weights: ESPnet3's (utt_ids, dict) micro-batches,
    each cut into 2 cores, 2 micro-batches a step."""
    lr = 0.1
    config = OmegaConf.create({
        "num_device": 1, "exp_dir": str(tmp_path / "exp"),
        "optimizer": {"_target_": "torch.optim.SGD", "lr": lr},
        "scheduler": {"_target_": "torch.optim.lr_scheduler.ConstantLR", "factor": 1.0},
        "best_model_criterion": [["valid/loss", 1, "min"]],
        "trainer": {"accelerator": "cpu", "devices": 1, "max_epochs": 1,
                    "default_root_dir": str(tmp_path),
                    "accumulate_grad_batches": 2, "log_every_n_steps": 1,
                    "strategy": {"_target_": "espnet_pcc.lightning.per_core_strategy",
                                 "clip": clip, "clip_conf": clip_conf}},
        **tiny_data_config(num_items=16, batch_size=4)})
    model = TinyModel()
    start = copy.deepcopy(model)
    espnet3_trainer = _espnet3_trainer(config, tmp_path / "exp", model=model)
    batches = list(espnet3_trainer.model.train_dataloader())
    espnet3_trainer.fit()

    clip_config = lightning_clip_config(clip, clip_conf)
    for step in range(2):
        cores = [core for batch in batches[2 * step:2 * step + 2]
                 for core in split_into_cores(batch, clip_config)]
        assert len(cores) == 4 and all(len(ids) == 2 for ids, _ in cores)
        grads = []
        for _, core in cores:
            start.zero_grad()
            start(**core)[0].backward()
            grads.append([p.grad.clone() for p in start.parameters()])
        update, _ = clipped_average(grads, clip, clip_conf.get("max_norm"))
        with torch.no_grad():
            for p, u in zip(start.parameters(), update):
                p.add_(u, alpha=-lr)
    for p, q in zip(model.parameters(), start.parameters()):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-6)
