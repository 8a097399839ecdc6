"""The study's comparison: every mode (config) over its seeds, with intervals and paired tests.

Input: the model dirs of one stage-script run (``<expdir>/<tag>``; a tag ending in ``_seed<N>``
is seed N of the mode named by the rest). Per model it reads

  train.log                                 validation loss per epoch
  <decode>/<set>/text, <set data>/text      per-utterance word errors of the test sets
  exposure/exposure.json                    per-canary exposure of the final model
  exposure_<N>epoch/exposure.json           ... of the checkpoint of epoch N (--score_epochs)
  <decode>/canary_accuracy/utterances.tsv   per-canary CER / exact match (final model)
  decode_*_<N>epoch/canary_accuracy/...     ... of epoch N

How seeds and canaries combine: the canaries are the same for every model, so a mode's value of
one canary is the mean over the mode's seeds; intervals are bootstrap intervals over the
canaries of those means, and a mode is compared with the baseline canary by canary (paired).
WER is measured once per seed: mean and t-interval over seeds (with one seed: a bootstrap over
the test utterances).

Compare at equal utility: a mode that learns less also memorises less. Along each model's
scored epochs, memorisation (per canary) is interpolated at a validation loss ``L``; each mode
meets the baseline at the ``L`` that every model of the two reaches on their common seeds (the
highest of those models' best scored-epoch losses).
"""
from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from espnet_pcc import kaldi_dir
from espnet_pcc.errors import UserError
from espnet_pcc.exposure import schema
from espnet_pcc.recipe.report import ModelResult, epsilon_cell
from espnet_pcc.study import stats
from espnet_pcc.study.accuracy import error_counts, read_utterances_tsv

_SEED_RE = re.compile(r"^(.*)_seed(\d+)$")
POOLED = "pooled"


class StudyReportError(UserError):
    """A model dir lacks a per-canary output the study report needs."""


def split_tag(tag: str) -> Tuple[str, Optional[int]]:
    """``asr_x_seed2`` -> (``asr_x``, 2); a tag without a seed suffix -> (tag, None)."""
    m = _SEED_RE.match(tag)
    return (m.group(1), int(m.group(2))) if m else (tag, None)


@dataclass
class Checkpoint:
    """Per-canary memorisation of one scored checkpoint of one model."""

    rank_exposure: Dict[str, float] = field(default_factory=dict)
    extrapolated_exposure: Dict[str, float] = field(default_factory=dict)
    cer: Dict[str, float] = field(default_factory=dict)  # canaries and references
    exact: Dict[str, float] = field(default_factory=dict)


@dataclass
class StudyModel:
    result: ModelResult
    seed: Optional[int]
    final: Checkpoint
    epochs: Dict[int, Checkpoint]  # scored epoch -> its checkpoint
    # (test set, "wer" | "cer") -> (edits, reference tokens) per utterance
    errors: Dict[Tuple[str, str], Tuple[np.ndarray, np.ndarray]]


@dataclass
class Mode:
    name: str
    models: List[StudyModel]

    @property
    def config(self) -> str:
        """The mode as the tables name it: its training config (the tag less ``asr_``)."""
        return self.name[len("asr_"):] if self.name.startswith("asr_") else self.name

    @property
    def label(self) -> str:
        return self.models[0].result.label

    @property
    def seeds(self) -> List[Optional[int]]:
        return [m.seed for m in self.models]


# ----------------------------------------------------------------------------- loading
def read_exposure_json(path: Path) -> Tuple[Dict[str, float], Dict[str, float], Dict[str, int]]:
    """(rank exposure, extrapolated exposure, repeat count) per canary id."""
    if not path.is_file():
        raise StudyReportError(f"{path} missing (produced by stage 8, exposure)")
    canaries = schema.read_exposure_json(path, (schema.CANARY_ID, schema.REPEAT_COUNT,
                                                schema.RANK_EXPOSURE, schema.EXTRAPOLATED_EXPOSURE))
    rank = {c[schema.CANARY_ID]: float(c[schema.RANK_EXPOSURE]) for c in canaries}
    extra = {c[schema.CANARY_ID]: float(c[schema.EXTRAPOLATED_EXPOSURE]) for c in canaries}
    counts = {c[schema.CANARY_ID]: int(c[schema.REPEAT_COUNT]) for c in canaries}
    return rank, extra, counts


