#!/usr/bin/env bash
# Real human speech: the Czech voice acting of the game Fish Fillets NG (Debian's packages
# fillets-ng-data and fillets-ng-data-cs, GPL-2; about 1.6 h of acted dialogue, two main voices),
# and the memorisation study's primary comparison on it (docs/study.md, "Real speech").
#   ./run.sh                        fetch the packages (apt-get download, no install), prepare,
#                                   canaries in Czech, baseline / control / PCC x 2 seeds,
#                                   -> RESULTS.md (utility), study/raw + study/RESULTS.md
#   ./run.sh --fillets_dir DIR      an extracted copy of the packages instead of the download
#   ./run.sh --seeds "0 1 2 3 4"    more seeds (resumable: finished stages are skipped)
#   ./run.sh --stage 1 --stop_stage 1    data preparation only: the steps here run only where
#                                   their stage is selected (the corpus: stage 1; the study's
#                                   export and report: stage 9)
# Any other option goes to ./pcc_asr.sh (e.g. --asr_args "--max_epoch 2").
set -euo pipefail
. ./path.sh
# One torch thread per process; the models train side by side (--model_jobs 2).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

fillets_dir=${FILLETS_DIR:-}
seeds=${SEEDS:-"0 1"}
stage=1
stop_stage=9
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --fillets_dir) [ $# -ge 2 ] || { echo "$0: error: --fillets_dir needs a value" >&2; exit 1; }; fillets_dir=$2; shift 2 ;;
        --seeds) [ $# -ge 2 ] || { echo "$0: error: --seeds needs a value" >&2; exit 1; }; seeds=$2; shift 2 ;;
        --stage) [ $# -ge 2 ] || { echo "$0: error: --stage needs a value" >&2; exit 1; }; stage=$2; shift 2 ;;
        --stage=*) stage=${1#*=}; shift ;;
        --stop_stage) [ $# -ge 2 ] || { echo "$0: error: --stop_stage needs a value" >&2; exit 1; }; stop_stage=$2; shift 2 ;;
        --stop_stage=*) stop_stage=${1#*=}; shift ;;
        *) args+=("$1"); shift ;;
    esac
done
for _b in "${stage}" "${stop_stage}"; do
    [[ "${_b}" =~ ^[0-9]+$ ]] || { echo "$0: error: --stage/--stop_stage must be integers, got '${_b}'" >&2; exit 1; }
done
[ "${stage}" -ge 1 ] && [ "${stop_stage}" -le 10 ] && [ "${stop_stage}" -ge "${stage}" ] \
    || { echo "$0: error: --stage ${stage} --stop_stage ${stop_stage}: the stages are 1-10, in order" >&2; exit 1; }
# The steps of this script run only where their stage is selected.
selected() { [ "${stage}" -le "$1" ] && [ "${stop_stage}" -ge "$1" ]; }
corpus=downloads/FilletsCS
score_epochs="2 4 6 8"

# "Download" (stage 1's input): the Debian packages into downloads/debs (or an extracted copy),
# then the corpus in LibriSpeech's layout (16 kHz flac, split by level; kept when it exists with
# the same settings).
if selected 1; then
    if [ -n "${fillets_dir}" ]; then source=(--corpus_dir "${fillets_dir}"); else source=(--download_dir downloads/debs); fi
    python3 -m espnet_pcc.bin.make_fillets_corpus --lang cs "${source[@]}" --output_dir "${corpus}" --nj 2
fi

configs="conf/train_asr_fillets_baseline.yaml conf/train_asr_fillets_control.yaml conf/train_asr_fillets_pcc.yaml"
tags=$(for c in ${configs}; do c=${c#conf/}; for s in ${seeds}; do echo "asr_${c%.yaml}_seed${s}"; done; done)
corpus_notes="not described (${corpus}/corpus.json missing: run stage 1)"
if [ -f "${corpus}/corpus.json" ]; then
    corpus_notes=$(python3 -c "import json,sys; from espnet_pcc.recipe.fillets import describe; print(describe(json.load(open(sys.argv[1]))).replace(chr(10), '; '))" "${corpus}/corpus.json")
fi

./pcc_asr.sh \
    --corpus_dir "${corpus}" --datadir data --expdir exp \
    --train_set train --train_splits train --valid_set dev --valid_splits dev --test_splits "dev test" \
    --canary_opts "--language cs --vocab data/train/text --vocab_format kaldi_text --text_case upper --num_words 6 --speed 1.6 --seed 0 --repeat_counts 1 2 4 8 16 --canaries_per_count 10 --num_references 1000" \
    --token_type char \
    --asr_configs "${configs}" --inference_config conf/decode_asr_demo.yaml \
    --ngpu 0 --nj 2 --stats_nj 2 --inference_nj 1 --model_jobs 2 \
    --seeds "${seeds}" --score_epochs "${score_epochs}" --inference_asr_model valid.acc.ave_3best.pth \
    --stage "${stage}" --stop_stage "${stop_stage}" \
    --results_title "RESULTS (real speech: Fish Fillets NG, Czech)" --results_md RESULTS.md \
    --results_png pcc_comparison.png \
    --results_notes "Corpus (make_fillets_corpus, split by level): ${corpus_notes}." "${args[@]}"

# Stage 9 (beside pcc_asr.sh's report): the study's primary comparison, from its raw data
# (committed) alone: from 2 seeds per arm.
selected 9 || exit 0
if [ "$(echo ${seeds} | wc -w)" -lt 2 ]; then
    echo "$0: seeds ${seeds}: the comparison needs 2 seeds per arm at least; utility in RESULTS.md (run again with --seeds \"0 1\": finished models are kept)" >&2
    exit 0
fi
python3 -m espnet_pcc.bin.study_export --expdir exp --asr_tags ${tags} \
    --score_epochs ${score_epochs} --decode_tag decode_decode_asr_demo_valid.acc.ave_3best \
    --epoch_decode_tag 'decode_decode_asr_demo_{epoch}epoch' --test_sets dev test \
    --output_dir study/raw \
    --notes "Made by ./run.sh in egs2/fillets_cs/asr1 (docs/study.md, 'Real speech'): seeds ${seeds}. Corpus: ${corpus_notes}."
python3 -m espnet_pcc.bin.study_colocation \
    --shape_file exp/asr_stats_raw_char/train/speech_shape \
    --shape_file exp/asr_stats_raw_char/train/text_shape.char \
    --batch_size 16 --fold_length 80000 150 --num_cores 4 --seeds ${seeds} \
    --epochs 1 2 3 4 5 6 7 8 --output_dir study/raw
python3 -m espnet_pcc.bin.study_report --raw_dir study/raw --output_md study/RESULTS.md \
    --output_png study/pcc_comparison.png --title "RESULTS (real speech: Fish Fillets NG, Czech)"
