# Sourced by run.sh / pcc_asr.sh (ESPnet's path.sh role): use the repository's venv made by
# tools/install.sh unless a Python environment is already active.
_repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f "${VENV:-${_repo_root}/.venv}/bin/activate" ]; then
    # shellcheck disable=SC1090,SC1091
    . "${VENV:-${_repo_root}/.venv}/bin/activate"
fi
export PYTHONIOENCODING=UTF-8
