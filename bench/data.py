"""Synthetic batches with LibriSpeech-like lengths.

Audio is Gaussian noise (the cost of a step does not depend on what is said);
durations are drawn from a normal(12.3 s, 3.3 s) clipped to [5, 15] s — a rough
stand-in for train-clean-100, whose utterances are mostly 10–16 s (segments are
cut at ≤ 35 s but few exceed 16 s) — and transcripts have ~3.3 BPE-5000 tokens
per second (≈ 2.7 words/s read speech, ≈ 1.2 tokens/word), ±15 %.
"""
from __future__ import annotations

from typing import Dict, List

import torch

SAMPLE_RATE = 16000
TOKENS_PER_SECOND = 3.3


def draw_durations(n: int, g: torch.Generator, lo: float = 5.0, hi: float = 15.0) -> torch.Tensor:
    return (12.3 + 3.3 * torch.randn(n, generator=g)).clamp(lo, hi)


def make_batch(batch_size: int, vocab_size: int, g: torch.Generator,
               max_seconds: float = 15.0) -> Dict[str, torch.Tensor]:
    """One padded ESPnet ASR batch (speech, speech_lengths, text, text_lengths)."""
    seconds = draw_durations(batch_size, g, lo=min(5.0, max_seconds), hi=max_seconds)
    # Sorted descending, as ESPnet's sorted batch samplers deliver them.
    seconds, _ = seconds.sort(descending=True)
    speech_lengths = (seconds * SAMPLE_RATE).long()
    speech = 0.1 * torch.randn(batch_size, int(speech_lengths.max()), generator=g)
    for i, n in enumerate(speech_lengths.tolist()):
        speech[i, n:] = 0.0
    jitter = 1.0 + 0.15 * (2 * torch.rand(batch_size, generator=g) - 1)
    text_lengths = (seconds * TOKENS_PER_SECOND * jitter).round().long().clamp(min=1)
    # ids 1..V-2: not <blank> (0) and not <sos/eos> (V-1); padding is -1 as in ESPnet.
    text = torch.randint(1, vocab_size - 1, (batch_size, int(text_lengths.max())), generator=g)
    for i, n in enumerate(text_lengths.tolist()):
        text[i, n:] = -1
    return {"speech": speech, "speech_lengths": speech_lengths,
            "text": text, "text_lengths": text_lengths}


def make_step_batches(num_micro: int, batch_size: int, vocab_size: int, seed: int,
                      max_seconds: float = 15.0) -> List[Dict[str, torch.Tensor]]:
    """The micro-batches of one optimizer step, identical for every mode given `seed`."""
    g = torch.Generator().manual_seed(seed)
    return [make_batch(batch_size, vocab_size, g, max_seconds) for _ in range(num_micro)]
