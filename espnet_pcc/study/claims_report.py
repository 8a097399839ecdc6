"""The third study's RESULTS.md and plot (docs/study.md, "Third study: pre-registered plan"),
rendered from :func:`espnet_pcc.study.claims.analyse` of the raw data alone.

Every table is built by :func:`espnet_pcc.markdown.table`; every p-value goes through
:func:`espnet_pcc.study.stats.format_p`, which writes a p at the test's floor as "≤ floor".
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List

import numpy as np

from espnet_pcc.fileio import atomic_write_text
from espnet_pcc.markdown import table
from espnet_pcc.study import claims, raw, stats
from espnet_pcc.study.arms import arm_colors, save_png
from espnet_pcc.study.claims import ARMS, ClaimsAnalysis, Tested

ALPHA = 0.05
_HEAD = ["contrast", "measure", "mean a", "mean b", "Δ = a − b [95 % CI]", "p", "runs"]


def _p(t: Tested, adjusted: bool = False) -> str:
    if adjusted:
        return stats.format_p(t.adjusted_p)
    return stats.format_p(t.result.p_value, t.result.p_floor)


def _row(t: Tested, digits: int = 2) -> List[str]:
    r = t.result
    return [t.endpoint.name, t.endpoint.label, f"{r.mean_a:.{digits}f}", f"{r.mean_b:.{digits}f}",
            r.difference.fmt(digits), _p(t), f"{r.n_a} vs {r.n_b}"]


def sentence(t: Tested) -> str:
    """A plain sentence on one endpoint of a family: shown (Holm-adjusted p < α) or not, in
    the words of what a lower value means, with the interval."""
    e, d = t.endpoint, t.result.difference
    p = f"p {_p(t)}, Holm-adjusted {_p(t, adjusted=True)}"
    interval = f"Δ = {d.value:.2f}, 95 % CI {d.low:.2f} to {d.high:.2f}"
    if t.adjusted_p < ALPHA:
        means = claims.LOWER_MEANS if d.value < 0 else claims.HIGHER_MEANS
        return (f"**Shown:** {e.arm_a} {means[e.measure]} than {e.arm_b} ({e.label}; "
                f"{interval}; {p}).")
    return f"**Not shown:** {e.name} in {e.label}: {interval} ({p})."


def _claims_section(a: ClaimsAnalysis) -> List[str]:
    primary = {t.endpoint: t for t in a.primary}
    secondary = {t.endpoint: t for t in a.secondary}
    others = {t.endpoint: t for t in a.against_others}
    out = ["## The paper's claims, in plain words", "",
           "Each claim against the paper's baseline (`paperbase`: the same four per-core "
           "forwards as PCC, their average clipped to C = 5 as one vector), with the family "
           "each endpoint belongs to; the other arms are in the exploratory tables below.", ""]
    claims_list = [
        ("Memorise less (at equal validation loss)", [primary[e] for e in claims.PRIMARY[:2]]),
        ("Converge faster", [primary[e] for e in claims.PRIMARY[2:]]),
        ("Perform better (lower WER)", [secondary[e] for e in claims.SECONDARY[:2]]),
    ]
    for title, tested in claims_list:
        out += [f"**{title}.**", ""] + [f"- {sentence(t)}" for t in tested] + [""]
    apcc_pcc = [others[e] for e in others if (e.arm_a, e.arm_b) == (claims.APCC, claims.PCC)]
    out += ["**APCC removes the hyperparameter (exploratory: not an endpoint).** APCC − PCC: "
            + "; ".join(f"{t.endpoint.label} {t.result.difference.fmt(2)} (p {_p(t)})"
                        for t in apcc_pcc) + ".", ""]
    return out


def render_markdown(a: ClaimsAnalysis, title: str, provenance: str, rebuild: str) -> str:
    s = a.study
    n_runs = sum(len(r) for r in s.arms.values())
    out = [f"# {title}", "", provenance, "",
           "The plan (arms, seeds, endpoints, families, measures, analysis) was committed before "
           "the first run: docs/study.md, \"Third study: pre-registered plan\". Training runs are "
           "the unit of every interval and test below; canaries enter only through the "
           "bootstrap.", ""]
    out += _claims_section(a)
    out += ["## Primary family (Holm over four)", "",
            f"L* = {s.level:.3f}: the highest epoch-{claims.EPOCHS[-1]} validation loss of the "
            f"{n_runs} runs. Memorisation: the mean over the {len(s.canaries)} canaries of the "
            "extrapolated (skew-normal) exposure, interpolated in validation loss at L*. "
            f"Convergence: the validation loss after epoch {claims.CONVERGENCE_EPOCH}. Exact "
            "permutation test of the arm labels (two-sided), 95 % two-level bootstrap interval "
            "(runs within arms, canaries).", "",
            table(_HEAD + ["p (Holm)", "minimum detectable Δ (80 %)"],
                  [_row(t) + [_p(t, adjusted=True), f"{a.mde[t.endpoint]:.2f}"]
                   for t in a.primary]), ""]
    if s.filled:
        out += [f"{s.filled} non-finite extrapolated exposures were replaced by the largest "
                f"finite one of the runs, {s.fill:.2f} bits (as planned).", ""]
    early = {arm: n for arm, n in a.past_level.items() if n}
    if early:
        out += ["**Not like for like at L\\*:** "
                + ", ".join(f"{n} of the {len(s.arms[arm])} {arm} runs" for arm, n in
                            early.items())
                + " are already below L* after epoch 1; their value is that epoch's.", ""]
    out += ["## Secondary family (Holm over six)", "",
            table(_HEAD + ["p (Holm)"], [_row(t) + [_p(t, adjusted=True)]
                                         for t in a.secondary]), ""]
    out += [f"- {sentence(t)}" for t in a.secondary] + [""]
    if a.aa_rate is not None:
        comp = a.aa_components
        out += ["## Calibration of the test", "",
                f"An A/A check with this study's own variances of the primary memorisation "
                f"measure (sd of the run effect {comp.run_sd:.2f}, of the canary effect "
                f"{comp.unit_sd:.2f}, of the noise {comp.noise_sd:.2f} bits, from the "
                f"{claims.PCC} and {claims.PAPER_BASELINE} runs at L*): of {a.aa_trials} "
                f"simulated pairs of arms drawn from one distribution, the test rejected "
                f"{100 * a.aa_rate:.1f} % at α = 0.05 (nominal 5 %; tests/study/test_claims.py "
                "checks the whole analysis on simulated studies with a known effect and a "
                "known null).", ""]
    out += ["## The arms (means and t-intervals over runs)", ""]
    rows, head = [], None
    for arm in ARMS:
        summary = claims.arm_summary(s, arm)
        head = head or ["arm", "runs"] + list(summary)
        rows.append([arm, str(len(s.arms[arm]))] + [v.fmt(2) for v in summary.values()])
    out += [table(head, rows), ""]
    counts = list(next(iter(a.saturation.values())))
    out += [f"Saturation of the rank exposure at L* (the fraction of canaries ranked first of "
            f"the {s.num_references} references, at the cap of {s.rank_cap:.2f} bits; the "
            "extrapolated exposure has no cap):", "",
            table(["arm"] + [f"×{n}" for n in counts],
                  [[arm] + [f"{100 * v:.0f} %" for v in a.saturation[arm].values()]
                   for arm in ARMS]), ""]
    out += ["## Exploratory (not pre-registered as endpoints; no p here is a finding)", "",
            "PCC and APCC against the other arms, APCC against PCC, and the control against "
            "the paper's baseline:", "",
            table(_HEAD, [_row(t) for t in a.against_others]), "",
            "Per repeat count, at L*, against the paper's baseline:", "",
            table(["repeats"] + _HEAD, [[f"×{n}"] + _row(t) for n, t in a.per_count]), "",
            "At equal epochs (raw checkpoints) and the epochs each run takes to reach L*, "
            "against the paper's baseline:", "",
            table(_HEAD, [_row(t) for t in a.by_epoch]), "",
            "The final averaged models (`valid.acc.ave_3best.pth`, the models decoded for WER), "
            "not at equal loss:", "",
            table(_HEAD, [_row(t) for t in a.finals]), ""]
    if a.splits:
        checks = list(a.splits.items())
        total = sum(c.splits for _, c in checks)
        out += [f"On the study's own runs (A/A): each arm's runs split every way into two "
                f"groups ({total} splits in all, not independent), extrapolated exposure at L*: "
                "the runs-as-unit test called "
                + ", ".join(f"{arm} {c.runs_rejected}/{c.splits}" for arm, c in checks)
                + f" different (its p cannot go below {checks[0][1].runs_floor:.2f} with these "
                "group sizes), the first study's canary-level test "
                + ", ".join(f"{arm} {c.canaries_rejected}/{c.splits}" for arm, c in checks)
                + ".", ""]
    if s.outside_plan:
        out += ["Runs in the raw data outside the plan, not analysed: "
                + ", ".join(f"{arm} seed {seed}" for arm, seed in s.outside_plan) + ".", ""]
    out += ["## Rebuilding", "", "Every number above comes from the raw data committed beside "
            "this file. Run where the paths start (the recipe's directory), this command writes "
            "this file and its plot again, byte for byte:", "", "```bash", rebuild, "```", ""]
    return "\n".join(out)


def plot(a: ClaimsAnalysis, path: Path, title: str) -> None:
    """Left: each arm's validation loss per epoch (mean over runs, the runs' range shaded).
    Right: every run's pooled extrapolated exposure against its validation loss, L* marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = a.study
    colors = arm_colors(ARMS)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for arm in ARMS:
        losses = np.array([r.losses for r in s.arms[arm]])
        left.plot(claims.EPOCHS, losses.mean(axis=0), color=colors[arm], marker=".", label=arm)
        left.fill_between(claims.EPOCHS, losses.min(axis=0), losses.max(axis=0),
                          color=colors[arm], alpha=0.15)
        for i, run in enumerate(s.arms[arm]):
            pooled = np.mean([run.epochs[claims.EXTRAPOLATED][c] for c in s.canaries], axis=0)
            right.plot(run.losses, pooled, color=colors[arm], alpha=0.7, marker=".",
                       label=arm if i == 0 else None)
    left.axvline(claims.CONVERGENCE_EPOCH, color="k", ls=":", lw=0.8,
                 label=f"epoch {claims.CONVERGENCE_EPOCH}")
    left.axhline(s.level, color="k", ls="--", lw=0.8, label=f"L* = {s.level:.2f}")
    left.set_xlabel("epoch")
    left.set_ylabel("validation loss")
    left.legend(fontsize=8)
    right.axvline(s.level, color="k", ls="--", lw=0.8)
    right.set_xlabel("validation loss")
    right.set_ylabel("pooled extrapolated exposure (bits)")
    right.invert_xaxis()
    right.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    save_png(fig, path)


def write_report(raw_dir: Path, md_path: Path, png_path: Path, title: str, rebuild: str,
                 aa_trials: int = 1000) -> List[str]:
    """The third study's pipeline: its raw data analysed (`claims.analyse`), RESULTS.md and its
    plot written; returns the plain sentences of the primary family."""
    study = raw.read_raw(raw_dir)
    try:
        analysis = claims.analyse(study, aa_trials=aa_trials)
    except raw.RawDataError as e:
        raise raw.RawDataError(f"{raw_dir}: {e}") from None
    png = os.path.relpath(Path(png_path).resolve(), Path(md_path).resolve().parent)
    provenance = "\n\n".join(x for x in (study.notes, f"![study]({png})") if x)
    md = render_markdown(analysis, title, provenance, rebuild)
    plot(analysis, png_path, title)
    atomic_write_text(md_path, md)
    return [sentence(t) for t in analysis.primary]


__all__ = ["plot", "render_markdown", "sentence", "write_report"]
