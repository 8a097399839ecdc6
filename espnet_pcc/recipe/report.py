"""Stage 9: the comparison of clipping modes — RESULTS.md (ESPnet style) and a PNG plot.

Reads, for every trained model dir ``<expdir>/<asr_tag>``:
  config.yaml                          ``clip`` / ``clip_conf`` (written by our asr_train)
  train.log                            "Nepoch results: [train] ... train_time=S ... [valid] loss=L"
  <decode_tag>/<set>/score_wer/result.json, score_cer/result.json      (stage 7)
  exposure/summary.json                mean exposure per repeat count  (stage 8)
and writes one RESULTS.md: environment, the comparison table (WER per set, mean exposure per
repeat count, seconds per optimizer step, one row per model) and ESPnet's per-model WER/CER
tables; plus a PNG: exposure vs repeat count (one line per mode) and validation loss vs epoch.
"""
from __future__ import annotations

import datetime
import json
import logging
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import yaml

from espnet_pcc.errors import UserError
from espnet_pcc.exposure import schema
from espnet_pcc.fileio import atomic_path
from espnet_pcc.recipe.scoring import markdown_table

logger = logging.getLogger(__name__)

_EPOCH_RE = re.compile(r"(\d+)epoch results: (.*)$")
_SECTION_RE = re.compile(r"\[(\w+)\] ([^\[]*)")
_NUM_RE = re.compile(r"(\w+)=([-+0-9.eE]+|[-+]?nan|[-+]?inf)(?:,|$)")


class ReportError(UserError):
    """A model dir lacks what the report needs (names the stage that produces it)."""


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

    @property
    def sec_per_step(self) -> Optional[float]:
        """Mean over epochs of ESPnet's ``train_time`` (seconds per optimizer step)."""
        v = [e["train"]["train_time"] for e in self.epochs if "train_time" in e.get("train", {})]
        return sum(v) / len(v) if v else None

    @property
    def dp_epsilon(self) -> Optional[float]:
        """The (epsilon, clip_conf.delta) spent by the last trained epoch (noisy runs only):
        `dp_epsilon` (Poisson sampling) or `dp_epsilon_unamplified` (espnet_pcc.accounting)."""
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


def epsilon_cell(epsilon: Optional[float], key: str = "dp_epsilon") -> str:
    """A report's epsilon column: the (epsilon, clip_conf.delta) spent, or no noise; an
    epsilon without amplification by sampling says so."""
    if epsilon is None:
        return "∞ (no noise)"
    return f"{epsilon:.3g}" + (" (no amplification)" if key == "dp_epsilon_unamplified" else "")


def cores_per_step(cfg: dict) -> int:
    """Cores (micro-batch shards with their own gradient) per optimizer step: ranks x
    accum_grad x clip_conf.num_cores, from a trained model's config.yaml. The ranks are
    espnet2's ``dist_world_size`` (set by its multi-GPU / multi-node launch); a config without
    it ran as one process."""
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
    """epoch number -> {section: {key: value}} from ESPnet's "Nepoch results:" lines; the last
    line of an epoch wins (a resumed run logs an epoch again)."""
    by_epoch: Dict[int, Dict[str, Dict[str, float]]] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
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
    scalars (cap, chance, |R|, score), from score_exposure's summary.json."""
    data = json.loads(Path(path).read_text())
    if data.get("format") != schema.SUMMARY_FORMAT:
        raise ReportError(f"{path}: unknown format {data.get('format')!r} (rerun stage 8)")
    rank = schema.mean_per_repeat_count(data, schema.RANK_EXPOSURE)
    extra = schema.mean_per_repeat_count(data, schema.EXTRAPOLATED_EXPOSURE)
    info = {k: data.get(k) for k in schema.SUMMARY_SCALARS}
    return rank, extra, info


def collect(expdir: Path, tags: Sequence[str], decode_tag: str, test_sets: Sequence[str],
            exposure_name: str = "exposure", require: bool = True) -> List[ModelResult]:
    """Gather every model's numbers; with ``require`` a missing input is a one-line error."""
    results = []
    for tag in tags:
        d = Path(expdir) / tag
        r = ModelResult(tag=tag)
        cfg_path = d / "config.yaml"
        if not cfg_path.is_file():
            raise ReportError(f"{cfg_path} missing (produced by stage 5, training)")
        cfg = yaml.safe_load(cfg_path.read_text()) or {}
        r.clip = str(cfg.get("clip", "global"))
        r.clip_conf = cfg.get("clip_conf") or {}
        r.cores_per_step = cores_per_step(cfg)
        if r.clip == "global" and r.clip_conf.get("max_norm") is None:
            r.clip_conf = {**r.clip_conf, "max_norm": cfg.get("grad_clip")}
        if (d / "train.log").is_file():
            r.epochs = parse_train_log(d / "train.log")
        for s in test_sets:
            res = {}
            for unit in ("wer", "cer"):
                p = d / decode_tag / s / f"score_{unit}" / "result.json"
                if p.is_file():
                    res[unit] = json.loads(p.read_text())
                elif require:
                    raise ReportError(f"{p} missing (produced by stage 7, scoring)")
            if res:
                r.wer[s] = res
        summary = d / exposure_name / schema.SUMMARY_JSON
        if exposure_name == "none":
            pass
        elif summary.is_file():
            r.exposure, r.exposure_extrapolated, r.exposure_info = load_exposure(summary)
        elif require:
            raise ReportError(f"{summary} missing (produced by stage 8, exposure)")
        results.append(r)
    return results


