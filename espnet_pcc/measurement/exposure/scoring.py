"""Score transcripts with a trained ESPnet ASR model: load it, then batched per-utterance NLL.

``score(u) = -(1/T) Σ_t log p(y_t | y_<t, x)`` — the per-token negative log-likelihood of the
transcript ``y`` (tokens + ``<eos>``, ``T`` = their number) given the audio ``x``, from the
model's attention decoder, computed per utterance (not batch-averaged, no label smoothing: it is
a likelihood, not the training loss). Lower = more likely = more memorised. :class:`Scorer`
returns the sum and ``T``; the caller divides.

Why the attention decoder and not CTC: canaries are sped up (tempo 1.6); after 4x subsampling
~2 % of such utterances have fewer encoder frames than CTC needs (tokens + repeats), so their CTC
loss is +inf and they would rank as "never memorised" whatever the model learnt. The attention
NLL is finite for every utterance. CTC-only models (no decoder) fall back to the CTC NLL.

torch, ESPnet and soundfile are imported inside the functions, so importing this module (and
the :mod:`espnet_pcc.measurement.exposure` package) stays cheap for readers of the results.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from espnet_pcc.measurement.exposure.metric import ExposureError

logger = logging.getLogger(__name__)


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
    """config.yaml holds paths relative to the recipe dir (global_mvn stats, BPE model, and in
    ESPnet3's the token list); when scoring from elsewhere, look for them relative to the
    config's ancestors. (The mvn values are overwritten by the checkpoint's buffers, but
    GlobalMVN opens the file when built.)"""
    if isinstance(conf.get("token_list"), str):
        found = _find_relative(conf["token_list"], config_file)
        if found is None:
            raise ExposureError(f"token_list {conf['token_list']!r} from {config_file} not found")
        conf["token_list"] = found
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


def _mismatch(own: Dict[str, Any], state: Dict[str, Any]) -> List[str]:
    """How a checkpoint's state_dict differs from the model's: one phrase per kind, with an
    example each (empty when they fit)."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    parts = []
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} shape mismatches (e.g. {k}: checkpoint "
                     f"{list(state[k].shape)} vs config {list(own[k].shape)})")
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
    return parts


def load_asr_model(config_file: Union[str, Path], model_file: Union[str, Path], device: str = "cpu"):
    """Build the ESPnet ASR model from ``config.yaml`` and load ``model_file`` strictly.

    Same steps as ``ASRTask.build_model_from_file`` (yaml → Namespace → build_model →
    load_state_dict), but a checkpoint that does not fit the config is a one-line
    :class:`ExposureError` (missing/unexpected keys, first shape mismatch) instead of a silent
    ``strict=False`` load. Extra top-level keys (``clip``, ``clip_conf``) are harmless: build_model
    reads only the keys it knows. ``model_file`` is a state_dict, espnet2's ``checkpoint.pth``
    or a Lightning checkpoint (ESPnet3 writes the espnet2 config.yaml beside its ``*.ckpt``,
    whose ``state_dict`` has the model's own keys). Returns ``(model in eval mode, args)``.
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
        from espnet_pcc.espnet2.task import PCCASRTask  # knows clip / clip_conf in a config

        model = PCCASRTask.build_model(args)
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise ExposureError(f"cannot build a model from {config_file}: {e}") from e
    try:
        # Tensors only (a model file or a checkpoint.pth): nothing in it is executed.
        state = torch.load(model_file, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ExposureError(f"cannot read checkpoint {model_file}: {e}") from e
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # trainer checkpoint.pth
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a Lightning checkpoint (ESPnet3's *.ckpt: the model's keys)
    if isinstance(state, dict) and isinstance(state.get("module"), dict):
        state = state["module"]  # deepspeed
    if not isinstance(state, dict):
        raise ExposureError(f"{model_file} is not a model state_dict")
    parts = _mismatch(model.state_dict(), state)
    if parts:
        raise ExposureError(
            f"checkpoint {model_file} does not match config {config_file}: " + "; ".join(parts)
        )
    model.load_state_dict(state, strict=True)
    model.to(device).eval()
    return model, args


def set_num_threads(n: Optional[int]) -> None:
    """Use ``n`` torch CPU threads (``None``/0: leave torch's default)."""
    if n:
        import torch

        torch.set_num_threads(int(n))


# =========================================================================== scoring
def pad(sequences, value: float):
    """A batch (B, Lmax, ...) of the sequences, padded at the end with ``value``."""
    import torch

    return torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True, padding_value=value)


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
        m, dev = self.model, self.device
        x = pad([torch.from_numpy(s) for s in speech], 0.0).to(dev)
        xl = torch.tensor([len(s) for s in speech], dtype=torch.long, device=dev)
        targets = [torch.from_numpy(t) for t in tokens]
        yl = torch.tensor([len(t) for t in tokens], dtype=torch.long, device=dev)
        enc, enc_l = m.encode(x, xl)
        if isinstance(enc, tuple):  # intermediate CTC outputs
            enc = enc[0]
        if self.kind == "ctc_nll":
            ys = pad(targets, m.ignore_id).to(dev)
            lp = m.ctc.log_softmax(enc).transpose(0, 1)  # (T, B, V)
            nll = F.ctc_loss(lp, ys.clamp(min=0), enc_l, yl, blank=m.blank_id,
                             reduction="none", zero_infinity=False)
            return nll.double().cpu().numpy(), yl.cpu().numpy()
        lang = getattr(m, "lang_token_id", None)
        if lang is not None:  # as _calc_att_loss: the language token is part of the target
            targets = [torch.cat([lang.reshape(-1).cpu(), t]) for t in targets]
            yl = yl + 1
        # The decoder's teacher-forced input and its target, as espnet2's _calc_att_loss builds
        # them: <sos> + y padded with <eos>, and y + <eos> padded with ignore_id.
        sos, eos = torch.tensor([m.sos]), torch.tensor([m.eos])
        ys_in = pad([torch.cat([sos, t]) for t in targets], m.eos).to(dev)
        ys_out = pad([torch.cat([t, eos]) for t in targets], m.ignore_id).to(dev)
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
        want_sr = fs_hz(fs_conf.get("fs", 16000)) if getattr(self.args, "frontend", "default") == "default" else None
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
                speech = [read_mono(c[1]) for c in chunk]
                nll, n = self._batch_nll(speech, [c[3] for c in chunk])
                for (uid, _, _, _), v, k in zip(chunk, nll, n):
                    out[uid] = (float(v), int(k))
                if log_every and (len(out) >= next_log or len(out) == len(data)):
                    logger.info("scored %d/%d utterances (%.1f utt/s)", len(out), len(data),
                                len(out) / max(time.time() - t0, 1e-9))
                    next_log += log_every
        return out


def read_mono(path: str) -> np.ndarray:
    """The audio of ``path`` as float32 samples, channels averaged."""
    import soundfile as sf

    audio, _ = sf.read(path, dtype="float32", always_2d=False)
    return audio if audio.ndim == 1 else audio.mean(axis=1).astype(np.float32)


def fs_hz(fs: Union[int, str]) -> int:
    """ESPnet's ``frontend_conf.fs`` (``16000`` or ``"16k"``) in Hz."""
    s = str(fs)
    return int(float(s[:-1]) * 1000) if s.endswith("k") else int(s)
