"""The synthetic demo through ESPnet3: ESPnet3's ASR stages with the project's canary and
exposure stages around them, for each arm (training config), then the report.

    python run.py --training_config conf/training_baseline.yaml conf/training_pcc.yaml \
        conf/training_apcc.yaml --inference_config conf/inference.yaml \
        --metrics_config conf/metrics.yaml [--stages ...]

Stages and options: espnet_pcc.recipe.espnet3_demo (docs/lightning.md of espnet-pcc).
"""
from espnet_pcc.recipe.espnet3_demo import main

if __name__ == "__main__":  # ESPnet3's worker processes re-import this file
    main()
