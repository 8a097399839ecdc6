"""WER/CER scoring with jiwer, in the numbers ESPnet's sclite tables show.

For each decoded set we write ``<decode_dir>/<set>/score_{wer,cer}/`` holding ``ref.trn``,
``hyp.trn`` (sclite's trn format, so sclite can re-score them) and ``result.json``::

    {"Snt": sentences, "Wrd": reference tokens, "Corr"/"Sub"/"Del"/"Ins"/"Err"/"S.Err": percent}

``Err = (Sub + Del + Ins) / Wrd``; ``S.Err`` = sentences with any error. CER tokens are the
characters with the space written as ``<space>`` (ESPnet's convention), so it counts too.
``result.json`` is written by :func:`score_dir` and read by :func:`read_result_json` alone
(at :func:`result_json_path`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Tuple

from espnet_pcc import fileio, kaldi_dir, markdown
from espnet_pcc.errors import UserError

COLUMNS = ("Snt", "Wrd", "Corr", "Sub", "Del", "Ins", "Err", "S.Err")
ERR = "Err"  # the error rate, in percent
UNITS = ("wer", "cer")
RESULT_JSON = "result.json"


def result_json_path(set_dir: Path, unit: str) -> Path:
    """``<decode_dir>/<set>/score_<unit>/result.json``."""
    return Path(set_dir) / f"score_{unit}" / RESULT_JSON


def read_result_json(path: Path) -> Dict[str, float]:
    """One ``result.json`` (:data:`COLUMNS`); a missing one is a one-line error."""
    if not Path(path).is_file():
        raise UserError(f"{path} missing (produced by stage 7, scoring)")
    return json.loads(Path(path).read_text())


class ScoringError(UserError):
    """Missing or mismatched reference / hypothesis files."""


def tokens(text: str, unit: str) -> List[str]:
    if unit == "wer":
        return text.split()
    return ["<space>" if c == " " else c for c in " ".join(text.split())]


def score(refs: Dict[str, str], hyps: Dict[str, str], unit: str = "wer") -> Dict[str, float]:
    """Error rates of ``hyps`` against ``refs`` (same keys; a missing hypothesis counts as empty)."""
    keys = [k for k in sorted(refs, key=kaldi_dir.sort_key) if tokens(refs[k], unit)]
    if not keys:
        raise ScoringError("no non-empty reference to score against")
    import jiwer  # here: a reader of result.json needs no aligner

    ref = [" ".join(tokens(refs[k], unit)) for k in keys]
    hyp = [" ".join(tokens(hyps.get(k, ""), unit)) for k in keys]
    out = jiwer.process_words(ref, hyp)
    n = sum(len(r.split()) for r in ref)
    sent_err = sum(any(c.type != "equal" for c in al) for al in out.alignments)
    pct = lambda x: round(100.0 * x / n, 1)  # noqa: E731 - sclite prints one decimal
    err = out.substitutions + out.deletions + out.insertions
    return {
        "Snt": len(keys), "Wrd": n, "Corr": pct(out.hits), "Sub": pct(out.substitutions),
        "Del": pct(out.deletions), "Ins": pct(out.insertions), "Err": pct(err),
        "S.Err": round(100.0 * sent_err / len(keys), 1),
    }


def _write_trn(path: Path, table: Dict[str, str], unit: str, utt2spk: Dict[str, str]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for k in sorted(table, key=kaldi_dir.sort_key):
            f.write(f"{' '.join(tokens(table[k], unit))}\t({utt2spk.get(k, k)}-{k})\n")


def score_dir(data_dir: Path, hyp_text: Path, out_dir: Path) -> Dict[str, Dict[str, float]]:
    """Score ``hyp_text`` (Kaldi text) against ``data_dir/text``; write score_wer/, score_cer/."""
    data_dir, hyp_text, out_dir = Path(data_dir), Path(hyp_text), Path(out_dir)
    if not (data_dir / "text").is_file():
        raise ScoringError(f"reference {data_dir}/text missing (produced by stage 1)")
    if not hyp_text.is_file():
        raise ScoringError(f"hypothesis {hyp_text} missing (produced by stage 6)")
    refs = dict(kaldi_dir.read_table(data_dir / "text", allow_empty_value=True))
    hyps = dict(kaldi_dir.read_table(hyp_text, allow_empty_value=True))
    extra = set(hyps) - set(refs)
    if extra:
        raise ScoringError(f"{hyp_text} has {len(extra)} utterances not in {data_dir}, e.g. {sorted(extra)[0]}")
    missing = set(refs) - set(hyps)
    if missing:
        raise ScoringError(f"{hyp_text} lacks {len(missing)} utterances of {data_dir}, e.g. "
                           f"{sorted(missing)[0]} (decoding incomplete: rerun stage 6)")
    utt2spk = dict(kaldi_dir.read_table(data_dir / "utt2spk"))
    results = {}
    for unit in UNITS:
        path = result_json_path(out_dir, unit)
        d = path.parent
        d.mkdir(parents=True, exist_ok=True)
        _write_trn(d / "ref.trn", refs, unit, utt2spk)
        _write_trn(d / "hyp.trn", hyps, unit, utt2spk)
        results[unit] = score(refs, hyps, unit)
        fileio.atomic_write_json(path, results[unit])
    return results


def markdown_table(rows: List[Tuple[str, Dict[str, float]]]) -> str:
    """``|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|`` rows, as in ESPnet's RESULTS.md."""
    return markdown.table(["dataset", *COLUMNS], [[name, *(r[c] for c in COLUMNS)]
                                                  for name, r in rows])
