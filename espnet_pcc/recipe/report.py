"""Stage 9's utility view: RESULTS.md (ESPnet style) and its PNG plot, from the model dirs as
:func:`espnet_pcc.study.model_dir.collect` reads them.

One RESULTS.md: environment, the comparison table (WER per set, mean exposure per repeat
count, seconds per optimizer step, cores per step, epsilon; one row per model), any further
sections the caller renders (stage 9 adds the memorisation comparison over runs,
:func:`espnet_pcc.study.results.render_modes`), and ESPnet's per-model WER/CER tables; plus
a PNG: exposure vs repeat count (one line per model) and validation loss vs epoch, each arm in
its colour and each seed in its line style (:mod:`espnet_pcc.study.arms`).
"""
from __future__ import annotations

import datetime
import platform
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from espnet_pcc import markdown
from espnet_pcc.measurement.exposure import schema
from espnet_pcc.measurement.wer import markdown_table
from espnet_pcc.study.arms import arm_colors, arm_of, save_png, seed_styles
from espnet_pcc.study.model_dir import ModelResult


def epsilon_cell(epsilon: Optional[float], key: str = "dp_epsilon") -> str:
    """A report's epsilon column: the (epsilon, clip_conf.delta) spent, or no noise; an
    epsilon without amplification by sampling says so."""
    if epsilon is None:
        return "∞ (no noise)"
    return f"{epsilon:.3g}" + (" (no amplification)" if key == "dp_epsilon_unamplified" else "")


def _fmt(x: Optional[float], nd: int = 1) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def comparison_table(results: Sequence[ModelResult], test_sets: Sequence[str]) -> str:
    """One row per model: clipping, WER per set, mean exposure per repeat count, s/step."""
    counts = sorted({c for r in results for c in r.exposure})
    noisy = any(r.dp_epsilon is not None for r in results)
    head = (["model", "clip"] + [f"WER {s}" for s in test_sets]
            + [f"exposure x{c}" for c in counts] + ["s/step", "cores/step", "epochs"]
            + (["epsilon"] if noisy else []))
    rows = []
    for r in results:
        row = [r.tag, r.label]
        row += [_fmt(r.error_rate(s)) for s in test_sets]
        row += [_fmt(r.exposure.get(c), 2) for c in counts]
        row += [_fmt(r.sec_per_step, 3), "-" if r.cores_per_step is None else str(r.cores_per_step),
                str(len(r.epochs))]
        if noisy:  # (epsilon, clip_conf.delta) after the last epoch: espnet_pcc.core.accounting
            row.append(epsilon_cell(r.dp_epsilon, r.dp_epsilon_key))
        rows.append(row)
    return markdown.table(head, rows)


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
                     plot_name: Optional[str] = None, sections: Sequence[str] = ()) -> str:
    """The whole RESULTS.md; ``sections`` (Markdown) go between the notes and the per-model
    table."""
    parts = [f"# {title}", environment(), "", "## Clipping comparison", ""]
    if notes:
        parts += [notes.strip(), ""]
    for section in sections:
        parts += [section.rstrip(), ""]
    if sections:
        parts += ["### Per model", ""]
    parts += [comparison_table(results, test_sets), ""]
    info = next((r.exposure_info for r in results if r.exposure_info), {})
    expo = ""
    if info:
        expo = (f" With |R| = {info.get(schema.NUM_REFERENCES)} references the rank exposure is "
                f"capped at {info.get(schema.RANK_EXPOSURE_CAP, 0):.2f} bits; an unmemorised "
                f"canary scores {info.get(schema.CHANCE_RANK_EXPOSURE, 0):.2f} bits on average "
                f"(score: {info.get(schema.SCORE_KIND)}).")
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


def comparison_figure(results: Sequence[ModelResult]):
    """The figure :func:`plot` writes: exposure vs repeat count (log2 x) and validation loss
    vs epoch, one line per model, in its arm's colour and its seed's line style and marker.
    Each panel's legend has one entry per arm: its name, then its models' clipping; a second
    legend below the panels, where there are several seeds, the seeds' styles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    by_arm: Dict[str, List[tuple]] = {}
    for r in results:
        arm, seed = arm_of(r.tag)
        by_arm.setdefault(arm, []).append((seed, r))
    colors = arm_colors(by_arm)
    styles = seed_styles(seed for runs in by_arm.values() for seed, _ in runs)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6))
    for arm, runs in by_arm.items():
        for seed, r in runs:
            line, marker = styles[seed]
            look = dict(color=colors[arm], linestyle=line, marker=marker, alpha=0.85)
            if r.exposure:
                xs = sorted(r.exposure)
                ax1.plot(xs, [r.exposure[x] for x in xs], markersize=5, **look)
            ys = [e.get("valid", {}).get("loss") for e in r.epochs]
            pts = [(i + 1, y) for i, y in enumerate(ys) if y is not None]
            if pts:
                ax2.plot([p[0] for p in pts], [p[1] for p in pts], markersize=3, **look)
    arms = [Line2D([], [], color=colors[arm], lw=2,
                   label=f"{arm}: {', '.join(dict.fromkeys(r.label for _, r in runs))}")
            for arm, runs in by_arm.items()]
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("canary repeat count")
    ax1.set_ylabel("mean exposure (bits)")
    ax1.set_title("Memorisation: exposure vs repeats")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation loss")
    ax2.set_title("Validation loss")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(handles=arms, fontsize=8, title="arm: clipping", title_fontsize=8)
    if len(styles) > 1:
        fig.legend(handles=[Line2D([], [], color="0.35", linestyle=line, marker=marker,
                                   label=f"seed {seed}")
                            for seed, (line, marker) in styles.items()],
                   loc="lower center", ncol=len(styles), fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.06, 1, 1))
    else:
        fig.tight_layout()
    return fig


def plot(results: Sequence[ModelResult], out_png: Path) -> None:
    """Writes :func:`comparison_figure` to ``out_png``."""
    save_png(comparison_figure(results), out_png)
