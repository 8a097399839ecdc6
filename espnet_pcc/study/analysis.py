"""The second study's pre-registered analysis (docs/study.md, "Pre-registered plan"), from
its raw data alone (:mod:`espnet_pcc.study.raw`).

* The level L*: the highest last-epoch validation loss among the runs of the primary arms
  (every run reaches it), from validation losses only.
* Per run, each canary's rank exposure (or CER gap) is interpolated in validation loss at L*
  along the run's epochs (:func:`espnet_pcc.study.stats.interpolate_at`); the run's value is
  the mean over the canaries.
* Arms are compared over runs (:func:`espnet_pcc.study.stats.compare_runs`): exact
  permutation of arm labels, two-level bootstrap interval.  Primary: PCC − control;
  secondary (Holm): PCC − baseline, control − baseline, the canary CER gap PCC − control.
  Everything else is exploratory.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from espnet_pcc.study import stats
from espnet_pcc.study.raw import FINAL, RawDataError, RawStudy

PRIMARY_SAMPLER = "shuffled"
BASELINE_ARM = "baseline"  # one core, nothing clipped
PAPER_BASELINE_ARM = "paperbase"  # PCC's cores, their average clipped (the paper's baseline)
CONTROL_ARM = "control"  # the same cores as PCC, nothing clipped
PCC_ARM = "pcc"
ARMS = (BASELINE_ARM, CONTROL_ARM, PCC_ARM)
PRIMARY = (PCC_ARM, CONTROL_ARM)  # the effect of clipping alone
PCC_VS_BASELINE = (PCC_ARM, BASELINE_ARM)  # PCC as a whole
CONTROL_VS_BASELINE = (CONTROL_ARM, BASELINE_ARM)  # the per-core forwards alone
SECONDARY = ((*PCC_VS_BASELINE, "rank_exposure"), (*CONTROL_VS_BASELINE, "rank_exposure"),
             (*PRIMARY, "cer_gap"))
MEASURE_LABELS = {"rank_exposure": "rank exposure (bits)",
                  "cer_gap": "canary CER − reference CER (points)",
                  "extrapolated_exposure": "extrapolated exposure (bits)",
                  "valid_loss": "validation loss",
                  "wer": "WER (%)"}


@dataclass
class Run:
    """One training run: its validation loss and per-canary measures per epoch."""

    arm: str
    seed: int
    scored_epochs: List[int]  # the epochs whose checkpoints were scored, in order
    losses: List[float]  # at the scored epochs, in order
    #: measure -> canary -> value at each scored epoch
    epochs: Dict[str, Dict[str, List[float]]]
    final: Dict[str, Dict[str, float]]  # measure -> canary -> value of the final model
    repeat_count: Dict[str, int]
    errors: Dict[str, tuple]  # test set -> (WER %, CER %) of the final model


def runs_by_arm(study: RawStudy, sampler: str) -> Dict[str, List[Run]]:
    """The runs of one sampler, per arm, in seed order."""
    losses: Dict[Tuple[str, int], Dict[int, float]] = defaultdict(dict)
    ref_cer: Dict[Tuple[str, int, str], float] = {}
    errors: Dict[Tuple[str, int], Dict[str, tuple]] = {}
    for r in study.runs:
        if r.sampler != sampler:
            continue
        if r.epoch == FINAL:
            errors[(r.arm, r.seed)] = r.errors
        else:
            losses[(r.arm, r.seed)][int(r.epoch)] = r.valid_loss
        ref_cer[(r.arm, r.seed, r.epoch)] = r.reference_cer
    values: Dict[Tuple[str, int], Dict[str, Dict[str, Dict[str, float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(dict)))
    counts: Dict[str, int] = {}
    for c in study.canaries:
        if c.sampler != sampler:
            continue
        counts[c.canary] = c.repeat_count
        cell = values[(c.arm, c.seed)]
        cell["rank_exposure"][c.canary][c.epoch] = c.rank_exposure
        cell["extrapolated_exposure"][c.canary][c.epoch] = c.extrapolated_exposure
        # CER in points (%), as the references' control: the canary's gap to them.
        cell["cer_gap"][c.canary][c.epoch] = 100.0 * (c.cer - ref_cer[(c.arm, c.seed, c.epoch)])
    arms: Dict[str, List[Run]] = defaultdict(list)
    scored: Optional[Tuple[str, int, List[int]]] = None
    # A run with no scored epoch (stage 8 scored only the final model) has a final row alone.
    for key in errors:
        losses.setdefault(key, {})
    for (arm, seed), by_epoch in sorted(losses.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        # Any scored epochs (the curve interpolates between them), the same in every run, so
        # that every run is read at the same points of training.
        epochs = sorted(by_epoch)
        if scored is None:
            scored = (arm, seed, epochs)
        elif epochs != scored[2]:
            raise RawDataError(f"run {arm} seed {seed}: scored epochs {epochs}, but run "
                               f"{scored[0]} seed {scored[1]} has {scored[2]}")
        cell = values[(arm, seed)]
        arms[arm].append(Run(
            arm=arm, seed=seed, scored_epochs=epochs, losses=[by_epoch[e] for e in epochs],
            epochs={m: {c: [v[str(e)] for e in epochs] for c, v in per.items()}
                    for m, per in cell.items()},
            final={m: {c: v[FINAL] for c, v in per.items() if FINAL in v}
                   for m, per in cell.items()},
            repeat_count=counts, errors=errors.get((arm, seed), {})))
    return dict(arms)


def equal_loss_level(runs: Sequence[Run]) -> float:
    """L*: the highest last-epoch validation loss of ``runs`` (every one reaches it)."""
    return max(r.losses[-1] for r in runs)


def reachable_range(runs: Sequence[Run]) -> Tuple[float, float]:
    """The validation losses every run passes through: from the highest of the runs' lowest
    losses up to the lowest of their first scored epoch's losses."""
    return max(min(r.losses) for r in runs), min(r.losses[0] for r in runs)


