"""Poisson sampling of privacy units into hashed cores (`--batch_sampler poisson`).

The sampler the accountant (`espnet_pcc.core.accounting`) assumes, in the form of Opacus'
`UniformWithReplacementSampler` / `DPDataLoader`, extended by the two things per-core
clipping and speech need:

- **Units.**  What one step samples is a *privacy unit*: an utterance; a recording (with
  speed perturbation, ESPnet's ``sp<factor>-`` copies of one recording are one unit, so the
  guarantee is for the recording, not for a group of its copies); or, with
  ``clip_conf.core_by: speaker``, a speaker, of whom at most `max_per_unit` utterances (a
  fresh random choice each step) go in.
- **Hashed cores.**  Each step, every unit joins independently with probability q
  (`PoissonPlan.sampling_rate`), and each joining unit goes into one of the step's
  S = world_size × accum_grad × cores_per_micro_batch core slots, drawn uniformly and
  independently of every other unit.  Adding or removing a unit then changes one core and
  nothing else: no other unit moves (position cores re-cut every later shard), which is what
  the sensitivity of `espnet_pcc.core.accounting.sensitivity` rests on.

The randomness is a PCG64 stream of (key, epoch seed, step): the key is the run's secret
noise seed when there is noise (sampling amplifies privacy only while the batches are
secret), else --seed.

What the iterator yields, on rank r: for every step, accum_grad micro-batches, each of
`cores_per_micro_batch` items, item j of micro-batch a being slot (a·world_size + r)·J + j:
with per_core, adaptive_per_core and the unclipped control one item is one core (J =
num_cores; the trainer does not split it); with per_example (J = 1) one item is the
micro-batch, which the trainer splits per utterance.  An empty slot is the one-key batch
`(EMPTY,)`: `WithEmptyItems` loads a stand-in utterance for it, the trainer recognises the
key, adds no core and keeps the ranks in step.  Every rank has the same number of items and
an epoch is `steps_per_epoch` = round(1/q) steps (one expected pass over the units).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

import numpy as np
from torch.utils.data import Sampler

from espnet_pcc.core.clip_config import ClipConfigError
from espnet_pcc.core.data_loader.units import recording_of

#: The key of an empty item (no utterance of the step landed in its slot).
EMPTY = "<pcc-empty-core>"
_STREAM = 0x504F4953  # "POIS": the sampler's stream, apart from the noise's

MicroBatch = Tuple[str, ...]


def group_units(utt_ids: Iterable[str],
                speaker_of: Optional[Mapping[str, str]] = None) -> Dict[str, List[str]]:
    """unit -> its training utterances (sorted): the recording of each utterance, or with
    `speaker_of` its speaker (a speed-perturbed speaker id counts as the speaker)."""
    units: Dict[str, List[str]] = defaultdict(list)
    for utt in utt_ids:
        unit = recording_of(speaker_of[utt]) if speaker_of is not None else recording_of(utt)
        units[unit].append(utt)
    return {u: sorted(v) for u, v in sorted(units.items())}


def unit_kind(units: Mapping[str, List[str]], by_speaker: bool) -> str:
    """'speaker', 'recording' (a unit holds speed-perturbed copies) or 'utterance'."""
    if by_speaker:
        return "speaker"
    return "recording" if any(len(v) > 1 for v in units.values()) else "utterance"


@dataclass(frozen=True)
class PoissonPlan:
    """The numbers a Poisson-sampled run is built from (and accounted with).

    units: unit -> its utterances.  kind: what a unit is (`unit_kind`).
    sampling_rate: q, the probability that a unit joins a step.
    max_per_unit: utterances of a unit in one step at most (speakers; else all of them).
    cores_per_micro_batch: J, slots (items) per micro-batch.  accum_grad, world_size: as run.
    """

    units: Mapping[str, List[str]]
    kind: str
    sampling_rate: float
    max_per_unit: int
    cores_per_micro_batch: int
    accum_grad: int
    world_size: int

    @property
    def num_units(self) -> int:
        return len(self.units)

    @property
    def slots_per_step(self) -> int:
        """S: the core slots of one step over all ranks."""
        return self.world_size * self.accum_grad * self.cores_per_micro_batch

    @property
    def steps_per_epoch(self) -> int:
        """round(1/q) steps: one expected pass over the units."""
        return max(1, round(1.0 / self.sampling_rate))

    @property
    def expected_utterances_per_step(self) -> float:
        return self.sampling_rate * sum(min(len(v), self.max_per_unit)
                                        for v in self.units.values())

    def describe(self) -> str:
        return (f"Poisson sampling of {self.num_units} {self.kind}s, q = {self.sampling_rate:.6g} "
                f"({self.expected_utterances_per_step:.1f} utterances per step expected), "
                f"{self.slots_per_step} hashed core slots per step, "
                f"{self.steps_per_epoch} steps per epoch")


def make_plan(utt_ids: Iterable[str], batch_size: int, *, cores_per_micro_batch: int,
              accum_grad: int, world_size: int,
              speaker_of: Optional[Mapping[str, str]] = None) -> PoissonPlan:
    """The plan of a run: q from the data, never from the iterator's length.

    Utterance and recording units: q = batch_size / (training utterances), so a step holds
    batch_size utterances in expectation (ESPnet's --batch_size, over all ranks).  Speaker
    units: one speaker per core slot in expectation, q = S / speakers, each bringing at most
    max(1, batch_size // S) of its utterances.

    Raises:
        ClipConfigError: q would exceed 1 (the batch is larger than the data, or there are
            fewer speakers than core slots per step).
    """
    units = group_units(utt_ids, speaker_of)
    if not units:
        raise ClipConfigError("--batch_sampler poisson: the training set is empty")
    slots = world_size * accum_grad * cores_per_micro_batch
    num_utts = sum(len(v) for v in units.values())
    if speaker_of is not None:
        q, per_unit = slots / len(units), max(1, batch_size // slots)
        if q > 1:
            raise ClipConfigError(
                f"--batch_sampler poisson with core_by speaker: {len(units)} speakers for "
                f"{slots} core slots per step (ranks x accum_grad x num_cores); lower "
                "num_cores or accum_grad")
    else:
        q, per_unit = batch_size / num_utts, max(len(v) for v in units.values())
        if q > 1:
            raise ClipConfigError(f"--batch_sampler poisson: --batch_size {batch_size} is "
                                  f"larger than the {num_utts} training utterances")
    return PoissonPlan(units, unit_kind(units, speaker_of is not None), q, per_unit,
                       cores_per_micro_batch, accum_grad, world_size)


def sample_step(plan: PoissonPlan, unit_ids: List[str], rng: np.random.Generator
                ) -> List[List[str]]:
    """One step: the utterances of each of its S slots.

    Each unit joins with probability q, independently (a Binomial(N, q) count of units
    chosen uniformly without replacement is the same distribution, drawn in O(count)), and
    goes into a uniform slot drawn for it alone.
    """
    count = rng.binomial(len(unit_ids), plan.sampling_rate)
    chosen = np.sort(rng.choice(len(unit_ids), size=count, replace=False))
    slots: List[List[str]] = [[] for _ in range(plan.slots_per_step)]
    for index, slot in zip(chosen, rng.integers(0, plan.slots_per_step, size=count)):
        utts = plan.units[unit_ids[index]]
        if len(utts) > plan.max_per_unit:
            utts = [utts[i] for i in sorted(rng.choice(len(utts), plan.max_per_unit,
                                                       replace=False))]
        slots[slot].extend(utts)
    return slots


class PoissonCoreSampler(Sampler):
    """This rank's items of an epoch (module docstring), drawn by `generate(seed)`.

    Args:
        plan: the run's `PoissonPlan`.
        key: returns the sampler's key when an epoch is drawn (the run's secret noise seed,
            which `--resume` restores from the checkpoint; or --seed without noise).
        rank: this rank.
        utt_lengths: utterance -> length, to order each item longest first (as ESPnet's
            samplers sort a batch).
    """

    def __init__(self, plan: PoissonPlan, key: Callable[[], int], rank: int = 0,
                 utt_lengths: Optional[Mapping[str, int]] = None):
        if not 0 <= rank < plan.world_size:
            raise ValueError(f"rank must be in [0, {plan.world_size}), got {rank}")
        self.plan = plan
        self.key = key
        self.rank = rank
        self.utt_lengths = utt_lengths or {}
        self._unit_ids = list(plan.units)

    def generate(self, seed: int) -> List[MicroBatch]:
        plan, items = self.plan, []
        J = plan.cores_per_micro_batch
        for step in range(plan.steps_per_epoch):
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(
                int(self.key()), spawn_key=(_STREAM, int(seed), step))))
            slots = sample_step(plan, self._unit_ids, rng)
            for a in range(plan.accum_grad):
                first = (a * plan.world_size + self.rank) * J
                for utts in slots[first:first + J]:
                    items.append(tuple(sorted(utts, key=lambda u: -self.utt_lengths.get(u, 0)))
                                 if utts else (EMPTY,))
        return items

    def __len__(self) -> int:
        return self.plan.steps_per_epoch * self.plan.accum_grad * self.plan.cores_per_micro_batch

    def __iter__(self) -> Iterator[MicroBatch]:
        return iter(self.generate(0))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.plan.describe()}, rank={self.rank})"


class WithEmptyItems:
    """ESPnet's training dataset, also answering the `EMPTY` key: with a stand-in utterance's
    data under the id `EMPTY` (so that the batch collates like any other; the trainer
    recognises the id and adds no core)."""

    def __init__(self, dataset: Any, stand_in: str):
        self.dataset = dataset
        self.stand_in = stand_in

    def __getitem__(self, uid: str):
        if uid == EMPTY:
            _, data = self.dataset[self.stand_in]
            return EMPTY, data
        return self.dataset[uid]

    def __getattr__(self, name: str):
        # Only for what the wrapper lacks, once it has its dataset: pickle and copy build an
        # empty instance and look up __setstate__ and the like on it first, which must then
        # be missing (AttributeError), not a KeyError (DataLoader workers under spawn).
        dataset = self.__dict__.get("dataset")
        if dataset is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(dataset, name)

    def __repr__(self) -> str:
        return repr(self.dataset)


def is_empty(utt_ids) -> bool:
    """Whether a batch is the stand-in of an empty slot."""
    return len(utt_ids) == 1 and utt_ids[0] == EMPTY


__all__ = ["EMPTY", "PoissonCoreSampler", "PoissonPlan", "WithEmptyItems", "group_units",
           "is_empty", "make_plan", "sample_step", "unit_kind"]

