"""The (epsilon, delta) and the noise of noisy PCC at a data set's scale, as Markdown.

Command line: :mod:`espnet_pcc.bin.privacy_table`.

No training: every number comes from the accountant (`espnet_pcc.core.accounting`) and the Poisson
sampler's plan (`espnet_pcc.core.data_loader.poisson`), so a user sees at which scale a meaningful
guarantee becomes possible and how much noise it costs.  Per setup, σ, expected batch B and epochs
E, three rows:

- utterance, per_core: q = B/N, K hashed cores per step, sensitivity 2C, update divided by
  D = K;
- utterance, per_example: q = B/N, one core per utterance, sensitivity C, D = B;
- speaker, per_core: one speaker per core slot expected, q = K/S, each speaker bringing at
  most max(1, B // K) utterances, sensitivity 2C, D = K.

steps = E × round(1/q) (the sampler's epoch); δ = 0.01 / (units); noise std per coordinate
of the update u = σC/D; noise norm / signal norm = σ·sqrt(d)/D, taking the clipped average at
its largest norm C (a smaller one gives a larger ratio).
"""
from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from espnet_pcc.errors import UserError
from espnet_pcc.markdown import table

DEFAULT_SIGMAS = (0.5, 1.0, 2.0, 4.0, 8.0)
DEFAULT_NUM_CORES = 8
DEFAULT_MAX_NORM = 1.0
#: Expected batches offered to a custom setup by default (those below its N).
CUSTOM_BATCH_SIZES = (16, 64, 256, 1024, 4096)
CUSTOM_EPOCHS = (10, 50)
#: ε above this prints as ">1e6".
EPS_CAP = 1e6


@dataclass(frozen=True)
class Setup:
    """A data set and model: N utterances (the privacy unit of the utterance rows), S
    speakers, the model's d parameters, and the defaults of the grid."""

    name: str
    num_utterances: int
    num_speakers: int
    params: float
    batch_sizes: Tuple[int, ...]
    epochs: Tuple[int, ...]
    about: str = ""


PRESETS: Dict[str, Setup] = {
    "librispeech960": Setup(
        "librispeech960", 281_241, 2_338, 116.1e6, (256, 1024, 4096), (10, 50),
        "LibriSpeech train-960; with speed perturbation the unit is the recording (all its "
        "sp<f>- copies), so N stays the number of recordings; d: the 960h conformer of "
        "egs2/librispeech/asr1/conf/train_asr_conformer_960h_pcc.yaml (12 x 512-d conformer "
        "blocks, 6-block decoder, 5000 BPE tokens), counted with ESPnet's build_model"),
    "demo": Setup(
        "demo", 1_414, 142, 3.07e6, (16, 64, 256), (6,),
        "egs2/synth_demo study corpus (train_canary: 1104 utterances of 92 voices plus 310 "
        "canary utterances of 50 canary speakers); d: the study's conformer (ESPnet's train.log: "
        "3.07 M parameters); the study trains 6 epochs"),
}


@dataclass(frozen=True)
class Row:
    setup: str
    unit: str
    layout: str
    sigma: float
    epochs: int
    batch: str
    q: float
    steps: int
    delta: float
    epsilon: float
    noise_std: float
    noise_to_signal: float


def fmt_num(x: float, cap: bool = True) -> str:
    """3 significant digits, without an exponent from 1e-3 up: 0.0123, 4.56, 1230; 'inf',
    and with `cap` '>1e6' above 1e6."""
    if math.isinf(x):
        return "inf"
    if cap and x > EPS_CAP:
        return ">1e6"
    text = f"{x:.3g}"
    if "e" in text and abs(x) >= 1e-3:
        text = f"{float(text):.0f}" if abs(x) >= 1 else f"{float(text):f}".rstrip("0")
    return text


