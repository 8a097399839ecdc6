"""The entry points of espnet-pcc: the one list of their names, and the plug-in loader.

setup.py declares exactly :func:`setup_entry_points` (it runs this file by path, so building
the package imports neither torch nor ESPnet: keep this module free of such imports).

Plug-in group read by the code:

`espnet_pcc.optimizers` maps a name to an optimizer *wrapper* class, built as
``Wrapper(inner_optimizer, clip_config=ClipConfig, noise_seed=int, expected_cores=...)``
(keyword-only; ``expected_cores``, the fixed divisor D, only with the Poisson sampler):
``PCCASRTask.build_optimizers`` loads the one named by ``--clip_wrapper`` (default
``per_core_clip``, `espnet_pcc.core.optimizers.per_core.PerCoreClipOptimizer`).  Another package
registers its own wrapper under this group with a new name; `PCCTrainer` trains with any wrapper
that implements `espnet_pcc.core.optimizers.CoreClippingOptimizer`.

Console scripts: one ``espnet-pcc-<name>`` per ``espnet_pcc.bin.<name>`` CLI that a recipe
runs (each also runs as ``python -m espnet_pcc.bin.<name>``), and ``espnet-pcc-python``
(``espnet_pcc.bin.python``: the interpreter for ESPnet's own ``asr.sh --python``).
"""
from __future__ import annotations

from importlib.metadata import entry_points
from typing import Dict, List

OPTIMIZERS = "espnet_pcc.optimizers"
PER_CORE_CLIP = "per_core_clip"

# group -> name -> "module:attr".  Also the fallback when espnet_pcc runs from a source tree
# that was never pip-installed (no entry-point metadata).
PLUGINS: Dict[str, Dict[str, str]] = {
    OPTIMIZERS: {PER_CORE_CLIP: "espnet_pcc.core.optimizers.per_core:PerCoreClipOptimizer"},
}

# espnet_pcc.bin modules with a console script `espnet-pcc-<module, "_" -> "-">`.
CLI_MODULES = (
    "asr_train", "check_data", "decode", "insert_canaries", "make_canaries",
    "make_fillets_corpus", "make_synth_corpus", "prep_librispeech", "privacy_table", "report",
    "score_canary_accuracy", "score_exposure", "score_wer", "speed_perturb",
    "study_colocation", "study_export", "study_report", "train_bpe",
)

# espnet_pcc.bin modules with a console script that hands its arguments on unparsed (no
# argparse, no run_main): `python` is the interpreter with PCC's asr_train for asr.sh.
PASS_THROUGH_MODULES = ("python",)


def console_script(module: str) -> str:
    """The console-script name of ``espnet_pcc.bin.<module>``."""
    return "espnet-pcc-" + module.replace("_", "-")


CONSOLE_SCRIPTS: Dict[str, str] = {
    console_script(m): f"espnet_pcc.bin.{m}:main" for m in CLI_MODULES + PASS_THROUGH_MODULES
}


def setup_entry_points() -> Dict[str, List[str]]:
    """The ``entry_points`` argument of setup(): console scripts and plug-in groups."""
    groups = {"console_scripts": CONSOLE_SCRIPTS, **PLUGINS}
    return {group: [f"{name} = {target}" for name, target in entries.items()]
            for group, entries in groups.items()}


def _load(spec: str):
    module, _, attr = spec.partition(":")
    obj = __import__(module, fromlist=[attr])
    return getattr(obj, attr)


def available(group: str) -> Dict[str, str]:
    """name → "module:attr" for every registered plug-in of `group`."""
    found = dict(PLUGINS.get(group, {}))
    found.update({ep.name: ep.value for ep in entry_points(group=group)})
    return found


def load(group: str, name: str):
    """The class registered as `name` in `group`; a one-line error if unknown."""
    registered = available(group)
    if name not in registered:
        raise ValueError(f"{group}: no plug-in named {name!r}; registered: "
                         f"{', '.join(sorted(registered)) or 'none'}")
    return _load(registered[name])
