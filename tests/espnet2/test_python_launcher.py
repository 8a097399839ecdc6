"""espnet-pcc-python: ESPnet's own asr.sh trains with PCC through `--python espnet-pcc-python`.

The stand-in below runs asr.sh's two asr_train steps exactly as asr.sh writes them (stage 10:
`${train_cmd} JOB=1:N log ${python} -m espnet2.bin.asr_train --collect_stats true ...`; stage 11:
`${python} -m espnet2.bin.launch --cmd "${cuda_cmd} --name ..." ... -- ${python} -m
espnet2.bin.asr_train ...`), with a one-job run.pl in place of Kaldi's.
"""
import os
import stat
import subprocess
import sys

import pytest
import yaml

from asr_train_helpers import TINY_CONFIG
from espnet_pcc import registry
from espnet_pcc.bin.python import PCC, STOCK, command, rewrite
from espnet_pcc.espnet2.checkpoints import load_checkpoint

NAME = "espnet-pcc-python"


@pytest.mark.parametrize("argv,expected", [
    (["-m", STOCK, "--config", "c.yaml"], ["-m", PCC, "--config", "c.yaml"]),
    (["-m" + STOCK, "--resume", "true"], ["-m" + PCC, "--resume", "true"]),
    # asr.sh stage 11: the launcher, then the training command after `--`
    (["-m", "espnet2.bin.launch", "--ngpu", "0", "--", NAME, "-m", STOCK, "--resume", "true"],
     ["-m", "espnet2.bin.launch", "--ngpu", "0", "--", NAME, "-m", PCC, "--resume", "true"]),
    # everything else is plain Python
    (["-m", "espnet2.bin.asr_inference", "--batch_size", "1"],
     ["-m", "espnet2.bin.asr_inference", "--batch_size", "1"]),
    (["-m", "espnet2.bin.asr_train_other"], ["-m", "espnet2.bin.asr_train_other"]),
    (["-c", "print(1)"], ["-c", "print(1)"]),
    (["-m"], ["-m"]),
    ([], []),
])
def test_rewrite(argv, expected):
    assert rewrite(argv) == expected
    assert command(argv) == [sys.executable, *expected]


