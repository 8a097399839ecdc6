"""Speaker cores (`clip_conf: {core_by: speaker}`): each core is one speaker's utterances.

Per-core clipping bounds each core's contribution to a step by C.  With cores built from
one speaker each, and never two cores of one speaker in a step, C bounds each *speaker's*
influence on a step: what matters for canaries, which are single speakers inserted 1..16
times.

The plan of an epoch (`SpeakerCoreSampler.generate(seed)`, the same on every rank):

1. Each speaker's utterances are shuffled and cut into *chunks* of at most
   `utts_per_core` utterances; a speaker with fewer utterances gives a smaller chunk (a
   single-utterance speaker gives a one-utterance core: never dropped for its size).
2. The chunks are shuffled and grouped greedily into optimizer steps of
   S = accum_grad × world_size × num_cores chunks of pairwise different speakers
   (`plan_steps`).
3. Step layout: the cores of a step are numbered 0..S-1 in the order the greedy pass took
   them; micro-batch `a` (0 <= a < accum_grad) of rank `r` holds the `num_cores` cores
   at positions (a·world_size + r)·num_cores ... + num_cores - 1 (`rank_micro_batches`),
   each core's utterances consecutive and sorted by length (longest first, as ESPnet's
   samplers sort a batch), core after core.  The trainer cuts a micro-batch back into its
   cores at the speaker changes (`espnet_pcc.core.cores.split_by_speaker`).

Every rank gets accum_grad micro-batches per step, so all ranks get the same number of
micro-batches, and an epoch ends on a step boundary.  The step that cannot be filled at
the end of the epoch is dropped (usually under one step's worth of utterances; more when
a few speakers hold a large share of the data: see `plan_steps`); the next epoch's plan
is drawn afresh, so which utterances are left out changes from epoch to epoch.
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Deque, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, \
    Tuple, Union

import numpy as np
from torch.utils.data import Sampler

from espnet_pcc.core.clip_config import ClipConfigError

PathLike = Union[str, Path]
MicroBatch = Tuple[str, ...]


@dataclass(frozen=True)
class Chunk:
    """One core: up to `utts_per_core` utterances of one speaker, longest first."""

    speaker: str
    utts: Tuple[str, ...]


# --------------------------------------------------------------------------- files
def read_utt2spk(path: PathLike, utt_ids: Optional[Iterable[str]] = None) -> Dict[str, str]:
    """Reads a Kaldi utt2spk file (lines `utt_id speaker_id`).

    Args:
        path: the utt2spk file.
        utt_ids: the training set's utterances; each must have a speaker.

    Returns:
        utterance id -> speaker id (only `utt_ids` when given: what training needs).

    Raises:
        ClipConfigError: the file is missing or malformed (a line without exactly two
            fields, a duplicate utterance), or an utterance of `utt_ids` has no speaker.
    """
    speaker_of: Dict[str, str] = {}
    for n, fields in _lines(path, "clip_conf.utt2spk"):
        if len(fields) != 2:
            raise ClipConfigError(f"clip_conf.utt2spk {path}:{n}: expected 'utt_id speaker_id', "
                                  f"got {' '.join(fields)!r}")
        utt, speaker = fields
        if utt in speaker_of:
            raise ClipConfigError(f"clip_conf.utt2spk {path}:{n}: duplicate utterance {utt!r}")
        speaker_of[utt] = speaker
    if utt_ids is None:
        return speaker_of
    utt_ids = list(utt_ids)
    missing = [utt for utt in utt_ids if utt not in speaker_of]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ClipConfigError(f"clip_conf.utt2spk {path}: training utterance {missing[0]!r}"
                              f"{more} has no speaker")
    return {utt: speaker_of[utt] for utt in utt_ids}


def read_utt_lengths(shape_file: PathLike) -> Dict[str, int]:
    """Reads an ESPnet shape file (`utt_id length[,dim...]`): utterance id -> length.

    Raises:
        ClipConfigError: the file is missing, empty or malformed.
    """
    lengths: Dict[str, int] = {}
    for n, fields in _lines(shape_file, "shape file"):
        try:
            if len(fields) != 2:
                raise ValueError
            lengths[fields[0]] = int(fields[1].split(",")[0])
        except ValueError:
            raise ClipConfigError(f"shape file {shape_file}:{n}: expected 'utt_id length', "
                                  f"got {' '.join(fields)!r}") from None
    if not lengths:
        raise ClipConfigError(f"shape file {shape_file} lists no utterance")
    return lengths


def _lines(path: PathLike, what: str) -> Iterator[Tuple[int, List[str]]]:
    """(line number, whitespace-split fields) of each non-blank line."""
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                fields = line.split()
                if fields:
                    yield n, fields
    except FileNotFoundError:
        raise ClipConfigError(f"{what} {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ClipConfigError(f"{what} {path}: cannot read it ({e})") from None


def utt2spk_path(utt2spk: Optional[str],
                 train_data_path_and_name_and_type: Sequence[Sequence[str]]) -> Path:
    """clip_conf.utt2spk, or (None) the `utt2spk` beside the first training data file."""
    if utt2spk is not None:
        return Path(utt2spk)
    if not train_data_path_and_name_and_type:
        raise ClipConfigError("clip_conf.core_by=speaker: set clip_conf.utt2spk, or give "
                              "--train_data_path_and_name_and_type (utt2spk is read beside it)")
    return Path(train_data_path_and_name_and_type[0][0]).parent / "utt2spk"


def utts_per_core(batch_size: int, world_size: int, num_cores: int) -> int:
    """Most utterances in one speaker core: ESPnet's `batch_size` is global (summed over
    ranks), so a micro-batch of one rank holds batch_size / world_size utterances, in
    `num_cores` cores; at least 1."""
    return max(1, batch_size // (world_size * num_cores))


# --------------------------------------------------------------------------- the plan
def check_enough_speakers(num_speakers: int, num_cores: int, accum_grad: int,
                          world_size: int) -> None:
    """Raises ClipConfigError when a step's cores cannot all have different speakers."""
    cores_per_step = accum_grad * world_size * num_cores
    if num_speakers < cores_per_step:
        raise ClipConfigError(
            f"clip_conf.core_by=speaker: a step has {cores_per_step} cores of different "
            f"speakers (accum_grad {accum_grad} x {world_size} rank(s) x num_cores "
            f"{num_cores}), but the training set has {num_speakers} speakers")


