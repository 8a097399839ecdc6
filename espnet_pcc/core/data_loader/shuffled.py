"""Training batch samplers beside ESPnet's (`--batch_sampler`).

ESPnet's samplers (`--batch_type` folded, sorted, length, numel, unsorted) cut the training
set into batches once, sorted by length, and each epoch only shuffles the order of those
batches.  An utterance then has the same batch-mates, and under position cores the same
core, in every epoch and every seed; identical copies of one utterance (a canary inserted k
times has k copies of one audio, hence one length) land side by side in one batch.  Per-core
clipping then clips all the copies together, as one core, once per epoch.

`shuffled` draws new batches every epoch instead, from a seeded shuffle of all training
utterances: the input pipeline of the paper's TPU training, where the copies of a canary are
spread over batches and cores.  `espnet_pcc.measurement.colocation` measures the difference.
"""
from __future__ import annotations

import math
from typing import Iterable, Iterator, List, Tuple

import numpy as np
from torch.utils.data import Sampler

MicroBatch = Tuple[str, ...]


class ShuffledBatchSampler(Sampler):
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


__all__ = ["ShuffledBatchSampler"]
