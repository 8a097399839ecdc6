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
    # Lower bounds: the versions the test suite ran with (requirements-lock.txt pins every
    # package of that environment; tools/install.sh installs exactly it). Older releases are
    # not tested and not allowed.
    install_requires=[
        "torch>=2.11.0",
        "torchaudio>=2.11.0",  # loads only beside the torch release it was built for
        "espnet>=202511",
        "setuptools>=65.5.0,<74",  # espnet 202511 needs setuptools<74
        "configargparse>=1.9.0",
        "kaldiio>=2.18.1",
        "numpy>=2.4.6",
        "pyyaml>=6.0.4",
        "sentencepiece>=0.2.0",
        "soundfile>=0.14.0",
        "scipy>=1.17.1",
        "tensorboard>=2.21.0",  # espnet2 Trainer imports it unconditionally
        "matplotlib>=3.11.2",  # attention plots, our comparison plot
        "wordfreq>=3.1.1",  # canary / demo vocabulary
        "jiwer>=4.0.0",  # WER scoring
        "dp-accounting>=0.6.0",  # epsilon of noisy per-core clipping (espnet_pcc.accounting)
        "statsmodels>=0.15.0",  # Holm's correction of the study's secondary endpoints
    ],
    extras_require={"test": ["pytest>=9.2.0"]},
    # Console scripts and plug-in groups: one list, in espnet_pcc/registry.py.
    entry_points=_registry["setup_entry_points"](),
)
