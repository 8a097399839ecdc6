#!/usr/bin/env bash
# The GPU checks of one lent GPU machine, in one run (bench/RESULTS.md "GPU"):
#   1. bench.run --device cuda: the 34 M librispeech_100 conformer at batch 32 (bench/cells.py
#      gpu_cells), stock ESPnet vs global / per_core / adaptive_per_core / per_example, and the
#      clipping work alone (bench/opcost.py) on the GPU;
#   2. exposure scoring throughput on the GPU (bench/bench_exposure.py);
#   3. the recipe's training stage (pcc_asr.sh stage 5) of the tiny synthetic demo on 1 GPU.
# Usage, from the repository root of a machine with a GPU and this project's Python packages:
#   bash bench/gpu_check.sh OUT_DIR [REFERENCES_DIR] [STEPS]
# REFERENCES_DIR: a canary set's references/ spoken beforehand (such a machine may have no
# espeak-ng); without it the exposure benchmark speaks its own. Step 3 needs the tiny demo's
# stages 1-4 run beforehand (./run.sh --demo_size tiny --stop_stage 4). Each step has its own
# time limit and log; a failed step does not stop the others; the exit status is the worst.
# STEPS: the steps to run, of "bench_train bench_exposure train_stage" (default: all).
set -uo pipefail
out=${1:?usage: bash bench/gpu_check.sh OUT_DIR [REFERENCES_DIR]}
refs=${2:-}
steps=" ${3:-bench_train bench_exposure train_stage} "
mkdir -p "${out}"
export PYTHONUNBUFFERED=1 PYTHONPATH="${PWD}${PYTHONPATH:+:${PYTHONPATH}}"
status=0
step() {  # step NAME SECONDS COMMAND...: runs it with a time limit, its output to NAME.log
    local name=$1 seconds=$2 rc
    shift 2
    [[ "${steps}" == *" ${name} "* ]] || return 0
    echo "== ${name} ($(date +%T), limit ${seconds}s): $*"
    timeout "${seconds}" "$@" > "${out}/${name}.log" 2>&1
    rc=$?
    tail -n 25 "${out}/${name}.log"
    echo "== ${name}: exit ${rc}"
    [ "${rc}" -eq 0 ] || status=${rc}
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "${out}/gpu.txt"
step bench_train 270 python3 -m bench.run --device cuda --threads 4 --out "${out}"
step bench_exposure 100 python3 bench/bench_exposure.py --device cuda --threads 4 \
    --num_utts 512 --batch_sizes 1 16 64 128 --output "${out}/bench_exposure.json" \
    ${refs:+--references "${refs}"}
step train_stage 150 bash -c "cd egs2/synth_demo/asr1 && ./run.sh --demo_size tiny \
    --stage 5 --stop_stage 5 --ngpu 1 --model_jobs 1 --asr_args '--use_amp true' \
    && cp exp/tiny/asr_train_asr_tiny_pcc/train.log '${out}/train_pcc.log'"
exit "${status}"
