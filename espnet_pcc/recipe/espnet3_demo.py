"""The synthetic demo through ESPnet3 (egs3/synth_demo/esp2_asr/run.py): baseline / PCC / APCC
trained by ESPnet3's own stages, with the project's canary and exposure stages around them,
compared in the espnet2 demo's report.

:class:`SynthDemoSystem` is ESPnet3's ASR system with four stages added, each on its
config role as ESPnet3 declares stages:

    create_dataset     ESPnet3's (the recipe's DatasetBuilder: corpus and Kaldi data dirs)
    insert_canaries    the training config's ``canaries:``: make_canaries, then each canary
                       repeated into a copy of the training set (what training reads)
    train_tokenizer, collect_stats, train       ESPnet3's
    decode             ESPnet3's ``infer`` without its Dask cluster: espnet2's Speech2Text as
                       the inference config's ``model:`` block builds it, in this process,
                       writing what ``infer`` writes (``<inference_dir>/<set>/text.scp``)
    measure            ESPnet3's (its WER/CER of those files)
    score_wer          jiwer WER/CER of every decoded set (the espnet2 demo's stage 7 files,
                       ``<exp_dir>/<inference dir>/<set>/score_{wer,cer}/result.json``)
    score_exposure     the inference config's ``exposure:``: the canaries' exposure under the
                       decoded model (``<exp_dir>/exposure/``)

ESPnet3's ``infer`` stays declared: it runs every inference through ``espnet3.parallel``, a Dask
cluster even for one local worker, and dask is an extra of espnet that espnet-pcc does not
install; where it is installed, ``infer`` writes the same files as ``decode``.

:func:`main` runs them over several arms (training configs): the data stages once, with the
first arm's config (the arms must differ in nothing else than their clipping and seed,
:func:`check_arms`), every other stage for each arm through ESPnet3's ``launch``, then the
``report`` over the arms (:func:`write_report`: the espnet2 demo's RESULTS.md, plots and raw
data, :func:`espnet_pcc.recipe.stage9.write_comparison`).
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from espnet3.contract.stages import StageSpec, roles, stage_names
from espnet3.systems.esp2_asr.system import ASRSystem
from omegaconf import DictConfig, OmegaConf

from espnet_pcc.errors import UserError, run_cli, setup_logging

logger = logging.getLogger(__name__)

#: Where ESPnet3's defaults for an ASR recipe's configs live (what its ``launch`` merges).
DEFAULT_CONF_PACKAGE = "egs3.TEMPLATE.esp2_asr"

#: The stages that write the data every arm shares: run once, with the first arm's config.
DATA_STAGES = ("create_dataset", "insert_canaries", "train_tokenizer", "collect_stats")
#: The stages after which the demo is complete (ESPnet3's publication stages are not run
#: unless named).
DEMO_STAGES = DATA_STAGES + ("train", "decode", "measure", "score_wer", "score_exposure")
REPORT = "report"
#: ESPnet3's stages after measure (packing and uploading a model, a demo), declared as its
#: ASR system declares them.
PUBLICATION_STAGES = ("pack_model", "upload_model", "pack_demo", "upload_demo")

#: The keys in which the arms may differ: their clipping, their seed (a seed's run is an arm
#: of its own, ``<arm>_seed<N>``, as the report groups them) and the experiment's name.
ARM_KEYS = (("trainer", "strategy", "clip"), ("trainer", "strategy", "clip_conf"), ("seed",),
            ("exp_tag",))

#: The ``canaries:`` keys that are not make_canaries' generation settings.
CANARY_PATHS = ("canary_dir", "train_dir", "output_dir")


class DemoConfigError(UserError):
    """A config or an option the demo cannot run."""


def _block(config: DictConfig, key: str, where: str) -> Dict[str, Any]:
    value = config.get(key)
    if value is None:
        raise DemoConfigError(f"{where} has no {key}: block")
    return OmegaConf.to_container(value, resolve=True)


def make_and_insert_canaries(block: Dict[str, Any]) -> Dict[str, int]:
    """make_canaries with the ``canaries:`` block's settings (its keys are make_canaries'
    options) into ``canary_dir``, then each canary repeated into a copy of ``train_dir`` at
    ``output_dir``. Both steps keep outputs made with the same settings."""
    from espnet_pcc.measurement.canary.generate import CanaryConfig, generate
    from espnet_pcc.measurement.canary.insert import insert
    from espnet_pcc.measurement.canary.vocab import load_vocab

    settings = dict(block)
    missing = [k for k in CANARY_PATHS if not settings.get(k)]
    if missing:
        raise DemoConfigError(f"canaries: block lacks {', '.join(missing)}")
    known = {*CanaryConfig.__dataclass_fields__, *CANARY_PATHS, "vocab", "vocab_size",
             "min_word_len", "nj"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise DemoConfigError(f"canaries: unknown key {unknown[0]!r} (the keys are "
                              f"make_canaries' options: {', '.join(sorted(known))})")
    paths = {k: Path(settings.pop(k)) for k in CANARY_PATHS}
    vocab = settings.pop("vocab", "wordfreq")
    vocab_size = int(settings.pop("vocab_size", 10000))
    min_word_len = int(settings.pop("min_word_len", 3))
    nj = int(settings.pop("nj", 2))
    if "repeat_counts" in settings:
        settings["repeat_counts"] = tuple(settings["repeat_counts"])
    cfg = CanaryConfig(**settings)
    cfg.validate()
    words = load_vocab(vocab, size=vocab_size, min_len=min_word_len, language=cfg.language)
    generate(paths["canary_dir"], words, cfg, vocab_source=vocab, nj=nj)
    return insert(paths["train_dir"], paths["canary_dir"], paths["output_dir"])


def _test_sets(inference_config: DictConfig) -> List[Tuple[str, Path]]:
    """(name, Kaldi data dir) of every decoded set: the ``dataset.test`` entries'
    ``data_dir``/``split`` (the recipe's Dataset arguments)."""
    sets = []
    for entry in inference_config.dataset.test:
        args = entry.get("data_src_args") or {}
        if not args.get("data_dir") or not args.get("split"):
            raise DemoConfigError(f"inference config: test set {entry.get('name')!r} has no "
                                  f"data_src_args.data_dir and .split (a Kaldi data dir)")
        sets.append((str(entry.name), Path(args.data_dir) / str(args.split)))
    return sets


def decode_sets(inference_config: DictConfig) -> None:
    """Decode every test set with espnet2's Speech2Text built from the config's ``model:``
    block (its ``_target_`` and arguments, as ESPnet3's inference provider builds it; the
    block names the device), ``batch_size`` utterances per call (a list is one beam search,
    as ESPnet3 batches),
    and write the best hypothesis of each utterance to ``<inference_dir>/<set>/text.scp``,
    keyed by utterance id: the file ESPnet3's ``infer`` writes and its ``measure`` reads."""
    from hydra.utils import instantiate

    from espnet_pcc.fileio import atomic_write_text
    from espnet_pcc.recipe.espnet3_data import KaldiDirDataset

    for key in ("asr_train_config", "asr_model_file"):
        path = inference_config.model.get(key)
        if path and not Path(path).is_file():
            raise DemoConfigError(f"inference config: model.{key} {path} not found (written "
                                  f"by the train stage)")
    model = instantiate(inference_config.model)
    batch_size = int(inference_config.get("batch_size") or 1)
    for name, data_dir in _test_sets(inference_config):
        dataset = KaldiDirDataset(split=data_dir.name, data_dir=str(data_dir.parent))
        lines = []
        for start in range(0, len(dataset), batch_size):
            indices = range(start, min(start + batch_size, len(dataset)))
            speech = [dataset[i]["speech"] for i in indices]
            nbests = model(speech) if batch_size > 1 else [model(speech[0])]
            for i, nbest in zip(indices, nbests):
                text = nbest[0][0] if nbest and nbest[0][0] is not None else ""
                lines.append(f"{dataset.utt_ids[i]} {text}".rstrip())
        out = Path(inference_config.inference_dir) / name / "text.scp"
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, "\n".join(lines) + "\n")
        logger.info("decode: %s: %d utterances -> %s", name, len(lines), out)