def read_accuracy_tsv(path: Path) -> Tuple[Dict[str, float], Dict[str, float], Dict[str, int]]:
    """(CER, exact, repeat count) per utterance id from score_canary_accuracy's utterances.tsv."""
    rows = read_utterances_tsv(path)
    return ({r.utt_id: r.cer for r in rows}, {r.utt_id: float(r.exact) for r in rows},
            {r.utt_id: r.repeat_count for r in rows})


def load_checkpoint(exposure_dir: Path, accuracy_dir: Optional[Path],
                    repeat_counts: Dict[str, int]) -> Checkpoint:
    rank, extra, counts = read_exposure_json(exposure_dir / schema.EXPOSURE_JSON)
    repeat_counts.update(counts)
    ck = Checkpoint(rank_exposure=rank, extrapolated_exposure=extra)
    if accuracy_dir is not None:
        ck.cer, ck.exact, counts = read_accuracy_tsv(accuracy_dir / "utterances.tsv")
        repeat_counts.update(counts)
    return ck


def load_errors(data_text: Path, hyp_text: Path, unit: str) -> Tuple[np.ndarray, np.ndarray]:
    """(edits, reference length) per utterance of a decoded set, in ``unit`` ("wer" | "cer")."""
    refs = dict(kaldi_dir.read_table(data_text, allow_empty_value=True))
    hyps = dict(kaldi_dir.read_table(hyp_text, allow_empty_value=True))
    keys = [k for k in sorted(refs) if refs[k].split()]
    counts = [error_counts(refs[k], hyps.get(k, ""), unit) for k in keys]
    return np.array([c[0] for c in counts], float), np.array([c[1] for c in counts], float)


def load_models(results: Sequence[ModelResult], expdir: Path, decode_tag: str,
                epoch_decode_tag: str, test_set_dirs: Mapping[str, Path],
                score_epochs: Sequence[int], canary_accuracy: bool,
                repeat_counts: Dict[str, int]) -> List[Mode]:
    """Group the models into modes (config) and load their per-canary outputs."""
    modes: Dict[str, Mode] = {}
    for r in results:
        d = Path(expdir) / r.tag
        name, seed = split_tag(r.tag)
        acc = (lambda dec: d / dec / "canary_accuracy") if canary_accuracy else (lambda dec: None)
        final = load_checkpoint(d / "exposure", acc(decode_tag), repeat_counts)
        epochs = {}
        for e in score_epochs:
            epochs[e] = load_checkpoint(d / f"exposure_{e}epoch",
                                        acc(epoch_decode_tag.format(epoch=e)), repeat_counts)
        errors = {(s, unit): load_errors(Path(p) / "text", d / decode_tag / s / "text", unit)
                  for s, p in test_set_dirs.items() for unit in ("wer", "cer")}
        modes.setdefault(name, Mode(name, [])).models.append(
            StudyModel(result=r, seed=seed, final=final, epochs=epochs, errors=errors))
    return list(modes.values())


# ----------------------------------------------------------------------------- statistics
def seed_mean(per_model: Sequence[Mapping[str, float]], ids: Sequence[str]) -> np.ndarray:
    """Per id, the mean over the models (seeds) of one mode."""
    return np.array([np.mean([m[i] for m in per_model]) for i in ids], float)


def ids_by_count(repeat_counts: Mapping[str, int], ids: Sequence[str]) -> Dict[object, List[str]]:
    """Canary ids per repeat count, plus every canary under :data:`POOLED`."""
    groups: Dict[object, List[str]] = defaultdict(list)
    for i in sorted(ids):
        groups[repeat_counts[i]].append(i)
    out: Dict[object, List[str]] = dict(sorted(groups.items()))
    out[POOLED] = [i for c in out for i in out[c]]
    return out