def at_level(runs: Sequence[Run], measure: str, level: float,
             canaries: Sequence[str]) -> np.ndarray:
    """runs x canaries: each canary's ``measure`` interpolated at validation loss ``level``."""
    out = np.empty((len(runs), len(canaries)))
    for i, run in enumerate(runs):
        for j, c in enumerate(canaries):
            v = stats.interpolate_at(run.losses, run.epochs[measure][c], level)
            if v is None:
                raise RawDataError(f"run {run.arm} seed {run.seed} never reaches validation "
                                   f"loss {level:.3f}")
            out[i, j] = v
    return out


def at_epoch_index(runs: Sequence[Run], measure: str, index: int,
                   canaries: Sequence[str]) -> np.ndarray:
    """runs x canaries: each canary's ``measure`` after the runs' ``index``-th scored epoch."""
    return np.array([[run.epochs[measure][c][index] for c in canaries] for run in runs])


def final_values(runs: Sequence[Run], measure: str, canaries: Sequence[str]) -> np.ndarray:
    return np.array([[run.final[measure][c] for c in canaries] for run in runs])


@dataclass
class Contrast:
    arm_a: str
    arm_b: str
    measure: str
    result: stats.RunComparison
    adjusted_p: Optional[float] = None  # Holm, for the secondary endpoints

    @property
    def name(self) -> str:
        return f"{self.arm_a} − {self.arm_b}"


@dataclass
class Analysis:
    sampler: str
    level: float
    arms: Dict[str, List[Run]]
    canaries: List[str]
    primary: Optional[Contrast]
    secondary: List[Contrast]
    mde: Optional[float]  # of the primary contrast, bits
    run_sd: Optional[float]  # pooled within-arm sd of the primary arms' run values
    aa_rate: Optional[float]  # simulated A/A rejection rate with this study's variances
    aa_components: Optional[stats.VarianceComponents]
    per_count: Dict[int, List[Contrast]] = field(default_factory=dict)
    extrapolated: List[Contrast] = field(default_factory=list)
    finals: List[Contrast] = field(default_factory=list)
    curve: List[Tuple[float, stats.RunComparison]] = field(default_factory=list)
    #: (epoch, the primary contrast in rank exposure after that epoch): equal training, not
    #: equal loss
    by_epoch: List[Tuple[int, Contrast]] = field(default_factory=list)
    #: arm -> the A/A check on its own runs (arms of 4 runs or more)
    splits: Dict[str, stats.SplitCheck] = field(default_factory=dict)


