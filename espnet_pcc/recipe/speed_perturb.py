"""Speed perturbation of a training data dir, as ESPnet's LibriSpeech recipes do it.

ESPnet (``asr.sh --speed_perturb_factors "0.9 1.0 1.1"``, its stage 2) makes one copy of the
training set per factor with ``scripts/utils/perturb_data_dir_speed.sh`` and combines them with
``utils/combine_data.sh`` into ``<train_set>_sp``. The same here:

* factor 1.0 is the original data, ids and audio unchanged (ESPnet uses ``data/<train_set>``
  itself for it);
* any other factor ``f``: utterance and speaker ids get the prefix ``sp<f>-``, the factor as
  written (``sp0.9-103-1240-0000``, speaker ``sp0.9-103-1240``); the text is unchanged; the
  audio is played ``f`` times faster (sox's ``speed f``: tempo and pitch change together, the
  duration becomes 1/f).

ESPnet writes the audio as ``sox ... speed f |`` pipes in wav.scp and materialises it in its
format stage (dump/raw/). espnet-pcc has no format stage (espnet2 reads the data dir's wav.scp),
so the perturbed audio is written here, once, as 16-bit FLAC files under
``<output_dir>/audio/sp<f>/``, and wav.scp points at them by absolute path. The speed change is
the operation of sox's ``speed`` effect (resampling by the factor's fraction, then reading the
samples at the original rate), computed with scipy's polyphase resampler.

Resumable: each audio file is written under a temp name and renamed, so an interrupted run
leaves only complete files, which the next run with the same request (same source wav.scp and
factors, recorded in ``audio/.request.json``) keeps; any other request starts the audio over.
The Kaldi files are written last.
"""
from __future__ import annotations

import hashlib
import logging
import math
import re
import shutil
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from espnet_pcc import fileio, kaldi_dir
from espnet_pcc.errors import UserError

logger = logging.getLogger(__name__)

#: The factors of ESPnet's LibriSpeech recipes (egs2/librispeech*/asr1/run.sh).
LIBRISPEECH_FACTORS = ("0.9", "1.0", "1.1")
REQUEST = ".request.json"
#: A factor as check_factors accepts it (what prefix() writes; recording_of strips any).
_FACTOR = re.compile(r"[0-9]+(?:\.[0-9]+)?")


class SpeedPerturbError(UserError):
    """A bad factor, or a source dir whose audio cannot be perturbed."""


def prefix(factor: str) -> str:
    """ESPnet's id prefix of a perturbed copy: ``sp<factor>-`` ("" for 1.0)."""
    return "" if is_identity(factor) else f"sp{factor}-"


def is_identity(factor: str) -> bool:
    return float(factor) == 1.0