def wer_interval(mode: Mode, test_set: str, unit: str = "wer") -> stats.Interval:
    """WER (or CER) in % of a test set: t-interval over seeds; one seed: bootstrap over
    utterances."""
    per_seed = []
    for m in mode.models:
        e, n = m.errors[(test_set, unit)]
        per_seed.append(100.0 * e.sum() / n.sum())
    if len(per_seed) > 1:
        return stats.seed_interval(per_seed)
    e, n = mode.models[0].errors[(test_set, unit)]
    return stats.ratio_interval(100.0 * e, n)


def valid_losses(model: StudyModel) -> List[float]:
    return [ep.get("valid", {}).get("loss", math.nan) for ep in model.result.epochs]


def equal_utility_level(models: Sequence[StudyModel], score_epochs: Sequence[int]) -> Optional[float]:
    """The validation loss every one of ``models`` reaches at one of its scored epochs: the
    highest of the models' best scored-epoch losses (see module doc)."""
    best = []
    for m in models:
        losses = valid_losses(m)
        scored = [losses[e - 1] for e in score_epochs if e - 1 < len(losses)]
        scored = [x for x in scored if math.isfinite(x)]
        if not scored:
            return None
        best.append(min(scored))
    return max(best) if best else None


def at_level(model: StudyModel, score_epochs: Sequence[int], level: float,
             measure: str, ids: Sequence[str]) -> Dict[str, float]:
    """Per canary, ``measure`` interpolated along the scored epochs at validation loss ``level``."""
    losses = valid_losses(model)
    epochs = [e for e in sorted(score_epochs) if e - 1 < len(losses)]
    xs = [losses[e - 1] for e in epochs]
    out = {}
    for i in ids:
        v = stats.interpolate_at(xs, [getattr(model.epochs[e], measure)[i] for e in epochs], level)
        if v is None:  # cannot happen for the level of equal_utility_level; kept explicit
            raise StudyReportError(f"{model.result.tag} never reaches validation loss {level:.3f}")
        out[i] = v
    return out


# ----------------------------------------------------------------------------- tables
def _row(cells: Sequence[str]) -> str:
    return "|" + "|".join(cells) + "|"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    return "\n".join([_row(head), "|---" * len(head) + "|"] + [_row(r) for r in rows])


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def _count_label(c: object) -> str:
    return "all" if c == POOLED else f"x{c}"


