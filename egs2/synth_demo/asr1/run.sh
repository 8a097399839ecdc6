#!/usr/bin/env bash
# Synthetic demo, no download: espeak-ng voices read random sentences into a small corpus in
# LibriSpeech's layout, then the same stages as the LibriSpeech recipes train a small conformer
# on CPU under several clipping modes and print WER and canary exposure side by side.
#   ./run.sh                      full demo: baseline / control / PCC x 2 seeds -> RESULTS.md, pcc_comparison*.png
#   ./run.sh --demo_size study    the memorisation study's primary arms (docs/study.md) -> study/raw, study/RESULTS.md
#   ./run.sh --demo_size study_sorted  its exploratory sorted-batch arms, added to study/raw and the report
#   ./run.sh --demo_size privacy  PCC on the Poisson sampler: sigma = 0, noise per utterance, per speaker -> study/PRIVACY.md
#   ./run.sh --demo_size tiny     pipeline check in a few minutes (CI) -> exp/tiny/RESULTS.md
# Any other option goes to ./pcc_asr.sh (e.g. --stage 5 --stop_stage 9).
set -euo pipefail
. ./path.sh
# One torch thread per process: on a small shared CPU, OpenMP threads spinning against other
# processes made training up to 15x slower (measured). The cores are used by running jobs side
# by side instead: three models are trained, decoded and scored at once (--model_jobs 3).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

demo_size=${DEMO_SIZE:-full}
# How the runs were made, kept with their raw data (meta.json) and printed in the report.
study_notes=${STUDY_NOTES:-"The ${demo_size} runs: made by ./run.sh --demo_size ${demo_size} in egs2/synth_demo/asr1 ($(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown))."}
args=()
study_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --demo_size) [ $# -ge 2 ] || { echo "$0: error: --demo_size needs a value" >&2; exit 1; }; demo_size=$2; shift 2 ;;
        --demo_size=*) demo_size=${1#*=}; shift ;;
        *) args+=("$1"); shift ;;
    esac
done
case "${demo_size}" in
    full) corpus=downloads/SynthSpeech; model=demo; decode=demo; datadir=data; expdir=exp
          # What the study learnt (study/RESULTS.md, docs/study.md): a run is the unit, so two
          # seeds per arm (intervals over runs; add seeds with --seeds "0 1 2 ..."); the control
          # arm (PCC's cores, nothing clipped) separates clipping from the per-core forwards; the
          # batches are shuffled afresh every epoch (the configs' batch_sampler); x16 canaries sit
          # at the rank cap in every arm, so the counts stop at x8 (15 canaries each, 60 pooled).
          canaries="--repeat_counts 1 2 4 8 --canaries_per_count 15 --num_references 1000"
          configs="conf/train_asr_demo_baseline.yaml conf/train_asr_demo_control.yaml conf/train_asr_demo_pcc.yaml"
          study_args=(--seeds "0 1")
          results=(--results_md RESULTS.md --results_png pcc_comparison.png) ;;
    study) corpus=downloads/SynthSpeech; datadir=data/study; expdir=exp/study; decode=demo
          # The memorisation study's primary arms (docs/study.md, "Pre-registered plan"):
          # baseline / control / PCC on shuffled batches x 5 seeds, every epoch's checkpoint scored.
          canaries="--repeat_counts 1 2 4 8 16 --canaries_per_count 10 --num_references 1000"
          study_args=(--seeds "0 1 2 3 4" --score_epochs "1 2 3 4 5 6" --inference_asr_model valid.acc.ave_3best.pth
                      --model_jobs 2)
          configs="conf/train_asr_shuffled_baseline.yaml conf/train_asr_shuffled_control.yaml conf/train_asr_shuffled_pcc.yaml"
          study_tags=$(for c in ${configs}; do c=${c#conf/}; for s in 0 1 2 3 4; do echo "asr_${c%.yaml}_seed${s}"; done; done)
          # Stages 1-8; the study's own report replaces stage 9's.
          results=(--stop_stage 8) ;;
    study_sorted) corpus=downloads/SynthSpeech; datadir=data/study; expdir=exp/study; decode=demo
          # The study's exploratory sorted-batch arms: the same three on ESPnet's folded batches x 3 seeds.
          canaries="--repeat_counts 1 2 4 8 16 --canaries_per_count 10 --num_references 1000"
          study_args=(--seeds "0 1 2" --score_epochs "1 2 3 4 5 6" --inference_asr_model valid.acc.ave_3best.pth
                      --model_jobs 2)
          configs="conf/train_asr_study_baseline.yaml conf/train_asr_study_control.yaml conf/train_asr_study_pcc.yaml"
          study_tags=$(for c in ${configs}; do c=${c#conf/}; for s in 0 1 2; do echo "asr_${c%.yaml}_seed${s}"; done; done)
          results=(--stop_stage 8) ;;
    privacy) corpus=downloads/SynthSpeech; datadir=data/study; expdir=exp/study; decode=demo
          # The study's PCC on the Poisson sampler (README "Privacy"), in the study's data and
          # expdir: sigma = 0, noise accounted per utterance, per speaker; 3 configs x 3 seeds.
          canaries="--repeat_counts 1 2 4 8 16 --canaries_per_count 10 --num_references 1000"
          study_args=(--seeds "0 1 2" --score_epochs "2 4 6" --inference_asr_model valid.acc.ave_3best.pth
                      --model_jobs 2)
          configs="conf/train_asr_privacy_pcc.yaml conf/train_asr_privacy_noise.yaml conf/train_asr_privacy_spk.yaml"
          results=(--results_md study/PRIVACY.md --results_png study/privacy_comparison.png) ;;
    tiny) corpus=downloads/SynthSpeech_tiny; model=tiny; decode=tiny; datadir=data/tiny; expdir=exp/tiny
          canaries="--repeat_counts 1 4 --canaries_per_count 2 --num_references 20"
          results=() ;;
    *) echo "$0: error: --demo_size ${demo_size}: use full, study, study_sorted, privacy or tiny" >&2; exit 1 ;;
