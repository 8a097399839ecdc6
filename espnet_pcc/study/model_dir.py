"""The one reader of a trained model dir ``<expdir>/<asr_tag>`` (what stage 9 reports):

  config.yaml                          ``clip`` / ``clip_conf`` (written by our asr_train)
  train.log                            "Nepoch results: [train] ... train_time=S ... [valid] loss=L"
  <decode_tag>/<set>/score_wer/result.json, score_cer/result.json      (stage 7)
  exposure/summary.json                mean exposure per repeat count  (stage 8)

and, with ``per_canary`` (the memorisation over runs), every scored checkpoint's canaries:

  exposure/exposure.json, exposure_<N>epoch/{summary,exposure}.json    (stage 8)
  <decode_tag>/canary_accuracy/utterances.tsv, the same of epoch N       (stage 7)

:func:`collect` reads them into one :class:`ModelResult` per model, each file through its own
module's reader (`espnet_pcc.measurement.exposure.schema`, `espnet_pcc.study.accuracy_schema`):
every report is a view of these results (`espnet_pcc.recipe.stage9`).  A model tag may end in
``_seed<N>`` (``pcc_asr.sh --seeds``): :func:`split_tag`.

A model trained through ESPnet3 (egs3/synth_demo) is read too: ESPnet3 writes config.yaml with
the clipping in its Lightning trainer's section (:func:`clip_settings`), and its train.log
holds "epoch_summary:Nepoch:train: ..., train_time=S, ..." lines, one per section.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import yaml

from espnet_pcc.errors import UserError
from espnet_pcc.measurement import wer
from espnet_pcc.measurement.exposure import schema
from espnet_pcc.study.accuracy_schema import ACCURACY_DIR, UTTERANCES_TSV, UtteranceAccuracy, \
    read_utterances_tsv

_EPOCH_RE = re.compile(r"(\d+)epoch results: (.*)$")
#: ESPnet3's per-epoch summary (espnet3's MetricsLogger), one line per section.
_ESPNET3_EPOCH_RE = re.compile(r"epoch_summary:(\d+)epoch:(\w+): (.*)$")
_SECTION_RE = re.compile(r"\[(\w+)\] ([^\[]*)")
_NUM_RE = re.compile(r"(\w+)=([-+0-9.eE]+|[-+]?nan|[-+]?inf)(?:,|$)")
_SEED_RE = re.compile(r"^(.*)_seed(\d+)$")


def split_tag(tag: str) -> Tuple[str, Optional[int]]:
    """``asr_x_seed2`` -> (``asr_x``, 2); a tag without a seed suffix -> (tag, None)."""
    m = _SEED_RE.match(tag)
    return (m.group(1), int(m.group(2))) if m else (tag, None)


class ModelDirError(UserError):
    """A model dir lacks what a reader needs (names the stage that produces it)."""


@dataclass(frozen=True)
class ScoredCheckpoint:
    """One checkpoint of a model whose canaries were scored (stage 8): an epoch's model, or
    the final (averaged, decoded) one."""

    epoch: Optional[int]  # None: the final model
    exposure_dir: Path
    canaries: List[Dict[str, Any]]  # exposure.json's rows (`schema.CANARY_KEYS`)
    num_references: int  # |R| of the exposure
    #: stage 7's canary transcription (utterances.tsv) and its rows; None and [] where the
    #: canaries were not transcribed
    accuracy_tsv: Optional[Path] = None
    utterances: List[UtteranceAccuracy] = field(default_factory=list)


@dataclass
class ModelResult:
    tag: str
    clip: str = "?"
    clip_conf: dict = field(default_factory=dict)
    wer: Dict[str, dict] = field(default_factory=dict)  # set -> {"wer": {...}, "cer": {...}}
    exposure: Dict[int, float] = field(default_factory=dict)  # mean rank exposure
    exposure_extrapolated: Dict[int, float] = field(default_factory=dict)
    exposure_info: dict = field(default_factory=dict)
    epochs: List[Dict[str, Dict[str, float]]] = field(default_factory=list)
    cores_per_step: Optional[int] = None
    batch_sampler: str = "espnet"  # config.yaml's --batch_sampler
    #: the scored checkpoints, in epoch order and the final model last (`collect`'s
    #: ``per_canary``; empty otherwise)
    scored: List[ScoredCheckpoint] = field(default_factory=list)

    def error_rate(self, test_set: str, unit: str = "wer") -> Optional[float]:
        """The final model's WER or CER (%) on ``test_set``; None where it was not scored."""
        value = self.wer.get(test_set, {}).get(unit, {}).get(wer.ERR)
        return None if value is None else float(value)

    @property
    def sec_per_step(self) -> Optional[float]:
        """Mean over epochs of ESPnet's ``train_time`` (seconds per optimizer step)."""
        v = [e["train"]["train_time"] for e in self.epochs if "train_time" in e.get("train", {})]
        return sum(v) / len(v) if v else None

    @property
    def dp_epsilon(self) -> Optional[float]:
        """The (epsilon, clip_conf.delta) spent by the last trained epoch (noisy runs only):
        `dp_epsilon` (Poisson sampling) or `dp_epsilon_unamplified` (espnet_pcc.core.accounting)."""
        key = self.dp_epsilon_key
        v = [e["train"][key] for e in self.epochs if key in e.get("train", {})]
        return v[-1] if v else None

    @property
    def dp_epsilon_key(self) -> str:
        """Which epsilon the run reported (accounting.PrivacyAccounting.reporter_key)."""
        unamplified = any("dp_epsilon_unamplified" in e.get("train", {}) for e in self.epochs)
        return "dp_epsilon_unamplified" if unamplified else "dp_epsilon"

    @property
    def label(self) -> str:
        c = self.clip_conf or {}
        extra = []
        if c.get("max_norm") is not None:
            extra.append(f"C={c['max_norm']}")
        if c.get("target_quantile") is not None:
            extra.append(f"C→q{c['target_quantile']:g} from {c.get('initial_bound')}")
        if int(c.get("num_cores", 1) or 1) > 1:
            extra.append(f"{c['num_cores']} cores")
        if c.get("core_by", "position") != "position":
            extra.append(f"cores by {c['core_by']}")
        if c.get("noise_multiplier"):
            extra.append(f"σ={c['noise_multiplier']:g}")
        return self.clip + (f" ({', '.join(extra)})" if extra else "")