@dataclass
class Study:
    modes: List[Mode]
    repeat_counts: Dict[str, int]
    test_sets: List[str]
    score_epochs: List[int]
    canary_accuracy: bool

    @property
    def baseline(self) -> Mode:
        return self.modes[0]

    @property
    def canary_ids(self) -> List[str]:
        ck = self.baseline.models[0].final
        return sorted(i for i in ck.rank_exposure)

    @property
    def reference_ids(self) -> List[str]:
        ck = self.baseline.models[0].final
        return sorted(i for i in ck.cer if self.repeat_counts.get(i, 0) == 0)

    def per_canary(self, mode: Mode, measure: str, ids: Sequence[str],
                   checkpoint=lambda m: m.final, seeds=None) -> np.ndarray:
        """Per canary, ``measure`` averaged over the mode's seeds (or only ``seeds``)."""
        models = [m for m in mode.models if seeds is None or m.seed in seeds]
        return seed_mean([getattr(checkpoint(m), measure) for m in models], ids)

    def common_seeds(self, mode: Mode) -> set:
        """The seeds a mode shares with the baseline: a sweep point trained with one seed is
        compared with the baseline of that seed, not with its mean over more seeds."""
        common = set(mode.seeds) & set(self.baseline.seeds)
        if not common:
            raise StudyReportError(f"{mode.name} shares no seed with the baseline {self.baseline.name}")
        return common

    # -- tables
    def utility_table(self) -> str:
        head = ["mode", "clip", "seeds"] + [f"WER {s}" for s in self.test_sets] + [
            f"CER {s}" for s in self.test_sets] + ["valid loss (last epoch)", "s/step"]
        rows = []
        for mode in self.modes:
            last = [valid_losses(m)[-1] for m in mode.models if valid_losses(m)]
            sps_ = [m.result.sec_per_step for m in mode.models if m.result.sec_per_step]
            rows.append([mode.config, mode.label, " ".join(str(s) for s in mode.seeds if s is not None) or "-"]
                        + [wer_interval(mode, s).fmt(1) for s in self.test_sets]
                        + [wer_interval(mode, s, "cer").fmt(1) for s in self.test_sets]
                        + [stats.seed_interval(last).fmt(3),
                           f"{np.mean(sps_):.3f}" if sps_ else "-"])
        return _table(head, rows)

    def memorisation_table(self, measure: str, digits: int = 2, checkpoint=lambda m: m.final) -> str:
        groups = ids_by_count(self.repeat_counts, self.canary_ids)
        head = ["mode"] + [_count_label(c) for c in groups]
        rows = []
        for mode in self.modes:
            vals = {c: self.per_canary(mode, measure, ids, checkpoint) for c, ids in groups.items()}
            rows.append([mode.config] + [stats.bootstrap_interval(v).fmt(digits) for v in vals.values()])
        return _table(head, rows)

    def accuracy_table(self) -> str:
        groups = ids_by_count(self.repeat_counts, self.canary_ids)
        head = ["mode", "references CER"] + [f"CER {_count_label(c)}" for c in groups] + [
            "exact x16" if 16 in groups else f"exact {_count_label(max(c for c in groups if c != POOLED))}"]
        top = 16 if 16 in groups else max(c for c in groups if c != POOLED)
        rows = []
        for mode in self.modes:
            refs = self.per_canary(mode, "cer", self.reference_ids)
            row = [mode.config, stats.bootstrap_interval(100 * refs).fmt(1)]
            row += [stats.bootstrap_interval(100 * self.per_canary(mode, "cer", ids)).fmt(1)
                    for ids in groups.values()]
            row.append(stats.bootstrap_interval(self.per_canary(mode, "exact", groups[top])).fmt(2))
            rows.append(row)
        return _table(head, rows)

    def paired_rows(self, measure: str, scale: float = 1.0, checkpoint=lambda m: m.final,
                    values=None, modes: Optional[Sequence[Mode]] = None) -> List[List[str]]:
        """One row per (mode, repeat count) against the baseline on the same canaries."""
        groups = ids_by_count(self.repeat_counts, self.canary_ids)
        rows = []
        for mode in self.modes[1:] if modes is None else modes:
            seeds = self.common_seeds(mode)
            for c, ids in groups.items():
                if values is not None:
                    a, b = values(mode, ids, seeds), values(self.baseline, ids, seeds)
                else:
                    a = self.per_canary(mode, measure, ids, checkpoint, seeds)
                    b = self.per_canary(self.baseline, measure, ids, checkpoint, seeds)
                res = stats.paired_comparison(scale * a, scale * b)
                rows.append([mode.config, _count_label(c), str(res.n), f"{res.mean_a:.2f}",
                             f"{res.mean_b:.2f}", res.difference.fmt(2), _p(res.p_value),
                             f"{res.effect_size:.2f}"])
        return rows

    PAIRED_HEAD = ["mode", "repeats", "n", "mode mean", "baseline mean", "difference [95 % CI]",
                   "p (permutation)", "d_z"]

    def privacy_utility_table(self) -> str:
        """One row per setting: utility and memorisation side by side (the granularity sweep)."""
        groups = ids_by_count(self.repeat_counts, self.canary_ids)
        top = 16 if 16 in groups else max(c for c in groups if c != POOLED)
        last = self.test_sets[-1]
        head = ["mode", "clip", "seeds", f"WER {last}", f"CER {last}", f"exposure x{top}",
                "exposure all"] + (["canary CER all"] if self.canary_accuracy else [])
        noisy = any(m.result.dp_epsilon is not None for mode in self.modes for m in mode.models)
        if noisy:  # (epsilon, delta) of the noisy modes: espnet_pcc.accounting
            head.append("epsilon (delta: clip_conf.delta, default 0.01/N)")
        rows = []
        for mode in self.modes:
            row = [mode.config, mode.label, str(len(mode.models)), wer_interval(mode, last).fmt(1),
                   wer_interval(mode, last, "cer").fmt(1)]
            row += [stats.bootstrap_interval(self.per_canary(mode, "rank_exposure", groups[c])).fmt(2)
                    for c in (top, POOLED)]
            if self.canary_accuracy:
                row.append(stats.bootstrap_interval(
                    100 * self.per_canary(mode, "cer", groups[POOLED])).fmt(1))
            if noisy:
                eps = [(m.result.dp_epsilon, m.result.dp_epsilon_key) for m in mode.models
                       if m.result.dp_epsilon is not None]
                row.append(epsilon_cell(*max(eps)) if eps else epsilon_cell(None))
            rows.append(row)
        return _table(head, rows)

    def validation_table(self) -> str:
        n_ep = max(len(valid_losses(m)) for mode in self.modes for m in mode.models)
        head = ["mode"] + [f"epoch {e}" for e in range(1, n_ep + 1)]
        rows = []
        for mode in self.modes:
            row = [mode.config]
            for e in range(n_ep):
                v = [valid_losses(m)[e] for m in mode.models if e < len(valid_losses(m))]
                row.append(stats.seed_interval(v).fmt(2))
            rows.append(row)
        return _table(head, rows)

    def pair_models(self, mode: Mode) -> List[StudyModel]:
        """The models of a comparison with the baseline: both modes, on their common seeds."""
        seeds = self.common_seeds(mode)
        return [m for md in (self.baseline, mode) for m in md.models if m.seed in seeds]

    def equal_utility(self) -> Tuple[Dict[str, float], str]:
        """Each mode against the baseline at the validation loss both reach (its own level L:
        a weak sweep point does not push the main comparison back to early epochs)."""
        levels: Dict[str, float] = {}
        rows: Dict[str, List[List[str]]] = {"rank_exposure": [], "cer": []}
        unreached: List[str] = []
        for mode in self.modes[1:]:
            level = equal_utility_level(self.pair_models(mode), self.score_epochs)
            if level is None:  # a model with no finite scored-epoch loss: said, not dropped
                unreached.append(mode.config)
                continue
            levels[mode.config] = level

            def values_at(measure, level=level):
                def f(md: Mode, sub: Sequence[str], seeds) -> np.ndarray:
                    return seed_mean([at_level(m, self.score_epochs, level, measure, sub)
                                      for m in md.models if m.seed in seeds], sub)
                return f

            for measure, scale in (("rank_exposure", 1.0), ("cer", 100.0)):
                if measure == "cer" and not self.canary_accuracy:
                    continue
                rows[measure] += [[r[0], f"{level:.2f}"] + r[1:] for r in self.paired_rows(
                    "", scale=scale, values=values_at(measure), modes=[mode])]
        missing = ([f"Not compared at equal loss (a model without a finite validation loss "
                    f"at a scored epoch): {', '.join(unreached)}."] if unreached else [])
        if not levels:
            return levels, "\n".join(missing)
        head = self.PAIRED_HEAD[:1] + ["L"] + self.PAIRED_HEAD[1:]
        parts = ["L: the validation loss that every model of the comparison (the mode and the "
                 "baseline, on their common seeds) reaches at a scored epoch.", "",
                 "Rank exposure at L:", "", _table(head, rows["rank_exposure"])]
        if self.canary_accuracy:
            parts += ["", "Canary CER (%) at L:", "", _table(head, rows["cer"])]
        return levels, "\n".join(parts + ([""] + missing if missing else []))


