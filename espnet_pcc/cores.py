"""What a *core* is inside one micro-batch.

A micro-batch of B utterances is split into K = min(num_cores, B) consecutive
shards of near-equal size (sizes differ by at most one).  When B < num_cores,
every utterance is its own core: a batch never yields an empty core.
`per_example` clipping is the case num_cores = B.
"""
from __future__ import annotations

from typing import Any, Dict, List

import torch

Batch = Dict[str, Any]


def batch_size(batch: Batch) -> int:
    """Number of utterances, from the first tensor (or the utt_id list)."""
    for value in batch.values():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return value.shape[0]
    if "utt_id" in batch:
        return len(batch["utt_id"])
    raise ValueError("cannot tell the batch size: the batch has no tensors")


def shard_bounds(size: int, num_cores: int) -> List[tuple]:
    """[start, end) of each of the K = min(num_cores, size) shards."""
    if num_cores < 1:
        raise ValueError(f"num_cores must be >= 1, got {num_cores}")
    num_shards = min(num_cores, size)
    base, extra = divmod(size, num_shards)
    bounds, start = [], 0
    for k in range(num_shards):
        end = start + base + (1 if k < extra else 0)
        bounds.append((start, end))
        start = end
    return bounds


def split_batch(batch: Batch, num_cores: int) -> List[Batch]:
    """Splits an ESPnet batch dict into core batches.

    Each `X` that has an `X_lengths` companion is cut back to the longest item
    of its shard, so a core sees exactly the padding it would see as a
    micro-batch of its own.
    """
    size = batch_size(batch)
    bounds = shard_bounds(size, num_cores)
    if len(bounds) == 1:
        return [batch]
    shards = []
    for start, end in bounds:
        shard = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == size:
                shard[key] = value[start:end]
            elif isinstance(value, (list, tuple)) and len(value) == size:
                shard[key] = value[start:end]
            else:
                shard[key] = value
        for key in list(shard):
            lengths = shard.get(f"{key}_lengths")
            if isinstance(lengths, torch.Tensor) and shard[key].dim() > 1:
                shard[key] = shard[key][:, : int(lengths.max())]
        shards.append(shard)
    return shards
