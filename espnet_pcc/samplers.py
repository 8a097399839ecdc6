"""Training batch samplers beside ESPnet's (`--batch_sampler`).

ESPnet's samplers (`--batch_type` folded, sorted, length, numel, unsorted) cut the training
set into batches once, sorted by length, and each epoch only shuffles the order of those
batches.  An utterance then has the same batch-mates, and under position cores the same
core, in every epoch and every seed; identical copies of one utterance (a canary inserted k
times has k copies of one audio, hence one length) land side by side in one batch.  Per-core
clipping then clips all the copies together, as one core, once per epoch.

`shuffled` draws new batches every epoch instead, from a seeded shuffle of all training
utterances: the input pipeline of the paper's TPU training, where the copies of a canary are
spread over batches and cores.  `copy_colocation` measures the difference.
"""
from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Mapping, Sequence, Tuple

import numpy as np
from espnet2.samplers.abs_sampler import AbsSampler

#: --batch_sampler values: auto (poisson with noise, else espnet), ESPnet's own
#: (`--batch_type`), new batches every epoch, or Poisson sampling into hashed cores
#: (espnet_pcc.poisson).
BATCH_SAMPLERS = ("auto", "espnet", "shuffled", "poisson")

MicroBatch = Tuple[str, ...]


class ShuffledBatchSampler(AbsSampler):
    """This rank's batches of an epoch, drawn afresh from a seeded shuffle of all utterances.

    `generate(seed)` (ESPnet's `SequenceIterFactory` calls it with epoch + --seed) permutes
    the utterances with `np.random.RandomState(seed)` and cuts the permutation into
    min(ceil(N / batch_size), N // world_size) global batches of near-equal size (sizes
    differ by one at most, so no batch is a small remainder), each in the shuffle's order
    (not sorted by length: a core is a random subset of its batch).  Under DDP each rank
    takes every world_size-th utterance of each global batch (`batch[rank::world_size]`, as
    ESPnet shards its batches), so every rank gets the same number of micro-batches; no
    batch has fewer than world_size utterances, so no rank's micro-batch is empty.  Where
    N // world_size is the smaller count, a batch can exceed batch_size: a batch holds at
    most max(batch_size, 2 * world_size - 1) utterances (7 utterances, batch_size 4, 4
    ranks: one batch of 7).  Build the iterator with shuffle=False: the batches are already
    in random order.

    Args:
        utt_ids: the training utterances (the first column of a shape file).
        batch_size: utterances per global batch (over all ranks, as ESPnet's batch_size).
        world_size, rank: the DDP ranks and this one.
    """

    def __init__(self, utt_ids: Iterable[str], batch_size: int, world_size: int = 1,
                 rank: int = 0):
        self.utt_ids = sorted(utt_ids)  # the shuffle does not depend on the file's order
        if batch_size < world_size:
            raise ValueError(f"batch_size {batch_size} must be >= the number of ranks "
                             f"{world_size} (each rank needs an utterance per batch)")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        if len(self.utt_ids) < world_size:
            raise ValueError(f"{len(self.utt_ids)} training utterances for {world_size} ranks")
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        # Every batch at least world_size utterances: each rank gets one or more of each.
        self.num_batches = min(math.ceil(len(self.utt_ids) / batch_size),
                               len(self.utt_ids) // world_size)

    def generate(self, seed: int) -> List[MicroBatch]:
        order = np.random.RandomState(seed).permutation(len(self.utt_ids))
        return [tuple(self.utt_ids[i] for i in batch[self.rank::self.world_size])
                for batch in np.array_split(order, self.num_batches)]

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[MicroBatch]:
        return iter(self.generate(0))

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(N-utterances={len(self.utt_ids)}, "
                f"batch_size={self.batch_size}, N-batch={self.num_batches}, "
                f"world_size={self.world_size}, rank={self.rank})")


@dataclass(frozen=True)
class Colocation:
    """How often two copies of one utterance meet, over the pairs of copies of every group."""

    pairs: int  # pairs of copies counted (over groups and epochs)
    same_batch: float  # fraction of those pairs in one batch
    same_core: float  # fraction in one position core of one batch

    def as_dict(self) -> Dict[str, float]:
        return {"pairs": self.pairs, "same_batch": self.same_batch, "same_core": self.same_core}


def position_core(index: int, batch_size: int, num_cores: int) -> int:
    """The core (0-based) of the utterance at `index` of a batch, as `espnet_pcc.cores`
    splits a micro-batch into min(num_cores, batch_size) consecutive shards."""
    from espnet_pcc.cores import shard_bounds

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
    `espnet_pcc.canary.insert.repeat_id`); canaries inserted once are left out."""
    from espnet_pcc.canary.insert import canary_of

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
    from espnet2.samplers.build_batch_sampler import build_batch_sampler

    from espnet_pcc.speaker_cores import read_utt_lengths

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


__all__ = ["BATCH_SAMPLERS", "colocation_by_sampler", "Colocation", "ShuffledBatchSampler", "canary_copies",
           "copy_colocation", "position_core"]