class SynthDemoSystem(ASRSystem):
    """ESPnet3's ASR system with the project's canary, scoring and exposure stages (module
    doc); its publication stages stay declared, after them."""

    stages = (
        StageSpec(name="create_dataset", config="training", log_dir="data_dir"),
        StageSpec(name="insert_canaries", config="training", log_dir="data_dir"),
        StageSpec(name="train_tokenizer", config="training", log_dir="tokenizer.save_path"),
        StageSpec(name="collect_stats", config="training", log_dir="stats_dir"),
        StageSpec(name="train", config="training", log_dir="exp_dir"),
        StageSpec(name="infer", config="inference", log_dir="inference_dir"),
        StageSpec(name="decode", config="inference", log_dir="inference_dir"),
        StageSpec(name="measure", config="metrics", log_dir="inference_dir"),
        StageSpec(name="score_wer", config="inference", log_dir="inference_dir"),
        StageSpec(name="score_exposure", config="inference", log_dir="exp_dir"),
        *(s for s in ASRSystem.stages if s.name in PUBLICATION_STAGES),
    )

    def insert_canaries(self):
        """The training config's ``canaries:`` (:func:`make_and_insert_canaries`)."""
        counts = make_and_insert_canaries(_block(self.training_config, "canaries",
                                                 "training config"))
        logger.info("insert_canaries: %d training + %d canary utterances",
                    counts["train"], counts["inserted"])

    def decode(self):
        """Every test set decoded by the inference config's ``model:`` (:func:`decode_sets`)."""
        decode_sets(self.inference_config)

    def score_wer(self):
        """WER and CER of every test set's ``text.scp`` (what ``infer`` wrote) against its
        Kaldi data dir, as the espnet2 demo scores them."""
        from espnet_pcc.measurement.wer import score_dir

        inference_dir = Path(self.inference_config.inference_dir)
        for name, data_dir in _test_sets(self.inference_config):
            result = score_dir(data_dir, inference_dir / name / "text.scp", inference_dir / name)
            logger.info("score_wer: %s WER %s %%, CER %s %%", name, result["wer"]["Err"],
                        result["cer"]["Err"])

    def score_exposure(self):
        """The exposure of the canaries of ``exposure.canary_dir`` under the decoded model
        (the inference config's ``model.asr_train_config`` / ``asr_model_file``)."""
        from espnet_pcc.measurement.exposure.run import score_exposure

        exposure = _block(self.inference_config, "exposure", "inference config")
        model = self.inference_config.model
        summary = score_exposure(model.asr_train_config, model.asr_model_file,
                                 exposure["canary_dir"], exposure["output_dir"],
                                 batch_size=int(exposure.get("batch_size", 32)),
                                 device=str(exposure.get("device", "cpu")))
        logger.info("score_exposure: %s written (%s canaries)", exposure["output_dir"],
                    summary.get("num_canaries"))


