#!/usr/bin/env bash
# Synthetic demo, no download: espeak-ng voices read random sentences into a small corpus in
# LibriSpeech's layout, then the same stages as the LibriSpeech recipes train a small conformer
# on CPU under several clipping modes and print WER and canary exposure side by side.
#   ./run.sh                      full demo: the paper's baseline / PCC / APCC x 2 seeds -> RESULTS.md, pcc_comparison*.png
#   ./run.sh --demo_size study    the second memorisation study's primary arms (docs/study.md) -> study/raw, study/RESULTS.md
#   ./run.sh --demo_size study_sorted  its exploratory sorted-batch arms, added to study/raw and the report
#   ./run.sh --demo_size study3 --seeds 0   one seed block of the third study (docs/study.md, "Third study"):
#                                 its 5 arms of seed 0, added to study3/raw; study3/RESULTS.md once seeds 0-4 are in
#   ./run.sh --demo_size privacy  PCC on the Poisson sampler: sigma = 0, noise per utterance, per speaker -> study/PRIVACY.md
#   ./run.sh --demo_size tiny     pipeline check in a few minutes (CI) -> exp/tiny/RESULTS.md
# --seeds "..." replaces a size's seeds; --stage/--stop_stage select stages as in ./pcc_asr.sh (1-10; for the
# study sizes stage 9 is the study's own export and report, which replace pcc_asr.sh's report).
# Any other option goes to ./pcc_asr.sh (e.g. --asr_args "--max_epoch 2").
set -euo pipefail
. ./path.sh
# One torch thread per process: on a small shared CPU, OpenMP threads spinning against other
# processes made training up to 15x slower (measured). The cores are used by running jobs side
# by side instead: three models are trained, decoded and scored at once (--model_jobs 3).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

demo_size=${DEMO_SIZE:-full}
started="$(date -u '+%Y-%m-%d %H:%M UTC')"
stage=1
stop_stage=""
seeds=""
args=()
study_args=()
results=()
need_value() { [ "$1" -ge 2 ] || { echo "$0: error: $2 needs a value" >&2; exit 1; }; }
while [ $# -gt 0 ]; do
    case "$1" in
        --demo_size) need_value $# "$1"; demo_size=$2; shift 2 ;;
        --demo_size=*) demo_size=${1#*=}; shift ;;
        --stage) need_value $# "$1"; stage=$2; shift 2 ;;
        --stage=*) stage=${1#*=}; shift ;;
        --stop_stage) need_value $# "$1"; stop_stage=$2; shift 2 ;;
        --stop_stage=*) stop_stage=${1#*=}; shift ;;
        --seeds) need_value $# "$1"; seeds=$2; shift 2 ;;
        --seeds=*) seeds=${1#*=}; shift ;;
        *) args+=("$1"); shift ;;
    esac