def check_factors(factors: Sequence[str]) -> List[str]:
    """The factors as written, checked: positive numbers, each once."""
    if not factors:
        raise SpeedPerturbError("no speed perturbation factors given")
    seen: Dict[float, str] = {}
    for f in factors:
        try:
            value = float(f)
        except ValueError:
            raise SpeedPerturbError(f"speed factor {f!r} is not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise SpeedPerturbError(f"speed factor {f!r} must be a positive number")
        if not _FACTOR.fullmatch(f):
            # The id prefix sp<f>- must be one recording_of() recognises.
            raise SpeedPerturbError(f"speed factor {f!r}: write it as digits with an "
                                    "optional decimal part (e.g. 0.9)")
        if value in seen:
            raise SpeedPerturbError(f"speed factor {f!r} given twice (as {seen[value]!r})")
        seen[value] = f
    return list(factors)


def perturbed_length(num_samples: int, factor: str) -> int:
    """Samples after speed ``factor``: ceil(N / f) (scipy's resample_poly length)."""
    up, down = _ratio(factor)
    return -(-num_samples * up // down)


def _ratio(factor: str) -> Tuple[int, int]:
    """(up, down) of the resampler: the output has N * up / down = N / f samples."""
    frac = Fraction(factor).limit_denominator(1000)
    return frac.denominator, frac.numerator


def _perturb_file(job: Tuple[str, str, str]) -> int:
    """Write ``dst``: ``src`` at speed ``factor`` (FLAC, 16 bit, same rate); return #samples."""
    import numpy as np
    import soundfile
    from scipy.signal import resample_poly

    src, dst, factor = job
    audio, rate = soundfile.read(src, dtype="float32", always_2d=True)
    up, down = _ratio(factor)
    out = resample_poly(audio, up, down, axis=0)
    # The low-pass filter can overshoot full scale slightly: clip instead of wrapping.
    out = np.clip(out, -1.0, 32767 / 32768).astype("float32")
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    with fileio.atomic_path(dst) as tmp:  # the temp name keeps .flac: soundfile's format
        soundfile.write(str(tmp), out if out.shape[1] > 1 else out[:, 0], rate,
                        format="FLAC", subtype="PCM_16")
    return out.shape[0]


def _request(src: kaldi_dir.KaldiDir, factors: Sequence[str]) -> dict:
    listing = "\n".join(f"{u} {src.wav_scp[u]}" for u in src.utt_ids)
    return {"factors": [f for f in factors if not is_identity(f)],
            "wav_scp_md5": hashlib.md5(listing.encode("utf-8")).hexdigest()}


def perturb(data_dir: Path, factors: Sequence[str], output_dir: Path, nj: int = 1) -> int:
    """Write ``output_dir`` = the union of ``data_dir`` at every speed factor; return #utts.

    ``data_dir`` is only read. Its wav.scp must name audio files (LibriSpeech's flac files,
    as written by stage 1); commands (``... |``) and segments are rejected.
    """
    data_dir, output_dir = Path(data_dir), Path(output_dir)
    factors = check_factors(factors)
    if output_dir.resolve() == data_dir.resolve():
        raise SpeedPerturbError(f"output dir must differ from the source {data_dir}")
    src = kaldi_dir.read(data_dir)
    if src.segments is not None:
        raise SpeedPerturbError(f"{data_dir} has segments: speed perturbation here needs one "
                                f"audio file per utterance (LibriSpeech's layout)")
    for utt in src.utt_ids:
        if src.wav_scp[utt].rstrip().endswith("|") or not Path(src.wav_scp[utt]).is_file():
            raise SpeedPerturbError(f"{data_dir}/wav.scp: utterance {utt}: "
                                    f"{src.wav_scp[utt]!r} is not an audio file")
    audio_dir = output_dir / "audio"
    request = fileio.dumps_json(_request(src, factors))
    if audio_dir.is_dir() and (not (audio_dir / REQUEST).is_file()
                               or (audio_dir / REQUEST).read_text() != request):
        logger.info("%s holds audio of another request: starting over", audio_dir)
        shutil.rmtree(audio_dir)
    fileio.atomic_write_text(audio_dir / REQUEST, request)

    out = kaldi_dir.KaldiDir(wav_scp={}, text={}, utt2spk={},
                             extra={k: {} for k in src.extra if k in ("utt2dur", "utt2num_samples")})
    for k in set(src.extra) - set(out.extra):
        logger.warning("%s/%s not carried over (no value for the perturbed copies)", data_dir, k)
    jobs: List[Tuple[str, str, str]] = []
    for factor in factors:
        p = prefix(factor)
        for utt in src.utt_ids:
            spk = src.utt2spk[utt]
            if is_identity(factor):
                wav = src.wav_scp[utt]
            else:
                wav = str((audio_dir / f"sp{factor}" / spk / f"{p}{utt}.flac").resolve())
                if not Path(wav).is_file():
                    jobs.append((src.wav_scp[utt], wav, factor))
            out.wav_scp[p + utt] = wav
            out.text[p + utt] = src.text[utt]
            out.utt2spk[p + utt] = p + spk
            if "utt2dur" in out.extra:
                out.extra["utt2dur"][p + utt] = f"{float(src.extra['utt2dur'][utt]) / float(factor):.3f}"
    done = len(src) * sum(not is_identity(f) for f in factors) - len(jobs)
    if done:
        logger.info("%s: %d perturbed files kept from an interrupted run", audio_dir, done)
    logger.info("perturbing %d utterances (%d jobs)", len(jobs), nj)
    if jobs:
        if nj > 1:
            with ProcessPoolExecutor(max_workers=nj) as pool:
                list(pool.map(_perturb_file, jobs, chunksize=max(1, len(jobs) // (8 * nj))))
        else:
            for job in jobs:
                _perturb_file(job)
    if "utt2num_samples" in out.extra:
        import soundfile
        for utt, wav in out.wav_scp.items():
            out.extra["utt2num_samples"][utt] = str(soundfile.info(wav).frames)
    kaldi_dir.validate(out, name=str(output_dir), strict_sort=True)
    # The Kaldi files beside audio/: each written whole and renamed (wav.scp last).
    staging = output_dir / ".kaldi.tmp"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    kaldi_dir.write_files(out, staging)
    kaldi_dir.validate_files(staging)
    names = sorted(p.name for p in staging.iterdir())
    names.remove("wav.scp")
    for name in names + ["wav.scp"]:
        fileio.move_into_place(staging / name, output_dir / name)
    staging.rmdir()
    for name in ("segments",) + kaldi_dir.PER_UTT_FILES:  # left by an earlier request
        if name not in names and (output_dir / name).is_file():
            (output_dir / name).unlink()
    logger.info("wrote %s: %d utterances (factors %s)", output_dir, len(out), " ".join(factors))
    return len(out)