def speaker_chunks(utt_lengths: Mapping[str, int], speaker_of: Mapping[str, str],
                   utts_per_core: int, rng: np.random.RandomState) -> List[Chunk]:
    """Every utterance in exactly one chunk: each speaker's utterances shuffled and cut
    into chunks of at most `utts_per_core`, each chunk sorted longest first; the chunks
    shuffled."""
    by_speaker: Dict[str, List[str]] = {}
    for utt in sorted(utt_lengths):  # sorted: the draws must not depend on file order
        by_speaker.setdefault(speaker_of[utt], []).append(utt)
    chunks = []
    for speaker in sorted(by_speaker):
        utts = by_speaker[speaker]
        utts = [utts[i] for i in rng.permutation(len(utts))]
        for start in range(0, len(utts), utts_per_core):
            part = sorted(utts[start:start + utts_per_core], key=lambda u: -utt_lengths[u])
            chunks.append(Chunk(speaker, tuple(part)))
    return [chunks[i] for i in rng.permutation(len(chunks))]


def plan_steps(chunks: Sequence[Chunk],
               cores_per_step: int) -> Tuple[List[List[Chunk]], List[Chunk]]:
    """Groups chunks into steps of `cores_per_step` chunks of pairwise different speakers.

    Greedy, in the order of `chunks`: a step takes the earliest chunk not yet used whose
    speaker is not yet in the step (a chunk skipped for its speaker waits, in order, for
    the next step).  When the chunks run out, the step being filled is dropped with every
    chunk still waiting.  What is dropped belongs to fewer than `cores_per_step` speakers
    (any other speaker would have gone into the step): usually just the unfilled step,
    fewer than `cores_per_step` chunks, i.e. under one step's worth of utterances
    (< accum_grad x batch_size); more when a few speakers hold many chunks, as a speaker
    with more chunks than the epoch has steps (over about 1/cores_per_step of all
    chunks) always loses the surplus: a step holds at most one core of a speaker.

    Returns:
        (steps, dropped chunks)
    """
    steps: List[List[Chunk]] = []
    waiting: Deque[Chunk] = deque()  # skipped for their speaker; earlier than chunks[next_:]
    next_ = 0
    while True:
        step: List[Chunk] = []
        speakers = set()
        skipped: List[Chunk] = []
        while len(step) < cores_per_step:
            if waiting:
                chunk = waiting.popleft()
            elif next_ < len(chunks):
                chunk, next_ = chunks[next_], next_ + 1
            else:
                break
            if chunk.speaker in speakers:
                skipped.append(chunk)
            else:
                step.append(chunk)
                speakers.add(chunk.speaker)
        waiting.extendleft(reversed(skipped))  # they came before the rest of `waiting`
        if len(step) < cores_per_step:  # the chunks ran out
            return steps, step + list(waiting)
        steps.append(step)


