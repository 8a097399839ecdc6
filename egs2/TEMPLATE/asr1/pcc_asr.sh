#!/usr/bin/env bash
# Shared stage script of the espnet-pcc recipes: baseline vs per-core clipping (PCC, APCC),
# WER and canary exposure side by side. Called by egs2/*/asr1/run.sh, which only set paths,
# sets and configs. ESPnet's asr.sh conventions (--stage/--stop_stage, data/, exp/, logs in
# exp/), but every step is a Python entry point: the pip espnet wheel ships no Kaldi utils/.
#
# Every stage is resumable: complete outputs are kept (skipped) unless --force true, and files
# are written under temp names and renamed, so an interrupted stage leaves nothing half-written.
set -euo pipefail
# shellcheck disable=SC1091
[ -f ./path.sh ] && . ./path.sh

log() {
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${0##*/}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}
die() { echo "${0##*/}: error: $*" >&2; exit 1; }

# ----------------------------------------------------------------------------- options
# name=default pairs; every one can be given as --name value (or --name=value).
_options=()
opt() { _options+=("$1"); printf -v "$1" '%s' "$2"; }

opt stage 1                  # first stage to run
opt stop_stage 9             # last stage to run
opt force false              # redo selected stages even if their outputs are complete
opt python python3           # interpreter with espnet and espnet_pcc installed
opt nj 2                     # parallel jobs for data work / stats collection
opt stats_nj ""              # parallel --collect_stats jobs (default: --nj)
opt inference_nj 2           # parallel decoding jobs
opt ngpu 0                   # GPUs per node for training (0 = CPU)
opt model_jobs 1             # models trained / decoded / scored at once (CPU only)
opt gpu_inference false      # decode / score exposure on GPU
opt num_nodes 1              # >1: multi-node training through espnet2.bin.launch
opt cuda_cmd ""              # job command for espnet2.bin.launch (Kaldi run.pl/queue.pl/slurm.pl)
opt dist_launcher ""         # passed to asr_train: slurm | mpi (launched under ${cuda_cmd})
opt dist_init_method ""      # passed to asr_train, e.g. tcp://host:port or file:///shared/init
opt multiprocessing_distributed true  # one process per GPU on a node (ESPnet's default)
opt datadir data             # Kaldi data dirs, canaries, token lists
opt expdir exp               # stats, models, decoding, reports, logs
opt corpus_dir ""            # extracted LibriSpeech/ (or the synthetic corpus in its layout)
opt train_set train          # name of the training data dir
opt valid_set dev            # name of the validation data dir
opt train_splits ""          # corpus splits combined into ${train_set}
opt valid_splits ""          # corpus splits combined into ${valid_set}
opt test_splits ""           # corpus splits decoded and scored; data dir = split with - -> _
opt use_canary true          # stage 2: insert canaries into the training set (only)
opt canary_opts ""           # extra make_canaries options (repeat counts, |R|, speed ...)
opt token_type bpe           # bpe | char
opt nbpe 5000                # sentencepiece vocabulary size
opt bpemode unigram          # sentencepiece model type (ESPnet's default: unigram)
opt asr_configs ""           # training YAMLs, one model each (differing in clip keys only)
opt asr_args ""              # extra asr_train options for every model
opt feats_type raw           # only raw is supported (espnet2 frontend computes fbank)
opt inference_config ""      # decoding YAML
opt inference_args ""        # extra asr_inference options
opt inference_asr_model valid.acc.ave.pth
opt exposure_args ""         # extra score_exposure options
opt results_md ""            # comparison report (default: ${expdir}/RESULTS.md)
opt results_png ""            # comparison plot (default: ${expdir}/pcc_comparison.png)
opt results_title RESULTS
opt results_notes ""

usage() {
    echo "Usage: $0 [--name value ...]   (stages 1-9: data, canaries, tokens, stats, train,"
    echo "       decode, score, exposure, report)"
    for o in "${_options[@]}"; do printf '  --%-28s %s\n' "$o" "${!o}"; done
}

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --*=*) _name=${1%%=*}; _value=${1#*=}; shift ;;
        --*) [ $# -ge 2 ] || die "option $1 needs a value"; _name=$1; _value=$2; shift 2 ;;
        *) die "unexpected argument '$1' (options are --name value; see --help)" ;;
    esac
    _name=${_name#--}; _name=${_name//-/_}
    [[ " ${_options[*]} " == *" ${_name} "* ]] || die "unknown option --${_name} (see --help)"
    printf -v "${_name}" '%s' "${_value}"
done

[[ "${stage}" =~ ^[0-9]+$ && "${stop_stage}" =~ ^[0-9]+$ ]] || die "--stage/--stop_stage must be integers"
[[ "${model_jobs}" =~ ^[1-9][0-9]*$ ]] || die "--model_jobs ${model_jobs}: must be a positive integer"
[ "${model_jobs}" -eq 1 ] || { [ "${ngpu}" -eq 0 ] && ! "${gpu_inference}"; } \
    || die "--model_jobs ${model_jobs} needs --ngpu 0 and --gpu_inference false (concurrent models would share the GPUs)"
[ "${feats_type}" = raw ] || die "--feats_type ${feats_type}: only raw is supported"
case "${token_type}" in bpe|char) ;; *) die "--token_type ${token_type}: use bpe or char" ;; esac
[ -n "${asr_configs}" ] || die "--asr_configs is empty: give the training YAMLs"
for _c in ${asr_configs} ${inference_config}; do
    [ -f "${_c}" ] || die "no such config ${_c} (available: $(ls conf/*.yaml 2>/dev/null | tr '\n' ' '))"
