"""Exposure of canaries (Secret Sharer, Carlini et al. 2019) for ESPnet ASR models.

Score
-----
``score(u) = -(1/T) Σ_t log p(y_t | y_<t, x)`` — the per-token negative log-likelihood of the
transcript ``y`` (tokens + ``<eos>``, ``T`` = their number) given the audio ``x``, from the
model's attention decoder, computed per utterance (not batch-averaged, no label smoothing: it is
a likelihood, not the training loss). Lower = more likely = more memorised.

Why the attention decoder and not CTC: canaries are sped up (tempo 1.6); after 4x subsampling
~2 % of such utterances have fewer encoder frames than CTC needs (tokens + repeats), so their CTC
loss is +inf (DESIGN §7) and they would rank as "never memorised" whatever the model learnt. The
attention NLL is finite for every utterance. CTC-only models (no decoder) fall back to the CTC
NLL / #tokens; non-finite scores then rank last and are left out of the skew-normal fit.

Exposure
--------
With ``n`` reference scores ``r_1..r_n`` (never-inserted sequences from the same generator) and a
canary score ``s``:

* rank: ``rank(s) = 1 + #{i : r_i < s}`` — ties go in the canary's favour, as TF-Privacy's
  secret_sharer does (canaries placed before references in a stable sort).
  ``rank_exposure = log2(n + 1) - log2(rank)``: the candidate space is the references plus the
  canary itself (|R| = n + 1), so exposure lies in ``[0, log2(n + 1)]``; rank 1 among 1023
  references is exactly 10 bits, a canary worse than all references has 0 bits, and a random
  (unmemorised) canary has E[exposure] ≈ log2(e) ≈ 1.44 bits. ``include_canary=False`` gives
  TF-Privacy's ``log2(n) - log2(rank)`` instead.
* extrapolated: fit a skew-normal ``(a, loc, scale)`` to the reference scores
  (``scipy.stats.skewnorm.fit``), ``extrapolated_exposure = -log2 CDF(s)`` computed from
  ``logcdf`` so it keeps growing past the rank cap log2(n + 1) for canaries far below every
  reference (it is +inf only when even ``logcdf`` underflows).

Outputs of :func:`score_exposure` (``output_dir``, written atomically)::

    scores.tsv       utt_id  kind(canary|reference)  repeat_count  num_tokens  nll_sum  score
    exposure.tsv     canary_id  repeat_count  score  rank  rank_exposure  extrapolated_exposure  text
    exposure.json    {"canaries": [{"id", "text", "repeat_count", "score", "num_tokens", "rank",
                                    "rank_exposure", "extrapolated_exposure"}, ...]}
    summary.tsv      the table printed to stdout (one row per repeat count)
    summary.json     schema:
      {"format": "espnet-pcc-exposure/1",
       "score": "att_nll" | "ctc_nll",          # which likelihood was used
       "num_references": n, "num_canaries": m,
       "rank_exposure_cap": log2(n + 1),        # max possible rank exposure
       "chance_rank_exposure": E[rank exposure] of an unmemorised canary (≈ 1.44),
       "include_canary": true,
       "skewnorm": {"a", "loc", "scale"},       # fit on the reference scores
       "reference_score": {"mean", "std", "min", "max"},
       "asr_train_config", "asr_model_file", "canary_dir",
       "repeat_counts": [                       # ascending repeat count
          {"repeat_count": c, "num_canaries": k,
           "rank_exposure": {"mean", "std", "max"},          # std: population (ddof=0)
           "extrapolated_exposure": {"mean", "std", "max"},
           "score": {"mean", "std"}}, ...]}

Non-finite numbers are written as JSON ``Infinity``/``NaN`` (Python's json reads them back).
The exposure maths (first half of this module) needs only numpy/scipy; torch and ESPnet are
imported inside the scoring functions.
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from espnet_pcc.errors import UserError

logger = logging.getLogger(__name__)

SUMMARY_FORMAT = "espnet-pcc-exposure/1"
ArrayLike = Union[Sequence[float], np.ndarray]


class ExposureError(UserError):
    """Bad scoring input (too few references, model/config mismatch, missing files)."""


# =========================================================================== exposure maths
def ranks(canary_scores: ArrayLike, reference_scores: ArrayLike) -> np.ndarray:
    """``1 + #{references with a strictly lower score}`` for each canary (ties favour the canary).

    NaN canary scores rank last (n + 1)."""
    refs = np.sort(np.asarray(reference_scores, dtype=np.float64))
    s = np.asarray(canary_scores, dtype=np.float64)
    r = 1 + np.searchsorted(refs, s, side="left")
    return np.where(np.isnan(s), len(refs) + 1, r).astype(np.int64)


def rank_exposure(
    canary_scores: ArrayLike, reference_scores: ArrayLike, include_canary: bool = True
) -> np.ndarray:
    """``log2(|R|) - log2(rank)``, ``|R| = n + 1`` (or ``n`` with ``include_canary=False``)."""
    n = len(reference_scores)
    if n < 1:
        raise ExposureError("need at least one reference score")
    size = n + 1 if include_canary else n
    return np.log2(size) - np.log2(ranks(canary_scores, reference_scores))


def chance_rank_exposure(n: int, include_canary: bool = True) -> float:
    """E[rank exposure] of a canary whose rank is uniform on 1..n+1 (an unmemorised one)."""
    size = n + 1 if include_canary else n
    return float(np.log2(size) - np.mean(np.log2(np.arange(1, n + 2))))


def fit_skewnorm(reference_scores: ArrayLike) -> Tuple[float, float, float]:
    """Maximum-likelihood skew-normal ``(a, loc, scale)`` of the finite reference scores."""
    from scipy.stats import skewnorm

    r = np.asarray(reference_scores, dtype=np.float64)
    r = r[np.isfinite(r)]
    if len(r) < 2:
        raise ExposureError(f"need >= 2 finite reference scores to fit a skew-normal, got {len(r)}")
    if np.ptp(r) == 0:
        raise ExposureError("all reference scores are equal: cannot fit a skew-normal")
    a, loc, scale = skewnorm.fit(r)
    return float(a), float(loc), float(scale)


def extrapolated_exposure(canary_scores: ArrayLike, params: Tuple[float, float, float]) -> np.ndarray:
    """``-log2 CDF_skewnorm(s)``, from logcdf so tiny probabilities keep their precision."""
    from scipy.stats import skewnorm

    s = np.asarray(canary_scores, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return -skewnorm.logcdf(s, *params) / math.log(2.0)


def _stats(x: np.ndarray) -> Dict[str, float]:
    x = np.asarray(x, dtype=np.float64)
    # +inf (logcdf underflow, > ~1000 bits) makes the spread unbounded, not NaN
    std = float(np.std(x)) if np.all(np.isfinite(x)) else float("inf")
    return {"mean": float(np.mean(x)), "std": std, "max": float(np.max(x))}


def compute_exposures(
    canary_scores: Mapping[str, float],
    repeat_counts: Mapping[str, int],
    reference_scores: ArrayLike,
    include_canary: bool = True,
) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    """Per-canary exposures and a per-repeat-count summary (the summary.json body, partial)."""
    refs = np.asarray(reference_scores, dtype=np.float64)
    if len(refs) < 2:
        raise ExposureError(f"need >= 2 references, got {len(refs)}")
    ids = sorted(canary_scores)
    s = np.array([canary_scores[i] for i in ids], dtype=np.float64)
    rk = ranks(s, refs)
    rexp = rank_exposure(s, refs, include_canary)
    params = fit_skewnorm(refs)
    eexp = extrapolated_exposure(s, params)
    per = [
        {"id": i, "repeat_count": int(repeat_counts[i]), "score": float(s[k]), "rank": int(rk[k]),
         "rank_exposure": float(rexp[k]), "extrapolated_exposure": float(eexp[k])}
        for k, i in enumerate(ids)
    ]
    groups = []
    for c in sorted({int(repeat_counts[i]) for i in ids}):
        sel = np.array([repeat_counts[i] == c for i in ids])
        sc = s[sel]
        groups.append({
            "repeat_count": c,
            "num_canaries": int(sel.sum()),
            "rank_exposure": _stats(rexp[sel]),
            "extrapolated_exposure": _stats(eexp[sel]),
            "score": {"mean": float(np.mean(sc)), "std": float(np.std(sc))},
        })
    fin = refs[np.isfinite(refs)]
    summary = {
        "format": SUMMARY_FORMAT,
        "num_references": int(len(refs)),
        "num_canaries": len(ids),
        "include_canary": include_canary,
        "rank_exposure_cap": float(np.log2(len(refs) + (1 if include_canary else 0))),
        "chance_rank_exposure": chance_rank_exposure(len(refs), include_canary),
        "skewnorm": dict(zip(("a", "loc", "scale"), params)),
        "reference_score": {"mean": float(fin.mean()), "std": float(fin.std()),
                            "min": float(fin.min()), "max": float(fin.max()),
                            "num_nonfinite": int(len(refs) - len(fin))},
        "repeat_counts": groups,
    }
    return per, summary


def format_summary(summary: Mapping[str, Any]) -> str:
    """The per-repeat-count table (also written to summary.tsv, tab-separated)."""
    head = ["repeats", "canaries", "rank_exp_mean", "rank_exp_std", "rank_exp_max",
            "extrap_exp_mean", "extrap_exp_std", "extrap_exp_max", "score_mean"]
    rows = [head]
    for g in summary["repeat_counts"]:
        r, e = g["rank_exposure"], g["extrapolated_exposure"]
        rows.append([str(g["repeat_count"]), str(g["num_canaries"])]
                    + [f"{v:.3f}" for v in (r["mean"], r["std"], r["max"], e["mean"], e["std"],
                                            e["max"], g["score"]["mean"])])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
    lines.append(
        f"|R| = {summary['num_references']}  rank-exposure cap = {summary['rank_exposure_cap']:.3f} "
        f"bits  chance = {summary['chance_rank_exposure']:.3f} bits  score = "
        f"{summary.get('score', '?')}"
    )
    return "\n".join(lines)


def summary_tsv(summary: Mapping[str, Any]) -> str:
    head = ["repeat_count", "num_canaries", "rank_exposure_mean", "rank_exposure_std",
            "rank_exposure_max", "extrapolated_exposure_mean", "extrapolated_exposure_std",
            "extrapolated_exposure_max", "score_mean", "score_std"]
    out = ["\t".join(head)]
    for g in summary["repeat_counts"]:
        r, e, s = g["rank_exposure"], g["extrapolated_exposure"], g["score"]
        vals = [g["repeat_count"], g["num_canaries"], r["mean"], r["std"], r["max"], e["mean"],
                e["std"], e["max"], s["mean"], s["std"]]
        out.append("\t".join(str(v) if isinstance(v, int) else f"{v:.6g}" for v in vals))
    return "\n".join(out) + "\n"


# =========================================================================== model loading
def _find_relative(value: str, config_file: Path) -> Optional[str]:
    """``value`` if it exists from the cwd, else the first ``<ancestor of config>/value``."""
    if Path(value).exists():
        return value
    for parent in config_file.resolve().parents:
        if (parent / value).exists():
            return str(parent / value)
    return None


def _resolve_paths(conf: Dict[str, Any], config_file: Path) -> None:
    """config.yaml holds paths relative to the recipe dir (global_mvn stats, BPE model); when
    scoring from elsewhere, look for them relative to the config's ancestors. (The mvn values
    are overwritten by the checkpoint's buffers, but GlobalMVN opens the file when built.)"""
    nconf = conf.get("normalize_conf") or {}
    if conf.get("normalize") == "global_mvn" and nconf.get("stats_file"):
        found = _find_relative(str(nconf["stats_file"]), config_file)
        if found is None:
            raise ExposureError(f"normalize stats_file {nconf['stats_file']!r} from {config_file} not found")
        nconf["stats_file"] = found
    if conf.get("bpemodel"):
        found = _find_relative(str(conf["bpemodel"]), config_file)
        if found is None:
            raise ExposureError(f"bpemodel {conf['bpemodel']!r} from {config_file} not found")
        conf["bpemodel"] = found


