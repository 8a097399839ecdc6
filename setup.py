"""espnet-pcc: per-core clipping (PCC / APCC) for ESPnet2 ASR training."""
from setuptools import find_packages, setup

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
    entry_points={
        "console_scripts": [
            "espnet-pcc-asr-train = espnet_pcc.bin.asr_train:main",
            "espnet-pcc-make-canaries = espnet_pcc.bin.make_canaries:main",
            "espnet-pcc-insert-canaries = espnet_pcc.bin.insert_canaries:main",
            "espnet-pcc-score-exposure = espnet_pcc.bin.score_exposure:main",
            "espnet-pcc-check-data = espnet_pcc.bin.check_data:main",
            "espnet-pcc-prep-librispeech = espnet_pcc.bin.prep_librispeech:main",
            "espnet-pcc-make-synth-corpus = espnet_pcc.bin.make_synth_corpus:main",
            "espnet-pcc-report = espnet_pcc.bin.report:main",
        ],
        # Registries read by espnet_pcc.registry (see README "Extending").
        "espnet_pcc.trainers": [
            "pcc = espnet_pcc.trainer:PCCTrainer",
        ],
        "espnet_pcc.optimizers": [
            "per_core_clip = espnet_pcc.optim:PerCoreClipOptimizer",
        ],
        "espnet_pcc.tasks": [
            "asr = espnet_pcc.tasks.asr:PCCASRTask",
        ],
    },
)