def _lightning_trainer(cfg: dict) -> Optional[dict]:
    """The Lightning trainer section of an ESPnet3 model's config.yaml (None for espnet2's)."""
    trainer = cfg.get("trainer")
    return trainer if isinstance(trainer, dict) else None


def clip_settings(cfg: dict) -> Tuple[str, dict]:
    """(clip, clip_conf) of a trained model's config.yaml. espnet2: the top-level keys, and
    without them its global clipping at ``grad_clip``. ESPnet3: the per-core strategy's keys
    (``trainer.strategy``, docs/lightning.md), where global's C is ``gradient_clip_val``;
    without the strategy Lightning's own loop: global at ``gradient_clip_val``, none without."""
    trainer = _lightning_trainer(cfg)
    if trainer is None:
        clip, clip_conf = str(cfg.get("clip", "global")), dict(cfg.get("clip_conf") or {})
        bound = cfg.get("grad_clip")
    else:
        strategy = trainer.get("strategy")
        per_core = isinstance(strategy, dict) and "clip" in strategy
        bound = trainer.get("gradient_clip_val")
        clip = str(strategy["clip"]) if per_core else ("global" if bound else "none")
        clip_conf = dict((strategy.get("clip_conf") if per_core else None) or {})
    if clip == "global" and clip_conf.get("max_norm") is None:
        clip_conf["max_norm"] = bound
    return clip, clip_conf


