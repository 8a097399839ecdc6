"""Every espnet2 symbol the package relies on, by name, with what it must accept.

The espnet2 integration subclasses espnet2's Trainer and ASRTask and calls a few of their
helpers. A new ESPnet release that renames, moves or re-signs one of them fails here, in one
test naming the symbol and what espnet_pcc uses it for, instead of deep inside a training run.
Both supported releases (espnet 202511, 202611) pass; `make test-espnet202511` runs this file
against the older one.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Sequence

import pytest

# (module, attribute path, parameters or fields it must have, what espnet_pcc uses it for)
REQUIRED = [
    ("espnet2.train.trainer", "Trainer.run",
     ("model", "optimizers", "schedulers", "train_iter_factory", "valid_iter_factory",
      "plot_attention_iter_factory", "trainer_options", "distributed_option"),
     "PCCTrainer.run calls it by keyword"),
    ("espnet2.train.trainer", "Trainer.train_one_epoch",
     ("model", "iterator", "optimizers", "schedulers", "scaler", "reporter", "summary_writer",
      "options", "distributed_option"),
     "PCCTrainer.train_one_epoch overrides it and calls it for clip global / none"),
    ("espnet2.train.trainer", "Trainer.build_options", ("args",),
     "PCCTrainer.build_options"),
    ("espnet2.train.trainer", "TrainerOptions",
     ("accum_grad", "best_model_criterion", "early_stopping_criterion", "grad_clip",
      "grad_noise", "keep_nbest_models", "log_interval", "max_epoch", "ngpu",
      "no_forward_run", "output_dir", "patience", "resume", "use_wandb"),
     "PCCTrainerOptions extends it; the trainer and checkpoints read these fields"),
    ("espnet2.train.trainer", "torch", (),
     "checkpoints.atomic_torch_saves swaps the module's torch for atomic saves"),
    ("espnet2.main_funcs.average_nbest_models", "torch", (),
     "checkpoints.atomic_torch_saves swaps the module's torch for atomic saves"),
    ("espnet2.train.reporter", "Reporter",
     ("check_early_stopping", "get_best_epoch", "get_epoch", "has", "load_state_dict",
      "sort_epochs"),
     "checkpoints: resume completion and the early-stopping rule"),
    ("espnet2.train.trainer", "Reporter", ("finish_epoch", "load_state_dict"),
     "release.released_epoch_reporter swaps the Reporter Trainer.run builds for one without "
     "the GPU memory peak"),
    ("espnet2.train.reporter", "SubReporter",
     ("get_epoch", "get_total_count", "log_message", "measure_iter_time", "measure_time",
      "next", "register", "tensorboard_add_scalar", "wandb_log"),
     "PCCTrainer.train_one_epoch reports through it as espnet2's loop does"),
    ("espnet2.train.distributed_utils", "DistributedOption",
     ("distributed", "dist_rank"), "the trainer and the task"),
    ("espnet2.tasks.asr", "ASRTask.build_iter_factory",
     ("args", "distributed_option", "mode", "kwargs"),
     "PCCASRTask.build_iter_factory calls it by keyword"),
    ("espnet2.tasks.asr", "ASRTask.build_iter_options", ("args", "distributed_option", "mode"),
     "PCCASRTask's training iterators"),
    ("espnet2.tasks.asr", "ASRTask.build_dataset", ("args", "iter_options"),
     "PCCASRTask's training iterators"),
    ("espnet2.tasks.asr", "ASRTask.build_optimizers", ("args", "model"),
     "PCCASRTask.build_optimizers wraps what it builds"),
    ("espnet2.tasks.asr", "ASRTask.build_preprocess_fn", ("args", "train"),
     "exposure scoring tokenises the canaries as training did"),
    ("espnet2.tasks.asr", "ASRTask.build_model", ("args",),
     "exposure scoring; PCCASRTask.build_model checks the model's running statistics"),
    ("espnet2.tasks.asr", "ASRTask.check_task_requirements", (), "PCCASRTask.check_args"),
    ("espnet2.tasks.asr", "ASRTask.add_task_arguments", ("parser",),
     "PCCASRTask adds --clip, --clip_conf, --batch_sampler"),
    ("espnet2.tasks.asr", "ASRTask.main", ("args", "cmd"), "PCCASRTask.main"),
    ("espnet2.tasks.asr", "ASRTask.main_worker", ("args",), "PCCASRTask.main_worker"),
    ("espnet2.tasks.abs_task", "IteratorOptions",
     ("batch_size", "collate_fn", "distributed", "num_iters_per_epoch", "shape_files"),
     "PCCASRTask.build_iter_factory"),
    ("espnet2.iterators.sequence_iter_factory", "SequenceIterFactory.__init__",
     ("dataset", "batches", "seed", "num_iters_per_epoch", "shuffle", "shuffle_within_batch",
      "num_workers", "collate_fn", "pin_memory"),
     "PCCASRTask.build_sampler_iter_factory"),
    ("espnet2.iterators.abs_iter_factory", "AbsIterFactory", (), "a return type"),
    ("espnet2.samplers.abs_sampler", "AbsSampler", ("generate",),
     "the shuffled, speaker-core and Poisson samplers subclass it"),
    ("espnet2.samplers.build_batch_sampler", "build_batch_sampler",
     ("type", "batch_size", "batch_bins", "shape_files", "sort_in_batch", "sort_batch",
      "drop_last", "min_batch_size", "fold_lengths", "padding", "utt2category_file"),
     "samplers.colocation_plans builds ESPnet's folded batches"),
    ("espnet2.schedulers.abs_scheduler", "AbsBatchStepScheduler", ("step",),
     "PCCTrainer._step steps batch schedulers"),
    ("espnet2.schedulers.abs_scheduler", "AbsScheduler", (), "a parameter type"),
    ("espnet2.schedulers.abs_scheduler", "AbsValEpochStepScheduler", (),
     "PCCASRTask refuses a train-phase --val_scheduler_criterion with noise"),
    ("espnet2.tasks.abs_task", "scheduler_classes", (),
     "PCCASRTask finds the scheduler --scheduler names"),
    ("espnet2.torch_utils.add_gradient_noise", "add_gradient_noise",
     ("model", "iteration", "duration", "eta", "scale_factor"), "--grad_noise"),
    ("espnet2.torch_utils.device_funcs", "to_device", ("data", "device"),
     "PCCTrainer.train_one_epoch"),
    ("espnet2.torch_utils.recursive_op", "recursive_average", ("obj", "weight", "distributed"),
     "the stats of a step under DDP"),
    ("espnet2.utils.build_dataclass", "build_dataclass", ("dataclass", "args"),
     "PCCTrainer.build_options"),
    ("espnet2.utils.nested_dict_action", "NestedDictAction", (), "--clip_conf"),
    ("espnet2.utils.types", "str2bool", (), "report and study_export options"),
    ("espnet2.bin.asr_inference", "main", ("cmd",), "the decode launcher"),
    ("espnet2.bin.asr_inference", "Speech2Text", (), "the stock-espnet2 decode"),
]


def resolve(module_name: str, path: str):
    obj = importlib.import_module(module_name)
    for name in path.split("."):
        obj = getattr(obj, name)
    return obj


def names_of(obj) -> Sequence[str]:
    """A callable's parameter names, a dataclass's fields, or a class's attributes."""
    if dataclasses.is_dataclass(obj):
        return [f.name for f in dataclasses.fields(obj)]
    if inspect.isclass(obj):
        return [n for n in dir(obj)]
    return list(inspect.signature(inspect.unwrap(obj)).parameters)