def setups_from(names: Optional[Sequence[str]], num_utterances: Optional[int],
                num_speakers: Optional[int], params: Optional[float], name: str,
                batch_sizes: Optional[Sequence[int]]) -> List[Setup]:
    """The presets ``names`` (all of them when None and no custom setup is given) and the
    custom setup of ``num_utterances``/``num_speakers``; a bad value is a one-line
    UserError."""
    custom = num_utterances is not None or num_speakers is not None
    names = names if names is not None else ([] if custom else list(PRESETS))
    setups = []
    for preset in names:
        if preset not in PRESETS:
            raise UserError(f"--setup {preset!r}: unknown; presets: {', '.join(PRESETS)}")
        setups.append(PRESETS[preset])
    if custom:
        if num_utterances is None or num_speakers is None:
            raise UserError("a custom setup needs both --num_utterances and --num_speakers")
        if num_utterances < 2:
            raise UserError(f"--num_utterances {num_utterances}: must be >= 2")
        if num_speakers < 1:
            raise UserError(f"--num_speakers {num_speakers}: must be >= 1")
        if num_speakers > num_utterances:
            raise UserError(f"--num_speakers {num_speakers}: more speakers than the "
                            f"{num_utterances} utterances")
        if params is None:
            raise UserError("a custom setup needs --params (the model's parameter count d)")
        batches = tuple(b for b in CUSTOM_BATCH_SIZES if b < num_utterances)
        if not batches and batch_sizes is None:
            raise UserError(f"--num_utterances {num_utterances}: no default batch size is "
                            "below it; give --batch_sizes")
        setups.append(Setup(name, num_utterances, num_speakers, params,
                            batches, CUSTOM_EPOCHS,
                            "custom setup (--num_utterances, --num_speakers)"))
    if len({s.name for s in setups}) < len(setups):
        raise UserError(f"--setup: a setup is named twice ({', '.join(s.name for s in setups)})")
    return setups


def check(setups: Sequence[Setup], sigmas: Sequence[float], max_norm: float, num_cores: int,
          params: Optional[float], epochs: Optional[Sequence[int]],
          batch_sizes: Optional[Sequence[int]]) -> None:
    """Every value of the grid against every setup; a bad one is a one-line UserError."""
    for sigma in sigmas:
        if not (math.isfinite(sigma) and sigma > 0):
            raise UserError(f"--sigmas {sigma:g}: a noise multiplier must be > 0 (σ = 0 is "
                            "no privacy, ε = inf)")
    if not (math.isfinite(max_norm) and max_norm > 0):
        raise UserError(f"--max_norm {max_norm:g}: must be > 0")
    if num_cores < 1:
        raise UserError(f"--num_cores {num_cores}: must be >= 1")
    if params is not None and not (math.isfinite(params) and params >= 1):
        raise UserError(f"--params {params:g}: must be >= 1")
    for e in epochs or ():
        if e < 1:
            raise UserError(f"--epochs {e}: must be >= 1")
    for s in setups:
        for b in batch_sizes or s.batch_sizes:
            if b < 1:
                raise UserError(f"--batch_sizes {b}: must be >= 1")
            if b >= s.num_utterances:
                raise UserError(f"--batch_sizes {b}: not below the {s.num_utterances} "
                                f"utterances of setup {s.name} (q = B/N must be < 1)")
        if num_cores > s.num_speakers:
            raise UserError(f"--num_cores {num_cores}: more speaker slots per step than "
                            f"the {s.num_speakers} speakers of setup {s.name} (q = K/S > 1)")


def steps_per_epoch(q: float) -> int:
    """The Poisson sampler's epoch: round(1/q) steps."""
    from espnet_pcc.core.data_loader.poisson import PoissonPlan

    return PoissonPlan({}, "", q, 1, 1, 1, 1).steps_per_epoch


