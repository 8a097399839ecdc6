"""The flat buffer's statistics layout (espnet_pcc.core.ddp_sums): a SUM over ranks combines them."""
import math

import pytest
import torch

from espnet_pcc.core.clipping import StepStatistics
from espnet_pcc.core.ddp_sums import decode_statistics, encode_statistics, statistics_length
from espnet_pcc.core.sums import core_statistics

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize("per_rank", [
    [[3.0, 1.0], [1.0, 7.0, 2.0]],  # the minimum on two ranks: its count is their sum
    [[4.0], [INF, 0.5], [NAN]],  # non-finite cores are counted, not in the range
    [[], [2.0, 2.0]],  # a rank without cores
    [[NAN], [INF]],  # no finite core anywhere
])
def test_summed_encodings_decode_to_the_statistics_of_all_cores(per_rank):
    world_size, bound = len(per_rank), 1.5
    summed = torch.zeros(statistics_length(world_size), dtype=torch.float64)
    for rank, norms in enumerate(per_rank):
        local = core_statistics(torch.tensor(norms, dtype=torch.float32), bound)
        summed += encode_statistics(local, rank, world_size)
    everything = torch.tensor([n for norms in per_rank for n in norms], dtype=torch.float32)
    expected = StepStatistics.of_values(core_statistics(everything, bound).tolist())
    assert decode_statistics(summed) == expected


def test_core_statistics_by_hand():
    stats = StepStatistics.of_values(
        core_statistics(torch.tensor([3.0, 1.0, INF, 1.0, 0.5]), 2.0).tolist())
    # 5 cores; finite sum 5.5; over C = 2: the 3 and the inf; one non-finite; min 0.5 once
    assert stats == StepStatistics(5, 5.5, 2, 1, 0.5, 3.0, 1)
    unbounded = StepStatistics.of_values(core_statistics(torch.tensor([3.0]), INF).tolist())
    assert unbounded.num_over_bound == 0