@pytest.mark.parametrize("module_name, path, needs, use", REQUIRED,
                         ids=[f"{m}.{p}" for m, p, _, _ in REQUIRED])
def test_espnet2_symbol(module_name: str, path: str, needs: Sequence[str], use: str):
    import espnet2

    where = f"{module_name}.{path} (espnet {espnet2.__version__})"
    try:
        obj = resolve(module_name, path)
    except (ImportError, AttributeError) as e:
        pytest.fail(f"{where} is gone ({e}); espnet_pcc needs it: {use}")
    missing = [n for n in needs if n not in names_of(obj)]
    assert not missing, f"{where} has no {', '.join(missing)}; espnet_pcc needs it: {use}"


def test_the_reporter_attributes_read():
    """Instance attributes (not in a class's names): SubReporter.count, the rows of the
    epoch so far (PCCTrainer.train_one_epoch's log window), and Reporter.stats, each epoch's
    values per phase (release.ReleasedEpochReporter removes one)."""
    from espnet2.train.reporter import Reporter

    reporter = Reporter()
    with reporter.observe("train", 1) as sub:
        assert sub.count == 0
        sub.register({"grad_norm": 2.0})
        sub.next()
        assert sub.count == 1
    assert reporter.stats[1]["train"]["grad_norm"] == 2.0


def test_checkpoints_load_with_weights_only():
    """espnet2 202611 resumes through safe_torch_load (weights_only=True): the state the
    per-core wrapper adds to checkpoint.pth must be plain (tested in test_asr_train too)."""
    import torch

    from espnet_pcc.core.clip_config import ClipConfig
    from espnet_pcc.core.optimizers.per_core import PerCoreClipOptimizer

    model = torch.nn.Linear(3, 2)
    opt = PerCoreClipOptimizer(torch.optim.SGD(model.parameters(), lr=0.1),
                               clip_config=ClipConfig.from_options("per_core", {"max_norm": 1.0}),
                               noise_seed=3)
    model(torch.ones(1, 3)).sum().backward()
    opt.add_core()  # an unfinished step: its cores are in the state too
    buffer = __import__("io").BytesIO()
    torch.save({"optimizers": [opt.state_dict()]}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)["optimizers"][0]
    assert state["pcc"]["pending"] is not None and state["pcc"]["noise_seed"] == 3
