"""What a *core* is inside one micro-batch.

By position (`clip_conf.core_by: position`, the default): a micro-batch of B
utterances is split into K = min(num_cores, B) consecutive shards of near-equal
size (sizes differ by at most one).  When B < num_cores, every utterance is its
own core: a batch never yields an empty core.  `per_example` clipping is the
case num_cores = B.

By speaker (`core_by: speaker`): the micro-batch comes from `SpeakerCoreSampler`
(espnet_pcc.core.data_loader.speaker_cores), which lists each core's utterances consecutively, one
speaker per core; `split_by_speaker` cuts it at the speaker changes.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence, Tuple

import torch

Batch = Dict[str, Any]
Bounds = List[Tuple[int, int]]


def batch_size(batch: Batch) -> int:
    """Number of utterances, from the first tensor (or the utt_id list)."""
    for value in batch.values():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return value.shape[0]
    if "utt_id" in batch:
        return len(batch["utt_id"])
    raise ValueError("cannot tell the batch size: the batch has no tensors")


def shard_bounds(size: int, num_cores: int) -> Bounds:
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


def speaker_bounds(utt_ids: Sequence[str], speaker_of: Mapping[str, str]) -> Bounds:
    """[start, end) of each run of consecutive utterances of one speaker.

    Raises:
        ValueError: an utterance has no speaker, or a speaker's utterances are not
            consecutive (two cores of one speaker in a micro-batch would let that
            speaker past the clipping bound twice).
    """
    bounds: Bounds = []
    seen = set()
    for i, utt in enumerate(utt_ids):
        if utt not in speaker_of:
            raise ValueError(f"utterance {utt!r} of the batch has no speaker in utt2spk")
        speaker = speaker_of[utt]
        if bounds and speaker == speaker_of[utt_ids[bounds[-1][0]]]:
            bounds[-1] = (bounds[-1][0], i + 1)
            continue
        if speaker in seen:
            raise ValueError(f"speaker {speaker!r} appears in two non-adjacent runs of one "
                             f"micro-batch (again at utterance {utt!r}): its utterances "
                             "must be consecutive (batches of SpeakerCoreSampler are)")
        seen.add(speaker)
        bounds.append((i, i + 1))
    return bounds


def split_at(batch: Batch, bounds: Bounds) -> List[Batch]:
    """Cuts an ESPnet batch dict into the core batches [start, end) of `bounds`.

    Each `X` that has an `X_lengths` companion is cut back to the longest item
    of its core, so a core sees exactly the padding it would see as a
    micro-batch of its own.
    """
    size = batch_size(batch)
    if len(bounds) == 1 and bounds[0] == (0, size):
        return [batch]
    return [_slice(batch, size, start, end) for start, end in bounds]


def _slice(batch: Batch, size: int, start: int, end: int) -> Batch:
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
    return shard


def split_batch(batch: Batch, num_cores: int) -> List[Batch]:
    """Splits an ESPnet batch dict into K = min(num_cores, B) consecutive core batches."""
    return split_at(batch, shard_bounds(batch_size(batch), num_cores))


def split_by_speaker(batch: Batch, speaker_of: Mapping[str, str]) -> List[Batch]:
    """Splits an ESPnet batch dict into one core batch per run of one speaker.

    Args:
        batch: the micro-batch, with "utt_id" (its utterance ids, set by the trainer).
        speaker_of: utterance id -> speaker id (utt2spk).

    Raises:
        ValueError: no "utt_id", an utterance without a speaker, or a speaker in two
            non-adjacent runs.
    """
    if "utt_id" not in batch:
        raise ValueError("split_by_speaker needs batch['utt_id'] (the trainer sets it)")
    return split_at(batch, speaker_bounds(list(batch["utt_id"]), speaker_of))