def _fmt(x: Optional[float], nd: int = 1) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def comparison_table(results: Sequence[ModelResult], test_sets: Sequence[str]) -> str:
    """One row per model: clipping, WER per set, mean exposure per repeat count, s/step."""
    counts = sorted({c for r in results for c in r.exposure})
    noisy = any(r.dp_epsilon is not None for r in results)
    head = (["model", "clip"] + [f"WER {s}" for s in test_sets]
            + [f"exposure x{c}" for c in counts] + ["s/step", "cores/step", "epochs"]
            + (["epsilon"] if noisy else []))
    lines = ["|" + "|".join(head) + "|", "|---" * len(head) + "|"]
    for r in results:
        row = [r.tag, r.label]
        row += [_fmt(r.wer.get(s, {}).get("wer", {}).get("Err")) for s in test_sets]
        row += [_fmt(r.exposure.get(c), 2) for c in counts]
        row += [_fmt(r.sec_per_step, 3), "-" if r.cores_per_step is None else str(r.cores_per_step),
                str(len(r.epochs))]
        if noisy:  # (epsilon, clip_conf.delta) after the last epoch: espnet_pcc.accounting
            row.append(epsilon_cell(r.dp_epsilon, r.dp_epsilon_key))
        lines.append("|" + "|".join(row) + "|")
    return "\n".join(lines)


def environment() -> str:
    import torch
    try:
        from importlib.metadata import version
        espnet_version = version("espnet")
    except Exception:  # pragma: no cover - espnet is a dependency
        espnet_version = "?"
    return "\n".join([
        "## Environments",
        f"- date: `{datetime.datetime.now().strftime('%a %b %d %H:%M:%S %Y')}`",
        f"- python version: `{platform.python_version()}`",
        f"- espnet version: `espnet {espnet_version}`",
        f"- pytorch version: `pytorch {torch.__version__}`",
        f"- machine: `{platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"{'cuda' if torch.cuda.is_available() else 'cpu'}`",
    ])


def results_markdown(results: Sequence[ModelResult], test_sets: Sequence[str], decode_tag: str,
                     expdir: Path, title: str = "RESULTS", notes: str = "",
                     plot_name: Optional[str] = None, study_md: str = "") -> str:
    parts = [f"# {title}", environment(), "", "## Clipping comparison", ""]
    if notes:
        parts += [notes.strip(), ""]
    if study_md:  # per mode, with intervals and paired tests (espnet_pcc.study.report)
        parts += [study_md.rstrip(), "", "### Per model", ""]
    parts += [comparison_table(results, test_sets), ""]
    info = next((r.exposure_info for r in results if r.exposure_info), {})
    expo = ""
    if info:
        expo = (f" With |R| = {info.get('num_references')} references the rank exposure is capped at "
                f"{info.get('rank_exposure_cap', 0):.2f} bits; an unmemorised canary scores "
                f"{info.get('chance_rank_exposure', 0):.2f} bits on average (score: {info.get('score')}).")
    parts += ["WER in %. exposure x*n*: mean rank exposure (bits, log2(|R|+1) - log2 rank) of the canaries "
              "inserted *n* times." + expo + " s/step: ESPnet's train_time, seconds per optimizer step, "
              "mean over epochs. cores/step: the gradients clipped (per core) or averaged per "
              "optimizer step, ranks x accum_grad x num_cores (it changes with --ngpu).", ""]
    if plot_name:
        parts += [f"![exposure and validation loss]({plot_name})", ""]
    for r in results:
        parts += [f"## {Path(expdir).name}/{r.tag}"]
        for unit in ("wer", "cer"):
            rows = [(f"{decode_tag}/{s}", r.wer[s][unit]) for s in test_sets
                    if unit in r.wer.get(s, {})]
            if rows:
                parts += [f"### {unit.upper()}", "", markdown_table(rows), ""]
    return "\n".join(parts).rstrip() + "\n"


def plot(results: Sequence[ModelResult], out_png: Path) -> None:
    """Exposure vs repeat count (log2 x) and validation loss vs epoch, one line per model."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in results:
        if r.exposure:
            xs = sorted(r.exposure)
            ax1.plot(xs, [r.exposure[x] for x in xs], marker="o", label=r.label)
        ys = [e.get("valid", {}).get("loss") for e in r.epochs]
        pts = [(i + 1, y) for i, y in enumerate(ys) if y is not None]
        if pts:
            ax2.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=r.label)
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("canary repeat count")
    ax1.set_ylabel("mean exposure (bits)")
    ax1.set_title("Memorisation: exposure vs repeats")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation loss")
    ax2.set_title("Validation loss")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    try:
        with atomic_path(out_png) as tmp:  # savefig picks the format from the .png suffix
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
