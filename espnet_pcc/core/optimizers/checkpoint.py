"""The ``pcc`` entry of a `PerCoreClipOptimizer` state dict: one writer (`pcc_entry`,
`pending_entry`), one reader (`read_pcc_entry`, `restore_pending`, `saved_privacy_history`).

ESPnet's checkpoint.pth and Lightning's .ckpt keep the optimizer's state dict, so a resume
gets, beside the wrapped optimizer's own state: the clipping settings; the steps taken (they
number the noise); the noise's seed, secret unless clip_conf.noise_seed gave it (a resume
draws the noise the uninterrupted run would have drawn, so checkpoint.pth is as private as
the training data; the released model files hold no optimizer state); the privacy history;
and, when an epoch ended inside an `accum_grad` cycle, the cores accumulated so far.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch

from espnet_pcc.core.clipping import StepScaling
from espnet_pcc.core.ddp_sums import sums_of_flat_buffer
from espnet_pcc.core.sums import CoreSums

PCC_KEY = "pcc"


def pcc_entry(*, clip: str, max_norm: Optional[float], steps: int, noise_seed: int,
              privacy_history: List[Dict[str, Any]], pending: Optional[Dict[str, Any]]
              ) -> Dict[str, Any]:
    """The entry `PerCoreClipOptimizer.state_dict` adds under `PCC_KEY`."""
    return {"clip": clip, "max_norm": max_norm, "pending": pending, "steps": steps,
            "noise_seed": noise_seed, "privacy_history": [dict(s) for s in privacy_history]}


def pending_entry(sums: CoreSums, core_norms: List[torch.Tensor], scaling: StepScaling,
                  divisor: float) -> Optional[Dict[str, Any]]:
    """The cores of an unfinished step (None: none), as `restore_pending` reads them."""
    if not core_norms:
        return None
    return {"sums": [None if s is None else s.clone() for s in sums.sums],
            "core_norms": torch.stack(core_norms), "ref": scaling.reference,
            "divisor": divisor}


def read_pcc_entry(state_dict: Dict[str, Any]) -> Tuple[Dict[str, Any], Optional[Dict[str, Any]]]:
    """(the wrapped optimizer's state, the `PCC_KEY` entry or None for a plain optimizer's)."""
    state_dict = dict(state_dict)
    return state_dict, state_dict.pop(PCC_KEY, None)


def saved_privacy_history(optimizer_state: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The privacy history in an optimizer state that `PerCoreClipOptimizer.state_dict`
    wrote ([] for one without it: a plain optimizer's, or one from before histories)."""
    pcc = read_pcc_entry(optimizer_state)[1] or {}
    return [dict(s) for s in pcc.get("privacy_history") or []]


def restore_pending(pending: Dict[str, Any], sums: CoreSums, scaling: StepScaling,
                    params: List[torch.nn.Parameter]) -> List[torch.Tensor]:
    """Puts a `pending_entry` back into the step's `sums` and `scaling` (just started);
    returns the pending cores' norms ([] on a rank whose pending cores rank 0 resumes)."""
    if not sums.resumes_pending:
        return []  # rank 0 resumes every rank's pending cores (gather_pending)
    device = params[0].device
    if "sums" in pending:
        pending_sums, ref = pending["sums"], pending["ref"]
    else:  # the flat-buffer layout: summed with r = 1
        pending_sums, ref = sums_of_flat_buffer(pending, params), None
    ref = sums.restore([None if s is None else s.to(device) for s in pending_sums],
                       None if ref is None else ref.to(device))
    scaling.resume(torch.ones((), device=device) if ref is None else ref)
    return list(pending["core_norms"].to(device))


__all__ = ["PCC_KEY", "pcc_entry", "pending_entry", "read_pcc_entry", "restore_pending",
           "saved_privacy_history"]
