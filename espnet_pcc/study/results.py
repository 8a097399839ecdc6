"""The memorisation reports, both from the raw data (:mod:`espnet_pcc.study.raw`): the
pre-registered study's RESULTS.md and plot (:func:`render_markdown`, :func:`plot`, from
:func:`espnet_pcc.study.analysis.analyse`), and stage 9's comparison of any recipe's modes
(:func:`render_modes`, :func:`plot_modes`, from
:func:`espnet_pcc.study.analysis.compare_modes`).

Every table is built by :func:`espnet_pcc.markdown.table`; every p-value goes through
:func:`espnet_pcc.study.stats.format_p`, which writes a p at the test's floor as "≤ floor".
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import List, Sequence

import numpy as np

from espnet_pcc.fileio import atomic_write_text
from espnet_pcc.markdown import table
from espnet_pcc.study import raw, stats
from espnet_pcc.study.arms import arm_colors, save_png
from espnet_pcc.study.analysis import ARMS, MEASURE_LABELS, PRIMARY, Analysis, Contrast, \
    ModeComparison, analyse_study, arm_summary, mode_values, past_level


def _p(c: Contrast, adjusted: bool = False) -> str:
    p = c.adjusted_p if adjusted else c.result.p_value
    return stats.format_p(p, 0.0 if adjusted else c.result.p_floor)


def _contrast_row(c: Contrast, digits: int = 2) -> List[str]:
    r = c.result
    return [c.name, f"{r.mean_a:.{digits}f}", f"{r.mean_b:.{digits}f}",
            r.difference.fmt(digits), _p(c), f"{r.n_a} vs {r.n_b}"]


_CONTRAST_HEAD = ["contrast", "mean a", "mean b", "Δ = a − b [95 % CI]", "p", "runs"]


def verdict(c: Contrast, alpha: float = 0.05, adjusted: bool = False) -> str:
    """A plain sentence on one contrast: significant or not, and the interval."""
    p = c.adjusted_p if adjusted else c.result.p_value
    d = c.result.difference
    what = MEASURE_LABELS[c.measure]
    p_text = f"Holm-adjusted p {_p(c, adjusted)}, unadjusted interval" if adjusted \
        else f"p {_p(c)}"
    if p < alpha:
        direction = "lower" if d.value < 0 else "higher"
        return (f"{c.arm_a} is {direction} than {c.arm_b} in {what} by {abs(d.value):.2f} "
                f"(95 % CI {d.low:.2f} to {d.high:.2f}; {p_text}).")
    return (f"No significant difference between {c.arm_a} and {c.arm_b} in {what}: "
            f"Δ = {d.value:.2f}, 95 % CI {d.low:.2f} to {d.high:.2f} ({p_text}).")


def colocation_lines(colocation) -> List[str]:
    """The co-located copies of canaries per sampler (``raw.read_colocation``), or nothing."""
    if colocation is None:
        return []
    num_cores, by_sampler = colocation
    rows = [[name, str(c["pairs"]), f"{100 * c['same_batch']:.1f} %",
             f"{100 * c['same_core']:.1f} %"] for name, c in sorted(by_sampler.items())]
    return ["Where the copies of a canary sit (`study_colocation`: every pair of copies of a "
            f"canary, {num_cores} position cores per batch; ESPnet's folded batches are built "
            "once, the shuffled ones for every seed and epoch):", "",
            table(["sampler", "pairs of copies", "in one batch", "in one core"], rows), ""]


def render_markdown(primary: Analysis, test_sets: Sequence[str], title: str,
                    provenance: str, rebuild: str,
                    exploratory: Sequence[Analysis] = (), colocation=None) -> str:
    a = primary
    out = [f"# {title}", "", provenance, "",
           "The plan (arms, seeds, endpoints, analysis) was committed before the first run: "
           "docs/study.md, \"Pre-registered plan\". Training runs are the unit of every "
           "interval and test below; canaries enter only through the bootstrap.", ""]
    out += ["## Primary endpoint", "",
            f"Pooled rank exposure of the {len(a.canaries)} canaries at the validation loss "
            f"L* = {a.level:.3f} (the highest last-epoch validation loss of the "
            f"{sum(len(r) for r in a.arms.values())} runs), {a.sampler} batches. "
            "Exact permutation test of the arm labels (two-sided); 95 % two-level bootstrap "
            "interval (runs within arms, canaries).", "",
            table(_CONTRAST_HEAD + ["minimum detectable Δ (80 %)"],
                  [_contrast_row(a.primary) + [f"{a.mde:.2f}" if a.mde is not None else "-"]]),
            "", "**" + verdict(a.primary) + "**", ""]
    if a.mde is not None:
        out += [f"With {a.primary.result.n_a} runs per arm and a standard deviation of "
                f"{a.run_sd:.2f} bits between the runs' values (each run's mean over its "
                f"{len(a.canaries)} canaries, within an arm), the study detects a difference "
                f"of {a.mde:.2f} bits with 80 % power (two-sample t approximation); a smaller effect is not "
                "excluded.", ""]
    out += ["## Secondary endpoints (Holm over three)", "",
            table(_CONTRAST_HEAD + ["measure", "p (Holm)"],
                  [_contrast_row(c) + [MEASURE_LABELS[c.measure], _p(c, adjusted=True)]
                   for c in a.secondary]), ""]
    out += ["- " + verdict(c, adjusted=True) for c in a.secondary] + [""]
    if a.aa_rate is not None:
        comp = a.aa_components
        # A run's value is its run effect plus the noise averaged over its canaries: the sd
        # of the values (the power paragraph's) is the larger of the two.
        of_values = math.sqrt(comp.run_sd ** 2 + comp.noise_sd ** 2 / len(a.canaries))
        out += ["## Calibration of the test", "",
                f"An A/A check with this study's own variances (sd of the run effect "
                f"{comp.run_sd:.2f}, of the canary effect {comp.unit_sd:.2f}, of the noise "
                f"{comp.noise_sd:.2f} bits, estimated from the {PRIMARY[0]} and {PRIMARY[1]} "
                f"runs at L*; with the noise averaged over {len(a.canaries)} canaries, a run's "
                f"value varies by {of_values:.2f}): of 1000 simulated pairs of arms "
                f"drawn from one distribution, the test rejected {100 * a.aa_rate:.1f} % at "
                "α = 0.05 (nominal 5 %; the unit tests in tests/study/test_run_stats.py check "
                "the same and the power on a known effect).", ""]
    if a.splits:
        checks = list(a.splits.items())
        n = checks[0][1].splits
        total = sum(c.splits for _, c in checks)
        canaries = sum(c.canaries_rejected for _, c in checks)
        runs = sum(c.runs_rejected for _, c in checks)
        out += [f"On the study's own runs (A/A, exploratory): each arm's runs split every way "
                f"into two groups ({n} splits per arm, {total} in all; they share runs, so they "
                f"are not independent trials), rank exposure at L*. The first study's "
                f"canary-level test called {canaries} of the {total} splits of one arm "
                f"significantly different at α = 0.05 ("
                + ", ".join(f"{arm} {c.canaries_rejected}/{c.splits}" for arm, c in checks)
                + f"; about {0.05 * total:.1f} expected of a calibrated test). The "
                f"runs-as-unit test called {runs}, but with these group sizes its p cannot go "
                f"below {checks[0][1].runs_floor:.2f}: the real runs cannot check its "
                "calibration, which is why the simulation above does.", ""]
    out += _arms_section(a, test_sets)
    out += ["## Exploratory (not pre-registered as endpoints; no p here is a finding)", ""]
    out += _exploratory(a)
    out += colocation_lines(colocation)
    for other in exploratory:
        out += [f"### The same analysis on {other.sampler} batches (exploratory)", "",
                f"L* = {other.level:.3f} for these runs.", "",
                table(_CONTRAST_HEAD + ["measure"],
                      [_contrast_row(c) + [MEASURE_LABELS[c.measure]]
                       for c in [other.primary, *other.secondary]]), ""]
        out += _arms_section(other, test_sets, heading=False)
        out += _exploratory(other)
    out += ["## Rebuilding", "", "Every number above comes from the raw data committed beside "
            "this file. Run where the paths start (the recipe's directory), this command writes "
            "this file and its plot again, byte for byte:", "", "```bash", rebuild, "```", ""]
    return "\n".join(out)


def write_study_report(raw_dir: Path, md_path: Path, png_path: Path, title: str,
                       rebuild: str) -> str:
    """The study's pipeline: its raw data (`raw_dir`) analysed (`analyse_study`), RESULTS.md
    and its plot written; returns the primary endpoint's verdict.  ``rebuild`` is the command
    the report prints for writing it again."""
    study = raw.read_raw(raw_dir)
    try:
        primary, others = analyse_study(study)
    except raw.RawDataError as e:
        raise raw.RawDataError(f"{raw_dir}: {e}") from None
    png = os.path.relpath(Path(png_path).resolve(), Path(md_path).resolve().parent)
    provenance = "\n\n".join(x for x in (study.notes, f"![study]({png})") if x)
    md = render_markdown(primary, study.test_sets, title, provenance, rebuild,
                         exploratory=others, colocation=raw.read_colocation(raw_dir))
    plot(primary, png_path, title)
    atomic_write_text(md_path, md)
    return verdict(primary.primary)


def _arms_section(a: Analysis, test_sets: Sequence[str], heading: bool = True) -> List[str]:
    rows = []
    head = None
    for arm in ARMS:
        summary = arm_summary(a.arms[arm], a.level, a.canaries, test_sets)
        head = head or ["arm", "runs"] + list(summary)
        rows.append([arm, str(len(a.arms[arm]))] + [v.fmt(2) for v in summary.values()])
    out = (["## The arms (means and t-intervals over runs)", ""] if heading else [])
    return out + [table(head, rows), ""]


def _exploratory(a: Analysis) -> List[str]:
    out = ["Per repeat count, at L* (rank exposure, bits):", "",
           table(["repeats", *_CONTRAST_HEAD],
                 [[f"×{count}", *_contrast_row(c)] for count, cs in a.per_count.items()
                  for c in cs]), ""]
    if a.extrapolated:
        out += ["Extrapolated (skew-normal) exposure at L*, bits:", "",
                table(_CONTRAST_HEAD, [_contrast_row(c) for c in a.extrapolated]), ""]
    out += ["The final averaged models (`valid.acc.ave_3best.pth`, the models decoded for WER): "
            "rank exposure, not at equal loss:", "",
            table(_CONTRAST_HEAD, [_contrast_row(c) for c in a.finals]), ""]
    if a.by_epoch:
        out += [f"{PRIMARY[0]} − {PRIMARY[1]} in rank exposure after each scored epoch (equal "
                "training, not equal loss):", "",
                table(["epoch", *_CONTRAST_HEAD],
                      [[str(epoch), *_contrast_row(c)] for epoch, c in a.by_epoch]), ""]
    if a.curve:
        out += [f"{PRIMARY[0]} − {PRIMARY[1]} in rank exposure along the validation losses every "
                "run passes through (the plot's band):", "",
                table(["validation loss", "Δ [95 % CI]", "p"],
                      [[f"{level:.2f}", r.difference.fmt(2), stats.format_p(r.p_value, r.p_floor)]
                       for level, r in a.curve]), ""]
    return out


def plot(a: Analysis, path: Path, title: str) -> None:
    """Left: Δ (PCC − control) against the validation-loss level, with its band and L*.
    Right: every run's pooled rank exposure against its validation loss, per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    if a.curve:
        levels = [lv for lv, _ in a.curve]
        left.plot(levels, [r.difference.value for _, r in a.curve], color="C2")
        left.fill_between(levels, [r.difference.low for _, r in a.curve],
                          [r.difference.high for _, r in a.curve], color="C2", alpha=0.25)
    left.axhline(0, color="gray", lw=0.8)
    left.axvline(a.level, color="k", ls="--", lw=0.8, label=f"L* = {a.level:.2f}")
    left.set_xlabel("validation loss")
    left.set_ylabel(f"{PRIMARY[0]} − {PRIMARY[1]}, rank exposure (bits)")
    left.invert_xaxis()
    left.legend()
    colors = arm_colors(ARMS)
    for arm in ARMS:
        for i, run in enumerate(a.arms[arm]):
            pooled = np.mean([run.epochs["rank_exposure"][c] for c in a.canaries], axis=0)
            right.plot(run.losses, pooled, color=colors[arm], alpha=0.7, marker=".",
                       label=arm if i == 0 else None)
    right.axvline(a.level, color="k", ls="--", lw=0.8)
    right.set_xlabel("validation loss")
    right.set_ylabel("pooled rank exposure (bits)")
    right.invert_xaxis()
    right.legend()
    fig.suptitle(title)
    fig.tight_layout()
    save_png(fig, path)