def build(results: Sequence[ModelResult], expdir: Path, decode_tag: str,
          test_set_dirs: Mapping[str, Path], score_epochs: Sequence[int] = (),
          canary_accuracy: bool = False, epoch_decode_tag: str = "") -> Study:
    """Load every model of a study run.

    Args:
        results: the models (stage 9's :func:`espnet_pcc.recipe.report.collect`).
        expdir: their parent dir.
        decode_tag: decode dir of the final model (test sets, canaries).
        test_set_dirs: test set -> Kaldi data dir (the references of the WER intervals).
        score_epochs: epochs whose checkpoints were scored.
        canary_accuracy: whether stage 7 scored canary transcription.
        epoch_decode_tag: decode dir of epoch N's checkpoint, with ``{epoch}`` for N.
    """
    if score_epochs and canary_accuracy and "{epoch}" not in epoch_decode_tag:
        raise StudyReportError(f"epoch decode tag {epoch_decode_tag!r} lacks '{{epoch}}'")
    repeat_counts: Dict[str, int] = {}
    modes = load_models(results, expdir, decode_tag, epoch_decode_tag, test_set_dirs,
                        score_epochs, canary_accuracy, repeat_counts)
    return Study(modes, repeat_counts, list(test_set_dirs), sorted(score_epochs), canary_accuracy)


