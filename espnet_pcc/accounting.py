"""The (epsilon, delta) of noisy per-core clipping, from dp-accounting's RDP accountant.

What is accounted (README "Privacy: noise and accounting" states it for users):

- **Unit: one utterance**, add-or-remove adjacency.  An utterance lies in one core of a
  step, so adding or removing it changes one core's mean gradient g_k; after clipping,
  ‖f_k·g_k‖ <= C, so the sum of the clipped cores moves by at most C.  Noise of standard
  deviation σ·C on that sum is the Gaussian mechanism with noise multiplier σ, the same
  sensitivity argument as DP-SGD with per-example clipping (a core is a group that the
  utterance belongs to).  per_example is the case of one utterance per core.
- **Sampling: the usual approximation, named as such.**  ESPnet's batch samplers shuffle
  the data and walk through it without replacement, one epoch after another; the
  accountant assumes Poisson sampling with rate q = 1 / (optimizer steps per epoch), the
  expected share of the data in one step.  This is what DP-SGD papers and libraries
  report for shuffled batches; it is not a proof for shuffling (Chua et al. 2024, "How
  private are DP-SGD implementations?", show the two can differ).
- **Speaker cores** (clip_conf.core_by: speaker) bound each speaker's influence on a
  step to C, but a speaker appears in several steps of an epoch: the number reported is
  still per utterance, not per speaker.
- The quantile-adaptive bound is not combined with noise (ClipConfig rejects it): its
  update reads the exact fraction of clipped cores.
"""
from __future__ import annotations

import math

import dp_accounting
from dp_accounting import rdp


def sampling_rate(steps_per_epoch: int) -> float:
    """q of the Poisson approximation: the expected share of the data in one step."""
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    return 1.0 / steps_per_epoch


def default_delta(num_utterances: int) -> float:
    """delta = 1/N, N the training utterances (the issue's and common default)."""
    if num_utterances < 1:
        raise ValueError(f"num_utterances must be >= 1, got {num_utterances}")
    return 1.0 / num_utterances


def dp_event(noise_multiplier: float, sampling_rate: float,
             steps: int) -> dp_accounting.DpEvent:
    """`steps` Poisson-sampled Gaussian mechanisms of noise multiplier σ."""
    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(
            sampling_rate, dp_accounting.GaussianDpEvent(noise_multiplier)), steps)


def epsilon(noise_multiplier: float, sampling_rate: float, steps: int, delta: float) -> float:
    """epsilon at `delta` after `steps` noisy steps (RDP accountant, dp-accounting).

    +inf without noise; 0 before any step.
    """
    if steps == 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    accountant = rdp.RdpAccountant()
    accountant.compose(dp_event(noise_multiplier, sampling_rate, steps))
    return float(accountant.get_epsilon(delta))
