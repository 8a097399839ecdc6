# Job commands (ESPnet's cmd.sh), sourced by pcc_asr.sh; each can also be given as an option
# (--train_cmd, --cuda_cmd, --decode_cmd), which wins.
#   train_cmd   --collect_stats jobs (stage 4), training with --ngpu 0 (stage 5)
#   cuda_cmd    training with --ngpu > 0 (gets --gpu <ngpu>), decoding and exposure with
#               --gpu_inference true (--gpu 1), espnet2.bin.launch for --num_nodes > 1
#   decode_cmd  CPU decoding (stage 6) and exposure scoring (stage 8)
# A Kaldi job script (run.pl, queue.pl, slurm.pl, ssh.pl: in utils/ of an ESPnet or Kaldi
# checkout; link it here as utils/ and path.sh puts it on PATH) is called as
#   <cmd> --gpu N <log file> <command...>
# any other command is a prefix: <cmd> <command...> (output to the log file), e.g. srun.
# Empty: run on this machine (the default).
cmd_backend=${cmd_backend:-local}
case "${cmd_backend}" in
    local)  # this machine
        train_cmd=${train_cmd:-}; cuda_cmd=${cuda_cmd:-}; decode_cmd=${decode_cmd:-} ;;
    run.pl)  # this machine through Kaldi's run.pl (logs with its headers)
        train_cmd="run.pl"; cuda_cmd="run.pl"; decode_cmd="run.pl" ;;
    slurm)  # Kaldi's slurm.pl; partitions etc. in conf/slurm.conf
        train_cmd="slurm.pl --config conf/slurm.conf"; cuda_cmd="slurm.pl --config conf/slurm.conf"
        decode_cmd="slurm.pl --config conf/slurm.conf" ;;
    sge)  # Kaldi's queue.pl; options in conf/queue.conf
        train_cmd="queue.pl --mem 4G"; cuda_cmd="queue.pl --mem 8G"; decode_cmd="queue.pl --mem 4G" ;;
    srun)  # SLURM's srun as a prefix (one task per job; GPUs: give --gres yourself)
        train_cmd="srun --ntasks 1 --cpus-per-task 1"; cuda_cmd="srun --ntasks 1 --gres gpu:1"
        decode_cmd="srun --ntasks 1 --cpus-per-task 1" ;;
    *) echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (local, run.pl, slurm, sge, srun)" >&2; return 1 ;;
esac
