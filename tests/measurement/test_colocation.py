"""Where the copies of a canary sit, per batch sampler."""
import numpy as np
import pytest
from espnet2.samplers.build_batch_sampler import build_batch_sampler

from espnet_pcc.core.data_loader.shuffled import ShuffledBatchSampler
from espnet_pcc.measurement.canary.insert import repeat_id
from espnet_pcc.measurement.colocation import canary_copies, colocation_by_sampler, \
    copy_colocation, position_core

UTTS = [f"utt{i:03d}" for i in range(50)]


def test_position_core_follows_the_trainers_split():
    # shard_bounds(9, 4) = (0,3),(3,5),(5,7),(7,9)
    assert [position_core(i, 9, 4) for i in range(9)] == [0, 0, 0, 1, 1, 2, 2, 3, 3]
    assert [position_core(i, 2, 4) for i in range(2)] == [0, 1]  # one utterance per core


def test_copy_colocation_by_hand():
    copies = {"c": ["c1", "c2", "c3"]}  # 3 pairs
    # Epoch 1: c1 and c2 in the first core of one batch, c3 in another batch.
    # Epoch 2: all three in one batch of 4 with 2 cores: (c1, c2) | (c3, x).
    epochs = [[["c1", "c2", "x", "y"], ["c3", "z"]], [["c1", "c2", "c3", "x"]]]
    result = copy_colocation(epochs, copies, num_cores=2)
    assert result.pairs == 6
    assert result.same_batch == pytest.approx(4 / 6)
    assert result.same_core == pytest.approx(2 / 6)


def test_canary_copies_groups_repeats_by_canary():
    utts = ["a", repeat_id("canary-x4-0", 1), repeat_id("canary-x4-0", 2),
            repeat_id("canary-x1-0", 1), "canary-x4-0"]
    assert canary_copies(utts) == {"canary-x4-0": ["canary-x4-0-rep01", "canary-x4-0-rep02"]}


def test_espnets_sorted_batches_keep_copies_together_and_the_shuffle_spreads_them(tmp_path):
    """Copies of a canary have one length: ESPnet's length-sorted batches put them side by
    side in every epoch, the shuffled sampler about as often as chance."""
    rng = np.random.default_rng(0)
    lengths = {f"utt{i:04d}": int(rng.integers(16000, 64000)) for i in range(600)}
    for c in range(20):
        length = int(rng.integers(16000, 64000))
        lengths.update({repeat_id(f"canary{c}", k): length for k in range(1, 5)})
    shape = tmp_path / "speech_shape"
    shape.write_text("".join(f"{u} {n}\n" for u, n in lengths.items()))
    copies = canary_copies(lengths)
    folded = build_batch_sampler(type="folded", batch_size=16, batch_bins=0,
                                 shape_files=[str(shape)],
                                 fold_lengths=[80000], sort_in_batch="descending",
                                 sort_batch="descending")
    fixed = [list(folded)] * 3  # ESPnet only shuffles the order of these batches per epoch
    shuffled = ShuffledBatchSampler(lengths, batch_size=16)
    sorted_result = copy_colocation(fixed, copies, num_cores=4)
    shuffled_result = copy_colocation([shuffled.generate(s) for s in range(3)], copies,
                                      num_cores=4)
    assert sorted_result.same_batch > 0.7 and sorted_result.same_core > 0.3
    chance = 16 / len(lengths)
    assert shuffled_result.same_batch < 3 * chance
    assert shuffled_result.same_core < shuffled_result.same_batch


def test_colocation_by_sampler_on_a_shape_file(tmp_path):

    rng = np.random.default_rng(1)
    lengths = {f"utt{i:04d}": int(rng.integers(16000, 64000)) for i in range(300)}
    for c in range(10):
        lengths.update({repeat_id(f"canary{c}", k): 40000 + c for k in range(1, 5)})
    shape = tmp_path / "speech_shape"
    shape.write_text("".join(f"{u} {n}\n" for u, n in lengths.items()))
    found = colocation_by_sampler([str(shape)], 16, [80000], 4, seeds=[0, 1], epochs=[1, 2])
    assert found["espnet"].pairs == 60 and found["shuffled"].pairs == 4 * 60
    assert found["espnet"].same_batch > 0.7 > found["shuffled"].same_batch