def markdown(study: Study, plot_name: Optional[str] = None) -> str:
    """The comparison section of RESULTS.md: utility, memorisation, paired tests, equal utility."""
    b = study.baseline.config
    parts = [
        "### Utility", "",
        "WER and CER in % (mean [95 % interval]: t over seeds; one seed: bootstrap over test utterances); "
        "validation loss of the last epoch (t over seeds); s/step: ESPnet's train_time.", "",
        study.utility_table(), "",
        "### Memorisation: exposure of the final model", "",
        "Mean rank exposure (bits) per repeat count, [95 % bootstrap interval over canaries]; each "
        "canary's value is its mean over the mode's seeds.", "",
        study.memorisation_table("rank_exposure"), "",
        "Extrapolated (skew-normal) exposure, same layout:", "",
        study.memorisation_table("extrapolated_exposure"), "",
    ]
    if study.canary_accuracy:
        parts += [
            "### Memorisation: canary transcription (Wang et al. 2023)", "",
            "CER in % of the decoded canaries per repeat count, and of never-inserted references "
            "(the control: what the model transcribes of such audio without having trained on it); "
            "exact: fraction of canaries transcribed word for word. [95 % bootstrap interval over "
            "utterances.]", "",
            study.accuracy_table(), "",
        ]
    parts += [
        f"### Against the baseline ({b}), paired over the same canaries", "",
        "Difference = mode - baseline (mean over canaries, bootstrap interval), each canary's "
        "value averaged over the seeds the two modes share; p: two-sided sign-flip permutation "
        "test; d_z = mean difference / sd of the differences.", "",
        "Rank exposure:", "", _table(Study.PAIRED_HEAD, study.paired_rows("rank_exposure")), "",
    ]
    if study.canary_accuracy:
        parts += ["Canary CER (%):", "",
                  _table(Study.PAIRED_HEAD, study.paired_rows("cer", scale=100.0)), ""]
    parts += ["### Privacy-utility, one row per setting", "",
              "Utility and memorisation side by side (intervals as above; a mode trained with "
              "fewer seeds has wider utility intervals).", "",
              study.privacy_utility_table(), "",
              "### Validation loss per epoch (mean [t interval over seeds])", "",
              study.validation_table(), ""]
    if study.score_epochs:
        levels, text = study.equal_utility()
        parts += ["### At equal utility", "",
                  "Memorisation interpolated along each model's scored epochs "
                  f"({', '.join(map(str, study.score_epochs))}) at a common validation loss.", ""]
        parts += [text or "No common validation-loss level.", ""]
    if plot_name:
        parts += [f"![study plots]({plot_name})", ""]
    return "\n".join(parts)


