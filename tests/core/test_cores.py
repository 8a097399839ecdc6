"""Splitting a micro-batch into cores (espnet_pcc.core.cores)."""
import pytest
import torch

from espnet_pcc.core.cores import shard_bounds, split_batch, split_by_speaker


def make_batch(lengths):
    b = len(lengths)
    speech = torch.zeros(b, max(lengths))
    for i, n in enumerate(lengths):
        speech[i, :n] = i + 1
    return {"speech": speech, "speech_lengths": torch.tensor(lengths),
            "text": torch.arange(b * 3).reshape(b, 3), "text_lengths": torch.full((b,), 3),
            "utt_id": [f"u{i}" for i in range(b)]}


def test_near_equal_consecutive_shards():
    assert shard_bounds(10, 4) == [(0, 3), (3, 6), (6, 8), (8, 10)]
    assert shard_bounds(4, 1) == [(0, 4)]


def test_fewer_utterances_than_cores_gives_one_utterance_per_core():
    assert shard_bounds(3, 8) == [(0, 1), (1, 2), (2, 3)]
    shards = split_batch(make_batch([5, 7, 2]), 8)
    assert [s["utt_id"] for s in shards] == [["u0"], ["u1"], ["u2"]]


def test_split_trims_padding_to_each_shard():
    shards = split_batch(make_batch([5, 2, 3, 9]), 2)
    assert shards[0]["speech"].shape == (2, 5)
    assert shards[1]["speech"].shape == (2, 9)
    assert torch.equal(shards[1]["speech_lengths"], torch.tensor([3, 9]))
    assert torch.equal(shards[1]["text"], torch.arange(6, 12).reshape(2, 3))


def test_invalid_num_cores():
    with pytest.raises(ValueError, match="num_cores must be >= 1, got 0"):
        shard_bounds(4, 0)


SPEAKERS = {"u0": "a", "u1": "a", "u2": "b", "u3": "c", "u4": "c"}


def test_split_by_speaker_cuts_at_speaker_changes_and_trims_padding():
    shards = split_by_speaker(make_batch([5, 2, 9, 3, 4]), SPEAKERS)
    assert [s["utt_id"] for s in shards] == [["u0", "u1"], ["u2"], ["u3", "u4"]]
    assert [s["speech"].shape for s in shards] == [(2, 5), (1, 9), (2, 4)]
    assert torch.equal(shards[2]["text"], torch.arange(9, 15).reshape(2, 3))


def test_split_by_speaker_one_speaker_is_the_whole_batch():
    batch = make_batch([5, 2])
    assert split_by_speaker(batch, SPEAKERS) == [batch]


def test_split_by_speaker_rejects_a_speaker_in_two_runs():
    batch = make_batch([5, 2, 9])
    with pytest.raises(ValueError, match="speaker 'a' appears in two non-adjacent runs"):
        split_by_speaker(batch, {"u0": "a", "u1": "b", "u2": "a"})


def test_split_by_speaker_needs_utt_ids_and_speakers():
    batch = make_batch([5, 2])
    with pytest.raises(ValueError, match="utterance 'u1' of the batch has no speaker"):
        split_by_speaker(batch, {"u0": "a"})
    del batch["utt_id"]
    with pytest.raises(ValueError, match="needs batch\\['utt_id'\\]"):
        split_by_speaker(batch, SPEAKERS)