#: Under stage 9's table where an arm has two runs.
TWO_RUNS = (
    "Arms with 2 runs ({arms}): the mean and the two runs' values, not a 95 % interval. Over "
    "2 runs the Student-t interval is the mean ± 12.7 × half the runs' difference (t with one "
    "degree of freedom): correct, but wide by construction, since 2 runs say little about how "
    "much runs vary. More runs narrow it (with 5, ± 2.8 standard errors): train more seeds "
    "with `--seeds \"0 1 2 3 4\"` (pcc_asr.sh or the demo's run.sh).")


def over_runs(values: Sequence[float], digits: int = 2) -> str:
    """A cell of stage 9's table: the mean of the runs' values with its Student-t interval
    (``"6.83 [4.80, 8.86]"``); with two runs the mean and both values
    (``"6.83 (runs 6.51, 7.15)"``, :data:`TWO_RUNS`); one run, its value."""
    interval = stats.seed_interval(values)
    if len(values) == 2 and all(math.isfinite(v) for v in values):
        return (f"{interval.value:.{digits}f} (runs {values[0]:.{digits}f}, "
                f"{values[1]:.{digits}f})")
    return interval.fmt(digits)


def render_modes(comparisons: Sequence[ModeComparison], test_sets: Sequence[str],
                 raw_dir: str = "") -> str:
    """Stage 9's memorisation section: per sampler, the arms over their runs and each arm
    against the reference arm (exploratory: no endpoint was declared for a recipe's run)."""
    out = ["### Memorisation over training runs (exploratory)", "",
           "Rank exposure (bits) of the final (decoded) models' canaries, the mean over a run's "
           "canaries as the run's value; means and Student-t intervals over runs (with 2 runs, "
           "the runs' values); contrasts: "
           "exact permutation test of the arm labels, 95 % two-level bootstrap interval (runs "
           "within arms, canaries). No endpoint was declared in advance for this run: no p "
           "below is a finding (the pre-registered study is docs/study.md)."
           + (f" Raw per-run, per-canary data: `{raw_dir}`." if raw_dir else ""), ""]
    for m in comparisons:
        if len(comparisons) > 1:
            out += [f"#### {m.sampler} batches", ""]
        rows, head = [], None
        for arm, runs in m.arms.items():
            values = mode_values(runs, m.canaries, test_sets, m.level)
            head = head or ["arm", "runs"] + list(values)
            rows.append([arm, str(len(runs))] + [over_runs(v) for v in values.values()])
        out += [table(head, rows), ""]
        two = [arm for arm, runs in m.arms.items() if len(runs) == 2]
        if two:
            out += [TWO_RUNS.format(arms=", ".join(two)), ""]
        if m.level is not None:
            out += [f"L* = {m.level:.3f}: the highest last-epoch validation loss of these runs "
                    "(every run reaches it); a run's exposure there is interpolated between its "
                    "scored epochs.", ""]
            early = {arm: past_level(runs, m.level) for arm, runs in m.arms.items()}
            if any(early.values()):
                out += ["**Not like for like at L\\*:** "
                        + ", ".join(f"{n} of the {len(m.arms[arm])} {arm} runs"
                                    for arm, n in early.items() if n)
                        + " are already below L* at their first scored epoch, so their value "
                        "there is that epoch's, from a model trained further than L* (score "
                        "earlier epochs, or read the rows at the two arms' own level, where "
                        "there are such rows).", ""]
        contrasts = [*m.finals, *m.at_level, *(c for _, c in m.at_pair_level)]
        if contrasts:
            labels = (["final model"] * len(m.finals) + ["at L*"] * len(m.at_level)
                      + [f"at L = {lvl:.3f} (the two arms' own level"
                         + ("" if not any(past_level(m.arms[x], lvl) for x in (c.arm_a, c.arm_b))
                            else "; not like for like either: runs below it at their first "
                                 "scored epoch") + ")"
                         for lvl, c in m.at_pair_level])
            out += [table(_CONTRAST_HEAD + ["where"],
                          [_contrast_row(c) + [w] for c, w in zip(contrasts, labels)]), ""]
            out += ["- " + verdict(c) for c in m.finals] + [""]
        if m.too_few_runs:
            out += [f"No contrast for {', '.join(m.too_few_runs)}"
                    + ("" if m.reference not in m.too_few_runs else
                       f" (the reference arm {m.reference} among them)")
                    + ": fewer than two runs, so no run-to-run variation to test against "
                    "(train more seeds: `pcc_asr.sh --seeds`).", ""]
    return "\n".join(out)


