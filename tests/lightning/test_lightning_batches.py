"""Cutting a Lightning batch into the cores of one micro-batch."""
from collections import namedtuple

import pytest
import torch

from espnet_pcc.core.clip_config import ClipConfig
from espnet_pcc.lightning.batches import batch_size, split_into_cores


def _config(clip="per_core", **conf):
    return ClipConfig.from_options(clip, {"max_norm": 1.0, **conf})


def test_espnet3_batch_cores_keep_their_ids_and_trim_padding():
    ids = ["a", "b", "c", "d", "e"]
    lengths = torch.tensor([2, 3, 6, 1, 4])
    speech = torch.arange(5 * 6, dtype=torch.float32).view(5, 6)
    batch = (ids, {"speech": speech, "speech_lengths": lengths})
    cores = split_into_cores(batch, _config(num_cores=2))
    assert [core[0] for core in cores] == [["a", "b", "c"], ["d", "e"]]
    first, second = (core[1] for core in cores)
    assert torch.equal(first["speech"], speech[:3])  # its longest item is the batch's
    assert torch.equal(second["speech"], speech[3:, :4])  # cut to its longest, 4
    assert torch.equal(second["speech_lengths"], lengths[3:])


def test_tuples_dicts_and_namedtuples_are_cut_item_by_item():
    Pair = namedtuple("Pair", "x y")
    x, y = torch.randn(4, 3), torch.randn(4, 1)
    for batch, parts in ((x, lambda c: [c]), ((x, y), list), ([x, y], list),
                         (Pair(x, y), list), ({"x": x, "y": y}, lambda c: [c["x"], c["y"]])):
        cores = split_into_cores(batch, _config(num_cores=3))
        assert [len(parts(c)[0]) for c in cores] == [2, 1, 1]
        assert type(cores[0]) is type(batch)
        torch.testing.assert_close(torch.cat([parts(c)[0] for c in cores]), x)


def test_per_example_is_one_item_per_core_and_one_core_is_the_batch_itself():
    batch = (torch.randn(3, 2), torch.randn(3, 1), 7)
    cores = split_into_cores(batch, _config("per_example"))
    assert [len(c[0]) for c in cores] == [1, 1, 1] and all(c[2] == 7 for c in cores)
    assert split_into_cores(batch, _config(num_cores=1))[0] is batch
    assert len(split_into_cores(batch, _config(num_cores=8))) == 3  # never an empty core


def test_a_batch_without_a_batch_dimension_is_refused():
    assert batch_size((["u1", "u2"], {"speech": torch.zeros(2, 5)})) == 2
    with pytest.raises(ValueError, match="cannot cut a batch of type float into cores"):
        batch_size(3.0)
