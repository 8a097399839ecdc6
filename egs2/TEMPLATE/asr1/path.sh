# Sourced by pcc_asr.sh (and run.sh) in every recipe: ESPnet's path.sh settings.
# Python: the repository's venv made by tools/install.sh, unless an environment is active
# (an existing ESPnet env with `pip install -e .`: activate it first; a conda env: remove .venv).
_repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f "${VENV:-${_repo_root}/.venv}/bin/activate" ]; then
    # shellcheck disable=SC1090,SC1091
    . "${VENV:-${_repo_root}/.venv}/bin/activate"
fi
# Kaldi's utils/ (run.pl, queue.pl, slurm.pl for cmd.sh) when the recipe links one, as ESPnet.
[ -d "${PWD}/utils" ] && export PATH="${PWD}/utils:${PATH}"
# C-locale sorting of Kaldi files (LC_ALL=C in ESPnet's path.sh); Python still reads UTF-8.
export LC_ALL=C
export PYTHONIOENCODING=UTF-8
# One OpenMP/MKL thread per process (ESPnet: OMP_NUM_THREADS=1): jobs run side by side instead
# (--nj, --inference_nj, --model_jobs); threads spinning against other processes made training
# up to 15x slower on a small CPU (measured). Set it before calling run.sh to override.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export MKL_NUM_THREADS=${MKL_NUM_THREADS:-${OMP_NUM_THREADS}}
# Multi-GPU: NCCL's network interfaces, as ESPnet's path.sh; change to match your network.
export NCCL_SOCKET_IFNAME=${NCCL_SOCKET_IFNAME:-"^lo,docker,virbr,vmnet,vboxnet"}
