"""Where the copies of a canary sit: how often two copies of one utterance share a batch and
a position core, per batch sampler (`study_colocation`; ESPnet's folded batches are built
once, so copies of one length keep their batch-mates every epoch, while
`espnet_pcc.core.data_loader.shuffled` draws new batches each epoch)."""
from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple

from espnet2.samplers.build_batch_sampler import build_batch_sampler

from espnet_pcc.core.cores import shard_bounds
from espnet_pcc.core.data_loader.shuffled import ShuffledBatchSampler
from espnet_pcc.core.data_loader.speaker_cores import read_utt_lengths
from espnet_pcc.measurement.canary.insert import canary_of


@dataclass(frozen=True)
class Colocation:
    """How often two copies of one utterance meet, over the pairs of copies of every group."""

    pairs: int  # pairs of copies counted (over groups and epochs)
    same_batch: float  # fraction of those pairs in one batch
    same_core: float  # fraction in one position core of one batch

    def as_dict(self) -> Dict[str, float]:
        return {"pairs": self.pairs, "same_batch": self.same_batch, "same_core": self.same_core}


def position_core(index: int, batch_size: int, num_cores: int) -> int:
    """The core (0-based) of the utterance at `index` of a batch, as `espnet_pcc.core.cores`
    splits a micro-batch into min(num_cores, batch_size) consecutive shards."""
    for core, (start, end) in enumerate(shard_bounds(batch_size, min(num_cores, batch_size))):
        if start <= index < end:
            return core
    raise IndexError(f"index {index} outside a batch of {batch_size}")


def copy_colocation(epochs: Sequence[Sequence[Sequence[str]]], copies: Mapping[str, Sequence[str]],
                    num_cores: int) -> Colocation:
    """The fraction of pairs of copies that share a batch, and a position core, per epoch.

    Args:
        epochs: each epoch's batches (utterance ids in the order the trainer sees them).
        copies: group (a canary) -> the ids of its copies in the training set.
        num_cores: position cores per batch (clip_conf.num_cores).
    """
    pairs = same_batch = same_core = 0
    for batches in epochs:
        where: Dict[str, Tuple[int, int]] = {}
        for b, batch in enumerate(batches):
            for i, utt in enumerate(batch):
                where[utt] = (b, position_core(i, len(batch), num_cores))
        for group in copies.values():
            for u, v in itertools.combinations(group, 2):
                pairs += 1
                same_batch += where[u][0] == where[v][0]
                same_core += where[u] == where[v]
    if not pairs:
        raise ValueError("no group has two copies: nothing to measure")
    return Colocation(pairs, same_batch / pairs, same_core / pairs)


def canary_copies(utt_ids: Iterable[str]) -> Dict[str, List[str]]:
    """canary id -> the ids of its repeats among `utt_ids` (named by
    `espnet_pcc.measurement.canary.insert.repeat_id`); canaries inserted once are left out."""
    groups: Dict[str, List[str]] = defaultdict(list)
    for utt in utt_ids:
        canary = canary_of(utt)
        if canary is not None:
            groups[canary].append(utt)
    return {c: sorted(g) for c, g in sorted(groups.items()) if len(g) > 1}


def colocation_by_sampler(shape_files: Sequence[str], batch_size: int,
                          fold_lengths: Sequence[int], num_cores: int, seeds: Sequence[int],
                          epochs: Sequence[int]) -> Dict[str, Colocation]:
    """How often two copies of a canary share a batch and a position core, per sampler, over
    the training runs' epochs: ESPnet's ``folded`` batches (built once, the same for every
    seed and epoch) and ``shuffled`` ones (seed + epoch, as ESPnet's iterator asks)."""
    utts = read_utt_lengths(shape_files[0])
    copies = canary_copies(utts)
    folded = [list(b) for b in build_batch_sampler(
        type="folded", batch_size=batch_size, batch_bins=0, shape_files=list(shape_files),
        fold_lengths=list(fold_lengths), sort_in_batch="descending",
        sort_batch="descending")]
    shuffled = ShuffledBatchSampler(utts, batch_size)
    return {
        "espnet": copy_colocation([folded], copies, num_cores),
        "shuffled": copy_colocation([shuffled.generate(s + e) for s in seeds for e in epochs],
                                    copies, num_cores),
    }


__all__ = ["Colocation", "canary_copies", "colocation_by_sampler", "copy_colocation", "position_core"]
