"""The second study's raw data: what every table and plot of its report is computed from.

Three tab-separated files in one directory (committed beside the report), each with a header
line, written by :func:`write_raw` and read by :func:`read_raw` alone:

``runs.tsv``      one row per training run and epoch (``epoch`` 1..N, or ``final`` for the
                  averaged model that was decoded on the test sets):
                  arm, sampler, seed, tag, epoch, valid_loss (NaN for final), reference_cer
                  (mean CER of the decoded never-inserted references), num_references
                  (|R| of the exposure), then one ``wer_<set>`` / ``cer_<set>`` pair per test
                  set (final rows only; NaN elsewhere)
``canaries.tsv``  one row per run, epoch and canary: arm, sampler, seed, epoch, canary,
                  repeat_count, score (per-token NLL), rank (among the references),
                  rank_exposure, extrapolated_exposure, cer
``meta.json``     {"format", "test_sets", "made_by", "notes"}: the layout version, the test
                  sets of the ``wer_``/``cer_`` columns, the commands that wrote the files, and
                  how the runs were made (a paragraph per export, in the report as written)

``colocation.json`` (optional; :func:`write_colocation` / :func:`read_colocation`)
                  {"format", "num_cores", "samplers": {sampler: {"pairs", "same_batch",
                  "same_core"}}}: how often two copies of a canary share a batch and a core

Values are written with Python's ``repr`` (round-trip exact); NaN and inf as ``nan``/``inf``.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import astuple, dataclass, field, fields
from pathlib import Path
from typing import Dict, List, Sequence

from espnet_pcc import fileio
from espnet_pcc.errors import UserError

FORMAT = "espnet-pcc-study-raw/1"
RUNS_TSV, CANARIES_TSV, META_JSON = "runs.tsv", "canaries.tsv", "meta.json"
FINAL = "final"


class RawDataError(UserError):
    """Raw study data that is missing, of another layout, or inconsistent."""


@dataclass(frozen=True)
class RunEpoch:
    arm: str
    sampler: str
    seed: int
    tag: str
    epoch: str  # "1".."N" or FINAL
    valid_loss: float
    reference_cer: float
    num_references: int
    #: test set -> (WER %, CER %) of the final model; empty for epoch rows.
    errors: Dict[str, tuple] = field(default_factory=dict)


@dataclass(frozen=True)
class CanaryScore:
    arm: str
    sampler: str
    seed: int
    epoch: str
    canary: str
    repeat_count: int
    score: float
    rank: int
    rank_exposure: float
    extrapolated_exposure: float
    cer: float


@dataclass
class RawStudy:
    runs: List[RunEpoch]
    canaries: List[CanaryScore]
    test_sets: List[str]
    made_by: str = ""
    notes: str = ""  # provenance: how the runs were made (the report prints it as it stands)


_CANARY_COLUMNS = [f.name for f in fields(CanaryScore)]
_RUN_COLUMNS = ["arm", "sampler", "seed", "tag", "epoch", "valid_loss", "reference_cer",
                "num_references"]


def _cell(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _tsv(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    return "".join("\t".join(map(_cell, row)) + "\n" for row in [list(header), *rows])


def write_raw(directory: Path, study: RawStudy) -> None:
    """Writes the three files atomically (each complete or absent)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    header = _RUN_COLUMNS + [f"{m}_{s}" for s in study.test_sets for m in ("wer", "cer")]
    rows = []
    for r in study.runs:
        unknown = sorted(set(r.errors) - set(study.test_sets))
        if unknown:
            raise RawDataError(f"run {r.tag}: test set {unknown[0]} not in {study.test_sets}")
        errors = [v for s in study.test_sets for v in r.errors.get(s, (math.nan, math.nan))]
        rows.append([r.arm, r.sampler, r.seed, r.tag, r.epoch, float(r.valid_loss),
                     float(r.reference_cer), r.num_references, *map(float, errors)])
    fileio.atomic_write_text(directory / RUNS_TSV, _tsv(header, rows))
    fileio.atomic_write_text(directory / CANARIES_TSV,
                             _tsv(_CANARY_COLUMNS, [astuple(c) for c in study.canaries]))
    fileio.atomic_write_json(directory / META_JSON, {
        "format": FORMAT, "test_sets": list(study.test_sets), "made_by": study.made_by,
        "notes": study.notes})