done
# study_stage: the stage of a study size's own export and report (they replace pcc_asr.sh's
# stage 9, so pcc_asr.sh stops at 8 for them); empty: pcc_asr.sh's stages alone.
study_stage=""
case "${demo_size}" in
    full) corpus=downloads/SynthSpeech; model=demo; decode=demo; datadir=data; expdir=exp
          # What the studies learnt (study/RESULTS.md, docs/study.md): a run is the unit, so two
          # seeds per arm (intervals over runs; add seeds with --seeds "0 1 2 ..."); the arms are
          # the paper's: its baseline (PCC's four per-core forwards, their average clipped to C),
          # PCC and APCC, so every difference is the clipping alone; the batches are shuffled
          # afresh every epoch (the configs' batch_sampler); x16 canaries sit at the rank cap in
          # every arm, so the counts stop at x8 (15 canaries each, 60 pooled). The canaries'
          # transcription is not decoded (exposure is the paper's measure; it keeps the demo
          # near half an hour).
          canaries="--repeat_counts 1 2 4 8 --canaries_per_count 15 --num_references 1000"
          configs="conf/train_asr_demo_paperbase.yaml conf/train_asr_demo_pcc.yaml conf/train_asr_demo_apcc.yaml"
          default_seeds="0 1"
          study_args=(--decode_canaries false)
          results=(--results_md RESULTS.md --results_png pcc_comparison.png) ;;
    study) corpus=downloads/SynthSpeech; datadir=data/study; expdir=exp/study; decode=demo
          # The second memorisation study's primary arms (docs/study.md, "Pre-registered plan"):
          # baseline / control / PCC on shuffled batches x 5 seeds, every epoch's checkpoint scored.
          canaries="--repeat_counts 1 2 4 8 16 --canaries_per_count 10 --num_references 1000"
          default_seeds="0 1 2 3 4"
          study_args=(--score_epochs "1 2 3 4 5 6" --inference_asr_model valid.acc.ave_3best.pth --model_jobs 2)
          configs="conf/train_asr_shuffled_baseline.yaml conf/train_asr_shuffled_control.yaml conf/train_asr_shuffled_pcc.yaml"
          study_stage=9 ;;
    study_sorted) corpus=downloads/SynthSpeech; datadir=data/study; expdir=exp/study; decode=demo
          # The study's exploratory sorted-batch arms: the same three on ESPnet's folded batches x 3 seeds.
          canaries="--repeat_counts 1 2 4 8 16 --canaries_per_count 10 --num_references 1000"
          default_seeds="0 1 2"
          study_args=(--score_epochs "1 2 3 4 5 6" --inference_asr_model valid.acc.ave_3best.pth --model_jobs 2)
          configs="conf/train_asr_study_baseline.yaml conf/train_asr_study_control.yaml conf/train_asr_study_pcc.yaml"
          study_stage=9 ;;
    study3) corpus=downloads/SynthSpeech; datadir=data/study; expdir=exp/study3; decode=demo
          # The third study (docs/study.md, "Third study: pre-registered plan"): five arms on
          # shuffled batches, every epoch's checkpoint scored for exposure (the canaries are not
          # decoded), run in seed blocks (--seeds 0, then --seeds 1, ...: every arm of a seed on
          # one machine in one session), each block's raw data merged into study3/raw.
          canaries="--repeat_counts 1 2 4 8 16 --canaries_per_count 10 --num_references 1000"
          default_seeds="0 1 2 3 4"
          study_args=(--score_epochs "1 2 3 4 5 6" --inference_asr_model valid.acc.ave_3best.pth --model_jobs 2
                      --decode_canaries false)
          configs="conf/train_asr_shuffled_baseline.yaml conf/train_asr_shuffled_paperbase.yaml conf/train_asr_shuffled_control.yaml conf/train_asr_shuffled_pcc.yaml conf/train_asr_shuffled_apcc.yaml"
          study_stage=9 ;;
    privacy) corpus=downloads/SynthSpeech; datadir=data/study; expdir=exp/study; decode=demo
          # The study's PCC on the Poisson sampler (docs/privacy.md), in the study's data and
          # expdir: sigma = 0, noise accounted per utterance, per speaker; 3 configs x 3 seeds.
          canaries="--repeat_counts 1 2 4 8 16 --canaries_per_count 10 --num_references 1000"
          default_seeds="0 1 2"
          study_args=(--score_epochs "2 4 6" --inference_asr_model valid.acc.ave_3best.pth --model_jobs 2)
          configs="conf/train_asr_privacy_pcc.yaml conf/train_asr_privacy_noise.yaml conf/train_asr_privacy_spk.yaml"
          results=(--results_md study/PRIVACY.md --results_png study/privacy_comparison.png) ;;
    tiny) corpus=downloads/SynthSpeech_tiny; model=tiny; decode=tiny; datadir=data/tiny; expdir=exp/tiny
          canaries="--repeat_counts 1 4 --canaries_per_count 2 --num_references 20"
          default_seeds=""
          results=() ;;
    *) echo "$0: error: --demo_size ${demo_size}: use full, study, study_sorted, study3, privacy or tiny" >&2; exit 1 ;;
esac
seeds=${seeds:-${default_seeds}}
[ -z "${seeds}" ] || study_args+=(--seeds "${seeds}")
# Stage bounds: pcc_asr.sh checks them; the steps here run only where their stage is selected.
for _b in "${stage}" "${stop_stage:-1}"; do
    [[ "${_b}" =~ ^[0-9]+$ ]] || { echo "$0: error: --stage/--stop_stage must be integers, got '${_b}'" >&2; exit 1; }
done
if [ -n "${study_stage}" ]; then
    stop_stage=${stop_stage:-${study_stage}}
    asr_stop_stage=$(( stop_stage < study_stage - 1 ? stop_stage : study_stage - 1 ))
