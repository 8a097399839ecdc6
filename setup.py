"""espnet-pcc: per-core clipping (PCC / APCC) for ESPnet2 ASR training."""
import os
import runpy

from setuptools import find_packages, setup

# Run by path: the entry-point names without importing espnet_pcc (or torch) at build time.
_registry = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                        "espnet_pcc", "registry.py"))

setup(
    name="espnet-pcc",
    version="0.1.0",
    description="Per-core clipping (PCC, APCC) and memorisation measurement for ESPnet2 ASR",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["espnet_pcc", "espnet_pcc.*"]),
    python_requires=">=3.9",
    # Exact working versions are pinned in constraints.txt (pip install -c constraints.txt).
    install_requires=[
        "torch>=2.1",
        "torchaudio>=2.1",
        "espnet>=202402",
        "setuptools<74",
        "configargparse",
        "kaldiio",
        "sentencepiece",
        "soundfile",
        "scipy",
        "tensorboard",  # espnet2 Trainer imports it unconditionally
        "matplotlib",  # attention plots, our comparison plot
        "wordfreq",  # canary / demo vocabulary
        "jiwer",  # WER scoring
    ],
    extras_require={"test": ["pytest"]},
    # Console scripts and plug-in groups: one list, in espnet_pcc/registry.py.
    entry_points=_registry["setup_entry_points"](),
)