def _rows(path: Path) -> List[Dict[str, str]]:
    if not path.is_file():
        raise RawDataError(f"{path} missing (write it with espnet_pcc.bin.study_export)")
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def read_raw(directory: Path) -> RawStudy:
    """The study in ``directory``; a missing file or another layout is a one-line error."""
    directory = Path(directory)
    meta_path = directory / META_JSON
    if not meta_path.is_file():
        raise RawDataError(f"{meta_path} missing (write it with espnet_pcc.bin.study_export)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise RawDataError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    test_sets = list(meta["test_sets"])
    try:
        runs = [RunEpoch(arm=r["arm"], sampler=r["sampler"], seed=int(r["seed"]), tag=r["tag"],
                         epoch=r["epoch"], valid_loss=float(r["valid_loss"]),
                         reference_cer=float(r["reference_cer"]),
                         num_references=int(r["num_references"]),
                         errors={s: (float(r[f"wer_{s}"]), float(r[f"cer_{s}"]))
                                 for s in test_sets if r["epoch"] == FINAL})
                for r in _rows(directory / RUNS_TSV)]
        canaries = [CanaryScore(arm=r["arm"], sampler=r["sampler"], seed=int(r["seed"]),
                                epoch=r["epoch"], canary=r["canary"],
                                repeat_count=int(r["repeat_count"]), score=float(r["score"]),
                                rank=int(r["rank"]), rank_exposure=float(r["rank_exposure"]),
                                extrapolated_exposure=float(r["extrapolated_exposure"]),
                                cer=float(r["cer"]))
                    for r in _rows(directory / CANARIES_TSV)]
    except (KeyError, ValueError) as e:
        raise RawDataError(f"{directory}: malformed raw data ({e})") from None
    return RawStudy(runs=runs, canaries=canaries, test_sets=test_sets,
                    made_by=meta.get("made_by", ""), notes=meta.get("notes", ""))


def merge(old: RawStudy, new: RawStudy, where: Path) -> RawStudy:
    """``new``'s runs in place of ``old``'s runs of the same arm, sampler and seed, ``old``'s
    other runs kept (another sampler's arms, or a study's earlier seed blocks), with both
    exports' commands and notes (``where``: the directory, for the error)."""
    if old.test_sets != new.test_sets:
        raise RawDataError(f"{where}: test sets {old.test_sets}, these runs {new.test_sets}")
    replaced = {(r.arm, r.sampler, r.seed) for r in new.runs}
    return RawStudy(
        runs=[r for r in old.runs if (r.arm, r.sampler, r.seed) not in replaced] + new.runs,
        canaries=[c for c in old.canaries if (c.arm, c.sampler, c.seed) not in replaced]
        + new.canaries,
        test_sets=new.test_sets, made_by=f"{old.made_by}\n{new.made_by}",
        notes=" ".join(x for x in (old.notes, new.notes) if x))


COLOCATION_JSON = "colocation.json"


def write_colocation(directory: Path, num_cores: int, by_sampler: Dict[str, dict]) -> None:
    fileio.atomic_write_json(Path(directory) / COLOCATION_JSON, {
        "format": FORMAT, "num_cores": num_cores, "samplers": by_sampler})


def read_colocation(directory: Path):
    """(num_cores, {sampler: {"pairs", "same_batch", "same_core"}}), or None without the file."""
    path = Path(directory) / COLOCATION_JSON
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT:
        raise RawDataError(f"{path}: format {data.get('format')!r}, expected {FORMAT!r}")
    return int(data["num_cores"]), dict(data["samplers"])


__all__ = ["CANARIES_TSV", "COLOCATION_JSON", "FINAL", "FORMAT", "META_JSON", "RUNS_TSV",
           "CanaryScore", "RawDataError", "RawStudy", "RunEpoch", "merge", "read_colocation", "read_raw",
           "write_colocation", "write_raw"]
