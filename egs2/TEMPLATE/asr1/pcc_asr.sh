#!/usr/bin/env bash
# Shared stage script of the espnet-pcc recipes: baseline vs per-core clipping (PCC, APCC),
# WER and canary exposure side by side. Called by egs2/*/asr1/run.sh, which only set paths,
# sets and configs. ESPnet's asr.sh conventions (--stage/--stop_stage, data/, exp/, logs in
# exp/, path.sh, cmd.sh), but every step is a Python entry point: the pip espnet wheel ships
# no Kaldi utils/.
#
# Nothing stale: every output records what made it (DIR/.done: options, config contents, the
# stamps of its inputs) and is reused only when all of that is unchanged; anything else is made
# again (--force true: always). Files are written under temp names and renamed, so an
# interrupted stage leaves nothing half-written.
set -euo pipefail
# shellcheck disable=SC1091
[ -f ./path.sh ] && . ./path.sh
# Job commands (ESPnet's cmd.sh): train_cmd, cuda_cmd, decode_cmd; empty = run here.
# shellcheck disable=SC1091
[ -f ./cmd.sh ] && . ./cmd.sh

log() {
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${0##*/}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}
die() { echo "${0##*/}: error: $*" >&2; exit 1; }

# ----------------------------------------------------------------------------- options
# name=default pairs; every one can be given as --name value (or --name=value).
_options=()
_helps=()
# opt NAME DEFAULT HELP: declare option --NAME (--help prints HELP beside it).
opt() { _options+=("$1"); _helps+=("$3"); printf -v "$1" '%s' "$2"; }

opt stage 1 "first stage to run"
opt stop_stage 10 "last stage to run"
opt force false "redo selected stages even if their outputs are complete"
opt python python3 "interpreter with espnet and espnet_pcc installed"
opt nj 2 "parallel jobs for data work / stats collection"
opt stats_nj "" "parallel --collect_stats jobs (default: --nj)"
opt inference_nj 2 "parallel decoding jobs"
opt ngpu 0 "GPUs per node for training (0 = CPU)"
opt model_jobs 1 "models trained / decoded / scored at once (CPU only)"
opt gpu_inference false "decode / score exposure on GPU"
opt num_nodes 1 ">1: multi-node training through espnet2.bin.launch"
opt train_cmd "${train_cmd:-}" "job command (cmd.sh) of --collect_stats jobs and CPU training: Kaldi run.pl / queue.pl / slurm.pl (called as CMD --gpu N LOG COMMAND) or any prefix such as srun (CMD COMMAND); empty: run here"
opt cuda_cmd "${cuda_cmd:-}" "job command (cmd.sh) of GPU jobs: training with --ngpu > 0 (.pl: --gpu ngpu), decoding / exposure with --gpu_inference true, espnet2.bin.launch with --num_nodes > 1"
opt decode_cmd "${decode_cmd:-}" "job command (cmd.sh) of CPU decoding and exposure scoring jobs"
opt dist_launcher "" "passed to asr_train: slurm | mpi (launched under \${cuda_cmd})"
opt dist_init_method "" "passed to asr_train, e.g. tcp://host:port or file:///shared/init"
opt multiprocessing_distributed true "one process per GPU on a node (ESPnet's default)"
opt datadir data "Kaldi data dirs, canaries, token lists"
opt expdir exp "stats, models, decoding, reports, logs"
opt corpus_dir "" "extracted LibriSpeech/ (or the synthetic corpus in its layout)"
opt train_set train "name of the training data dir"
opt speed_perturb_factors "" "stage 1: speed perturbation of the training set only, as ESPnet (LibriSpeech: \"0.9 1.0 1.1\"; ids sp<factor>-, into \${train_set}_sp); canaries are inserted after it and never perturbed"
opt valid_set dev "name of the validation data dir"
opt train_splits "" "corpus splits combined into \${train_set}"
opt valid_splits "" "corpus splits combined into \${valid_set}"
opt test_splits "" "corpus splits decoded and scored; data dir = split with - -> _"
opt use_canary true "stage 2: insert canaries into the training set (only)"
opt canary_opts "" "extra make_canaries options (repeat counts, |R|, speed ...)"
opt token_type bpe "bpe | char"
opt nbpe 5000 "sentencepiece vocabulary size"
opt bpemode unigram "sentencepiece model type (ESPnet's default: unigram)"
opt asr_configs "" "training YAMLs, one model each (differing in clip keys only)"
opt sweep_configs "" "more training YAMLs trained with the first of --seeds only (a granularity / C sweep), reported beside --asr_configs"
opt asr_args "" "extra asr_train options for every model"
opt feats_type raw "only raw is supported (espnet2 frontend computes fbank)"
opt inference_config "" "decoding YAML"
opt inference_args "" "extra asr_inference options"
opt inference_asr_model valid.acc.ave.pth "model file decoded and scored (ESPnet's n-best average)"
opt exposure_args "" "extra score_exposure options"
opt seeds "" "training seeds: every config trained once per seed (model init + data order; tag suffix _seed<N>); empty: the config's own seed"
opt score_epochs "" "epochs whose checkpoints (<N>epoch.pth) are also scored: canary decoding + exposure (configs must keep them: keep_nbest_models >= max_epoch)"
opt decode_canaries true "stage 6/7: decode the canaries and a reference sample, score transcription accuracy (Wang et al. 2023)"
opt num_decoded_references 100 "never-inserted references decoded as the control of canary accuracy"
opt fold_length "80000 150" "espnet2 --fold_length per input (speech samples, text tokens)"
opt feats_normalize global_mvn "espnet2 --normalize (stats from stage 4)"
opt results_md "" "comparison report (default: \${expdir}/RESULTS.md)"
opt results_png "" "comparison plot (default: \${expdir}/pcc_comparison.png)"
opt results_title RESULTS "first heading of the report"
opt results_notes "" "a paragraph added under the comparison table"

usage() {
    echo "Usage: $0 [--name value ...]   (stages 1-10: data (+ speed perturbation), canaries,"
    echo "       tokens, stats, train, decode, score, exposure, report, pack)"
    local i o
    for i in "${!_options[@]}"; do
        o=${_options[$i]}
        printf '  --%-24s %s\n  %-26s (default: "%s")\n' "$o" "${_helps[$i]}" "" "${!o}"
    done
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
[ "${stage}" -ge 1 ] && [ "${stage}" -le 10 ] || die "--stage ${stage}: the stages are 1-10"
[ "${stop_stage}" -ge 1 ] && [ "${stop_stage}" -le 10 ] || die "--stop_stage ${stop_stage}: the stages are 1-10"
[ "${stop_stage}" -ge "${stage}" ] || die "--stop_stage ${stop_stage} is before --stage ${stage}"
[[ "${model_jobs}" =~ ^[1-9][0-9]*$ ]] || die "--model_jobs ${model_jobs}: must be a positive integer"
[ "${model_jobs}" -eq 1 ] || { [ "${ngpu}" -eq 0 ] && ! "${gpu_inference}"; } \
    || die "--model_jobs ${model_jobs} needs --ngpu 0 and --gpu_inference false (concurrent models would share the GPUs)"
[ "${feats_type}" = raw ] || die "--feats_type ${feats_type}: only raw is supported"
case "${token_type}" in bpe|char) ;; *) die "--token_type ${token_type}: use bpe or char" ;; esac
for _s in ${seeds}; do [[ "${_s}" =~ ^[0-9]+$ ]] || die "--seeds: '${_s}' is not a non-negative integer"; done
for _e in ${score_epochs}; do [[ "${_e}" =~ ^[1-9][0-9]*$ ]] || die "--score_epochs: '${_e}' is not an epoch number"; done
[[ "${num_decoded_references}" =~ ^[0-9]+$ ]] || die "--num_decoded_references ${num_decoded_references}: must be a non-negative integer"
for _f in ${speed_perturb_factors}; do
    [[ "${_f}" =~ ^[0-9]*\.?[0-9]+$ ]] && [[ "${_f}" =~ [1-9] ]] || die "--speed_perturb_factors: '${_f}' is not a positive number"
done

# A config that is named must exist, whatever the stages; an empty --asr_configs or
# --inference_config is an error only for the stages that use them (stages 1-3 run without).
for _c in ${asr_configs} ${sweep_configs} ${inference_config}; do
    [ -f "${_c}" ] || die "no such config ${_c} (available: $(ls conf/*.yaml 2>/dev/null | tr '\n' ' '))"
done
run_stage() { [ "${stage}" -le "$1" ] && [ "${stop_stage}" -ge "$1" ]; }
need_configs() { [ -n "${asr_configs}" ] || die "stage ${_cur}: --asr_configs is empty: give the training YAMLs"; }
need_inference_config() { [ -n "${inference_config}" ] || die "stage ${_cur}: --inference_config is empty"; }
# require PATH STAGE WHAT: an input of a later stage; names the stage that produces it.
require() { [ -e "$1" ] || die "stage ${_cur}: $3 $1 missing (produced by stage $2; run with --stage $2)"; }
# The one completion rule of every stage output: DIR/.done is written last, after everything
# in DIR is in place, and records what made the output (options, config contents, the stamps
# of its inputs). An output counts as done only when .done exists and records the same thing;
# otherwise (or with --force) it is made again. Keys chain: an input's stamp includes its own
# .done, so a change anywhere upstream reaches every output made from it.
is_done() { ! "${force}" && [ -f "$1/.done" ] && [ "$(cat "$1/.done")" = "$2" ]; }
mark_done() { mkdir -p "$1"; printf '%s\n' "$2" >"$1/.done.tmp"; mv "$1/.done.tmp" "$1/.done"; }
# stamp PATH...: what a key records of inputs: "PATH:md5" of a file's contents, or of a
# directory's top-level files (a data dir with its .done; a token dir); "PATH:missing" if absent.
stamp() {
    local p out=()
    for p in "$@"; do
        if [ -f "${p}" ]; then
            out+=("${p}:$(md5sum <"${p}" | cut -c1-32)")
        elif [ -d "${p}" ]; then
            out+=("${p}:$(cd "${p}" && find . -maxdepth 1 -type f ! -name '.done.tmp' -print0 | LC_ALL=C sort -z \
                        | xargs -0 -r md5sum | md5sum | cut -c1-32)")
        else
            out+=("${p}:missing")
        fi
    done
    printf '%s' "${out[*]}"
}
# what_made ARG...: the record for .done: the arguments (a command line, options) plus the
# stamp of every argument that is a file (a changed YAML under the same name is another model).
what_made() {
    local a out="$*"
    for a in "$@"; do
        if [ -f "${a}" ]; then out+=" $(stamp "${a}")"; fi
    done
    printf '%s' "${out}"
}
# corpus_stamp SPLIT...: names, sizes and times of the corpus files a data dir is read from,
# in ${corpus_dir} or its LibriSpeech/ subdir (prep_librispeech takes either).
corpus_stamp() {
    local s
    for s in "$@"; do
        find -L "${corpus_dir}/${s}" "${corpus_dir}/LibriSpeech/${s}" \( -name '*.flac' -o -name '*.txt' \) \
            -printf '%p %s %T@\n' 2>/dev/null || true
    done | LC_ALL=C sort | md5sum | cut -c1-32
}
# The training progress lines of espnet_pcc's asr_train (one per epoch) start with this
# (espnet_pcc.espnet2.progress.PROGRESS_PREFIX, "[progress] "), as a sed pattern.
progress_re='\[progress\] '
# run_logged [--cmd JOBCMD] [--gpu N] [--append] [--progress] [--what TEXT] LOG CMD...
# The one way this script runs a command: its output goes to LOG (under exp/); on failure the
# stage stops with the log's error line. --cmd runs it as a job of JOBCMD (ESPnet's cmd.sh): a
# Kaldi job script (run.pl, queue.pl, slurm.pl, ...) is called as JOBCMD --gpu N LOG CMD...,
# any other command is a prefix (JOBCMD CMD..., e.g. srun); empty: run here. --append keeps
# LOG's earlier content (a Kaldi job script writes the attempt to LOG's .job.log, appended to
# LOG when it ends). --progress shows the command's progress lines on the terminal as they
# come. --what names the command in the error line.
run_logged() {
    local jobcmd="" ngpu=0 append=false progress=false what="" logfile joblog offset=0 rc=0 pid fpid msg
    local jc=()
    while :; do
        case "$1" in
            --cmd) jobcmd=$2; shift 2 ;;
            --gpu) ngpu=$2; shift 2 ;;
            --append) append=true; shift ;;
            --progress) progress=true; shift ;;
            --what) what=$2; shift 2 ;;
            *) break ;;
        esac
    done
    logfile=$1; shift
    read -r -a jc <<<"${jobcmd}"
    mkdir -p "$(dirname "${logfile}")"
    joblog=${logfile}
    if [ ${#jc[@]} -gt 0 ] && [[ "${jc[0]##*/}" == *.pl ]]; then
        if "${append}"; then
            joblog=${logfile%.log}.job.log
            if [ -f "${joblog}" ]; then cat "${joblog}" >>"${logfile}"; rm -f "${joblog}"; fi  # a killed attempt
        fi
        _job() { "${jc[@]}" --gpu "${ngpu}" "${joblog}" "$@"; }
    else
        if "${append}"; then offset=$(stat -c %s "${logfile}" 2>/dev/null || echo 0); else : >"${logfile}"; fi
        { echo "# ${jc[*]:+${jc[*]} }$*"; echo "# started at $(date)"; } >>"${logfile}"
        _job() { "${jc[@]}" "$@" >>"${joblog}" 2>&1 && echo "# ended at $(date)" >>"${joblog}"; }
    fi
    if "${progress}"; then
        _job "$@" &
        pid=$!
        # Follow the log while the job runs (tail stops when it ends): its progress lines only.
        tail --pid="${pid}" -c "+$(( offset + 1 ))" -F "${joblog}" 2>/dev/null \
            | sed -u -n "s/^.*${progress_re}//p" \
            | while IFS= read -r msg; do log "${msg}"; done &
        fpid=$!
        wait "${pid}" || rc=$?
        wait "${fpid}" || true
    else
        _job "$@" || rc=$?
    fi
    if [ "${joblog}" != "${logfile}" ] && [ -f "${joblog}" ]; then
        cat "${joblog}" >>"${logfile}"; rm -f "${joblog}"
    fi
    if [ "${rc}" -ne 0 ]; then
        msg=$(tail -c "+$(( offset + 1 ))" "${logfile}" | grep -E "error: |Error: |Error\b" | tail -n 1 || true)
        [ -n "${msg}" ] || msg=$(tail -n 1 "${logfile}")
        die "stage ${_cur}${what} failed: ${msg} (log: ${logfile})"
    fi
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
# fan_out N WHAT FUNC ITEM...: FUNC ITEM for every item, N at a time (the one way this script
# runs jobs in parallel: stats jobs, models, decoding jobs). A failing FUNC has printed its
# own one-line error; the stage then stops naming every item that failed. Progress (items
# done of all, elapsed, ETA) goes to the terminal when there is more than one item.
fan_out() {
    local n=$1 what=$2 fn=$3 item i pids=() items=() failed=() t0 done_n=0 total running
    shift 3; total=$#; t0=$(date +%s)
    # reap: collect every finished job (its exit status) and report progress.
    reap() {
        local i el
        running=0
        for i in "${!pids[@]}"; do
            if kill -0 "${pids[$i]}" 2>/dev/null; then running=$(( running + 1 )); continue; fi
            wait "${pids[$i]}" || failed[$i]=${items[$i]}  # indexed: named in item order
            unset "pids[$i]"
            done_n=$(( done_n + 1 ))
            if [ "${total}" -gt 1 ]; then
                el=$(( $(date +%s) - t0 ))
                log "${what}: ${done_n}/${total} done, ${el} s elapsed, ETA $(( el * (total - done_n) / done_n )) s"
            fi
        done
    }
    # Each item runs as a background job even when N is 1: a job keeps `set -e` (a function
    # called on the left of || would not), and one item's failure does not stop the others.
    for item in "$@"; do
        reap
        while [ "${running}" -ge "${n}" ]; do sleep 0.5; reap; done
        "${fn}" "${item}" &
        pids[${#items[@]}]=$!; items+=("${item}")
    done
    reap
    while [ "${running}" -gt 0 ]; do sleep 0.5; reap; done
    [ ${#failed[@]} -eq 0 ] || die "stage ${_cur}: failed for ${failed[*]} (${what}; errors above; logs under ${expdir}/)"
}
# Temp dirs of the running stage: removed if the script stops before renaming them.
_tmps=()
trap 'for t in "${_tmps[@]}"; do rm -rf "${t}"; done' EXIT
split2set() { echo "${1//-/_}"; }
test_sets=""
for _s in ${test_splits}; do test_sets+="$(split2set "${_s}") "; done
test_sets=${test_sets% }
# The training data: ${train_set} (stage 1), speed-perturbed into ${train_set}_sp (stage 1),
# then with the canaries inserted (stage 2).
train_base=${train_set}
[ -z "${speed_perturb_factors}" ] || train_base="${train_set}_sp"
if "${use_canary}"; then train_used="${train_base}_canary"; else train_used="${train_base}"; fi
# Job commands: training (single node), GPU or CPU; decoding and exposure scoring.
if [ "${ngpu}" -gt 0 ] || [ -n "${dist_launcher}" ]; then train_job_cmd=${cuda_cmd}; else train_job_cmd=${train_cmd}; fi
if "${gpu_inference}"; then infer_job_cmd=${cuda_cmd}; else infer_job_cmd=${decode_cmd}; fi
canary_dir="${datadir}/canaries"
refs_sample_dir="${datadir}/canary_references_sample"
if [ "${token_type}" = bpe ]; then
    token_tag="bpe_${bpemode}${nbpe}"
else
    token_tag=char
fi
token_dir="${datadir}/token_list/${token_tag}"
token_list="${token_dir}/tokens.txt"
bpemodel="${token_dir}/bpe.model"
asr_stats_dir="${expdir}/asr_stats_${feats_type}_${token_tag}"
decode_tag() { echo "decode_$(basename "${inference_config}" .yaml)_${1%.pth}"; }
inference_tag=$(decode_tag "${inference_asr_model}")
results_md=${results_md:-${expdir}/RESULTS.md}
results_png=${results_png:-${expdir}/pcc_comparison.png}
# Models: one per config, or one per config and seed (tag suffix _seed<N>).
asr_tags=()
declare -A asr_config asr_seed  # tag -> training YAML, seed ("" = the config's own)
_first_seed=${seeds%% *}
for _c in ${asr_configs} ${sweep_configs}; do
    _seeds=${seeds:-"-"}
    [[ " ${sweep_configs} " == *" ${_c} "* ]] && _seeds=${_first_seed:-"-"}
    for _s in ${_seeds}; do
        _tag="asr_$(basename "${_c}" .yaml)"
        [ "${_s}" = - ] || _tag+="_seed${_s}"
        asr_tags+=("${_tag}"); asr_config[${_tag}]=${_c}; asr_seed[${_tag}]=${_s#-}
    done
done
# Sets decoded in stage 6: set name -> data dir. The canary sets are decoded with every scored
# checkpoint (the memorisation trajectory); the corpus test sets with the final model only.
declare -A set_dir
for _s in ${test_sets}; do set_dir[${_s}]="${datadir}/${_s}"; done
canary_sets=""
if "${use_canary}" && "${decode_canaries}"; then
    canary_sets="canaries"; set_dir[canaries]="${canary_dir}/canaries"
    if [ "${num_decoded_references}" -gt 0 ]; then
        canary_sets+=" references"; set_dir[references]="${refs_sample_dir}"
    fi
fi
# Checkpoints scored (decoded on the canary sets, exposure): the final model, then each epoch.
scored_models=("${inference_asr_model}")
for _e in ${score_epochs}; do scored_models+=("${_e}epoch.pth"); done
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
    prep_one() {  # prep_one SET=SPLITS
        local set=${1%%=*} splits=${1#*=} key
        # shellcheck disable=SC2086
        key="$(what_made prep_librispeech --corpus_dir "${corpus_dir}" --splits ${splits}) corpus:$(corpus_stamp ${splits})"
        if is_done "${datadir}/${set}" "${key}"; then log "${datadir}/${set} is up to date: skipped"; return; fi
        rm -f "${datadir}/${set}/.done"
        # shellcheck disable=SC2086
        run_logged "${expdir}/logs/data_prep.${set}.log" ${python} -m espnet_pcc.bin.prep_librispeech \
            --corpus_dir "${corpus_dir}" --splits ${splits} --output_dir "${datadir}/${set}" --overwrite
        mark_done "${datadir}/${set}" "${key}"
    }
    prep_one "${train_set}=${train_splits}"
    prep_one "${valid_set}=${valid_splits}"
    for s in ${test_splits}; do prep_one "$(split2set "${s}")=${s}"; done
    if [ -n "${speed_perturb_factors}" ]; then
        # As ESPnet's asr.sh: the training set only, one copy per factor (ids sp<factor>-).
        sp_dir="${datadir}/${train_base}"
        # shellcheck disable=SC2086
        key="$(what_made speed_perturb --factors ${speed_perturb_factors}) $(stamp "${datadir}/${train_set}")"
        if is_done "${sp_dir}" "${key}"; then
            log "${sp_dir} is up to date: skipped"
        else
            if "${force}"; then rm -rf "${sp_dir:?}"; fi
            rm -f "${sp_dir}/.done"
            # shellcheck disable=SC2086
            run_logged "${expdir}/logs/speed_perturb.log" ${python} -m espnet_pcc.bin.speed_perturb \
                --data_dir "${datadir}/${train_set}" --factors ${speed_perturb_factors} \
                --output_dir "${sp_dir}" --nj "${nj}"
            mark_done "${sp_dir}" "${key}"
            log "${sp_dir}: $(wc -l <"${sp_dir}/text") utterances (speed factors ${speed_perturb_factors})"
        fi
    fi
    stage_end
fi

# ----------------------------------------------------------------------------- 2. canaries
# After speed perturbation: each canary goes in exactly its repeat count times, never perturbed
# (three speeds of a canary would triple its repeat count).
if run_stage 2; then
    stage_begin 2 "Canaries: generate into ${canary_dir}, insert into ${datadir}/${train_used}"
    if "${use_canary}"; then
        require "${datadir}/${train_base}/text" 1 "training data"
        # shellcheck disable=SC2086
        key=$(what_made make_canaries ${canary_opts})
        if is_done "${canary_dir}" "${key}"; then
            log "${canary_dir} is up to date: skipped"
        else
            rm -f "${canary_dir}/.done"
            # shellcheck disable=SC2086
            run_logged "${expdir}/logs/make_canaries.log" ${python} -m espnet_pcc.bin.make_canaries \
                --output_dir "${canary_dir}" --nj "${nj}" ${canary_opts} --overwrite
            mark_done "${canary_dir}" "${key}"
        fi
        key="$(what_made insert_canaries) $(stamp "${datadir}/${train_base}" "${canary_dir}" "${canary_dir}/canaries")"
        if is_done "${datadir}/${train_used}" "${key}"; then
            log "${datadir}/${train_used} is up to date: skipped"
        else
            rm -rf "${datadir:?}/${train_used}"
            run_logged "${expdir}/logs/insert_canaries.log" ${python} -m espnet_pcc.bin.insert_canaries \
                --train_dir "${datadir}/${train_base}" --canary_dir "${canary_dir}" \
                --output_dir "${datadir}/${train_used}"
            mark_done "${datadir}/${train_used}" "${key}"
        fi
        # The control set of canary accuracy: the first N references (ids are in generation
        # order and every reference is an independent draw, so the first N are a random sample).
        key="$(what_made head -n "${num_decoded_references}") $(stamp "${canary_dir}/references")"
        if ! is_done "${refs_sample_dir}" "${key}"; then
            tmp="${refs_sample_dir}.tmp"; _tmps+=("${tmp}")
            rm -rf "${tmp}"; mkdir -p "${tmp}"
            for f in wav.scp text utt2spk spk2utt; do
                head -n "${num_decoded_references}" "${canary_dir}/references/${f}" >"${tmp}/${f}"
            done
            rm -rf "${refs_sample_dir}"; mv "${tmp}" "${refs_sample_dir}"
            mark_done "${refs_sample_dir}" "${key}"
        fi
    else
        log "use_canary=false: training on ${datadir}/${train_base} as is"
    fi
    stage_end
fi

# ----------------------------------------------------------------------------- 3. tokens
if run_stage 3; then
    stage_begin 3 "Token list (${token_tag}) from ${datadir}/${train_set}/text"
    require "${datadir}/${train_set}/text" 1 "training text"
    # The tokenizer sees the corpus text once: no speed-perturbed copies, no canaries.
    key="$(what_made "${token_type}" "${bpemode}" "${nbpe}") $(stamp "${datadir}/${train_set}/text")"
    if is_done "${token_dir}" "${key}"; then
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
        mark_done "${token_dir}" "${key}"
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
if run_stage 4; then
    stage_begin 4 "Shape and feature statistics (--collect_stats) -> ${asr_stats_dir}"
    need_configs
    first_config=${asr_configs%% *}
    require "${datadir}/${train_used}/wav.scp" 2 "training data with canaries"
    require "${datadir}/${valid_set}/wav.scp" 1 "validation data"
    require "${token_list}" 3 "token list"
    # shellcheck disable=SC2086
    key="$(what_made "${first_config}" ${asr_args}) $(stamp "${datadir}/${train_used}" "${datadir}/${valid_set}" "${token_dir}")"
    if is_done "${asr_stats_dir}" "${key}"; then
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
        stats_one() {
            # shellcheck disable=SC2086
            run_logged --cmd "${train_cmd}" "${tmp}/logdir/stats.$1.log" ${python} -m espnet_pcc.bin.asr_train \
                --collect_stats true --use_preprocessor true "${token_opts[@]}" \
                --non_linguistic_symbols none --cleaner none --g2p none \
                --train_data_path_and_name_and_type "${datadir}/${train_used}/wav.scp,speech,sound" \
                --train_data_path_and_name_and_type "${datadir}/${train_used}/text,text,text" \
                --valid_data_path_and_name_and_type "${datadir}/${valid_set}/wav.scp,speech,sound" \
                --valid_data_path_and_name_and_type "${datadir}/${valid_set}/text,text,text" \
                --train_shape_file "${tmp}/logdir/train.$1.scp" \
                --valid_shape_file "${tmp}/logdir/valid.$1.scp" \
                --output_dir "${tmp}/logdir/stats.$1" --config "${first_config}" \
                --ngpu 0 --num_workers 0 ${asr_args}
        }
        # shellcheck disable=SC2046
        fan_out "${_nj}" "--collect_stats" stats_one $(seq "${_nj}")
        stat_dirs=(); for n in $(seq "${_nj}"); do stat_dirs+=(--input_dir "${tmp}/logdir/stats.${n}"); done
        run_logged "${tmp}/logdir/aggregate.log" ${python} -m espnet2.bin.aggregate_stats_dirs \
            "${stat_dirs[@]}" --output_dir "${tmp}"
        # asr.sh convention: text_shape.<token_type> = "length,vocab size"
        vocab_size=$(wc -l <"${token_list}")
        for d in train valid; do
            awk -v N="${vocab_size}" '{ print $0 "," N }' "${tmp}/${d}/text_shape" >"${tmp}/${d}/text_shape.${token_type}"
        done
        rm -rf "${asr_stats_dir}"; mv "${tmp}" "${asr_stats_dir}"
        mark_done "${asr_stats_dir}" "${key}"
    fi
    stage_end
fi

# ----------------------------------------------------------------------------- 5. training
if run_stage 5; then
    stage_begin 5 "Training: ${asr_tags[*]}"
    need_configs
    require "${datadir}/${train_used}/wav.scp" 2 "training data with canaries"
    require "${token_list}" 3 "token list"
    require "${asr_stats_dir}/train/feats_stats.npz" 4 "feature statistics"
    launcher=()
    if [ "${num_nodes}" -gt 1 ]; then
        [ -n "${cuda_cmd}" ] || die "stage 5: --num_nodes ${num_nodes} needs --cuda_cmd (e.g. 'slurm.pl --gpu ${ngpu}')"
        launcher=(${python} -m espnet2.bin.launch --cmd "${cuda_cmd}" --ngpu "${ngpu}" --num_nodes "${num_nodes}"
                  --multiprocessing_distributed "${multiprocessing_distributed}")
    fi
    dist_opts=(--ngpu "${ngpu}" --multiprocessing_distributed "${multiprocessing_distributed}")
    [ -n "${dist_launcher}" ] && dist_opts+=(--dist_launcher "${dist_launcher}")
    [ -n "${dist_init_method}" ] && dist_opts+=(--dist_init_method "${dist_init_method}")
    fold_opts=(); for f in ${fold_length}; do fold_opts+=(--fold_length "${f}"); done
    train_one() {
        local asr_exp="${expdir}/$1" config="${asr_config[$1]}" cmd t0 key aside seed_opts=()
        [ -n "${asr_seed[$1]}" ] && seed_opts=(--seed "${asr_seed[$1]}")
        "${force}" && rm -rf "${asr_exp}"
        # What makes the model: the config's contents, the options that change it (the number of
        # ranks changes the cores per step) and the stamps of the data, tokens and statistics.
        # shellcheck disable=SC2086
        key="$(what_made "${config}" "${seed_opts[@]}" ${asr_args} "${fold_opts[@]}" --normalize "${feats_normalize}" \
            --ngpu "${ngpu}" --num_nodes "${num_nodes}" --multiprocessing_distributed "${multiprocessing_distributed}") \
$(stamp "${datadir}/${train_used}" "${datadir}/${valid_set}" "${token_dir}" "${asr_stats_dir}" "${asr_stats_dir}/train/feats_stats.npz")"
        if is_done "${asr_exp}" "${key}" && [ -e "${asr_exp}/${inference_asr_model}" ]; then
            log "${asr_exp} is trained: skipped"; return
        fi
        # --resume true continues only a run of these very settings (interrupted, or finished
        # without ${inference_asr_model}); a model made by anything else is set aside, not
        # resumed under other settings.
        if [ -d "${asr_exp}" ] && [ "$(cat "${asr_exp}/.done" 2>/dev/null || cat "${asr_exp}/.started" 2>/dev/null)" != "${key}" ]; then
            aside="${asr_exp}.replaced.$(date +%Y%m%dT%H%M%S)"
            mv "${asr_exp}" "${aside}"
            log "${asr_exp} was made with other settings (data, config or options): moved to ${aside}; training anew"
        fi
        log "training ${asr_exp} (config ${config}; log ${asr_exp}/train.log)"
        mkdir -p "${asr_exp}"; rm -f "${asr_exp}/.done"
        printf '%s\n' "${key}" >"${asr_exp}/.started"
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
            "${fold_opts[@]}"
            --normalize "${feats_normalize}" --normalize_conf "stats_file=${asr_stats_dir}/train/feats_stats.npz"
            --resume true --output_dir "${asr_exp}" --config "${config}"
            "${dist_opts[@]}" "${seed_opts[@]}" ${asr_args})
        t0=$(date +%s)
        if [ "${num_nodes}" -gt 1 ]; then
            "${cmd[@]}" || die "stage 5: training ${asr_exp} failed (log: ${asr_exp}/train.log)"
        else
            # --append: a resumed run keeps the earlier epochs' lines (the report reads them);
            # --progress: one line per epoch on the terminal while the log takes the rest.
            run_logged --cmd "${train_job_cmd}" --gpu "${ngpu}" --append --progress \
                --what ": training ${asr_exp}" "${asr_exp}/train.log" "${cmd[@]}"
        fi
        [ -e "${asr_exp}/${inference_asr_model}" ] || die "stage 5: ${asr_exp}/${inference_asr_model} not written (log: ${asr_exp}/train.log)"
        echo "$(( $(date +%s) - t0 ))" >"${asr_exp}/train_seconds"
        mark_done "${asr_exp}" "${key}"
        log "${asr_exp}: trained in $(cat "${asr_exp}/train_seconds") s"
    }
    fan_out "${model_jobs}" "training" train_one "${asr_tags[@]}"
    stage_end
fi

# ----------------------------------------------------------------------------- 6. decoding
# decode_sets MODEL: the sets decoded with a scored checkpoint (corpus test sets: final only).
decode_sets() {
    if [ "$1" = "${inference_asr_model}" ]; then echo "${test_sets} ${canary_sets}"; else echo "${canary_sets}"; fi
}
# scored_jobs: "TAG/MODEL" for every model and every scored checkpoint (stages 6, 7, 8).
scored_jobs() {
    local tag m
    for tag in "${asr_tags[@]}"; do for m in "${scored_models[@]}"; do echo "${tag}/${m}"; done; done
}
if run_stage 6; then
    stage_begin 6 "Decoding ${test_sets} ${canary_sets} with ${inference_config}"
    need_configs; need_inference_config
    [ -n "${test_sets}" ] || die "stage 6: --test_splits is empty"
    for job in $(scored_jobs); do
        require "${expdir}/${job}" 5 "trained model (keep_nbest_models >= max_epoch keeps every <N>epoch.pth)"
    done
    for s in ${test_sets} ${canary_sets}; do require "${set_dir[${s}]}/wav.scp" 2 "data to decode"; done
    ngpu_dec=0; "${gpu_inference}" && ngpu_dec=1
    # GPU decoding: job n sees one GPU, round robin over the visible ones (ESPnet's
    # cuda_cmd --gpu 1 role, on one node).
    IFS=, read -r -a gpus <<<"${CUDA_VISIBLE_DEVICES:-$(seq -s, 0 $(( ngpu > 0 ? ngpu - 1 : 0 )))}"
    decode_one() {  # decode_one TAG/MODEL
        local tag=${1%%/*} model=${1#*/}
        local asr_exp="${expdir}/${tag}" decode_dir="${expdir}/${tag}/$(decode_tag "${model}")"
        local todo=() s f n_utt _nj logdir key
        declare -A set_key
        # What makes the hypotheses: the decoding options and the stamps of the model file (a
        # retrained model is another input), its config, the tokens and the decoded set.
        # shellcheck disable=SC2086
        key="$(what_made "${inference_config}" ${inference_args}) $(stamp "${asr_exp}/config.yaml" "${asr_exp}/${model}" "${token_dir}")"
        for s in $(decode_sets "${model}"); do
            set_key[${s}]="${key} $(stamp "${set_dir[${s}]}")"
            is_done "${decode_dir}/${s}" "${set_key[${s}]}" || todo+=("${s}")
        done
        if [ ${#todo[@]} -eq 0 ]; then log "${decode_dir}: all sets decoded: skipped"; return; fi
        # One process per job decodes its share of every set (imports once: ~20 s each).
        _nj=${inference_nj}
        for s in "${todo[@]}"; do
            n_utt=$(wc -l <"${set_dir[${s}]}/wav.scp"); [ "${n_utt}" -lt "${_nj}" ] && _nj=${n_utt}
        done
        for s in "${todo[@]}"; do
            rm -rf "${decode_dir:?}/${s}"; logdir="${decode_dir}/${s}/logdir"; mkdir -p "${logdir}"
            split_scp "${set_dir[${s}]}/wav.scp" "${_nj}" "${logdir}/keys"
        done
        decode_job() {
            local sets=() s
            for s in "${todo[@]}"; do
                sets+=(--set "${set_dir[${s}]}/wav.scp" "${decode_dir}/${s}/logdir/keys.$1.scp"
                       "${decode_dir}/${s}/logdir/output.$1")
            done
            # Here (no job command), job n sees one GPU; a job command's scheduler assigns them.
            if "${gpu_inference}" && [ -z "${infer_job_cmd}" ]; then
                export CUDA_VISIBLE_DEVICES=${gpus[$(( ($1 - 1) % ${#gpus[@]} ))]}
            fi
            # shellcheck disable=SC2086
            run_logged --cmd "${infer_job_cmd}" --gpu "${ngpu_dec}" "${decode_dir}/logdir/asr_inference.$1.log" \
                ${python} -m espnet_pcc.bin.decode \
                --asr_train_config "${asr_exp}/config.yaml" --asr_model_file "${asr_exp}/${model}" \
                --config "${inference_config}" --ngpu "${ngpu_dec}" "${sets[@]}" -- ${inference_args}
        }
        # shellcheck disable=SC2046
        fan_out "${_nj}" "decoding ${decode_dir}" decode_job $(seq "${_nj}")
        for s in "${todo[@]}"; do
            for f in text token score; do
                cat "${decode_dir}/${s}"/logdir/output.*/1best_recog/${f} 2>/dev/null | LC_ALL=C sort >"${decode_dir}/${s}/.${f}.tmp" || true
                mv "${decode_dir}/${s}/.${f}.tmp" "${decode_dir}/${s}/${f}"
            done
            mark_done "${decode_dir}/${s}" "${set_key[${s}]}"
        done
        log "${decode_dir}: decoded ${todo[*]}"
    }
    # shellcheck disable=SC2046
    fan_out "${model_jobs}" "decoding" decode_one $(scored_jobs)
    stage_end
fi

# ----------------------------------------------------------------------------- 7. scoring
if run_stage 7; then
    stage_begin 7 "WER/CER scoring (jiwer) and canary transcription accuracy"
    need_configs; need_inference_config
    score_one() {  # score_one TAG/MODEL
        local tag=${1%%/*} model=${1#*/} s key
        local decode_dir="${expdir}/${tag}/$(decode_tag "${model}")"
        for s in $(decode_sets "${model}"); do
            require "${decode_dir}/${s}/.done" 6 "hypotheses"
        done
        if [ "${model}" = "${inference_asr_model}" ]; then
            for s in ${test_sets}; do
                key=$(cat "${decode_dir}/${s}/.done")
                is_done "${decode_dir}/${s}/score_wer" "${key}" && continue
                run_logged "${decode_dir}/${s}/score.log" ${python} -m espnet_pcc.bin.score_wer \
                    --data_dir "${set_dir[${s}]}" --hyp_text "${decode_dir}/${s}/text" --output_dir "${decode_dir}/${s}"
                mark_done "${decode_dir}/${s}/score_wer" "${key}"
                log "${decode_dir}/${s}: $(grep -o 'WER .*' "${decode_dir}/${s}/score.log" | tail -n 1)"
            done
        fi
        [ -n "${canary_sets}" ] || return 0
        local hyps=(--hyp_text "${decode_dir}/canaries/text")
        key="$(cat "${decode_dir}/canaries/.done") $(stamp "${canary_dir}/manifest.json")"
        if [[ " ${canary_sets} " == *" references "* ]]; then
            # The references decoded are a sample: each of it is scored, a lost one as empty.
            hyps+=("${decode_dir}/references/text" --reference_dir "${refs_sample_dir}")
            key+=" $(cat "${decode_dir}/references/.done")"
        fi
        is_done "${decode_dir}/canary_accuracy" "${key}" && return 0
        run_logged "${decode_dir}/canary_accuracy.log" ${python} -m espnet_pcc.bin.score_canary_accuracy \
            --canary_dir "${canary_dir}" "${hyps[@]}" --output_dir "${decode_dir}/canary_accuracy"
        mark_done "${decode_dir}/canary_accuracy" "${key}"
    }
    # shellcheck disable=SC2046
    fan_out 1 "scoring" score_one $(scored_jobs)
    stage_end
fi

# ----------------------------------------------------------------------------- 8. exposure
if run_stage 8; then
    stage_begin 8 "Exposure of the canaries"
    if "${use_canary}"; then
        need_configs
        require "${canary_dir}/manifest.json" 2 "canaries"
        dev_opts=(); ngpu_dec=0; if "${gpu_inference}"; then dev_opts=(--device cuda); ngpu_dec=1; fi
        for job in $(scored_jobs); do
            require "${expdir}/${job}" 5 "trained model (keep_nbest_models >= max_epoch keeps every <N>epoch.pth)"
        done
        expose_one() {  # expose_one TAG/MODEL
            local tag=${1%%/*} model=${1#*/} out key
            local asr_exp="${expdir}/${tag}"
            out="${asr_exp}/exposure"; [ "${model}" = "${inference_asr_model}" ] || out+="_${model%.pth}"
            # shellcheck disable=SC2086
            key="$(what_made ${exposure_args}) $(stamp "${asr_exp}/config.yaml" "${asr_exp}/${model}" "${canary_dir}" \
                "${canary_dir}/canaries" "${canary_dir}/references")"
            if is_done "${out}" "${key}"; then log "${out}: skipped"; return; fi
            # shellcheck disable=SC2086
            run_logged --cmd "${infer_job_cmd}" --gpu "${ngpu_dec}" "${out}.log" ${python} -m espnet_pcc.bin.score_exposure \
                --asr_train_config "${asr_exp}/config.yaml" --asr_model_file "${asr_exp}/${model}" \
                --canary_dir "${canary_dir}" --output_dir "${out}" "${dev_opts[@]}" ${exposure_args}
            mark_done "${out}" "${key}"
            log "${out}/summary.json written"
        }
        # shellcheck disable=SC2046
        fan_out "${model_jobs}" "exposure scoring" expose_one $(scored_jobs)
    else
        log "use_canary=false: no exposure to score"
    fi
    stage_end
fi

# ----------------------------------------------------------------------------- 9. report
if run_stage 9; then
    stage_begin 9 "Comparison report -> ${results_md}, ${results_png}"
    need_configs; need_inference_config
    for tag in "${asr_tags[@]}"; do
        for s in ${test_sets}; do
            require "${expdir}/${tag}/${inference_tag}/${s}/score_wer/result.json" 7 "WER"
        done
        "${use_canary}" && require "${expdir}/${tag}/exposure/summary.json" 8 "exposure summary"
    done
    report_opts=(); "${use_canary}" || report_opts=(--exposure_name none)
    [ -n "${score_epochs}" ] && report_opts+=(--score_epochs ${score_epochs} --epoch_decode_tag "$(decode_tag "{epoch}epoch.pth")")
    [ -n "${canary_sets}" ] && report_opts+=(--canary_accuracy true)
    run_logged "${expdir}/logs/report.log" ${python} -m espnet_pcc.bin.report --expdir "${expdir}" \
        --asr_tags "${asr_tags[@]}" --decode_tag "${inference_tag}" --test_sets ${test_sets} \
        --output_md "${results_md}" --output_png "${results_png}" --title "${results_title}" \
        --notes "${results_notes}" "${report_opts[@]}"
    grep '^|' "${expdir}/logs/report.log" || true
    log "wrote ${results_md} and ${results_png}"
    stage_end
fi

# ----------------------------------------------------------------------------- 10. pack
# A model to share, as ESPnet's asr.sh packs it: config, model, BPE model, feature statistics,
# in one zip that stock espnet2 loads (espnet2.bin.pack asr; Speech2Text after unpacking).
if run_stage 10; then
    stage_begin 10 "Packing each model: espnet2.bin.pack asr -> \${expdir}/<model>/pack/*.zip"
    need_configs
    require "${token_list}" 3 "token list"
    pack_opts=()
    if [ "${feats_normalize}" = global_mvn ]; then
        require "${asr_stats_dir}/train/feats_stats.npz" 4 "feature statistics"
        pack_opts+=(--option "${asr_stats_dir}/train/feats_stats.npz")
    fi
    [ "${token_type}" = bpe ] && pack_opts+=(--option "${bpemodel}")
    for tag in "${asr_tags[@]}"; do
        require "${expdir}/${tag}/${inference_asr_model}" 5 "trained model"
    done
    pack_one() {  # pack_one TAG
        local asr_exp="${expdir}/$1" out key zip tmp
        out="${asr_exp}/pack"; zip="$1_${inference_asr_model%.pth}.zip"
        key="$(what_made pack "${pack_opts[@]}") $(stamp "${asr_exp}/config.yaml" "${asr_exp}/${inference_asr_model}")"
        if is_done "${out}" "${key}"; then log "${out}/${zip}: skipped"; return; fi
        tmp="${out}.tmp"; rm -rf "${tmp}"; mkdir -p "${tmp}"
        run_logged "${tmp}/pack.log" ${python} -m espnet2.bin.pack asr \
            --asr_train_config "${asr_exp}/config.yaml" --asr_model_file "${asr_exp}/${inference_asr_model}" \
            "${pack_opts[@]}" --outpath "${tmp}/${zip}"
        rm -rf "${out}"; mv "${tmp}" "${out}"
        mark_done "${out}" "${key}"
        log "${out}/${zip} written"
    }
    fan_out "${model_jobs}" "packing" pack_one "${asr_tags[@]}"
    stage_end
fi

log "Successfully finished stages ${stage}-${stop_stage}"