def cores_per_step(cfg: dict) -> int:
    """Cores (micro-batch shards with their own gradient) per optimizer step: ranks x
    accum_grad x clip_conf.num_cores, from a trained model's config.yaml. The ranks are
    espnet2's ``dist_world_size`` (set by its multi-GPU / multi-node launch); a config without
    it ran as one process. ESPnet3: devices x num_nodes x accumulate_grad_batches x num_cores
    of its Lightning trainer."""
    trainer = _lightning_trainer(cfg)
    if trainer is not None:
        num_cores = clip_settings(cfg)[1].get("num_cores") or 1
        return (int(trainer.get("devices") or 1) * int(trainer.get("num_nodes") or 1)
                * int(trainer.get("accumulate_grad_batches") or 1) * int(num_cores))
    ranks = cfg.get("dist_world_size")
    if not ranks:
        ngpu = int(cfg.get("ngpu") or 0)
        ranks = ngpu if cfg.get("multiprocessing_distributed") and ngpu > 1 else 1
    num_cores = (cfg.get("clip_conf") or {}).get("num_cores") or 1
    return int(ranks) * int(cfg.get("accum_grad") or 1) * int(num_cores)


def parse_train_log(path: Path) -> List[Dict[str, Dict[str, float]]]:
    """Per-epoch stats from ESPnet's "Nepoch results:" lines: item N-1 is epoch N (see
    :func:`train_log_by_epoch`).  An epoch the log lacks (a log restarted by a resume on
    another host) is an empty dict, so that the later epochs keep their numbers."""
    by_epoch = train_log_by_epoch(path)
    return [by_epoch.get(k, {}) for k in range(1, max(by_epoch, default=0) + 1)]


def train_log_by_epoch(path: Path) -> Dict[int, Dict[str, Dict[str, float]]]:
    """epoch number -> {section: {key: value}} from ESPnet's "Nepoch results:" lines, or
    ESPnet3's "epoch_summary:Nepoch:<section>:" lines; the last line of an epoch (ESPnet3: of
    an epoch's section) wins (a resumed run logs an epoch again)."""
    by_epoch: Dict[int, Dict[str, Dict[str, float]]] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m3 = _ESPNET3_EPOCH_RE.search(line)
            if m3:
                stats = {}
                for part in m3.group(3).strip().split(", "):  # "key=value, key=value"
                    key, _, value = part.partition("=")
                    try:
                        stats[key] = float(value)
                    except ValueError:
                        continue
                by_epoch.setdefault(int(m3.group(1)), {})[m3.group(2)] = stats
                continue
            m = _EPOCH_RE.search(line)
            if not m:
                continue
            sections = {}
            for name, body in _SECTION_RE.findall(m.group(2)):
                sections[name] = {k: float(v) for k, v in _NUM_RE.findall(body.strip())}
            by_epoch[int(m.group(1))] = sections
    return by_epoch


def load_exposure(path: Path) -> Tuple[Dict[int, float], Dict[int, float], dict]:
    """(mean rank exposure, mean extrapolated exposure) per repeat count, and the summary's
    scalars (cap, chance, |R|, score), from score_exposure's summary.json (its one reader,
    :func:`espnet_pcc.measurement.exposure.schema.read_summary_json`, checks the format)."""
    data = schema.read_summary_json(path)
    rank = schema.mean_per_repeat_count(data, schema.RANK_EXPOSURE)
    extra = schema.mean_per_repeat_count(data, schema.EXTRAPOLATED_EXPOSURE)
    info = {k: data.get(k) for k in schema.SUMMARY_SCALARS}
    return rank, extra, info


def read_checkpoint(epoch: Optional[int], exposure_dir: Path,
                    accuracy_tsv: Optional[Path]) -> ScoredCheckpoint:
    """One scored checkpoint: exposure.json's rows, |R| from its summary.json, and, where
    ``accuracy_tsv`` is given, stage 7's transcription of its canaries and references."""
    canaries = schema.read_exposure_json(exposure_dir / schema.EXPOSURE_JSON)
    summary = schema.read_summary_json(exposure_dir / schema.SUMMARY_JSON)
    utterances = [] if accuracy_tsv is None else read_utterances_tsv(accuracy_tsv)
    return ScoredCheckpoint(epoch, exposure_dir, canaries, int(summary[schema.NUM_REFERENCES]),
                            accuracy_tsv, utterances)


