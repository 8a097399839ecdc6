"""The third study's pre-registered analysis (docs/study.md, "Third study: pre-registered
plan"): the paper's claims, that per-core clipping (PCC) and its adaptive form (APCC) memorise
less, converge faster and perform better, each tested against the paper's baseline, from the
raw data alone (:mod:`espnet_pcc.study.raw`).

Arms, all on shuffled batches, seeds 0-4 (trained in seed blocks: every arm of a seed on one
machine in one session): ``baseline`` (espnet2's loop: one forward of the 16 utterances of a
step, its average gradient clipped to C = 5), ``paperbase`` (the paper's baseline: PCC's four
per-core forwards, their average clipped to C as one vector), ``control`` (the same forwards,
nothing clipped), ``pcc`` (each core clipped to C), ``apcc`` (each core clipped to the step's
smallest core norm).

* L*: the highest epoch-6 validation loss of the 25 runs (every run reaches it), from
  validation losses alone.
* Memorisation: a run's mean over the canaries of the extrapolated (skew-normal) exposure,
  each canary's interpolated in validation loss at L* (:func:`espnet_pcc.study.analysis.at_level`).
  A non-finite extrapolated exposure (a log-CDF underflow) is replaced by the largest finite
  one of the study's runs, and counted.  The second study's rank exposure is a secondary
  measure: at its L* most canaries inserted 8 or 16 times sat at the rank cap.
* Convergence: a run's validation loss after epoch 3.
* Accuracy: a run's test WER of its final (averaged) model.

Every contrast is over runs (:func:`espnet_pcc.study.stats.compare_runs`: exact permutation
of the arm labels, two-level bootstrap interval).  The primary family (:data:`PRIMARY`) and the
secondary family (:data:`SECONDARY`) are each Holm-adjusted; everything else is exploratory.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from espnet_pcc.study import stats
from espnet_pcc.study.analysis import Run, at_level, equal_loss_level, final_values, \
    runs_by_arm
from espnet_pcc.study.raw import FINAL, RawDataError, RawStudy

SAMPLER = "shuffled"
BASELINE, PAPER_BASELINE, CONTROL, PCC, APCC = "baseline", "paperbase", "control", "pcc", "apcc"
ARMS = (BASELINE, PAPER_BASELINE, CONTROL, PCC, APCC)
SEEDS = (0, 1, 2, 3, 4)
EPOCHS = (1, 2, 3, 4, 5, 6)  # every epoch's checkpoint is scored; L* is read at the last
CONVERGENCE_EPOCH = 3
TEST_SET = "test"

# Measures (a run's value; the unit of replication is the run).
EXTRAPOLATED = "extrapolated_exposure"  # mean over the canaries, bits
RANK = "rank_exposure"  # mean over the canaries, bits (capped at log2(|R| + 1))
VALID_LOSS = "valid_loss"  # validation loss after an epoch
WER = "wer"  # test WER of the final model, %
EPOCH_AT_LEVEL = "epoch_at_level"  # the epoch (interpolated) at which V first reaches L*
MEASURES = {EXTRAPOLATED: "extrapolated exposure (bits)", RANK: "rank exposure (bits)",
            VALID_LOSS: "validation loss", WER: f"{TEST_SET} WER (%)",
            EPOCH_AT_LEVEL: "epochs to reach L*"}
#: What a lower and a higher value of each measure mean (the report's plain-words lines).
LOWER_MEANS = {EXTRAPOLATED: "memorises less", RANK: "memorises less",
               VALID_LOSS: "has converged further", WER: "is more accurate",
               EPOCH_AT_LEVEL: "converges faster"}
HIGHER_MEANS = {EXTRAPOLATED: "memorises more", RANK: "memorises more",
                VALID_LOSS: "has converged less far", WER: "is less accurate",
                EPOCH_AT_LEVEL: "converges more slowly"}

AT_LEVEL, AT_FINAL = "L*", "final"  # where a measure is read; else "epoch N"


def at_epoch(epoch: int) -> str:
    return f"epoch {epoch}"


@dataclass(frozen=True)
class Endpoint:
    """Arm a minus arm b in ``measure`` read ``at`` L* (interpolated), the final model, or an
    epoch's raw checkpoint (``at_epoch``)."""

    arm_a: str
    arm_b: str
    measure: str
    at: str

    @property
    def name(self) -> str:
        return f"{self.arm_a} − {self.arm_b}"

    @property
    def label(self) -> str:
        if self.measure == EPOCH_AT_LEVEL:
            return MEASURES[self.measure]
        where = {AT_LEVEL: "at L*", AT_FINAL: "final model"}.get(self.at, f"after {self.at}")
        return f"{MEASURES[self.measure]}, {where}"


