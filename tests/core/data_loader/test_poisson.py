"""espnet_pcc.core.data_loader.poisson: Poisson sampling of privacy units into hashed cores."""
import copy
import pickle

import numpy as np
import pytest
from scipy import stats

from espnet_pcc.core.clip_config import ClipConfigError
from espnet_pcc.core.data_loader.poisson import EMPTY, PoissonCoreSampler, WithEmptyItems, \
    group_units, is_empty, make_plan
from espnet_pcc.core.data_loader.units import recording_of


def samplers(plan, key=1234):
    return [PoissonCoreSampler(plan, lambda: key, rank=r) for r in range(plan.world_size)]


def steps_of(plan, key, seed):
    """Each step's slots over all ranks, reassembled from every rank's items."""
    per_rank = [s.generate(seed) for s in samplers(plan, key)]
    J, W, A = plan.cores_per_micro_batch, plan.world_size, plan.accum_grad
    per_step = len(per_rank[0]) // plan.steps_per_epoch
    assert per_step == A * J and all(len(items) == len(per_rank[0]) for items in per_rank)
    steps = []
    for step in range(plan.steps_per_epoch):
        slots = [None] * plan.slots_per_step
        for r, items in enumerate(per_rank):
            for a in range(A):
                for j in range(J):
                    item = items[step * per_step + a * J + j]
                    slots[(a * W + r) * J + j] = [] if is_empty(item) else list(item)
        steps.append(slots)
    return steps


def test_units_are_recordings_or_speakers():
    utts = ["a", "sp0.9-a", "sp1.1-a", "b"]
    assert group_units(utts) == {"a": ["a", "sp0.9-a", "sp1.1-a"], "b": ["b"]}
    speaker_of = {"a": "s1", "sp0.9-a": "sp0.9-s1", "sp1.1-a": "sp1.1-s1", "b": "s2"}
    assert group_units(utts, speaker_of) == {"s1": ["a", "sp0.9-a", "sp1.1-a"], "s2": ["b"]}


@pytest.mark.parametrize("world_size,accum_grad,num_cores", [(1, 1, 4), (2, 2, 2), (3, 1, 1)])
def test_each_utterance_joins_each_step_with_probability_q(world_size, accum_grad, num_cores):
    """Over 40 epochs of 5 steps (q = 20/100), every utterance's count of steps is
    Binomial(200, q): the counts' mean is q·200 and no utterance is far off; every unit is in
    one slot of a step at most; the ranks' items together are the steps' slots."""
    utts = [f"u{i:03d}" for i in range(100)]
    plan = make_plan(utts, 20, cores_per_micro_batch=num_cores, accum_grad=accum_grad,
                     world_size=world_size)
    assert plan.sampling_rate == 0.2 and plan.steps_per_epoch == 5
    assert plan.slots_per_step == world_size * accum_grad * num_cores
    counts = dict.fromkeys(utts, 0)
    for seed in range(40):
        for slots in steps_of(plan, 1234, seed):
            drawn = [u for slot in slots for u in slot]
            assert len(drawn) == len(set(drawn))
            for u in drawn:
                counts[u] += 1
    values = np.array(list(counts.values()))
    binomial = stats.binom(200, 0.2)
    assert abs(values.mean() - 40) < 4 * binomial.std() / np.sqrt(len(values))
    assert binomial.cdf(values.min()) > 1e-5 and binomial.sf(values.max() - 1) > 1e-5


def test_the_batch_size_varies_and_a_step_can_be_empty():
    plan = make_plan([f"u{i}" for i in range(50)], 1, cores_per_micro_batch=2, accum_grad=1,
                     world_size=1)
    sizes = [sum(len(s) for s in slots) for seed in range(20) for slots in steps_of(plan, 5, seed)]
    assert min(sizes) == 0 and max(sizes) >= 2
    assert np.mean(sizes) == pytest.approx(1.0, abs=0.15)  # 1000 steps of Poisson(~1)


def test_slots_are_uniform_whatever_the_other_units():
    """A unit's core is drawn for it alone: over many steps every slot is equally likely."""
    plan = make_plan([f"u{i}" for i in range(40)], 20, cores_per_micro_batch=4, accum_grad=1,
                     world_size=1)
    hits = np.zeros(4)
    for seed in range(200):
        for slots in steps_of(plan, 9, seed):
            for k, slot in enumerate(slots):
                hits[k] += "u7" in slot
    assert stats.chisquare(hits).pvalue > 1e-3


