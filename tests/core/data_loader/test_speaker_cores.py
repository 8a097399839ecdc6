"""Speaker cores (clip_conf core_by: speaker): the sampler's plan and utt2spk."""
from collections import Counter
from itertools import chain

import numpy as np
import pytest

from espnet_pcc.core.clip_config import ClipConfigError
from espnet_pcc.core.cores import speaker_bounds
from espnet_pcc.core.data_loader.speaker_cores import Chunk, SpeakerCoreSampler, plan_steps, \
    read_utt2spk, read_utt_lengths, speaker_chunks, utts_per_core

# 20 speakers of 1, 2, 3 and 7 utterances (65 utterances).
SIZES = [1, 2, 3, 7] * 5
SPEAKER_OF = {f"s{k:02d}-{i}": f"s{k:02d}" for k, n in enumerate(SIZES) for i in range(n)}
LENGTHS = {utt: int(n) for utt, n in zip(
    SPEAKER_OF, np.random.default_rng(0).integers(100, 1000, len(SPEAKER_OF)))}
NUM_CORES, UTTS_PER_CORE = 2, 2


def samplers(world_size, accum_grad, num_cores=NUM_CORES):
    return [SpeakerCoreSampler(LENGTHS, SPEAKER_OF, num_cores=num_cores,
                               utts_per_core=UTTS_PER_CORE, accum_grad=accum_grad,
                               world_size=world_size, rank=rank)
            for rank in range(world_size)]


def epoch_steps(ranks, seed):
    """The epoch as steps, each a list of cores (utterance lists), from every rank's
    micro-batches: step s holds micro-batches s*accum_grad ... of every rank."""
    per_rank = [sampler.generate(seed) for sampler in ranks]
    accum_grad = ranks[0].accum_grad
    steps = []
    for s in range(len(per_rank[0]) // accum_grad):
        cores = []
        for batches in per_rank:
            for batch in batches[s * accum_grad:(s + 1) * accum_grad]:
                bounds = speaker_bounds(batch, SPEAKER_OF)
                assert len(bounds) == NUM_CORES, batch  # num_cores speaker cores
                cores += [list(batch[start:end]) for start, end in bounds]
        steps.append(cores)
    return steps


@pytest.mark.parametrize("world_size", [1, 2])
@pytest.mark.parametrize("accum_grad", [1, 3])
def test_plan_one_speaker_per_core_and_none_twice_in_a_step(world_size, accum_grad):
    ranks = samplers(world_size, accum_grad)
    cores_per_step = accum_grad * world_size * NUM_CORES
    for seed in range(4):
        lengths = {len(sampler.generate(seed)) for sampler in ranks}
        assert len(lengths) == 1  # every rank the same number of micro-batches
        assert lengths.pop() % accum_grad == 0  # the epoch ends on a step
        steps = epoch_steps(ranks, seed)
        assert steps
        used = []
        for cores in steps:
            assert len(cores) == cores_per_step
            speakers = [{SPEAKER_OF[u] for u in core} for core in cores]
            assert all(len(s) == 1 for s in speakers)  # one speaker per core
            assert len(set.union(*speakers)) == cores_per_step  # none twice in a step
            for core in cores:
                assert 1 <= len(core) <= UTTS_PER_CORE
                assert [LENGTHS[u] for u in core] == sorted((LENGTHS[u] for u in core),
                                                            reverse=True)
            used += chain.from_iterable(cores)
        assert len(used) == len(set(used))  # each utterance at most once per epoch
        dropped_speakers = {SPEAKER_OF[u] for u in set(LENGTHS) - set(used)}
        assert len(dropped_speakers) < cores_per_step


def test_single_utterance_speakers_are_kept():
    chunks = speaker_chunks(LENGTHS, SPEAKER_OF, 4, np.random.RandomState(0))
    assert sorted(chain.from_iterable(c.utts for c in chunks)) == sorted(LENGTHS)
    sizes = Counter(c.speaker for c in chunks)
    assert all(sizes[f"s{k:02d}"] == -(-n // 4) for k, n in enumerate(SIZES))
    singles = {f"s{k:02d}" for k, n in enumerate(SIZES) if n == 1}
    assert {c.speaker for c in chunks if len(c.utts) == 1} >= singles
    # In the epochs' plans, a single-utterance speaker is only ever left out at the end.
    ranks = samplers(1, 1)
    seen = set()
    for seed in range(5):
        seen |= {SPEAKER_OF[u] for batch in ranks[0].generate(seed) for u in batch}
    assert singles <= seen


def test_generate_is_deterministic_per_seed_and_epochs_differ():
    ranks = samplers(2, 3)
    for sampler in ranks:
        assert sampler.generate(7) == sampler.generate(7)
        assert sampler.generate(7) != sampler.generate(8)
        assert len(sampler) == len(sampler.generate(0)) == len(list(sampler))
    assert ranks[0].generate(7) != ranks[1].generate(7)


def test_plan_steps_scans_ahead_and_drops_the_unfilled_end():
    chunks = [Chunk(s, (f"{s}{i}",)) for i, s in enumerate("aabcad")]
    steps, dropped = plan_steps(chunks, 2)
    assert [[c.speaker for c in step] for step in steps] == [["a", "b"], ["a", "c"],
                                                            ["a", "d"]]
    assert dropped == []
    steps, dropped = plan_steps(chunks + [Chunk("a", ("a9",))], 2)
    assert [c.utts for c in dropped] == [("a9",)]


def test_utts_per_core_divides_the_global_batch():
    assert utts_per_core(32, world_size=2, num_cores=4) == 4
    assert utts_per_core(3, world_size=2, num_cores=4) == 1


def test_too_few_speakers_for_a_step():
    with pytest.raises(ClipConfigError, match="a step has 24 cores of different speakers "
                       r"\(accum_grad 3 x 2 rank\(s\) x num_cores 4\), but the training set "
                       "has 20 speakers"):
        samplers(2, 3, num_cores=4)


def one_line(error):
    return len(str(error.value).splitlines()) == 1


def test_utt2spk_errors_are_one_line(tmp_path):
    missing = tmp_path / "nope" / "utt2spk"
    with pytest.raises(ClipConfigError, match=f"clip_conf.utt2spk {missing}: no such file") as e:
        read_utt2spk(missing)
    assert one_line(e)
    bad = tmp_path / "utt2spk"
    bad.write_text("u1 a\nu2\n")
    with pytest.raises(ClipConfigError, match=r"utt2spk .*:2: expected 'utt_id speaker_id', "
                                              "got 'u2'") as e:
        read_utt2spk(bad)
    assert one_line(e)
    bad.write_text("u1 a\nu2 b\n")
    with pytest.raises(ClipConfigError, match="training utterance 'u3' .and 1 more. has no "
                                              "speaker") as e:
        read_utt2spk(bad, utt_ids=["u1", "u3", "u4"])
    assert one_line(e)
    assert read_utt2spk(bad, utt_ids=["u2"]) == {"u2": "b"}
    with pytest.raises(ClipConfigError, match="shape file .*: no such file"):
        read_utt_lengths(tmp_path / "speech_shape")
