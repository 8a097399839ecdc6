"""A Lightning batch cut into the cores of one micro-batch.

Lightning hands the strategy whatever the dataloader yields: ESPnet3's batches are
``(utt_ids, {"speech": ..., "speech_lengths": ..., ...})`` (espnet2's `CommonCollateFn`),
other modules' a tensor, or a tuple, list or dict of them.  A core is a run of consecutive
items of the micro-batch, `espnet_pcc.core.cores.shard_bounds` (never an empty core; per_example:
one item per core), so the cores are the ones the espnet2 integration cuts.  What is cut, along
the first dimension:

- a tensor whose first dimension is the batch size B;
- a list or tuple of B plain items (no tensors or containers inside: utterance ids);
- a dict through `espnet_pcc.core.cores.split_at`, which also trims each ``X`` that has an
  ``X_lengths`` to its core's longest item (a core sees the padding it would see as a
  micro-batch of its own);
- any other list or tuple element by element (a ``(x, y)`` pair, ESPnet3's ``(ids, dict)``).

Anything else (a scalar, a string, a tensor without the batch dimension) goes to every core as
it is.  A module whose batches need another cut passes its own function as the strategy's
``split_batch``.
"""
from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence, Tuple

import torch

from espnet_pcc.core.clip_config import ClipConfig
from espnet_pcc.core.cores import shard_bounds, split_at

Bounds = List[Tuple[int, int]]


def _is_item_list(value: Any) -> bool:
    """A non-empty list or tuple of plain items (utterance ids), which is cut, not entered."""
    return (isinstance(value, (list, tuple)) and len(value) > 0
            and not any(isinstance(v, (torch.Tensor, Mapping, list, tuple)) for v in value))


def _find_size(batch: Any) -> Optional[int]:
    if isinstance(batch, torch.Tensor):
        return batch.shape[0] if batch.dim() > 0 else None
    if isinstance(batch, Mapping):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        if _is_item_list(batch):
            return len(batch)
        for item in batch:
            size = _find_size(item)
            if size is not None:
                return size
    return None


def batch_size(batch: Any) -> int:
    """B: the first dimension of the batch's first tensor (or the length of its first list of
    plain items, where that comes first)."""
    size = _find_size(batch)
    if size is None:
        raise ValueError(f"cannot cut a batch of type {type(batch).__name__} into cores: it "
                         "holds no tensor with a batch dimension and no list of items")
    return size


def _rebuild(like: Sequence, items: List[Any]) -> Any:
    if isinstance(like, tuple) and hasattr(like, "_fields"):  # a namedtuple
        return type(like)(*items)
    return type(like)(items)


def _cut(value: Any, size: int, bounds: Bounds) -> List[Any]:
    """`value`'s part in each core of `bounds` (see the module docstring)."""
    if isinstance(value, torch.Tensor):
        if value.dim() > 0 and value.shape[0] == size:
            return [value[start:end] for start, end in bounds]
        return [value] * len(bounds)
    if isinstance(value, Mapping):
        return split_at(dict(value), bounds)
    if isinstance(value, (list, tuple)):
        if _is_item_list(value) and len(value) == size:
            return [value[start:end] for start, end in bounds]
        parts = [_cut(item, size, bounds) for item in value]
        return [_rebuild(value, [part[k] for part in parts]) for k in range(len(bounds))]
    return [value] * len(bounds)


def split_into_cores(batch: Any, clip_config: ClipConfig) -> List[Any]:
    """The cores of one micro-batch: K = min(clip_conf.num_cores, B) runs of consecutive items
    (per_example: B cores of one item); the batch itself where K = 1."""
    size = batch_size(batch)
    bounds = shard_bounds(size, clip_config.cores_per_micro_batch(size))
    if len(bounds) == 1:
        return [batch]
    return _cut(batch, size, bounds)


__all__ = ["batch_size", "split_into_cores"]