def collect(expdir: Path, tags: Sequence[str], decode_tag: str, test_sets: Sequence[str],
            exposure_name: str = "exposure", require: bool = True, *,
            per_canary: bool = False, score_epochs: Sequence[int] = (),
            epoch_decode_tag: str = "", canary_accuracy: bool = False,
            progress: Optional[Callable[[str], None]] = None) -> List[ModelResult]:
    """Gather every model's numbers; with ``require`` a missing input is a one-line error.

    ``per_canary``: also every scored checkpoint (``ModelResult.scored``): the epochs
    ``score_epochs`` (``exposure_<N>epoch``, decoded in ``epoch_decode_tag``, which has an
    ``{epoch}`` field) and the final model (``exposure_name``, ``decode_tag``); with
    ``canary_accuracy`` their canary transcriptions too (stage 7 ``--canary_sets``).
    ``progress`` is told each model as it is read.
    """
    if per_canary and exposure_name == "none":
        raise ValueError("collect: per_canary reads the final model's exposure, but "
                         "exposure_name is none")
    results = []
    for i, tag in enumerate(tags, 1):
        d = Path(expdir) / tag
        r = ModelResult(tag=tag)
        cfg_path = d / "config.yaml"
        if not cfg_path.is_file():
            raise ModelDirError(f"{cfg_path} missing (produced by stage 5, training)")
        cfg = yaml.safe_load(cfg_path.read_text()) or {}
        r.clip, r.clip_conf = clip_settings(cfg)
        r.cores_per_step = cores_per_step(cfg)
        r.batch_sampler = str(cfg.get("batch_sampler") or "espnet")
        if (d / "train.log").is_file():
            r.epochs = parse_train_log(d / "train.log")
        trainer = _lightning_trainer(cfg)
        accumulate = int((trainer or {}).get("accumulate_grad_batches") or 1)
        for e in r.epochs if accumulate > 1 else []:
            # ESPnet3's train_time is per training batch, a step holds `accumulate` of them
            if "train_time" in e.get("train", {}):
                e["train"]["train_time"] *= accumulate
        for s in test_sets:
            res = {}
            for unit in wer.UNITS:
                p = wer.result_json_path(d / decode_tag / s, unit)
                if p.is_file():
                    res[unit] = wer.read_result_json(p)
                elif require:
                    raise ModelDirError(f"{p} missing (produced by stage 7, scoring)")
            if res:
                r.wer[s] = res
        summary = d / exposure_name / schema.SUMMARY_JSON
        if exposure_name == "none":
            pass
        elif summary.is_file():
            r.exposure, r.exposure_extrapolated, r.exposure_info = load_exposure(summary)
        elif require:
            raise ModelDirError(f"{summary} missing (produced by stage 8, exposure)")
        if per_canary:
            accuracy = (lambda dec: d / dec / ACCURACY_DIR / UTTERANCES_TSV) \
                if canary_accuracy else (lambda dec: None)  # noqa: E731
            r.scored = [read_checkpoint(e, d / f"exposure_{e}epoch",
                                        accuracy(epoch_decode_tag.format(epoch=e)))
                        for e in score_epochs]
            r.scored.append(read_checkpoint(None, d / exposure_name, accuracy(decode_tag)))
        results.append(r)
        if progress is not None:
            progress(f"[collect] {i}/{len(tags)} {tag}")
    return results


__all__ = ["ModelDirError", "ModelResult", "ScoredCheckpoint", "clip_settings", "collect",
           "cores_per_step", "load_exposure", "parse_train_log", "read_checkpoint", "split_tag",
           "train_log_by_epoch"]
