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
    python_requires=">=3.11",
    # Only what espnet_pcc itself imports, with lower bounds no newer than either supported
    # ESPnet release's own pins (espnet 202511 on Python 3.11, espnet 202611 on 3.12/3.13), so
    # installing the plugin beside an ESPnet environment replaces nothing. The exact versions the
    # suite ran with are in the locks (requirements-lock*.txt).
    install_requires=[
        "torch>=2.11.0",
        "espnet>=202511",
        # espnet2.tasks.asr imports torchaudio (its BEATs encoder), which espnet 202511 does not
        # declare; 202611 does. torchaudio loads only beside the torch release it was built for.
        "torchaudio>=2.11.0",
        "numpy>=2.0.0",
        "pyyaml>=5.1.2",
        "sentencepiece>=0.2.0",
        "soundfile>=0.10.2",
        "scipy>=1.13.0",
        # espnet2's ASR training imports these; espnet 202611 declares them only in its extras
        # (asr, train), 202511 in its base requirements.
        "editdistance>=0.6.0",  # espnet2.asr.espnet_model's error calculator
        "tensorboard>=2.14.0",  # espnet2's Trainer
        "matplotlib>=3.8.0",  # attention plots, our comparison plot
        "lightning>=2.4.0",  # the ESPnet3 integration (an extra of espnet 202611)
        "wordfreq>=3.1.1",  # canary / demo vocabulary
        "jiwer>=3.0.0",  # WER scoring
        "dp-accounting>=0.4.4",  # epsilon of noisy per-core clipping
        "statsmodels>=0.14.0",  # Holm's correction of the study's secondary endpoints
        "packaging>=23.0",
    ],
    extras_require={"test": ["pytest>=9.2.0"]},
    # Console scripts and plug-in groups: one list, in espnet_pcc/registry.py.
    entry_points=_registry["setup_entry_points"](),
)