def plot(study: Study, out_png: Path) -> None:
    """Four panels: exposure vs repeats, canary CER vs repeats, validation loss per epoch,
    memorisation against validation loss (trajectory) and memorisation against WER per mode."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from espnet_pcc.fileio import atomic_path

    groups = ids_by_count(study.repeat_counts, study.canary_ids)
    counts = [c for c in groups if c != POOLED]
    fig, axes = plt.subplots(2, 4, figsize=(21, 8.5))
    ax_exp, ax_cer, ax_val, ax_traj, ax_pu, ax_pu2, ax_pu3, ax_spare = axes.ravel()
    ax_spare.axis("off")

    def err(iv: stats.Interval):
        return [[iv.value - iv.low], [iv.high - iv.value]] if math.isfinite(iv.low) else None

    for k, mode in enumerate(study.modes):
        off = (k - len(study.modes) / 2) * 0.03
        ivs = [stats.bootstrap_interval(study.per_canary(mode, "rank_exposure", groups[c])) for c in counts]
        ax_exp.errorbar([c * 2 ** off for c in counts], [i.value for i in ivs],
                        yerr=np.array([[i.value - i.low, i.high - i.value] for i in ivs]).T,
                        marker="o", capsize=3, label=mode.config)
        if study.canary_accuracy:
            ivs = [stats.bootstrap_interval(100 * study.per_canary(mode, "cer", groups[c])) for c in counts]
            ax_cer.errorbar([c * 2 ** off for c in counts], [i.value for i in ivs],
                            yerr=np.array([[i.value - i.low, i.high - i.value] for i in ivs]).T,
                            marker="o", capsize=3, label=mode.config)
            ref = stats.bootstrap_interval(100 * study.per_canary(mode, "cer", study.reference_ids))
            ax_cer.axhline(ref.value, ls=":", color=ax_cer.lines[-1].get_color(), lw=1)
        n_ep = max(len(valid_losses(m)) for m in mode.models)
        vs = [stats.seed_interval([valid_losses(m)[e] for m in mode.models if e < len(valid_losses(m))])
              for e in range(n_ep)]
        ax_val.plot(range(1, n_ep + 1), [v.value for v in vs], marker=".", label=mode.config)
        if all(math.isfinite(v.low) for v in vs):
            ax_val.fill_between(range(1, n_ep + 1), [v.low for v in vs], [v.high for v in vs], alpha=0.15)
        if study.score_epochs:
            xs, ys = [], []
            for e in study.score_epochs:
                xs.append(np.mean([valid_losses(m)[e - 1] for m in mode.models]))
                ys.append(np.mean(study.per_canary(mode, "rank_exposure", groups[POOLED],
                                                   lambda m, e=e: m.epochs[e])))
            ax_traj.plot(xs, ys, marker="o", label=mode.config)
        wer = wer_interval(mode, study.test_sets[-1])
        for ax, c in ((ax_pu, 16 if 16 in counts else counts[-1]), (ax_pu2, POOLED)):
            mem = stats.bootstrap_interval(study.per_canary(mode, "rank_exposure", groups[c]))
            ax.errorbar([wer.value], [mem.value], xerr=err(wer), yerr=err(mem), marker="o",
                        capsize=3, label=mode.config)
        if study.canary_accuracy:
            mem = stats.bootstrap_interval(100 * study.per_canary(mode, "cer", groups[POOLED]))
            ax_pu3.errorbar([wer.value], [mem.value], xerr=err(wer), yerr=err(mem), marker="o",
                            capsize=3, label=mode.config)
    ax_exp.set_xscale("log", base=2)
    ax_exp.set(xlabel="canary repeat count", ylabel="mean rank exposure (bits)",
               title="Exposure (95 % CI over canaries)")
    ax_cer.set_xscale("log", base=2)
    ax_cer.set(xlabel="canary repeat count", ylabel="canary CER (%)",
               title="Canary CER (dotted: references)")
    ax_val.set(xlabel="epoch", ylabel="validation loss", title="Validation loss (CI over seeds)")
    ax_traj.set(xlabel="validation loss (mean over seeds)", ylabel="mean rank exposure, all canaries",
                title="Memorisation vs utility over epochs")
    ax_traj.invert_xaxis()
    top = 16 if 16 in counts else counts[-1]
    ax_pu.set(xlabel=f"WER {study.test_sets[-1]} (%)", ylabel=f"rank exposure x{top}",
              title="Privacy-utility (x%d canaries)" % top)
    ax_pu2.set(xlabel=f"WER {study.test_sets[-1]} (%)", ylabel="rank exposure, all canaries",
               title="Privacy-utility (all canaries)")
    ax_pu3.set(xlabel=f"WER {study.test_sets[-1]} (%)", ylabel="canary CER, all canaries (%)",
               title="Privacy-utility (canary CER: higher = less memorised)")
    for ax in axes.ravel():
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        with atomic_path(out_png) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)


__all__ = ["Study", "build", "markdown", "plot", "split_tag"]