done
[ -n "${inference_config}" ] || die "--inference_config is empty"

run_stage() { [ "${stage}" -le "$1" ] && [ "${stop_stage}" -ge "$1" ]; }
# require PATH STAGE WHAT: an input of a later stage; names the stage that produces it.
require() { [ -e "$1" ] || die "stage ${_cur}: $3 $1 missing (produced by stage $2; run with --stage $2)"; }
# run_logged LOG CMD...: output to LOG (under exp/); on failure show its error line(s) and stop.
run_logged() {
    local logfile=$1; shift
    mkdir -p "$(dirname "${logfile}")"
    echo "# $*" >"${logfile}"
    echo "# started at $(date)" >>"${logfile}"
    if ! "$@" >>"${logfile}" 2>&1; then
        local msg
        msg=$(grep -E "error: |Error: |Error\b" "${logfile}" | tail -n 1 || true)
        [ -n "${msg}" ] || msg=$(tail -n 1 "${logfile}")
        die "stage ${_cur} failed: ${msg} (log: ${logfile})"
    fi
    echo "# ended at $(date)" >>"${logfile}"
}
stage_begin() { _cur=$1; _t0=$(date +%s); echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${0##*/}:${BASH_LINENO[0]}:main) Stage $1: $2" >&2; }
stage_end() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${0##*/}:${BASH_LINENO[0]}:main) Stage ${_cur} done in $(( $(date +%s) - _t0 )) s" >&2; }

# split_scp SCP N PREFIX: PREFIX.1.scp .. PREFIX.N.scp, round robin (each part stays sorted).
split_scp() {
    local n
    for n in $(seq "$2"); do
        awk -v N="$2" -v K="${n}" '(NR - 1) % N == K - 1' "$1" >"$3.${n}.scp"
    done
}
# run_models FUNC: FUNC TAG for every model, ${model_jobs} at a time. A failing FUNC has
# printed its one-line error (die); the stage then stops naming the models that failed.
run_models() {
    local fn=$1 tag i pids=() tags=() failed=()
    for tag in "${asr_tags[@]}"; do
        if [ "${model_jobs}" -le 1 ]; then "${fn}" "${tag}"; continue; fi
        while [ "$(jobs -rp | wc -l)" -ge "${model_jobs}" ]; do sleep 1; done
        "${fn}" "${tag}" &
        pids+=("$!"); tags+=("${tag}")
    done
    for i in "${!pids[@]}"; do wait "${pids[$i]}" || failed+=("${tags[$i]}"); done
    [ ${#failed[@]} -eq 0 ] || die "stage ${_cur}: failed for ${failed[*]} (errors above; logs in ${expdir}/<model>/)"
}
# Temp dirs of the running stage: removed if the script stops before renaming them.
_tmps=()
trap 'for t in "${_tmps[@]}"; do rm -rf "${t}"; done' EXIT
split2set() { echo "${1//-/_}"; }
test_sets=""
for _s in ${test_splits}; do test_sets+="$(split2set "${_s}") "; done
test_sets=${test_sets% }
if "${use_canary}"; then train_used="${train_set}_canary"; else train_used="${train_set}"; fi
canary_dir="${datadir}/canaries"
if [ "${token_type}" = bpe ]; then
    token_tag="bpe_${bpemode}${nbpe}"
else
    token_tag=char
fi
token_dir="${datadir}/token_list/${token_tag}"
token_list="${token_dir}/tokens.txt"
bpemodel="${token_dir}/bpe.model"
asr_stats_dir="${expdir}/asr_stats_${feats_type}_${token_tag}"
inference_tag="decode_$(basename "${inference_config}" .yaml)_${inference_asr_model%.pth}"
results_md=${results_md:-${expdir}/RESULTS.md}
results_png=${results_png:-${expdir}/pcc_comparison.png}
asr_tags=()
declare -A asr_config  # tag -> training YAML
for _c in ${asr_configs}; do
    asr_tags+=("asr_$(basename "${_c}" .yaml)"); asr_config[${asr_tags[-1]}]=${_c}
done
# Options every espnet2 ASR entry point needs for the tokenizer.
token_opts=(--token_type "${token_type}" --token_list "${token_list}")
[ "${token_type}" = bpe ] && token_opts+=(--bpemodel "${bpemodel}")
_cur=0
mkdir -p "${expdir}"

# ----------------------------------------------------------------------------- 1. data
if run_stage 1; then
    stage_begin 1 "Data preparation: ${corpus_dir} -> ${datadir}/"
    [ -n "${corpus_dir}" ] || die "stage 1: --corpus_dir is empty (set LIBRISPEECH=/path/to/LibriSpeech in run.sh)"
    [ -n "${train_splits}" ] && [ -n "${valid_splits}" ] || die "stage 1: --train_splits and --valid_splits are required"
    ow=(); "${force}" && ow=(--overwrite)
    run_logged "${expdir}/logs/data_prep.${train_set}.log" ${python} -m espnet_pcc.bin.prep_librispeech \
        --corpus_dir "${corpus_dir}" --splits ${train_splits} --output_dir "${datadir}/${train_set}" "${ow[@]}"
    run_logged "${expdir}/logs/data_prep.${valid_set}.log" ${python} -m espnet_pcc.bin.prep_librispeech \
        --corpus_dir "${corpus_dir}" --splits ${valid_splits} --output_dir "${datadir}/${valid_set}" "${ow[@]}"
    for s in ${test_splits}; do
        run_logged "${expdir}/logs/data_prep.$(split2set "${s}").log" ${python} -m espnet_pcc.bin.prep_librispeech \
            --corpus_dir "${corpus_dir}" --splits "${s}" --output_dir "${datadir}/$(split2set "${s}")" "${ow[@]}"
    done
    stage_end
fi

# ----------------------------------------------------------------------------- 2. canaries
if run_stage 2; then
    stage_begin 2 "Canaries: generate into ${canary_dir}, insert into ${datadir}/${train_used}"
    if "${use_canary}"; then
        require "${datadir}/${train_set}/text" 1 "training data"
        if "${force}"; then rm -rf "${datadir:?}/${train_used}"; fi
        ow=(); "${force}" && ow=(--overwrite)
        # shellcheck disable=SC2086
        run_logged "${expdir}/logs/make_canaries.log" ${python} -m espnet_pcc.bin.make_canaries \
            --output_dir "${canary_dir}" --nj "${nj}" ${canary_opts} "${ow[@]}"
        run_logged "${expdir}/logs/insert_canaries.log" ${python} -m espnet_pcc.bin.insert_canaries \
            --train_dir "${datadir}/${train_set}" --canary_dir "${canary_dir}" \
            --output_dir "${datadir}/${train_used}"
    else
        log "use_canary=false: training on ${datadir}/${train_set} as is"
    fi
    stage_end
fi

# ----------------------------------------------------------------------------- 3. tokens
if run_stage 3; then
    stage_begin 3 "Token list (${token_tag}) from ${datadir}/${train_set}/text"
    require "${datadir}/${train_set}/text" 1 "training text"
    "${force}" && rm -rf "${token_dir}"
    if [ -f "${token_list}" ]; then
        log "${token_list} exists: skipped"
    else
        tmp="${token_dir}.tmp"; _tmps+=("${tmp}")
        rm -rf "${tmp}"; mkdir -p "${tmp}"
        tok_opts=(--token_type "${token_type}")
        if [ "${token_type}" = bpe ]; then
            # The tokenizer sees the training text without canaries: it must not encode them.
            run_logged "${expdir}/logs/train_bpe.log" ${python} -m espnet_pcc.bin.train_bpe \
                --text "${datadir}/${train_set}/text" --vocab_size "${nbpe}" --model_type "${bpemode}" \
                --output_prefix "${tmp}/bpe"
            tok_opts+=(--bpemodel "${tmp}/bpe.model")
        fi
        run_logged "${expdir}/logs/tokenize_text.log" ${python} -m espnet2.bin.tokenize_text \
            "${tok_opts[@]}" --input "${datadir}/${train_set}/text" --output "${tmp}/tokens.txt" \
            --field 2- --cleaner none --write_vocabulary true \
            --add_symbol "<blank>:0" --add_symbol "<unk>:1" --add_symbol "<sos/eos>:-1"
        rm -rf "${token_dir}"; mv "${tmp}" "${token_dir}"
        log "${token_list}: $(wc -l <"${token_list}") tokens"
    fi
    # Text the tokenizer cannot express becomes <unk>: an error for the corpus sets trained
    # and validated on, a warning for the sets only scored and for the canaries (drawn from a
    # word list, they may hold a letter a small training text lacks).
    check_opts=(--skip_audio "${token_opts[@]}")
    [ "${token_type}" = bpe ] && check_opts+=(--bpemodel "${bpemodel}")
    run_logged "${expdir}/logs/check_text.log" ${python} -m espnet_pcc.bin.check_data \
        --data_dir "${datadir}/${train_set}" "${datadir}/${valid_set}" "${check_opts[@]}"
    scored=()
    for s in ${test_sets}; do
        [ "${s}" = "${valid_set}" ] || [ ! -d "${datadir}/${s}" ] || scored+=("${datadir}/${s}")
    done
    for s in canaries references; do
        if [ -d "${canary_dir}/${s}" ]; then scored+=("${canary_dir}/${s}"); fi
    done
    if [ ${#scored[@]} -gt 0 ]; then
        run_logged "${expdir}/logs/check_text_test.log" ${python} -m espnet_pcc.bin.check_data \
            --data_dir "${scored[@]}" "${check_opts[@]}" --warn_only
        grep "warning:" "${expdir}/logs/check_text_test.log" >&2 || true
    fi
    stage_end
fi

# ----------------------------------------------------------------------------- 4. stats
first_config=${asr_configs%% *}
if run_stage 4; then
    stage_begin 4 "Shape and feature statistics (--collect_stats) -> ${asr_stats_dir}"
    require "${datadir}/${train_used}/wav.scp" 2 "training data with canaries"
    require "${datadir}/${valid_set}/wav.scp" 1 "validation data"
    require "${token_list}" 3 "token list"
    "${force}" && rm -rf "${asr_stats_dir}"
    if [ -f "${asr_stats_dir}/train/feats_stats.npz" ] && [ -f "${asr_stats_dir}/train/text_shape.${token_type}" ]; then
        log "${asr_stats_dir} exists: skipped"
    else
        tmp="${asr_stats_dir}.tmp"; _tmps+=("${tmp}")
        rm -rf "${tmp}"; mkdir -p "${tmp}/logdir"
        _nj=${stats_nj:-${nj}}
        _nj=$(( _nj < $(wc -l <"${datadir}/${valid_set}/wav.scp") ? _nj : $(wc -l <"${datadir}/${valid_set}/wav.scp") ))
        for d in train valid; do
            [ "${d}" = train ] && src="${datadir}/${train_used}" || src="${datadir}/${valid_set}"
            split_scp "${src}/wav.scp" "${_nj}" "${tmp}/logdir/${d}"
        done
        # The frontend (and so the feature stats) comes from the first config; the clip
        # variants share it. One job per split, in parallel.
        pids=()
        for n in $(seq "${_nj}"); do
            (
                # shellcheck disable=SC2086
                run_logged "${tmp}/logdir/stats.${n}.log" ${python} -m espnet_pcc.bin.asr_train \
                    --collect_stats true --use_preprocessor true "${token_opts[@]}" \
                    --non_linguistic_symbols none --cleaner none --g2p none \
                    --train_data_path_and_name_and_type "${datadir}/${train_used}/wav.scp,speech,sound" \
                    --train_data_path_and_name_and_type "${datadir}/${train_used}/text,text,text" \
                    --valid_data_path_and_name_and_type "${datadir}/${valid_set}/wav.scp,speech,sound" \
                    --valid_data_path_and_name_and_type "${datadir}/${valid_set}/text,text,text" \
                    --train_shape_file "${tmp}/logdir/train.${n}.scp" \
                    --valid_shape_file "${tmp}/logdir/valid.${n}.scp" \
                    --output_dir "${tmp}/logdir/stats.${n}" --config "${first_config}" \
                    --ngpu 0 --num_workers 0 ${asr_args}
            ) &
            pids+=($!)
        done
        failed=0; for p in "${pids[@]}"; do wait "${p}" || failed=1; done
        [ "${failed}" = 0 ] || die "stage 4: --collect_stats failed (logs: ${tmp}/logdir/stats.*.log)"
        stat_dirs=(); for n in $(seq "${_nj}"); do stat_dirs+=(--input_dir "${tmp}/logdir/stats.${n}"); done
        run_logged "${tmp}/logdir/aggregate.log" ${python} -m espnet2.bin.aggregate_stats_dirs \
            "${stat_dirs[@]}" --output_dir "${tmp}"
        # asr.sh convention: text_shape.<token_type> = "length,vocab size"
        vocab_size=$(wc -l <"${token_list}")
        for d in train valid; do
            awk -v N="${vocab_size}" '{ print $0 "," N }' "${tmp}/${d}/text_shape" >"${tmp}/${d}/text_shape.${token_type}"
        done
        rm -rf "${asr_stats_dir}"; mv "${tmp}" "${asr_stats_dir}"
    fi
    stage_end
fi

# ----------------------------------------------------------------------------- 5. training
if run_stage 5; then
    stage_begin 5 "Training: ${asr_tags[*]}"
    require "${datadir}/${train_used}/wav.scp" 2 "training data with canaries"
    require "${token_list}" 3 "token list"
    require "${asr_stats_dir}/train/feats_stats.npz" 4 "feature statistics"
    launcher=()
    if [ "${num_nodes}" -gt 1 ]; then
        [ -n "${cuda_cmd}" ] || die "stage 5: --num_nodes ${num_nodes} needs --cuda_cmd (e.g. 'slurm.pl --gpu ${ngpu}')"
        launcher=(${python} -m espnet2.bin.launch --cmd "${cuda_cmd}" --ngpu "${ngpu}" --num_nodes "${num_nodes}"
                  --multiprocessing_distributed "${multiprocessing_distributed}")
    elif [ -n "${dist_launcher}" ] && [ -n "${cuda_cmd}" ]; then
        read -r -a launcher <<<"${cuda_cmd}"
    fi
    dist_opts=(--ngpu "${ngpu}" --multiprocessing_distributed "${multiprocessing_distributed}")
    [ -n "${dist_launcher}" ] && dist_opts+=(--dist_launcher "${dist_launcher}")
    [ -n "${dist_init_method}" ] && dist_opts+=(--dist_init_method "${dist_init_method}")
    train_one() {
        local asr_exp="${expdir}/$1" config="${asr_config[$1]}" cmd t0 msg
        "${force}" && rm -rf "${asr_exp}"
        if [ -f "${asr_exp}/.done" ] && [ -e "${asr_exp}/${inference_asr_model}" ]; then
            log "${asr_exp} is trained: skipped"; return
        fi
        log "training ${asr_exp} (config ${config}; log ${asr_exp}/train.log)"
        mkdir -p "${asr_exp}"; rm -f "${asr_exp}/.done"
        cmd=("${launcher[@]}")
        if [ "${num_nodes}" -gt 1 ]; then
            cmd+=(--log "${asr_exp}/train.log" --init_file_prefix "${asr_exp}/.dist_init_" --)
        fi
        # shellcheck disable=SC2086
        cmd+=(${python} -m espnet_pcc.bin.asr_train
            --use_preprocessor true "${token_opts[@]}"
            --non_linguistic_symbols none --cleaner none --g2p none
            --train_data_path_and_name_and_type "${datadir}/${train_used}/wav.scp,speech,sound"
            --train_data_path_and_name_and_type "${datadir}/${train_used}/text,text,text"
            --train_shape_file "${asr_stats_dir}/train/speech_shape"
            --train_shape_file "${asr_stats_dir}/train/text_shape.${token_type}"
            --valid_data_path_and_name_and_type "${datadir}/${valid_set}/wav.scp,speech,sound"
            --valid_data_path_and_name_and_type "${datadir}/${valid_set}/text,text,text"
            --valid_shape_file "${asr_stats_dir}/valid/speech_shape"
            --valid_shape_file "${asr_stats_dir}/valid/text_shape.${token_type}"
            --fold_length 80000 --fold_length 150
            --normalize global_mvn --normalize_conf "stats_file=${asr_stats_dir}/train/feats_stats.npz"
            --resume true --output_dir "${asr_exp}" --config "${config}"
            "${dist_opts[@]}" ${asr_args})
        t0=$(date +%s)
        if [ "${num_nodes}" -gt 1 ]; then
            "${cmd[@]}" || die "stage 5: training ${asr_exp} failed (log: ${asr_exp}/train.log)"
        else
            # append: a resumed run keeps the earlier epochs' lines (the report reads them)
            if ! { echo "# ${cmd[*]}"; "${cmd[@]}"; } >>"${asr_exp}/train.log" 2>&1; then
                msg=$(grep -E "error: |Error" "${asr_exp}/train.log" | tail -n 1 || true)
                die "stage 5: training ${asr_exp} failed: ${msg} (log: ${asr_exp}/train.log)"
            fi
        fi
        [ -e "${asr_exp}/${inference_asr_model}" ] || die "stage 5: ${asr_exp}/${inference_asr_model} not written (log: ${asr_exp}/train.log)"
        echo "$(( $(date +%s) - t0 ))" >"${asr_exp}/.done"
        log "${asr_exp}: trained in $(cat "${asr_exp}/.done") s"
    }
    run_models train_one
    stage_end
fi

# ----------------------------------------------------------------------------- 6. decoding
if run_stage 6; then
    stage_begin 6 "Decoding ${test_sets} with ${inference_config}"
    [ -n "${test_sets}" ] || die "stage 6: --test_splits is empty"
    for tag in "${asr_tags[@]}"; do
        require "${expdir}/${tag}/${inference_asr_model}" 5 "trained model"
    done
    for s in ${test_sets}; do require "${datadir}/${s}/wav.scp" 1 "test data"; done
    ngpu_dec=0; "${gpu_inference}" && ngpu_dec=1
    # GPU decoding: job n sees one GPU, round robin over the visible ones (ESPnet's
    # cuda_cmd --gpu 1 role, on one node).
    IFS=, read -r -a gpus <<<"${CUDA_VISIBLE_DEVICES:-$(seq -s, 0 $(( ngpu > 0 ? ngpu - 1 : 0 )))}"
    decode_one() {
        local asr_exp="${expdir}/$1" decode_dir="${expdir}/$1/${inference_tag}"
        local todo=() s f n p n_utt _nj logdir sets pids=() failed=0
        for s in ${test_sets}; do
            "${force}" && rm -rf "${decode_dir:?}/${s}"
            [ -f "${decode_dir}/${s}/text" ] || todo+=("${s}")
        done
        if [ ${#todo[@]} -eq 0 ]; then log "${decode_dir}: all sets decoded: skipped"; return; fi
        # One process per job decodes its share of every set (imports once: ~20 s each).
        _nj=${inference_nj}
        for s in "${todo[@]}"; do
            n_utt=$(wc -l <"${datadir}/${s}/wav.scp"); [ "${n_utt}" -lt "${_nj}" ] && _nj=${n_utt}
        done
        for s in "${todo[@]}"; do
            logdir="${decode_dir}/${s}/logdir"; rm -rf "${logdir}"; mkdir -p "${logdir}"
            split_scp "${datadir}/${s}/wav.scp" "${_nj}" "${logdir}/keys"
        done
        for n in $(seq "${_nj}"); do
            sets=()
            for s in "${todo[@]}"; do
                sets+=(--set "${datadir}/${s}/wav.scp" "${decode_dir}/${s}/logdir/keys.${n}.scp"
                       "${decode_dir}/${s}/logdir/output.${n}")
            done
            (
                "${gpu_inference}" && export CUDA_VISIBLE_DEVICES=${gpus[$(( (n - 1) % ${#gpus[@]} ))]}
                # shellcheck disable=SC2086
                run_logged "${decode_dir}/logdir/asr_inference.${n}.log" ${python} -m espnet_pcc.bin.decode \
                    --asr_train_config "${asr_exp}/config.yaml" --asr_model_file "${asr_exp}/${inference_asr_model}" \
                    --config "${inference_config}" --ngpu "${ngpu_dec}" "${sets[@]}" -- ${inference_args}
            ) &
            pids+=($!)
        done
        for p in "${pids[@]}"; do wait "${p}" || failed=1; done
        [ "${failed}" = 0 ] || die "stage 6: decoding with ${asr_exp} failed (logs: ${decode_dir}/logdir/asr_inference.*.log)"
        for s in "${todo[@]}"; do
            for f in text token score; do
                cat "${decode_dir}/${s}"/logdir/output.*/1best_recog/${f} 2>/dev/null | LC_ALL=C sort >"${decode_dir}/${s}/.${f}.tmp" || true
            done
            for f in token score; do mv "${decode_dir}/${s}/.${f}.tmp" "${decode_dir}/${s}/${f}"; done
            mv "${decode_dir}/${s}/.text.tmp" "${decode_dir}/${s}/text"  # last: marks the set done
        done
        log "${decode_dir}: decoded ${todo[*]}"
    }
    run_models decode_one
    stage_end
fi

# ----------------------------------------------------------------------------- 7. scoring
if run_stage 7; then
    stage_begin 7 "WER/CER scoring (jiwer)"
    for tag in "${asr_tags[@]}"; do
        decode_dir="${expdir}/${tag}/${inference_tag}"
        for s in ${test_sets}; do
            require "${decode_dir}/${s}/text" 6 "hypotheses"
            if ! "${force}" && [ -f "${decode_dir}/${s}/score_wer/result.json" ] \
                && [ "${decode_dir}/${s}/score_wer/result.json" -nt "${decode_dir}/${s}/text" ]; then
                continue
            fi
            run_logged "${decode_dir}/${s}/score.log" ${python} -m espnet_pcc.bin.score_wer \
                --data_dir "${datadir}/${s}" --hyp_text "${decode_dir}/${s}/text" --output_dir "${decode_dir}/${s}"
            log "${decode_dir}/${s}: $(grep -o 'WER .*' "${decode_dir}/${s}/score.log" | tail -n 1)"
        done
    done
    stage_end
fi

# ----------------------------------------------------------------------------- 8. exposure
if run_stage 8; then
    stage_begin 8 "Exposure of the canaries"
    if "${use_canary}"; then
        require "${canary_dir}/manifest.json" 2 "canaries"
        dev_opts=(); "${gpu_inference}" && dev_opts=(--device cuda)
        for tag in "${asr_tags[@]}"; do
            require "${expdir}/${tag}/${inference_asr_model}" 5 "trained model"
        done
        expose_one() {
            local asr_exp="${expdir}/$1"
            "${force}" && rm -rf "${asr_exp}/exposure"
            if [ -f "${asr_exp}/exposure/summary.json" ]; then log "${asr_exp}/exposure: skipped"; return; fi
            # shellcheck disable=SC2086
            run_logged "${asr_exp}/exposure.log" ${python} -m espnet_pcc.bin.score_exposure \
                --asr_train_config "${asr_exp}/config.yaml" --asr_model_file "${asr_exp}/${inference_asr_model}" \
                --canary_dir "${canary_dir}" --output_dir "${asr_exp}/exposure" "${dev_opts[@]}" ${exposure_args}
            log "${asr_exp}/exposure/summary.json written"
        }
        run_models expose_one
    else
        log "use_canary=false: no exposure to score"
    fi
    stage_end
fi

# ----------------------------------------------------------------------------- 9. report
if run_stage 9; then
    stage_begin 9 "Comparison report -> ${results_md}, ${results_png}"
    for tag in "${asr_tags[@]}"; do
        for s in ${test_sets}; do
            require "${expdir}/${tag}/${inference_tag}/${s}/score_wer/result.json" 7 "WER"
        done
        "${use_canary}" && require "${expdir}/${tag}/exposure/summary.json" 8 "exposure summary"
    done
    exposure_req=(); "${use_canary}" || exposure_req=(--exposure_name none)
    run_logged "${expdir}/logs/report.log" ${python} -m espnet_pcc.bin.report --expdir "${expdir}" \
        --asr_tags "${asr_tags[@]}" --decode_tag "${inference_tag}" --test_sets ${test_sets} \
        --output_md "${results_md}" --output_png "${results_png}" --title "${results_title}" \
        --notes "${results_notes}" "${exposure_req[@]}"
    grep '^|' "${expdir}/logs/report.log" || true
    log "wrote ${results_md} and ${results_png}"
    stage_end
fi

log "Successfully finished stages ${stage}-${stop_stage}"