else
    stop_stage=${stop_stage:-10}
    asr_stop_stage=${stop_stage}
fi
[ "${stage}" -ge 1 ] && [ "${stop_stage}" -le 10 ] && [ "${stop_stage}" -ge "${stage}" ] \
    || { echo "$0: error: --stage ${stage} --stop_stage ${stop_stage}: the stages are 1-10, in order" >&2; exit 1; }
selected() { [ "${stage}" -le "$1" ] && [ "${stop_stage}" -ge "$1" ]; }
study_tags=$(for c in ${configs:-}; do c=${c#conf/}; for s in ${seeds}; do echo "asr_${c%.yaml}_seed${s}"; done; done)

# "Download": build the corpus (stage 1's input; skipped when it exists with the same settings).
corpus_size=full  # the studies and the privacy study train on the full demo corpus
[ "${demo_size}" = tiny ] && corpus_size=tiny
if selected 1; then
    python3 -m espnet_pcc.bin.make_synth_corpus --output_dir "${corpus}" --size "${corpus_size}"
fi

if [ "${stage}" -le "${asr_stop_stage}" ]; then
    ./pcc_asr.sh \
        --corpus_dir "${corpus}" --datadir "${datadir}" --expdir "${expdir}" \
        --train_set train --train_splits train --valid_set dev --valid_splits dev --test_splits "dev test" \
        --canary_opts "--text_case upper --vocab wordfreq --vocab_size 200 --num_words 6 --speed 1.6 --seed 0 ${canaries}" \
        --token_type char \
        --asr_configs "${configs:-conf/train_asr_${model}_baseline.yaml conf/train_asr_${model}_pcc.yaml conf/train_asr_${model}_apcc.yaml}" \
        --inference_config "conf/decode_asr_${decode}.yaml" \
        --ngpu 0 --nj 2 --stats_nj 2 --inference_nj 1 --model_jobs 3 \
        --results_title "RESULTS (synthetic demo, ${demo_size})" "${results[@]}" "${study_args[@]}" \
        --stage "${stage}" --stop_stage "${asr_stop_stage}" "${args[@]}"
fi

# A study size's stage 9: its raw data (committed) and its pre-registered analysis, rebuilt by
# study_report from the raw data alone.
if [ -n "${study_stage}" ] && selected "${study_stage}"; then
    commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    # Code or configs changed since that commit (the raw data and reports do not count).
    [ "${commit}" = unknown ] || git -C ../../.. diff --quiet HEAD -- espnet_pcc conf egs2/TEMPLATE \
        egs2/synth_demo/asr1/run.sh || commit+=" with uncommitted code changes"
    case "${demo_size}" in
    study|study_sorted)
        # How the runs were made, kept with their raw data (meta.json) and printed in the report.
        study_notes=${STUDY_NOTES:-"The ${demo_size} runs: made by ./run.sh --demo_size ${demo_size} in egs2/synth_demo/asr1 (${started}, commit ${commit})."}
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
        fi ;;
    study3)
        # A seed block's provenance: the machine (blocks may run on different machines; every
        # arm of a seed on the same one), the time and the code.
        cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
        study_notes=${STUDY_NOTES:-"Seed block ${seeds}: ./run.sh --demo_size study3 --seeds '${seeds}' in egs2/synth_demo/asr1 on $(uname -n) (${cpu:-CPU unknown}, $(nproc --all) cores), ${started} to $(date -u '+%Y-%m-%d %H:%M UTC'), commit ${commit}."}
        python3 -m espnet_pcc.bin.study_export --expdir "${expdir}" --asr_tags ${study_tags} \
            --score_epochs 1 2 3 4 5 6 --decode_tag decode_decode_asr_demo_valid.acc.ave_3best \
            --epoch_decode_tag 'decode_decode_asr_demo_{epoch}epoch' --test_sets dev test \
            --canary_accuracy false --output_dir study3/raw --merge true --notes "${study_notes}"
        # Written once every arm of seeds 0-4 is in study3/raw; until then it names the blocks in.
        python3 -m espnet_pcc.bin.study_report --study third --skip_incomplete true \
            --raw_dir study3/raw --output_md study3/RESULTS.md --output_png study3/claims.png \
            --title "RESULTS (third study: the paper's claims, pre-registered)" ;;
    esac
fi