def _task_class():
    """espnet_pcc's PCCASRTask when importable (it knows `clip`/`clip_conf`), else ASRTask."""
    try:
        from espnet_pcc.tasks.asr import PCCASRTask

        return PCCASRTask
    except Exception:  # the task is optional for scoring: build_model is ASRTask's
        from espnet2.tasks.asr import ASRTask

        return ASRTask


def load_asr_model(config_file: Union[str, Path], model_file: Union[str, Path], device: str = "cpu"):
    """Build the ESPnet ASR model from ``config.yaml`` and load ``model_file`` strictly.

    Same steps as ``ASRTask.build_model_from_file`` (yaml → Namespace → build_model →
    load_state_dict), but a checkpoint that does not fit the config is a one-line
    :class:`ExposureError` (missing/unexpected keys, first shape mismatch) instead of a silent
    ``strict=False`` load. Extra top-level keys (``clip``, ``clip_conf``) are harmless: build_model
    reads only the keys it knows. Returns ``(model in eval mode, args)``.
    """
    import argparse

    import torch
    import yaml

    config_file, model_file = Path(config_file), Path(model_file)
    for p in (config_file, model_file):
        if not p.is_file():
            raise ExposureError(f"{p} not found")
    with open(config_file, encoding="utf-8") as f:
        conf = yaml.safe_load(f)
    if not isinstance(conf, dict) or "token_list" not in conf:
        raise ExposureError(f"{config_file} is not an ESPnet ASR training config (no token_list)")
    _resolve_paths(conf, config_file)
    args = argparse.Namespace(**conf)
    try:
        model = _task_class().build_model(args)
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise ExposureError(f"cannot build a model from {config_file}: {e}") from e
    try:
        state = torch.load(model_file, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ExposureError(f"cannot read checkpoint {model_file}: {e}") from e
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # trainer checkpoint.pth
    if isinstance(state, dict) and isinstance(state.get("module"), dict):
        state = state["module"]  # deepspeed
    if not isinstance(state, dict):
        raise ExposureError(f"{model_file} is not a model state_dict")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} shape mismatches (e.g. {k}: checkpoint "
                         f"{list(state[k].shape)} vs config {list(own[k].shape)})")
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        raise ExposureError(
            f"checkpoint {model_file} does not match config {config_file}: " + "; ".join(parts)
        )
    model.load_state_dict(state, strict=True)
    model.to(device).eval()
    return model, args