def plot_modes(comparisons: Sequence[ModeComparison], path: Path, title: str) -> None:
    """Per sampler, each arm's final-model rank exposure against the repeat count: the mean
    over its runs, with every run's value as a dot, each arm in its colour
    (:mod:`espnet_pcc.study.arms`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(comparisons), figsize=(5.5 * len(comparisons), 4.2),
                             squeeze=False)
    for ax, m in zip(axes[0], comparisons):
        counts = sorted({m.arms[next(iter(m.arms))][0].repeat_count[c] for c in m.canaries})
        colors = arm_colors(m.arms)
        for arm, runs in m.arms.items():
            per_run = np.array([[np.mean([r.final["rank_exposure"][c] for c in m.canaries
                                          if r.repeat_count[c] == n]) for n in counts]
                                for r in runs])
            ax.plot(counts, per_run.mean(axis=0), marker="o", color=colors[arm],
                    label=f"{arm} ({len(runs)} runs)")
            for row in per_run:
                ax.scatter(counts, row, color=colors[arm], s=8, alpha=0.5)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("canary repeat count")
        ax.set_ylabel("rank exposure, final model (bits)")
        ax.set_title(f"{m.sampler} batches")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    save_png(fig, path)


__all__ = ["TWO_RUNS", "over_runs", "plot", "plot_modes", "render_markdown", "render_modes",
           "verdict", "write_study_report"]