def test_copies_of_a_recording_travel_together():
    utts = [p + f"r{i}" for i in range(30) for p in ("", "sp0.9-", "sp1.1-")]
    plan = make_plan(utts, 9, cores_per_micro_batch=2, accum_grad=1, world_size=2)
    assert plan.kind == "recording" and plan.num_units == 30 and plan.max_per_unit == 3
    assert plan.sampling_rate == pytest.approx(0.1)
    for seed in range(5):
        for slots in steps_of(plan, 3, seed):
            for slot in slots:
                recordings = [recording_of(u) for u in slot]
                assert all(recordings.count(r) == 3 for r in recordings)


def test_speakers_give_one_core_of_at_most_m_utterances():
    """20 speakers of 1..6 utterances, 4 slots a step, batch 8: q = 4/20, m = 2."""
    speaker_of = {f"s{s}-u{i}": f"s{s}" for s in range(20) for i in range(1 + s % 6)}
    plan = make_plan(list(speaker_of), 8, cores_per_micro_batch=2, accum_grad=2, world_size=1,
                     speaker_of=speaker_of)
    assert plan.kind == "speaker" and plan.sampling_rate == pytest.approx(0.2)
    assert plan.max_per_unit == 2 and plan.steps_per_epoch == 5
    joined = dict.fromkeys(set(speaker_of.values()), 0)
    for seed in range(60):
        for slots in steps_of(plan, 11, seed):
            speakers_per_slot = [{speaker_of[u] for u in slot} for slot in slots]
            every = [s for group in speakers_per_slot for s in group]
            assert len(every) == len(set(every))  # no speaker in two cores of a step
            for slot in slots:
                for s in {speaker_of[u] for u in slot}:
                    assert sum(speaker_of[u] == s for u in slot) <= 2
            for s in every:
                joined[s] += 1
    rate = np.mean(list(joined.values())) / 300
    assert rate == pytest.approx(0.2, abs=0.02)


def test_the_key_decides_the_batches():
    plan = make_plan([f"u{i}" for i in range(30)], 6, cores_per_micro_batch=2, accum_grad=1,
                     world_size=1)
    assert steps_of(plan, 1, 0) == steps_of(plan, 1, 0)
    assert steps_of(plan, 1, 0) != steps_of(plan, 2, 0)
    assert steps_of(plan, 1, 0) != steps_of(plan, 1, 1)
    key = [1]
    sampler = PoissonCoreSampler(plan, lambda: key[0])
    first = sampler.generate(0)
    key[0] = 2  # a resume restores the checkpoint's key before the epoch is drawn
    assert sampler.generate(0) == PoissonCoreSampler(plan, lambda: 2).generate(0) != first


def test_plans_that_cannot_be_sampled_are_one_line():
    with pytest.raises(ClipConfigError, match="--batch_size 20 is larger than the 10 training"):
        make_plan([f"u{i}" for i in range(10)], 20, cores_per_micro_batch=1, accum_grad=1,
                  world_size=1)
    speaker_of = {f"u{i}": f"s{i % 3}" for i in range(10)}
    with pytest.raises(ClipConfigError, match="3 speakers for 4 core slots per step"):
        make_plan(list(speaker_of), 4, cores_per_micro_batch=2, accum_grad=2, world_size=1,
                  speaker_of=speaker_of)


def test_an_empty_item_loads_a_stand_in_under_its_own_key():
    dataset = WithEmptyItems({"a": ("a", {"speech": 1})}, stand_in="a")
    assert dataset[EMPTY] == (EMPTY, {"speech": 1})
    assert dataset["a"] == ("a", {"speech": 1})
    assert is_empty([EMPTY]) and not is_empty(["a"]) and not is_empty([EMPTY, "a"])


@pytest.mark.parametrize("clone", [lambda d: pickle.loads(pickle.dumps(d)), copy.copy,
                                   copy.deepcopy], ids=["pickle", "copy", "deepcopy"])
def test_the_dataset_with_empty_items_can_be_pickled_and_copied(clone):
    """DataLoader workers under spawn or forkserver get the dataset pickled."""
    dataset = clone(WithEmptyItems({"a": ("a", {"speech": 1})}, stand_in="a"))
    assert dataset[EMPTY] == (EMPTY, {"speech": 1})
    assert dataset.keys() == {"a": None}.keys()  # the wrapped dataset's own attributes