esac

# "Download": build the corpus (skipped when it exists with the same settings).
corpus_size=full  # the study and the privacy study train on the full demo corpus
[ "${demo_size}" = tiny ] && corpus_size=tiny
python3 -m espnet_pcc.bin.make_synth_corpus --output_dir "${corpus}" --size "${corpus_size}"

./pcc_asr.sh \
    --corpus_dir "${corpus}" --datadir "${datadir}" --expdir "${expdir}" \
    --train_set train --train_splits train --valid_set dev --valid_splits dev --test_splits "dev test" \
    --canary_opts "--text_case upper --vocab wordfreq --vocab_size 200 --num_words 6 --speed 1.6 --seed 0 ${canaries}" \
    --token_type char \
    --asr_configs "${configs:-conf/train_asr_${model}_baseline.yaml conf/train_asr_${model}_pcc.yaml conf/train_asr_${model}_apcc.yaml}" \
    --inference_config "conf/decode_asr_${decode}.yaml" \
    --ngpu 0 --nj 2 --stats_nj 2 --inference_nj 1 --model_jobs 3 \
    --results_title "RESULTS (synthetic demo, ${demo_size})" "${results[@]}" "${study_args[@]}" "${args[@]}"

# The memorisation study: its raw data (committed) and the pre-registered analysis of it,
# rebuilt by study_report from study/raw alone.
if [ -n "${study_tags:-}" ]; then
    python3 -m espnet_pcc.bin.study_export --expdir "${expdir}" --asr_tags ${study_tags} \
        --score_epochs 1 2 3 4 5 6 --decode_tag decode_decode_asr_demo_valid.acc.ave_3best \
        --epoch_decode_tag 'decode_decode_asr_demo_{epoch}epoch' --test_sets dev test \
        --output_dir study/raw --merge true --notes "${study_notes}"
    python3 -m espnet_pcc.bin.study_colocation \
        --shape_file "${expdir}/asr_stats_raw_char/train/speech_shape" \
        --shape_file "${expdir}/asr_stats_raw_char/train/text_shape.char" \
        --batch_size 16 --fold_length 80000 150 --num_cores 4 --seeds 0 1 2 3 4 \
        --epochs 1 2 3 4 5 6 --output_dir study/raw
    if grep -q "shuffled" study/raw/runs.tsv; then
        python3 -m espnet_pcc.bin.study_report --raw_dir study/raw --output_md study/RESULTS.md \
            --output_png study/pcc_comparison.png \
            --title "RESULTS (memorisation study, pre-registered)"
    else
        echo "$0: the primary (shuffled-batch) arms are not in study/raw yet: run ./run.sh --demo_size study for the report" >&2
    fi
fi