#: The primary family (Holm over four): memorisation at equal validation loss and convergence,
#: PCC and APCC each against the paper's baseline.
PRIMARY = (Endpoint(PCC, PAPER_BASELINE, EXTRAPOLATED, AT_LEVEL),
           Endpoint(APCC, PAPER_BASELINE, EXTRAPOLATED, AT_LEVEL),
           Endpoint(PCC, PAPER_BASELINE, VALID_LOSS, at_epoch(CONVERGENCE_EPOCH)),
           Endpoint(APCC, PAPER_BASELINE, VALID_LOSS, at_epoch(CONVERGENCE_EPOCH)))
#: The secondary family (Holm over six): accuracy against the paper's baseline, the second
#: study's measure against it, the paper's baseline against espnet2's, and the second study's
#: primary contrast in the new measure.
SECONDARY = (Endpoint(PCC, PAPER_BASELINE, WER, AT_FINAL),
             Endpoint(APCC, PAPER_BASELINE, WER, AT_FINAL),
             Endpoint(PCC, PAPER_BASELINE, RANK, AT_LEVEL),
             Endpoint(APCC, PAPER_BASELINE, RANK, AT_LEVEL),
             Endpoint(PAPER_BASELINE, BASELINE, EXTRAPOLATED, AT_LEVEL),
             Endpoint(PCC, CONTROL, EXTRAPOLATED, AT_LEVEL))


@dataclass
class Tested:
    """One endpoint's comparison over runs (``adjusted_p``: Holm's, within its family)."""

    endpoint: Endpoint
    result: stats.RunComparison
    adjusted_p: Optional[float] = None


@dataclass
class Study:
    """The runs the plan analyses, with what every measure is read from."""

    arms: Dict[str, List[Run]]
    canaries: List[str]
    level: float  # L*
    num_references: int
    #: the largest finite extrapolated exposure of the runs (what a non-finite one becomes)
    fill: float
    filled: int  # non-finite extrapolated exposures replaced
    outside_plan: List[Tuple[str, int]]  # (arm, seed) in the raw data, not analysed

    def values(self, arm: str, endpoint: Endpoint,
               canaries: Optional[Sequence[str]] = None) -> np.ndarray:
        """runs x units of ``arm`` in ``endpoint``'s measure (exposures: one unit per canary;
        the others: one unit per run)."""
        runs = self.arms[arm]
        canaries = self.canaries if canaries is None else list(canaries)
        m, at = endpoint.measure, endpoint.at
        if m in (EXTRAPOLATED, RANK):
            if at == AT_LEVEL:
                return at_level(runs, m, self.level, canaries)
            if at == AT_FINAL:
                return final_values(runs, m, canaries)
            e = EPOCHS.index(_epoch_of(at))
            return np.array([[r.epochs[m][c][e] for c in canaries] for r in runs])
        if m == VALID_LOSS:
            return np.array([[r.losses[EPOCHS.index(_epoch_of(at))]] for r in runs])
        if m == WER:
            return np.array([[r.errors[TEST_SET][0]] for r in runs])
        if m == EPOCH_AT_LEVEL:
            return np.array([[stats.interpolate_at(r.losses, list(EPOCHS), self.level)]
                             for r in runs])
        raise ValueError(f"unknown measure {m!r}")

    def compare(self, endpoint: Endpoint, canaries: Optional[Sequence[str]] = None,
                n_resamples: int = stats.N_RESAMPLES) -> Tested:
        return Tested(endpoint, stats.compare_runs(
            self.values(endpoint.arm_a, endpoint, canaries),
            self.values(endpoint.arm_b, endpoint, canaries), n_resamples=n_resamples))

    def repeat_count(self, canary: str) -> int:
        return self.arms[ARMS[0]][0].repeat_count[canary]

    @property
    def rank_cap(self) -> float:
        """The rank exposure of a canary ranked first: log2(|R| + 1)."""
        return math.log2(self.num_references + 1)