# --------------------------------------------------------------------------- several arms
def load_training_config(path: Path, resolve: bool = False) -> DictConfig:
    """An arm's training config as ESPnet3's ``launch`` loads it (merged with ESPnet3's
    template defaults)."""
    from espnet3.utils.config_utils import load_and_merge_config

    if not Path(path).is_file():
        raise DemoConfigError(f"training config {path} not found")
    return load_and_merge_config(Path(path), config_name="training.yaml",
                                 default_package=DEFAULT_CONF_PACKAGE, resolve=resolve)


def _without_arm_keys(config: DictConfig) -> Dict[str, Any]:
    plain = OmegaConf.to_container(config, resolve=False)
    for path in ARM_KEYS:
        node = plain
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return plain


def _first_difference(a: Any, b: Any, prefix: str = "") -> Optional[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            found = _first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    return prefix.rstrip(".") if a != b else None


def check_arms(arms: Sequence[Path]) -> None:
    """The arms must be one experiment but for their clipping and seed: the data stages run
    once (with the first arm's config) and the report compares clipping modes. Refuses two
    arms with one experiment dir too."""
    if not arms:
        raise DemoConfigError("no training config given")
    if len(set(Path(a).stem for a in arms)) != len(arms):
        raise DemoConfigError(f"two training configs share a name ({' '.join(map(str, arms))}): "
                              f"each arm's name is its experiment dir")
    first = _without_arm_keys(load_training_config(arms[0]))
    for arm in arms[1:]:
        key = _first_difference(first, _without_arm_keys(load_training_config(arm)))
        if key:
            raise DemoConfigError(
                f"{arm} differs from {arms[0]} in {key}: the arms may differ only in "
                f"trainer.strategy.clip/clip_conf and seed (they share the data stages)")


def arm_dirs(arm: Path, inference_config: Path) -> Dict[str, Any]:
    """The arm's ``exp_dir``, ``inference_dir``, exposure ``output_dir``, decoded model file
    and test set names, resolved as ESPnet3's ``launch`` resolves them (the inference config
    inherits the arm's exp_dir)."""
    from espnet3.utils.config_utils import load_and_merge_config
    from espnet3.utils.run_utils import apply_training_experiment_context, resolve_loaded_configs

    training = load_training_config(arm)
    inference = load_and_merge_config(Path(inference_config), config_name="inference.yaml",
                                      default_package=DEFAULT_CONF_PACKAGE, resolve=False)
    apply_training_experiment_context(training_config=training, inference_config=inference,
                                      metrics_config=None, publication_config=None, log=logger)
    resolve_loaded_configs(training, inference)
    exposure = inference.get("exposure") or {}
    if not exposure.get("output_dir"):
        raise DemoConfigError(f"{inference_config}: exposure.output_dir is not set")
    return {"exp_dir": Path(training.exp_dir), "inference_dir": Path(inference.inference_dir),
            "exposure_dir": Path(exposure.output_dir),
            "model_file": Path(inference.model.asr_model_file),
            "test_sets": [str(t.name) for t in inference.dataset.test]}


def write_report(arms: Sequence[Path], inference_config: Path, title: str,
                 output_md: Optional[Path] = None) -> List[str]:
    """The espnet2 demo's report over the arms' experiment dirs (which must share a parent):
    ``<parent>/RESULTS.md`` (or ``output_md``), ``pcc_comparison.png`` and the memorisation
    plot and raw data beside it. Returns what is printed."""
    from espnet_pcc.recipe.stage9 import Outputs, write_comparison

    dirs = [arm_dirs(a, inference_config) for a in arms]
    parents = {d["exp_dir"].resolve().parent for d in dirs}
    if len(parents) != 1:
        raise DemoConfigError(f"the arms' experiment dirs have different parents "
                              f"({', '.join(sorted(map(str, parents)))}): the report reads one")
    expdir = parents.pop()
    decode_tags = {os.path.relpath(d["inference_dir"], d["exp_dir"]) for d in dirs}
    exposure_names = {os.path.relpath(d["exposure_dir"], d["exp_dir"]) for d in dirs}
    if len(decode_tags) != 1 or len(exposure_names) != 1 or "/" in next(iter(exposure_names)):
        raise DemoConfigError(f"{inference_config}: inference_dir and exposure.output_dir must "
                              f"be one directory inside each arm's exp_dir")
    md = Path(output_md) if output_md else expdir / "RESULTS.md"
    model_files = sorted({os.path.relpath(d["model_file"], d["exp_dir"]) for d in dirs})
    notes = (f"Trained through ESPnet3 (egs3/synth_demo/esp2_asr: Lightning with "
             f"espnet_pcc.lightning's per-core strategy); decoded and scored: "
             f"{', '.join(model_files)} of each model. s/step: ESPnet3's train_time per "
             f"optimizer step; cores/step: devices x num_nodes x accumulate_grad_batches x "
             f"clip_conf.num_cores.")
    return write_comparison(
        expdir, [d["exp_dir"].name for d in dirs], decode_tags.pop(), dirs[0]["test_sets"],
        Outputs(md, md.with_name("pcc_comparison.png")), exposure_name=exposure_names.pop(),
        title=title, notes=notes)


def _launch_argv(stages: Sequence[str], training_config: Path,
                 role_configs: Dict[str, Optional[Path]], dry_run: bool) -> List[str]:
    argv = ["--stages", *stages, "--training_config", str(training_config)]
    for role, path in role_configs.items():
        if path is not None:
            argv += [f"--{role}_config", str(path)]
    return argv + (["--dry_run"] if dry_run else [])


def _launch(argv: List[str]) -> None:
    """ESPnet3's ``launch`` of the system's stages, then its last stage's log closed: ESPnet3
    leaves a stage's log file attached to the root logger until the next stage replaces it,
    and the next arm's (or the report's) lines do not belong in it."""
    from espnet3.systems.launch import launch

    launch(SynthDemoSystem, conf_package=DEFAULT_CONF_PACKAGE, argv=argv)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_espnet3_stage_log", False):  # the mark ESPnet3 gives them
            root.removeHandler(handler)
            handler.close()


def get_parser() -> argparse.ArgumentParser:
    """ESPnet3's run.py options (its ``launch``), with several training configs: the arms."""
    names = stage_names(SynthDemoSystem)
    p = argparse.ArgumentParser(prog="run.py", description=__doc__.splitlines()[0])
    p.add_argument("--stages", nargs="+", choices=[*names, REPORT, "all"],
                   default=[*DEMO_STAGES, REPORT],
                   help="stages to run, in their declared order; 'all' is every stage and the "
                        "report (default: the demo's, without the publication stages)")
    p.add_argument("--training_config", nargs="+", type=Path, required=True,
                   help="one training YAML per arm (conf/training_{baseline,pcc,apcc}.yaml)")
    for role in roles(SynthDemoSystem):
        if role != "training":
            p.add_argument(f"--{role}_config", type=Path, default=None,
                           help=f"the {role} YAML (ESPnet3's)")
    p.add_argument("--results_md", type=Path, default=None,
                   help="the report (default: RESULTS.md beside the arms' experiment dirs)")
    p.add_argument("--title", default="RESULTS (synthetic demo, ESPnet3)")
    p.add_argument("--dry_run", action="store_true", help="name the stages, run nothing")
    p.add_argument("--verbose", action="store_true", help="debug logs and full tracebacks")
    return p


def _run(args: argparse.Namespace) -> None:
    names = stage_names(SynthDemoSystem)
    requested = set(args.stages)
    stages = [*names, REPORT] if "all" in requested else \
        [s for s in [*names, REPORT] if s in requested]
    arms = list(args.training_config)
    check_arms(arms)
    role_configs = {role: getattr(args, f"{role}_config") for role in roles(SynthDemoSystem)
                    if role != "training"}
    if REPORT in stages and args.inference_config is None:
        raise DemoConfigError("the report needs --inference_config (where each arm decoded)")
    data = [s for s in stages if s in DATA_STAGES]
    per_arm = [s for s in stages if s not in DATA_STAGES and s != REPORT]
    if data:
        _launch(_launch_argv(data, arms[0], role_configs, args.dry_run))
    for arm in arms if per_arm else []:
        _launch(_launch_argv(per_arm, arm, role_configs, args.dry_run))
    if REPORT in stages and not args.dry_run:
        for text in write_report(arms, args.inference_config, args.title, args.results_md):
            print(text)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = get_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    run_cli(lambda: _run(args), verbose=args.verbose, prog=parser.prog)


__all__ = ["ARM_KEYS", "DATA_STAGES", "DEMO_STAGES", "DemoConfigError", "SynthDemoSystem",
           "arm_dirs", "check_arms", "get_parser", "load_training_config", "main",
           "make_and_insert_canaries", "write_report"]
