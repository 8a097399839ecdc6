#!/usr/bin/env bash
# One-shot set-up: Debian packages (espeak-ng, sox) and a venv with the pinned stack.
# Idempotent: a finished install leaves .venv/.installed and is skipped next time (until
# constraints.txt, setup.py or the entry-point list in espnet_pcc/registry.py changes).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

need_apt=()
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
command -v sox >/dev/null 2>&1 || need_apt+=(sox)
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "[install] apt-get install ${need_apt[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

stamp="$VENV/.installed"
if [ -f "$stamp" ] && [ "$stamp" -nt constraints.txt ] && [ "$stamp" -nt setup.py ] && [ "$stamp" -nt espnet_pcc/registry.py ]; then
    echo "[install] $VENV is up to date"
    exit 0
fi
echo "[install] creating $VENV (torch, espnet: a few minutes on first run)"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# pip 26 refuses ci-sdr (an espnet dependency) for its direct-URL extra: keep pip < 26.
"$VENV/bin/pip" install -q "pip>=23,<26"
"$VENV/bin/pip" install -q -c constraints.txt "setuptools<74" wheel
"$VENV/bin/pip" install -q -c constraints.txt -e ".[test]"
"$VENV/bin/python" -c "import espnet2.tasks.asr, espnet_pcc" 
touch "$stamp"
echo "[install] done: $VENV"
