"""The Gaussian noise of a noisy step, drawn from (seed, step) alone."""
from __future__ import annotations

import hashlib
from typing import Iterator, List

import numpy as np
import torch


def step_noise(params: List[torch.nn.Parameter], seed: int, step: int,
               device: torch.device) -> Iterator[torch.Tensor]:
    """Standard normal noise shaped like each parameter, for step `step` of a run.

    Drawn from (seed, step) alone: a resumed run and every DDP layout draw the same values
    for the same step.  One parameter at a time, so that no more than one parameter's worth
    of noise is alive.  The whole seed counts: on the CPU a PCG64 generator seeded with
    ``SeedSequence([seed, step])`` (numpy), on an accelerator torch's Philox generator
    seeded with 64 bits hashed from both.  (torch's CPU generator, mt19937, keeps only the
    low 32 bits of its seed: seeded with (seed, step) packed into 64 bits it drew the same
    noise for every seed.)  Neither generator is cryptographically secure.
    """
    device = torch.device(device)
    if device.type == "cpu":
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, step])))
        for p in params:
            yield torch.from_numpy(rng.standard_normal(tuple(p.shape), dtype=np.float32))
        return
    digest = hashlib.blake2b(f"{seed}:{step}".encode(), digest_size=8).digest()
    generator = torch.Generator(device=device)
    generator.manual_seed(int.from_bytes(digest, "little"))
    for p in params:
        yield torch.randn(p.shape, generator=generator, device=device, dtype=torch.float32)


def add_step_noise(sums: List[torch.Tensor], used: List[bool], params: List[torch.nn.Parameter],
                   seed: int, step: int, scale: float) -> None:
    """Adds `scale` times step `step`'s noise to each used sum, in place.  Drawn for every
    parameter, used or not, so that every process draws the same values."""
    for s, u, z in zip(sums, used, step_noise(params, seed, step, params[0].device)):
        if u:
            s.add_(z, alpha=scale)


__all__ = ["add_step_noise", "step_noise"]
