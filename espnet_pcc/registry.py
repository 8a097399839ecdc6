"""Plug-in registries declared as setuptools entry points (see setup.py).

`espnet_pcc.optimizers` maps a name to an optimizer *wrapper* class, built as
`Wrapper(inner_optimizer, clip_mode, max_norm)`; `espnet_pcc.trainers` maps a
name to an espnet2 Trainer subclass.  Another package can register its own
under the same groups and select it with `--clip_optimizer` / `--clip_trainer`.
"""
from __future__ import annotations

from importlib.metadata import entry_points
from typing import Dict

# Used when espnet_pcc runs from a source tree that was never pip-installed.
_BUILTIN = {
    "espnet_pcc.optimizers": {"per_core_clip": "espnet_pcc.optim:PerCoreClipOptimizer"},
    "espnet_pcc.trainers": {"pcc": "espnet_pcc.trainer:PCCTrainer"},
}


def _load(spec: str):
    module, _, attr = spec.partition(":")
    obj = __import__(module, fromlist=[attr])
    return getattr(obj, attr)


def available(group: str) -> Dict[str, str]:
    """name → "module:attr" for every registered plug-in of `group`."""
    found = dict(_BUILTIN.get(group, {}))
    found.update({ep.name: ep.value for ep in entry_points(group=group)})
    return found


def load(group: str, name: str):
    """The class registered as `name` in `group`; a one-line error if unknown."""
    registered = available(group)
    if name not in registered:
        raise ValueError(f"{group}: no plug-in named {name!r}; registered: "
                         f"{', '.join(sorted(registered)) or 'none'}")
    return _load(registered[name])
