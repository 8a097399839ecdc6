"""The shuffled batch sampler."""
import pytest

from espnet_pcc.core.data_loader.shuffled import ShuffledBatchSampler

UTTS = [f"utt{i:03d}" for i in range(50)]


def test_every_utterance_once_per_epoch_in_near_equal_batches():
    sampler = ShuffledBatchSampler(UTTS, batch_size=16)
    batches = sampler.generate(7)
    assert len(batches) == len(sampler) == 4  # ceil(50 / 16)
    assert sorted(u for b in batches for u in b) == UTTS
    assert sorted(len(b) for b in batches) == [12, 12, 13, 13]


def test_new_batches_every_epoch_the_same_for_the_same_seed():
    sampler = ShuffledBatchSampler(UTTS, batch_size=10)
    assert sampler.generate(3) == sampler.generate(3)
    assert ShuffledBatchSampler(reversed(UTTS), batch_size=10).generate(3) == sampler.generate(3)
    first, second = (set(map(frozenset, sampler.generate(seed))) for seed in (3, 4))
    assert not first & second  # no batch of epoch 3 comes back in epoch 4


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_split_each_global_batch_as_espnet_does(world_size):
    whole = ShuffledBatchSampler(UTTS, batch_size=12).generate(5)
    ranks = [ShuffledBatchSampler(UTTS, batch_size=12, world_size=world_size,
                                  rank=r).generate(5) for r in range(world_size)]
    assert all(len(r) == len(whole) for r in ranks)  # the same number of micro-batches
    for b, batch in enumerate(whole):
        for r in range(world_size):
            assert ranks[r][b] == batch[r::world_size]


@pytest.mark.parametrize("num_utts,batch_size,world_size",
                         [(1414, 16, 16), (5, 2, 2), (7, 4, 4)])
def test_no_rank_gets_an_empty_micro_batch(num_utts, batch_size, world_size):
    """ceil(N / batch_size) batches would hold fewer utterances than ranks (1414 in 89
    batches of 15 or 16 over 16 ranks; 5 in batches of 2, 2, 1 over 2; 7 in batches of 4 and
    3 over 4): at most N // world_size batches instead, each of at least world_size
    utterances and at most max(batch_size, 2 * world_size - 1) (7: one batch of 7)."""
    utts = [f"u{i:04d}" for i in range(num_utts)]
    ranks = [ShuffledBatchSampler(utts, batch_size, world_size=world_size, rank=r)
             for r in range(world_size)]
    for seed in range(3):
        per_rank = [sampler.generate(seed) for sampler in ranks]
        assert all(len(batch) >= 1 for batches in per_rank for batch in batches)
        assert sorted(u for batches in per_rank for b in batches for u in b) == utts
        sizes = [sum(len(batches[b]) for batches in per_rank) for b in range(len(ranks[0]))]
        assert max(sizes) <= max(batch_size, 2 * world_size - 1)


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="batch_size 1 must be >= the number of ranks 2"):
        ShuffledBatchSampler(UTTS, batch_size=1, world_size=2)
    with pytest.raises(ValueError, match="rank must be in"):
        ShuffledBatchSampler(UTTS, batch_size=4, world_size=2, rank=2)