def rows_for(setup: Setup, sigmas: Sequence[float], batch_sizes: Sequence[int],
             epochs: Sequence[int], num_cores: int, max_norm: float,
             params: float) -> List[Row]:
    """The table's rows of one setup: by epochs, unit/layout, batch size, σ."""
    from espnet_pcc.core.accounting import default_delta, epsilon, sensitivity
    from espnet_pcc.core.clipping import ClipMode

    K, C, N, S = num_cores, max_norm, setup.num_utterances, setup.num_speakers
    root_d = math.sqrt(params)
    rows: List[Row] = []
    layouts = (("utterance", ClipMode.PER_CORE), ("utterance", ClipMode.PER_EXAMPLE),
               ("speaker", ClipMode.PER_CORE))
    for E in epochs:
        for unit, mode in layouts:
            for B in batch_sizes:
                if unit == "utterance":
                    q, units, batch = B / N, N, f"{B}"
                else:
                    # One speaker per slot expected, each with <= max(1, B // K) utterances:
                    # q·Σ_s min(n_s, m) <= K·min(m, N/S).
                    q, units = K / S, S
                    batch = f"≤ {K * min(max(1, B // K), N / S):.0f}"
                D = B if mode.one_utterance_per_core else K
                sens = sensitivity(mode, 1)
                steps = E * steps_per_epoch(q)
                delta = default_delta(units)
                for sigma in sigmas:
                    row = Row(setup.name, unit, mode.value, sigma, E, batch, q, steps, delta,
                              epsilon(sigma, q, steps, delta, sens), sigma * C / D,
                              sigma * root_d / D)
                    # Speaker rows do not depend on B once B // K exceeds N / S: said once.
                    if row not in rows:
                        rows.append(row)
    return rows


HEADER = ("setup", "unit", "layout", "σ", "epochs", "expected batch (utt.)", "q", "steps",
          "δ", "ε", "noise std / coord. of u", "noise / signal norm")


def render_table(rows: Sequence[Row]) -> str:
    return table(HEADER, [(r.setup, r.unit, r.layout, f"{r.sigma:g}", str(r.epochs), r.batch,
                           f"{r.q:.3g}", str(r.steps), f"{r.delta:.3g}", fmt_num(r.epsilon),
                           f"{r.noise_std:.3g}", fmt_num(r.noise_to_signal, cap=False))
                          for r in rows])


def caption(setup: Setup, params: float, num_cores: int, max_norm: float) -> str:
    return (f"**{setup.name}**: N = {setup.num_utterances:,} utterances, S = "
            f"{setup.num_speakers:,} speakers, d = {params / 1e6:.4g} M parameters, K = "
            f"{num_cores} "
            f"cores per step, C = {max_norm:g}. {setup.about}.")


NOTES = """\
Add or remove one unit (utterance, or speaker: user-level), Poisson sampling with the
sampler's q, RDP accountant (dp-accounting), δ = 0.01 / (number of units). per_core: units
hashed into K cores, sensitivity 2C, u = (Σ clipped cores + N(0, σ²C²)) / K; per_example: one
core per utterance, sensitivity C, u divided by the expected batch B. Speaker rows: one
speaker per core slot expected (q = K/S), each with at most max(1, B // K) utterances; a
speaker epoch (round(S/K) steps) sees every speaker once in expectation, not every
utterance. "noise / signal norm" = σ·sqrt(d)/D, the noise norm σC·sqrt(d)/D over the clipped
average's largest norm C: a lower bound on the ratio. Speaker rows differ in B only by the
utterances a speaker brings (ε and the noise do not depend on B); identical rows are shown
once. Where dp-accounting cannot evaluate an RDP order it leaves it out (its warnings are
shown with --verbose): ε stays an upper bound."""


def render(setups: Sequence[Setup], sigmas: Sequence[float], max_norm: float, num_cores: int,
           params: Optional[float] = None, epochs: Optional[Sequence[int]] = None,
           batch_sizes: Optional[Sequence[int]] = None) -> str:
    """The whole Markdown document: the notes, then per setup its caption and table (the
    grid's values default to each setup's own)."""
    parts = ["# Privacy of noisy per-core clipping", "", NOTES]
    for s in setups:
        d = params if params is not None else s.params
        rows = rows_for(s, sigmas, batch_sizes or s.batch_sizes, epochs or s.epochs,
                        num_cores, max_norm, d)
        parts += ["", f"## {s.name}", "", caption(s, d, num_cores, max_norm), "",
                  render_table(rows)]
    return "\n".join(parts) + "\n"


@contextlib.contextmanager
def quiet_accountant(quiet: bool):
    """dp-accounting (absl logging) warns for every RDP order it leaves out: hidden unless
    --verbose."""
    logger = logging.getLogger("absl")
    level = logger.level
    if quiet:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