def _compare_final(arms, a, b, canaries) -> Contrast:
    """Arm a against arm b in the final models' rank exposure."""
    return Contrast(a, b, "rank_exposure", stats.compare_runs(
        final_values(arms[a], "rank_exposure", canaries),
        final_values(arms[b], "rank_exposure", canaries)))


def _compare(arms, a, b, measure, level, canaries, **kw) -> Contrast:
    return Contrast(a, b, measure, stats.compare_runs(at_level(arms[a], measure, level, canaries),
                                                      at_level(arms[b], measure, level, canaries),
                                                      **kw))


def analyse(study: RawStudy, sampler: str = PRIMARY_SAMPLER, aa_trials: int = 1000,
            curve_points: int = 12) -> Analysis:
    """The pre-registered analysis of one sampler's arms (the primary and secondary endpoints
    for the shuffled sampler; for another sampler the same numbers are exploratory)."""
    arms = runs_by_arm(study, sampler)
    missing = [a for a in ARMS if a not in arms]
    if missing:
        raise RawDataError(f"sampler {sampler}: no runs of arm(s) {', '.join(missing)}")
    all_runs = [r for a in ARMS for r in arms[a]]
    canaries = sorted(all_runs[0].repeat_count)
    level = equal_loss_level(all_runs)
    primary = _compare(arms, *PRIMARY, "rank_exposure", level, canaries)
    secondary = [_compare(arms, a, b, m, level, canaries) for a, b, m in SECONDARY]
    for c, p in zip(secondary, stats.holm([c.result.p_value for c in secondary])):
        c.adjusted_p = p
    ya = at_level(arms[PRIMARY[0]], "rank_exposure", level, canaries)
    yb = at_level(arms[PRIMARY[1]], "rank_exposure", level, canaries)
    run_sd = stats.pooled_sd(ya.mean(axis=1), yb.mean(axis=1))
    mde = None
    aa_rate = components = None
    if min(len(ya), len(yb)) >= 2:
        mde = stats.minimum_detectable_effect(run_sd, len(ya), len(yb))
        # The A/A check with this study's own variances: run, canary and noise components
        # pooled over the two primary arms (each arm's estimate, averaged in variance).
        est = [stats.variance_components(y) for y in (ya, yb)]
        components = stats.VarianceComponents(
            *(math.sqrt(np.mean([getattr(e, k) ** 2 for e in est]))
              for k in ("run_sd", "unit_sd", "noise_sd")))
        aa_rate = stats.rejection_rate(np.random.default_rng(0), stats.runs_test, aa_trials,
                                       len(ya), len(canaries), components)
    analysis = Analysis(sampler=sampler, level=level, arms=arms, canaries=canaries,
                        primary=primary, secondary=secondary, mde=mde, run_sd=run_sd,
                        aa_rate=aa_rate, aa_components=components)
    # The A/A check on the real runs: each arm's runs split every way into two groups.
    for arm in ARMS:
        if len(arms[arm]) >= 4:
            analysis.splits[arm] = stats.split_check(
                at_level(arms[arm], "rank_exposure", level, canaries))
    counts = sorted({all_runs[0].repeat_count[c] for c in canaries})
    for count in counts:
        ids = [c for c in canaries if all_runs[0].repeat_count[c] == count]
        analysis.per_count[count] = [
            _compare(arms, a, b, "rank_exposure", level, ids, n_resamples=1999)
            for a, b in (PRIMARY, PCC_VS_BASELINE)]
    analysis.extrapolated = _finite_contrasts(arms, "extrapolated_exposure", level, canaries)
    for a, b in (PRIMARY, PCC_VS_BASELINE, CONTROL_VS_BASELINE):
        analysis.finals.append(_compare_final(arms, a, b, canaries))
    for i, epoch in enumerate(all_runs[0].scored_epochs):
        analysis.by_epoch.append((epoch, Contrast(*PRIMARY, "rank_exposure", stats.compare_runs(
            at_epoch_index(arms[PRIMARY[0]], "rank_exposure", i, canaries),
            at_epoch_index(arms[PRIMARY[1]], "rank_exposure", i, canaries),
            n_resamples=1999))))
    low, high = reachable_range(all_runs)
    if high > low:
        for level_i in np.linspace(low, high, curve_points):
            analysis.curve.append((float(level_i), stats.compare_runs(
                at_level(arms[PRIMARY[0]], "rank_exposure", level_i, canaries),
                at_level(arms[PRIMARY[1]], "rank_exposure", level_i, canaries),
                n_resamples=1999)))
    return analysis