# =========================================================================== scoring
class Scorer:
    """Per-utterance attention (or CTC) NLL of transcripts given audio, batched, no gradient."""

    def __init__(self, model, args, device: str = "cpu", batch_size: int = 32):
        from espnet2.tasks.asr import ASRTask

        self.model, self.args, self.device = model, args, device
        self.batch_size = max(1, int(batch_size))
        args.use_preprocessor = True
        # The training-time text pipeline (cleaner, tokenizer, token→id), without augmentation.
        self.preprocess = ASRTask.build_preprocess_fn(args, train=False)
        self.kind = "att_nll" if getattr(model, "decoder", None) is not None else "ctc_nll"
        if self.kind == "ctc_nll" and getattr(model, "ctc", None) is None:
            raise ExposureError("model has neither an attention decoder nor CTC: cannot score")
        self.unk_id = args.token_list.index("<unk>") if "<unk>" in args.token_list else None
        self.num_unk = 0

    def tokenize(self, utt_id: str, text: str) -> np.ndarray:
        ids = np.asarray(self.preprocess(utt_id, {"text": text})["text"], dtype=np.int64)
        if len(ids) == 0:
            raise ExposureError(f"utterance {utt_id!r} has an empty transcript after tokenisation")
        if self.unk_id is not None:
            self.num_unk += int((ids == self.unk_id).sum())
        return ids

    def _batch_nll(self, speech: List[np.ndarray], tokens: List[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        """(nll_sum, num_target_tokens) for one batch."""
        import torch
        import torch.nn.functional as F
        from espnet.nets.pytorch_backend.nets_utils import pad_list
        from espnet.nets.pytorch_backend.transformer.add_sos_eos import add_sos_eos

        m, dev = self.model, self.device
        x = pad_list([torch.from_numpy(s) for s in speech], 0.0).to(dev)
        xl = torch.tensor([len(s) for s in speech], dtype=torch.long, device=dev)
        ys = pad_list([torch.from_numpy(t) for t in tokens], m.ignore_id).to(dev)
        yl = torch.tensor([len(t) for t in tokens], dtype=torch.long, device=dev)
        enc, enc_l = m.encode(x, xl)
        if isinstance(enc, tuple):  # intermediate CTC outputs
            enc = enc[0]
        if self.kind == "ctc_nll":
            lp = m.ctc.log_softmax(enc).transpose(0, 1)  # (T, B, V)
            nll = F.ctc_loss(lp, ys.clamp(min=0), enc_l, yl, blank=m.blank_id,
                             reduction="none", zero_infinity=False)
            return nll.double().cpu().numpy(), yl.cpu().numpy()
        lang = getattr(m, "lang_token_id", None)
        if lang is not None:  # as _calc_att_loss: the language token is part of the target
            ys = torch.cat([lang.repeat(ys.size(0), 1).to(dev), ys], dim=1)
            yl = yl + 1
        ys_in, ys_out = add_sos_eos(ys, m.sos, m.eos, m.ignore_id)
        logits, _ = m.decoder(enc, enc_l, ys_in, yl + 1)
        logp = torch.log_softmax(logits.float(), dim=-1)
        mask = ys_out != m.ignore_id
        tok = logp.gather(-1, ys_out.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        nll = -(tok * mask).sum(-1)
        return nll.double().cpu().numpy(), mask.sum(-1).cpu().numpy()

    def score(
        self, items: Sequence[Tuple[str, str, str]], log_every: int = 500
    ) -> Dict[str, Tuple[float, int]]:
        """``items`` = (utt_id, wav_path, text); returns {utt_id: (nll_sum, num_tokens)}.

        Utterances are sorted by audio length (longest first) so each batch pads little."""
        import soundfile as sf
        import torch

        fs_conf = getattr(self.args, "frontend_conf", None) or {}
        want_sr = _fs_hz(fs_conf.get("fs", 16000)) if getattr(self.args, "frontend", "default") == "default" else None
        data = []  # (uid, wav, frames, tokens): audio is read batch by batch, not all at once
        for uid, wav, text in items:
            if wav.rstrip().endswith("|"):
                raise ExposureError(f"{uid}: piped wav.scp entries are not supported ({wav!r})")
            try:
                info = sf.info(wav)
            except Exception as e:
                raise ExposureError(f"cannot read audio of {uid}: {wav} ({e})") from e
            if want_sr is not None and info.samplerate != want_sr:
                raise ExposureError(f"{uid}: sample rate {info.samplerate} differs from the model's {want_sr}")
            data.append((uid, wav, info.frames, self.tokenize(uid, text)))
        data.sort(key=lambda d: -d[2])
        out: Dict[str, Tuple[float, int]] = {}
        t0 = time.time()
        next_log = log_every
        with torch.inference_mode():
            for b in range(0, len(data), self.batch_size):
                chunk = data[b:b + self.batch_size]
                speech = [_read_mono(c[1]) for c in chunk]
                nll, n = self._batch_nll(speech, [c[3] for c in chunk])
                for (uid, _, _, _), v, k in zip(chunk, nll, n):
                    out[uid] = (float(v), int(k))
                if log_every and (len(out) >= next_log or len(out) == len(data)):
                    logger.info("scored %d/%d utterances (%.1f utt/s)", len(out), len(data),
                                len(out) / max(time.time() - t0, 1e-9))
                    next_log += log_every
        return out


def _read_mono(path: str) -> np.ndarray:
    import soundfile as sf

    audio, _ = sf.read(path, dtype="float32", always_2d=False)
    return audio if audio.ndim == 1 else audio.mean(axis=1).astype(np.float32)


def _fs_hz(fs: Union[int, str]) -> int:
    s = str(fs)
    return int(float(s[:-1]) * 1000) if s.endswith("k") else int(s)


# =========================================================================== end to end
def _json_dump(obj: Any, path: Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")


def score_exposure(
    asr_train_config: Union[str, Path],
    asr_model_file: Union[str, Path],
    canary_dir: Union[str, Path],
    output_dir: Union[str, Path],
    batch_size: int = 32,
    device: str = "cpu",
    nj: Optional[int] = None,
    log_every: int = 500,
    include_canary: bool = True,
) -> Dict[str, Any]:
    """Score canaries + references of a make_canaries dir, write the outputs, return the summary."""
    import torch

    from espnet_pcc import kaldi_dir
    from espnet_pcc.canary.generate import read_manifest

    canary_dir, output_dir = Path(canary_dir), Path(output_dir)
    manifest = read_manifest(canary_dir)
    can = kaldi_dir.read(canary_dir / "canaries")
    ref = kaldi_dir.read(canary_dir / "references")
    clash = set(can.utt2spk) & set(ref.utt2spk)
    if clash:
        raise ExposureError(f"canary/reference id collision: {sorted(clash)[0]!r} is in both")
    if len(ref) < 2:
        raise ExposureError(f"need >= 2 references, got {len(ref)} in {canary_dir}/references")
    counts = {c["id"]: int(c["repeat_count"]) for c in manifest["canaries"]}
    if set(counts) != set(can.utt2spk):
        raise ExposureError(f"{canary_dir}: manifest and canaries/ list different canaries")
    if nj:
        torch.set_num_threads(int(nj))
    model, args = load_asr_model(asr_train_config, asr_model_file, device)
    scorer = Scorer(model, args, device=device, batch_size=batch_size)
    items = [(u, can.wav_of(u), can.text[u]) for u in can.utt_ids] + [
        (u, ref.wav_of(u), ref.text[u]) for u in ref.utt_ids]
    t0 = time.time()
    raw = scorer.score(items, log_every=log_every)
    elapsed = time.time() - t0
    if scorer.num_unk:
        logger.warning("%d tokens mapped to <unk>: canary text and token list disagree "
                       "(check --text_case)", scorer.num_unk)
    score = {u: v / max(n, 1) for u, (v, n) in raw.items()}
    per, summary = compute_exposures(
        {u: score[u] for u in can.utt2spk}, counts, [score[u] for u in ref.utt_ids], include_canary)
    for p in per:
        p["text"] = can.text[p["id"]]
        p["num_tokens"] = raw[p["id"]][1]
    summary.update({
        "score": scorer.kind,
        "asr_train_config": str(asr_train_config),
        "asr_model_file": str(asr_model_file),
        "canary_dir": str(canary_dir),
        "utterances_per_second": len(items) / max(elapsed, 1e-9),
    })
    with kaldi_dir.atomic_dir(output_dir, overwrite=True) as tmp:
        with open(tmp / "scores.tsv", "w", encoding="utf-8") as f:
            f.write("utt_id\tkind\trepeat_count\tnum_tokens\tnll_sum\tscore\n")
            for u in can.utt_ids + ref.utt_ids:
                kind = "canary" if u in counts else "reference"
                f.write(f"{u}\t{kind}\t{counts.get(u, 0)}\t{raw[u][1]}\t{raw[u][0]:.6f}\t{score[u]:.6f}\n")
        with open(tmp / "exposure.tsv", "w", encoding="utf-8") as f:
            f.write("canary_id\trepeat_count\tscore\trank\trank_exposure\textrapolated_exposure\ttext\n")
            for p in per:
                f.write(f"{p['id']}\t{p['repeat_count']}\t{p['score']:.6f}\t{p['rank']}\t"
                        f"{p['rank_exposure']:.4f}\t{p['extrapolated_exposure']:.4f}\t{p['text']}\n")
        _json_dump({"canaries": per}, tmp / "exposure.json")
        (tmp / "summary.tsv").write_text(summary_tsv(summary), encoding="utf-8")
        _json_dump(summary, tmp / "summary.json")
    logger.info("wrote %s (%d canaries, %d references, %.1f utt/s)", output_dir, len(can),
                len(ref), summary["utterances_per_second"])
    return summary