def _epoch_of(at: str) -> int:
    return int(at.split()[-1])


def missing_runs(study: RawStudy, seeds: Sequence[int] = SEEDS) -> List[Tuple[str, int]]:
    """The (arm, seed) runs of the plan that the raw data does not hold (in plan order)."""
    have = {(r.arm, r.seed) for r in study.runs if r.sampler == SAMPLER}
    return [(a, s) for s in seeds for a in ARMS if (a, s) not in have]


def block_status(study: RawStudy, seeds: Sequence[int] = SEEDS) -> str:
    """One line: which seed blocks are complete (every arm of the seed in the raw data)."""
    missing = missing_runs(study, seeds)
    done = [s for s in seeds if not any(m[1] == s for m in missing)]
    present = {r.seed for r in study.runs if r.sampler == SAMPLER}
    partial = sorted({s for _, s in missing} & present)
    line = (f"third study: {len(done)} of {len(seeds)} seed blocks complete (seeds "
            f"{' '.join(map(str, done)) or 'none'})")
    if partial:
        line += f"; incomplete: seeds {' '.join(map(str, partial))}"
    return line


def load(raw: RawStudy, seeds: Sequence[int] = SEEDS) -> Study:
    """The plan's runs of the raw data, checked complete; L*; non-finite exposures replaced.

    Raises:
        RawDataError: a run of the plan missing, or scored at other epochs (one line).
    """
    missing = missing_runs(raw, seeds)
    if missing:
        names = ", ".join(f"{a} seed {s}" for a, s in missing[:6])
        more = f" and {len(missing) - 6} more" if len(missing) > 6 else ""
        raise RawDataError(f"the third study needs seeds {', '.join(map(str, seeds))} of every "
                           f"arm ({', '.join(ARMS)}); missing: {names}{more}")
    scored = sorted({int(r.epoch) for r in raw.runs if r.sampler == SAMPLER
                     and r.epoch != FINAL})
    if tuple(scored) != EPOCHS:
        raise RawDataError(f"the third study scores epochs {list(EPOCHS)}; the raw data has "
                           f"{scored}")
    by_arm = runs_by_arm(raw, SAMPLER)
    arms = {a: [r for r in by_arm[a] if r.seed in seeds] for a in ARMS}
    outside = sorted((a, r.seed) for a, runs in by_arm.items() for r in runs
                     if a not in ARMS or r.seed not in seeds)
    for runs in arms.values():
        for r in runs:
            if TEST_SET not in r.errors:
                raise RawDataError(f"run {r.arm} seed {r.seed}: no {TEST_SET} WER of the final "
                                   "model")
    finite = [v for runs in arms.values() for r in runs
              for series in (*r.epochs[EXTRAPOLATED].values(), r.final[EXTRAPOLATED].values())
              for v in series if math.isfinite(v)]
    fill = max(finite) if finite else math.nan
    filled = 0
    for runs in arms.values():
        for r in runs:
            for c, series in r.epochs[EXTRAPOLATED].items():
                bad = sum(not math.isfinite(v) for v in series)
                if bad:
                    filled += bad
                    r.epochs[EXTRAPOLATED][c] = [v if math.isfinite(v) else fill for v in series]
            for c, v in r.final[EXTRAPOLATED].items():
                if not math.isfinite(v):
                    filled += 1
                    r.final[EXTRAPOLATED][c] = fill
    all_runs = [r for a in ARMS for r in arms[a]]
    num_references = {r.num_references for r in raw.runs if r.sampler == SAMPLER}
    if len(num_references) != 1:
        raise RawDataError(f"the runs scored against different reference sets: |R| = "
                           f"{sorted(num_references)}")
    return Study(arms=arms, canaries=sorted(all_runs[0].repeat_count),
                 level=equal_loss_level(all_runs), num_references=num_references.pop(),
                 fill=fill, filled=filled, outside_plan=outside)