def analyse_study(study: RawStudy) -> Tuple[Analysis, List[Analysis]]:
    """The pre-registered analysis of the primary (shuffled-batch) runs, and the same
    numbers, exploratory, for every other sampler in the raw data (in name order)."""
    samplers = sorted({r.sampler for r in study.runs})
    if PRIMARY_SAMPLER not in samplers:
        raise RawDataError(f"no {PRIMARY_SAMPLER}-batch runs (the primary arms); samplers "
                           f"found: {', '.join(samplers) or 'none'}")
    return analyse(study, PRIMARY_SAMPLER), [analyse(study, s) for s in samplers
                                              if s != PRIMARY_SAMPLER]


def _finite_contrasts(arms, measure, level, canaries) -> List[Contrast]:
    """The primary pairs in ``measure`` where every value is finite (an extrapolated exposure
    is +inf when even the log-CDF underflows: such a contrast is left out, not clipped)."""
    out = []
    for a, b in (PRIMARY, PCC_VS_BASELINE):
        xa, xb = (at_level(arms[x], measure, level, canaries) for x in (a, b))
        if np.all(np.isfinite(xa)) and np.all(np.isfinite(xb)):
            out.append(Contrast(a, b, measure, stats.compare_runs(xa, xb)))
    return out


def arm_summary(runs: Sequence[Run], level: float, canaries: Sequence[str],
                test_sets: Sequence[str]) -> Dict[str, stats.Interval]:
    """Per arm, over its runs (t-intervals): final validation loss, WER/CER of the test sets
    (final model), and the rank exposure and CER gap at L*."""
    out = {"valid loss, last epoch": stats.seed_interval([r.losses[-1] for r in runs])}
    for s in test_sets:
        for k, unit in enumerate(("WER", "CER")):
            vals = [r.errors[s][k] for r in runs if s in r.errors]
            out[f"{unit} {s} %"] = stats.seed_interval(vals)
    for m in ("rank_exposure", "cer_gap"):
        out[f"{m} at L*"] = stats.seed_interval(at_level(runs, m, level, canaries).mean(axis=1))
    return out


@dataclass
class ModeComparison:
    """Stage 9's memorisation view of any recipe's modes on one sampler (exploratory, not the
    pre-registered study): every arm against a reference arm, training runs as the unit."""

    sampler: str
    reference: str
    arms: Dict[str, List[Run]]  # in the order the model tags were given
    canaries: List[str]
    level: Optional[float]  # L* over every run, where epochs were scored
    finals: List[Contrast]  # pooled rank exposure of the final (decoded) models
    at_level: List[Contrast]  # the same at L*
    too_few_runs: List[str]  # arms (the reference too) with fewer than 2 runs: no contrast
    #: the same contrasts at each pair's own level (the highest last-epoch loss of the two
    #: arms' runs), where that differs from L*: like for like when a third arm sets L*
    at_pair_level: List[Tuple[float, Contrast]] = field(default_factory=list)


def past_level(runs: Sequence[Run], level: float) -> int:
    """How many of ``runs`` are already at or below ``level`` at their first scored epoch:
    their value "at the level" is that epoch's, from a model trained further than the level
    says, not an interpolation."""
    return sum(1 for r in runs if r.losses and r.losses[0] <= level)


