"""Plug-in registries declared as setuptools entry points (see setup.py).

`espnet_pcc.optimizers` maps a name to an optimizer *wrapper* class, built as
`Wrapper(inner_optimizer, clip_mode, max_norm)`: `PCCASRTask.build_optimizers`
loads the one registered as `per_core_clip`.  `espnet_pcc.trainers` and
`espnet_pcc.tasks` list our Trainer and Task classes (`pcc`, `asr`) so that
tools can discover them; a package that adds its own registers them under the
same groups with new names and loads them with `load(group, name)` (e.g. in a
`PCCASRTask` subclass).
"""
from __future__ import annotations

from importlib.metadata import entry_points
from typing import Dict

# Used when espnet_pcc runs from a source tree that was never pip-installed.
_BUILTIN = {
    "espnet_pcc.optimizers": {"per_core_clip": "espnet_pcc.optim:PerCoreClipOptimizer"},
    "espnet_pcc.trainers": {"pcc": "espnet_pcc.trainer:PCCTrainer"},
    "espnet_pcc.tasks": {"asr": "espnet_pcc.tasks.asr:PCCASRTask"},
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