@dataclass
class ClaimsAnalysis:
    """The third study's results (docs/study.md): the two families and the exploratory rest."""

    study: Study
    primary: List[Tested]
    secondary: List[Tested]
    #: per primary endpoint: the pooled within-arm sd of the run values and the minimum
    #: detectable effect (80 % power, two-sample t approximation)
    run_sd: Dict[Endpoint, float]
    mde: Dict[Endpoint, float]
    #: the A/A check of the primary memorisation test, with the variances of its arms:
    #: the fraction of ``aa_trials`` simulated null studies it rejected
    aa_rate: Optional[float]
    aa_components: Optional[stats.VarianceComponents]
    aa_trials: int
    splits: Dict[str, stats.SplitCheck] = field(default_factory=dict)
    #: runs already at or below L* at their first epoch (their value is that epoch's)
    past_level: Dict[str, int] = field(default_factory=dict)
    # -- exploratory
    against_others: List[Tested] = field(default_factory=list)
    per_count: List[Tuple[int, Tested]] = field(default_factory=list)
    by_epoch: List[Tested] = field(default_factory=list)
    finals: List[Tested] = field(default_factory=list)
    #: arm -> repeat count -> the fraction of its canaries at the rank cap at L*
    saturation: Dict[str, Dict[int, float]] = field(default_factory=dict)


def _family(study: Study, endpoints: Sequence[Endpoint], n_resamples: int) -> List[Tested]:
    tested = [study.compare(e, n_resamples=n_resamples) for e in endpoints]
    for t, p in zip(tested, stats.holm([t.result.p_value for t in tested])):
        t.adjusted_p = p
    return tested


def primary_family(raw: RawStudy, n_resamples: int = stats.N_RESAMPLES,
                   seeds: Sequence[int] = SEEDS) -> List[Tested]:
    """The four primary endpoints alone, Holm-adjusted (the simulated calibration runs this)."""
    return _family(load(raw, seeds), PRIMARY, n_resamples)