def compare_modes(study: RawStudy, sampler: str, reference: Optional[str] = None
                  ) -> ModeComparison:
    """Each arm of ``sampler``'s runs against ``reference`` (None, or an arm not in the raw
    data: the paper's baseline where there is one, else the baseline, else the first arm of the
    raw data), in pooled rank exposure of the final models and, where every
    run scored the same epochs, at L* (the highest last-epoch validation loss of them all).
    Where there is a ``control`` arm (the same cores, nothing clipped), each other arm is also
    compared with it: that contrast is the effect of the clipping alone.
    Where a pair's own level (the highest last-epoch loss of its two arms' runs) differs from
    L*, the pair is also compared there: L* is set by the worst-trained arm, which can lie
    above where two better-trained arms' first scored epochs are.
    An arm with fewer than two runs gets no contrast (one run per arm has no run-to-run
    variation to test against)."""
    by_arm = runs_by_arm(study, sampler)
    if not by_arm:
        raise RawDataError(f"no runs of sampler {sampler}")
    order = list(dict.fromkeys(r.arm for r in study.runs if r.sampler == sampler))
    arms = {a: by_arm[a] for a in order}
    if reference not in arms:
        reference = next((a for a in (PAPER_BASELINE_ARM, BASELINE_ARM) if a in arms), order[0])
    all_runs = [r for runs in arms.values() for r in runs]
    canaries = sorted(all_runs[0].repeat_count)
    level = equal_loss_level(all_runs) if all(r.losses for r in all_runs) else None
    too_few = [a for a, runs in arms.items() if len(runs) < 2]
    pairs = [(arm, reference) for arm in order if arm != reference]
    if CONTROL_ARM in arms and CONTROL_ARM != reference:
        pairs += [(arm, CONTROL_ARM) for arm in order if arm not in (reference, CONTROL_ARM)]
    pairs = [(a, b) for a, b in pairs if a not in too_few and b not in too_few]
    finals = [_compare_final(arms, a, b, canaries) for a, b in pairs]
    at_l = [] if level is None else \
        [_compare(arms, a, b, "rank_exposure", level, canaries) for a, b in pairs]
    at_pair = []
    for a, b in (pairs if level is not None else []):
        pair_level = equal_loss_level(arms[a] + arms[b])
        if pair_level != level:
            at_pair.append((pair_level, _compare(arms, a, b, "rank_exposure", pair_level,
                                                 canaries)))
    return ModeComparison(sampler, reference, arms, canaries, level, finals, at_l, too_few,
                          at_pair)


def mode_values(runs: Sequence[Run], canaries: Sequence[str], test_sets: Sequence[str],
                level: Optional[float]) -> Dict[str, List[float]]:
    """Per arm, each run's value (the runs in their order), column by column: WER of the test
    sets, the final models' rank exposure per repeat count and pooled, their canary CER minus
    the references' (where the canaries were transcribed), and the pooled exposure at L* where
    given.  Stage 9's table shows their means over the runs with t-intervals
    (`espnet_pcc.study.results.render_modes`)."""
    out = {}
    for s in test_sets:
        out[f"WER {s} %"] = [r.errors[s][0] for r in runs if s in r.errors]
    counts = sorted({runs[0].repeat_count[c] for c in canaries})
    for count in counts:
        ids = [c for c in canaries if runs[0].repeat_count[c] == count]
        out[f"exposure ×{count}"] = final_values(runs, "rank_exposure", ids).mean(axis=1).tolist()
    out["exposure, pooled"] = final_values(runs, "rank_exposure", canaries).mean(axis=1).tolist()
    gap = final_values(runs, "cer_gap", canaries).mean(axis=1)
    if np.all(np.isfinite(gap)):  # the canaries were transcribed (stage 7 --canary_sets)
        out["canary − reference CER"] = gap.tolist()
    if level is not None:
        out["pooled at L*"] = at_level(runs, "rank_exposure", level, canaries).mean(axis=1).tolist()
    return out


__all__ = ["ARMS", "BASELINE_ARM", "CONTROL_ARM", "PAPER_BASELINE_ARM", "PCC_ARM", "Analysis",
           "Contrast", "ModeComparison", "PRIMARY", "Run", "SECONDARY", "analyse",
           "analyse_study", "arm_summary", "at_epoch_index", "at_level", "compare_modes",
           "equal_loss_level", "mode_values", "past_level", "reachable_range", "runs_by_arm"]