@pytest.fixture(scope="module")
def launcher(tmp_path_factory):
    """The console script as pip writes it, from the registry's entry."""
    target = registry.CONSOLE_SCRIPTS[NAME]
    assert target == "espnet_pcc.bin.python:main"
    module, attr = target.split(":")
    path = tmp_path_factory.mktemp("bin") / NAME
    path.write_text(f"#!{sys.executable}\nimport sys\nfrom {module} import {attr}\n"
                    f"if __name__ == '__main__':\n    sys.exit({attr}())\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_plain_python_passes_through(launcher):
    result = subprocess.run([str(launcher), "-c", "import sys; print(sys.executable, "
                             "sys.argv[1:]); sys.exit(3)", "a", "b c"],
                            capture_output=True, text=True)
    assert result.returncode == 3
    assert result.stdout == f"{sys.executable} ['a', 'b c']\n"


RUN_PL = """#!/usr/bin/env bash
# Kaldi's run.pl for one job: run.pl [--gpu N] [--name X] [JOB=1:1] LOG COMMAND...
while [[ $1 == --* ]]; do shift 2; done
[[ $1 == JOB=* ]] && shift
log=${1//JOB/1}; shift
mkdir -p "$(dirname "$log")"
args=(); for a in "$@"; do args+=("${a//JOB/1}"); done
"${args[@]}" > "$log" 2>&1
"""

# The lines of ESPnet's egs2/TEMPLATE/asr1/asr.sh (espnet 202511) that run asr_train, with its
# variables set the way asr.sh sets them; data and token list come from the options.
ASR_SH = r"""#!/usr/bin/env bash
set -euo pipefail
python=python3
asr_config=
while [ $# -gt 0 ]; do
    case $1 in
        --python) python=$2 ;;
        --asr_config) asr_config=$2 ;;
        --data) data=$2 ;;
        --token_list) token_list=$2 ;;
        --expdir) expdir=$2 ;;
        --cmd) train_cmd=$2; cuda_cmd=$2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift 2
done
_asr_train_dir=${data}; _asr_valid_dir=${data}; _scp=wav.scp; _type=sound
token_type=char; ngpu=0; num_nodes=1
asr_stats_dir=${expdir}/asr_stats_raw_char; asr_exp=${expdir}/asr_train_pcc
_opts="--config ${asr_config} "

# Stage 10: ASR collect stats
_logdir="${asr_stats_dir}/logdir"
mkdir -p "${_logdir}"
cp "${_asr_train_dir}/${_scp}" "${_logdir}/train.1.scp"
cp "${_asr_valid_dir}/${_scp}" "${_logdir}/valid.1.scp"
# shellcheck disable=SC2086
${train_cmd} JOB=1:1 "${_logdir}"/stats.JOB.log \
    ${python} -m espnet2.bin.asr_train \
        --collect_stats true \
        --use_preprocessor true \
        --token_type "${token_type}" \
        --token_list "${token_list}" \
        --train_data_path_and_name_and_type "${_asr_train_dir}/${_scp},speech,${_type}" \
        --train_data_path_and_name_and_type "${_asr_train_dir}/text,text,text" \
        --valid_data_path_and_name_and_type "${_asr_valid_dir}/${_scp},speech,${_type}" \
        --valid_data_path_and_name_and_type "${_asr_valid_dir}/text,text,text" \
        --train_shape_file "${_logdir}/train.JOB.scp" \
        --valid_shape_file "${_logdir}/valid.JOB.scp" \
        --output_dir "${_logdir}/stats.JOB" \
        ${_opts} || { cat "${_logdir}"/stats.1.log; exit 1; }
# shellcheck disable=SC2086
${python} -m espnet2.bin.aggregate_stats_dirs --input_dir "${_logdir}/stats.1" \
    --output_dir "${asr_stats_dir}"

# Stage 11: ASR Training
_opts+="--train_data_path_and_name_and_type ${_asr_train_dir}/${_scp},speech,${_type} "
_opts+="--train_data_path_and_name_and_type ${_asr_train_dir}/text,text,text "
_opts+="--train_shape_file ${asr_stats_dir}/train/speech_shape "
jobname="${asr_exp}/train.log"
# shellcheck disable=SC2086
${python} -m espnet2.bin.launch \
    --cmd "${cuda_cmd} --name ${jobname}" \
    --log "${asr_exp}"/train.log \
    --ngpu "${ngpu}" \
    --num_nodes "${num_nodes}" \
    --init_file_prefix "${asr_exp}"/.dist_init_ \
    --multiprocessing_distributed true -- \
    ${python} -m espnet2.bin.asr_train \
        --use_preprocessor true \
        --token_type "${token_type}" \
        --token_list "${token_list}" \
        --valid_data_path_and_name_and_type "${_asr_valid_dir}/${_scp},speech,${_type}" \
        --valid_data_path_and_name_and_type "${_asr_valid_dir}/text,text,text" \
        --valid_shape_file "${asr_stats_dir}/valid/speech_shape" \
        --resume true \
        --output_dir "${asr_exp}" \
        ${_opts}
"""


def test_asr_sh_trains_with_pcc_through_python_option(corpus, tmp_path, launcher):
    for name, text in (("run.pl", RUN_PL), ("asr.sh", ASR_SH)):
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o755)
    config = tmp_path / "train_asr_pcc.yaml"
    config.write_text(yaml.safe_dump(dict(
        TINY_CONFIG, max_epoch=1, clip="per_core", clip_conf={"max_norm": 1.0, "num_cores": 2})))
    exp = tmp_path / "exp"
    result = subprocess.run(
        [str(tmp_path / "asr.sh"), "--python", str(launcher), "--asr_config", str(config),
         "--data", str(corpus), "--token_list", str(corpus / "tokens.txt"), "--expdir", str(exp),
         "--cmd", str(tmp_path / "run.pl")],
        capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    train_log = exp / "asr_train_pcc" / "train.log"
    assert result.returncode == 0, (result.stderr[-3000:], train_log.exists()
                                    and train_log.read_text()[-3000:])

    # Stage 10 ran PCC's asr_train (stock asr_train rejects the clip keys of the config).
    stats_log = (exp / "asr_stats_raw_char" / "logdir" / "stats.1.log").read_text()
    assert "espnet_pcc/bin/asr_train.py" in stats_log  # the command line espnet2 logs
    assert (exp / "asr_stats_raw_char" / "train" / "speech_shape").exists()
    # Stage 11 trained per core; the progress line is in the log asr.sh keeps.
    log = train_log.read_text()
    assert "espnet_pcc/bin/asr_train.py" in log
    assert f"[progress] {exp / 'asr_train_pcc'} epoch 1/1 loss " in log
    saved = yaml.safe_load((exp / "asr_train_pcc" / "config.yaml").read_text())
    assert saved["clip"] == "per_core"
    checkpoint = load_checkpoint(exp / "asr_train_pcc" / "checkpoint.pth")
    assert checkpoint["optimizers"][0]["pcc"]["clip"] == "per_core"
    assert checkpoint["reporter"]["stats"][1]["train"]["num_cores"] == 2


def test_stock_python_cannot_run_the_pcc_config(tmp_path):
    """Why asr.sh needs the launcher: espnet2's own asr_train rejects `clip:` in the config."""
    config = tmp_path / "train_asr_pcc.yaml"
    config.write_text(yaml.safe_dump({"clip": "per_core", "clip_conf": {"max_norm": 1.0}}))
    result = subprocess.run([sys.executable, "-m", STOCK, "--config", str(config),
                             "--print_config"], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "clip" in result.stderr.splitlines()[-1]