def rank_micro_batches(steps: Sequence[Sequence[Chunk]], num_cores: int, accum_grad: int,
                       world_size: int, rank: int) -> List[MicroBatch]:
    """This rank's micro-batches: of each step, for a in 0..accum_grad-1, the cores at
    positions (a·world_size + rank)·num_cores ... + num_cores - 1, utterances core after
    core."""
    batches = []
    for step in steps:
        for a in range(accum_grad):
            first = (a * world_size + rank) * num_cores
            batches.append(tuple(utt for chunk in step[first:first + num_cores]
                                 for utt in chunk.utts))
    return batches


class SpeakerCoreSampler(Sampler):
    """This rank's micro-batches for core_by speaker (see the module docstring).

    ESPnet's `SequenceIterFactory` calls `generate(epoch + seed)` each epoch; build it
    with shuffle=False (the plan is shuffled here, and ESPnet's batch shuffling would
    move micro-batches across steps).

    Args:
        utt_lengths: the training utterances -> length (the first column of a shape
            file), which sorts each core longest first.
        speaker_of: utterance id -> speaker id; every utterance must have one.
        num_cores: speaker cores per micro-batch.
        utts_per_core: most utterances in one core (see `utts_per_core`).
        accum_grad: micro-batches per optimizer step and rank.
        world_size, rank: the DDP ranks and this one.

    Raises:
        ClipConfigError: the training set has fewer speakers than a step has cores.
    """

    def __init__(self, utt_lengths: Mapping[str, int], speaker_of: Mapping[str, str],
                 num_cores: int, utts_per_core: int, accum_grad: int = 1,
                 world_size: int = 1, rank: int = 0):
        for name, value in (("num_cores", num_cores), ("utts_per_core", utts_per_core),
                            ("accum_grad", accum_grad), ("world_size", world_size)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        missing = [utt for utt in utt_lengths if utt not in speaker_of]
        if missing:
            raise ClipConfigError(f"training utterance {missing[0]!r} has no speaker in utt2spk")
        self.utt_lengths = dict(utt_lengths)
        self.speaker_of = {utt: speaker_of[utt] for utt in self.utt_lengths}
        self.num_cores = num_cores
        self.utts_per_core = utts_per_core
        self.accum_grad = accum_grad
        self.world_size = world_size
        self.rank = rank
        self.cores_per_step = accum_grad * world_size * num_cores
        check_enough_speakers(len(set(self.speaker_of.values())), num_cores, accum_grad,
                              world_size)
        self._len: Optional[int] = None

    def generate(self, seed: int) -> List[MicroBatch]:
        """This rank's micro-batches of the epoch planned from `seed`."""
        rng = np.random.RandomState(seed)
        chunks = speaker_chunks(self.utt_lengths, self.speaker_of, self.utts_per_core, rng)
        steps, dropped = plan_steps(chunks, self.cores_per_step)
        if dropped:
            logging.info(f"speaker cores (seed {seed}): {len(steps)} steps; left out this "
                         f"epoch: {sum(len(c.utts) for c in dropped)} utterance(s) of "
                         f"{len({c.speaker for c in dropped})} speaker(s)")
        return rank_micro_batches(steps, self.num_cores, self.accum_grad, self.world_size,
                                  self.rank)

    def __len__(self) -> int:
        """Micro-batches of the plan for seed 0 (another seed's plan can drop a different
        number of chunks at the end, so its length can differ by a few steps)."""
        if self._len is None:
            self._len = len(self.generate(0))
        return self._len

    def __iter__(self) -> Iterator[MicroBatch]:
        return iter(self.generate(0))

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(N-utterances={len(self.utt_lengths)}, "
                f"N-speakers={len(set(self.speaker_of.values()))}, "
                f"num_cores={self.num_cores}, utts_per_core={self.utts_per_core}, "
                f"accum_grad={self.accum_grad}, world_size={self.world_size}, "
                f"rank={self.rank})")


__all__ = ["Chunk", "SpeakerCoreSampler", "check_enough_speakers", "plan_steps",
           "rank_micro_batches", "read_utt2spk", "read_utt_lengths", "speaker_chunks",
           "utt2spk_path", "utts_per_core"]
