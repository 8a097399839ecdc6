"""The arms of a comparison: which arm and seed a model is, and how every plot draws an arm.

A model's arm is the last ``_`` field of its training config's name
(``conf/train_asr_<family>_<arm>.yaml``, model tag ``asr_<config>_seed<N>``): the same name in
the raw data, the reports and the plots.  Every plot (stage 9's per-model plot and its plot
over runs, the study's plot) draws an arm in its colour of :data:`ARM_COLORS`, so an arm looks
the same in every recipe's plots; a new arm is one line there (an arm not listed is drawn in a
colour that no listed arm has).  A seed is drawn in its line style and marker
(:data:`SEED_STYLES`), and every plot is written the same way (:func:`save_png`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, Tuple

from espnet_pcc.fileio import atomic_path
from espnet_pcc.study.analysis import BASELINE_ARM, CONTROL_ARM, PAPER_BASELINE_ARM, PCC_ARM
from espnet_pcc.study.model_dir import split_tag

#: Each arm's colour (matplotlib's default colour cycle).
ARM_COLORS: Dict[str, str] = {
    BASELINE_ARM: "C0",  # ESPnet's global clipping, one core
    CONTROL_ARM: "C1",  # PCC's cores, nothing clipped
    PCC_ARM: "C2",  # each core clipped to C
    "apcc": "C3",  # each core clipped to the step's smallest core norm
    PAPER_BASELINE_ARM: "C4",  # PCC's cores, their average clipped to C
}

#: (line style, marker) of the first, second, ... seed of a plot; more seeds start again.
SEED_STYLES: Tuple[Tuple[str, str], ...] = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"))


def arm_of(tag: str) -> Tuple[str, int]:
    """(arm, seed) of a model tag ``asr_<config>_seed<N>``; a tag without the seed suffix (one
    run per config, ``pcc_asr.sh`` without ``--seeds``) is seed 0."""
    name, seed = split_tag(tag)
    return name.rsplit("_", 1)[-1], 0 if seed is None else seed


def arm_colors(arms: Iterable[str]) -> Dict[str, str]:
    """The colour of each of ``arms``: its own, or for an arm not in :data:`ARM_COLORS` the
    next colour of the cycle after theirs."""
    spare = len(ARM_COLORS)
    colors = {}
    for arm in dict.fromkeys(arms):
        if arm in ARM_COLORS:
            colors[arm] = ARM_COLORS[arm]
        else:
            colors[arm] = f"C{spare % 10}"
            spare += 1
    return colors


def seed_styles(seeds: Iterable[int]) -> Dict[int, Tuple[str, str]]:
    """(line style, marker) of each of ``seeds``, in ascending order of the seeds."""
    return {s: SEED_STYLES[i % len(SEED_STYLES)] for i, s in enumerate(sorted(set(seeds)))}


def save_png(fig, path: Path) -> None:
    """Writes a matplotlib figure to ``path`` as PNG (atomically: a kill leaves the previous
    file) and closes it, written or not."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)


__all__ = ["ARM_COLORS", "SEED_STYLES", "arm_colors", "arm_of", "save_png", "seed_styles"]
