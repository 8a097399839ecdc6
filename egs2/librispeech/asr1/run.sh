#!/usr/bin/env bash
# LibriSpeech 960 h: baseline vs PCC vs APCC (WER + canary exposure). Stages: ./pcc_asr.sh --help
set -euo pipefail
# path.sh (OMP_NUM_THREADS=1 ... as ESPnet) and cmd.sh (job commands: cmd_backend=slurm ...)
# are read by pcc_asr.sh.

# The corpus as ESPnet's db.sh has it: LIBRISPEECH=downloads holds LibriSpeech/{train-clean-100,...};
# the extracted LibriSpeech/ directory itself is accepted too.
LIBRISPEECH=${LIBRISPEECH:-downloads}

asr_configs="conf/train_asr_conformer_960h_baseline.yaml conf/train_asr_conformer_960h_pcc.yaml conf/train_asr_conformer_960h_apcc.yaml"
inference_config=conf/decode_asr.yaml

./pcc_asr.sh \
    --corpus_dir "${LIBRISPEECH}" \
    --train_set train_960 --train_splits "train-clean-100 train-clean-360 train-other-500" \
    --speed_perturb_factors "0.9 1.0 1.1" \
    --valid_set dev --valid_splits "dev-clean dev-other" \
    --test_splits "dev-clean dev-other test-clean test-other" \
    --canary_opts "--text_case upper --num_words 6 --repeat_counts 1 2 4 8 16 --canaries_per_count 10 --num_references 2000 --speed 1.6 --seed 0" \
    --token_type bpe --nbpe 5000 \
    --ngpu 4 --nj 32 --inference_nj 8 --gpu_inference true \
    --asr_configs "${asr_configs}" --inference_config "${inference_config}" \
    --results_md RESULTS.md --results_png pcc_comparison.png "$@"