def analyse(raw: RawStudy, aa_trials: int = 1000, n_resamples: int = stats.N_RESAMPLES,
            seeds: Sequence[int] = SEEDS) -> ClaimsAnalysis:
    """The pre-registered analysis, and the exploratory tables beside it."""
    study = load(raw, seeds)
    primary = _family(study, PRIMARY, n_resamples)
    secondary = _family(study, SECONDARY, n_resamples)
    run_sd, mde = {}, {}
    for t in primary:
        e = t.endpoint
        ya, yb = (study.values(arm, e).mean(axis=1) for arm in (e.arm_a, e.arm_b))
        run_sd[e] = stats.pooled_sd(ya, yb)
        mde[e] = stats.minimum_detectable_effect(run_sd[e], len(ya), len(yb))
    memorisation = PRIMARY[0]
    est = [stats.variance_components(study.values(arm, memorisation))
           for arm in (memorisation.arm_a, memorisation.arm_b)]
    components = stats.VarianceComponents(
        *(math.sqrt(np.mean([getattr(x, k) ** 2 for x in est]))
          for k in ("run_sd", "unit_sd", "noise_sd")))
    aa_rate = stats.rejection_rate(np.random.default_rng(0), stats.runs_test, aa_trials,
                                   len(seeds), len(study.canaries), components) \
        if aa_trials else None
    result = ClaimsAnalysis(study=study, primary=primary, secondary=secondary, run_sd=run_sd,
                            mde=mde, aa_rate=aa_rate, aa_components=components,
                            aa_trials=aa_trials)
    for arm in ARMS:
        result.splits[arm] = stats.split_check(study.values(arm, memorisation))
        result.past_level[arm] = sum(r.losses[0] <= study.level for r in study.arms[arm])
    fast = min(n_resamples, 1999)
    pairs = [(a, b) for a in (PCC, APCC) for b in (BASELINE, CONTROL)] + [(APCC, PCC),
                                                                          (CONTROL, PAPER_BASELINE)]
    for a, b in pairs:
        for measure, at in ((EXTRAPOLATED, AT_LEVEL), (VALID_LOSS, at_epoch(CONVERGENCE_EPOCH)),
                            (VALID_LOSS, at_epoch(EPOCHS[-1])), (WER, AT_FINAL)):
            result.against_others.append(study.compare(Endpoint(a, b, measure, at),
                                                       n_resamples=fast))
    for a in (PCC, APCC):
        for measure in (EXTRAPOLATED, RANK):
            for count in sorted({study.repeat_count(c) for c in study.canaries}):
                ids = [c for c in study.canaries if study.repeat_count(c) == count]
                result.per_count.append((count, study.compare(
                    Endpoint(a, PAPER_BASELINE, measure, AT_LEVEL), ids, n_resamples=fast)))
        for e in EPOCHS:
            for measure in (VALID_LOSS, EXTRAPOLATED):
                result.by_epoch.append(study.compare(
                    Endpoint(a, PAPER_BASELINE, measure, at_epoch(e)), n_resamples=fast))
        result.by_epoch.append(study.compare(Endpoint(a, PAPER_BASELINE, EPOCH_AT_LEVEL,
                                                      AT_LEVEL), n_resamples=fast))
        for measure in (EXTRAPOLATED, RANK):
            result.finals.append(study.compare(Endpoint(a, PAPER_BASELINE, measure, AT_FINAL),
                                               n_resamples=fast))
    cap = study.rank_cap
    rank_at_level = Endpoint(PCC, PAPER_BASELINE, RANK, AT_LEVEL)
    for arm in ARMS:
        values = study.values(arm, rank_at_level)
        by_count: Dict[int, List[float]] = defaultdict(list)
        for j, c in enumerate(study.canaries):
            by_count[study.repeat_count(c)] += (values[:, j] >= cap - 1e-9).tolist()
        result.saturation[arm] = {n: float(np.mean(v)) for n, v in sorted(by_count.items())}
    return result


def arm_summary(study: Study, arm: str) -> Dict[str, stats.Interval]:
    """Per arm, over its runs (t-intervals): the validation loss after the convergence epoch
    and the last, the epoch it reaches L*, WER and CER of the test sets, and both exposures at
    L*."""
    out = {}
    for e in (CONVERGENCE_EPOCH, EPOCHS[-1]):
        out[f"valid loss, epoch {e}"] = stats.seed_interval(
            study.values(arm, Endpoint(arm, arm, VALID_LOSS, at_epoch(e)))[:, 0])
    out["epochs to L*"] = stats.seed_interval(
        study.values(arm, Endpoint(arm, arm, EPOCH_AT_LEVEL, AT_LEVEL))[:, 0])
    test_sets = sorted({s for r in study.arms[arm] for s in r.errors})
    for s in test_sets:
        for k, unit in enumerate(("WER", "CER")):
            out[f"{unit} {s} %"] = stats.seed_interval([r.errors[s][k] for r in study.arms[arm]])
    for m in (EXTRAPOLATED, RANK):
        out[f"{MEASURES[m].split(' (')[0]} at L*"] = stats.seed_interval(
            study.values(arm, Endpoint(arm, arm, m, AT_LEVEL)).mean(axis=1))
    return out


__all__ = ["APCC", "ARMS", "BASELINE", "CONTROL", "CONVERGENCE_EPOCH", "ClaimsAnalysis",
           "EPOCHS", "Endpoint", "PAPER_BASELINE", "PCC", "PRIMARY", "SECONDARY", "SEEDS",
           "Study", "Tested", "analyse", "arm_summary", "block_status", "load", "missing_runs",
           "primary_family"]
