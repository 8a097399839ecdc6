#!/usr/bin/env bash
# noise + speaker cores + AMP on one GPU: the tiny demo's data, 2 epochs
set -uo pipefail
cd egs2/synth_demo/asr1
python3 -m espnet_pcc.bin.asr_train --use_preprocessor true --token_type char --token_list data/tiny/token_list/char/tokens.txt --non_linguistic_symbols none --cleaner none --g2p none --train_data_path_and_name_and_type data/tiny/train_canary/wav.scp,speech,sound --train_data_path_and_name_and_type data/tiny/train_canary/text,text,text --train_shape_file exp/tiny/asr_stats_raw_char/train/speech_shape --train_shape_file exp/tiny/asr_stats_raw_char/train/text_shape.char --valid_data_path_and_name_and_type data/tiny/dev/wav.scp,speech,sound --valid_data_path_and_name_and_type data/tiny/dev/text,text,text --valid_shape_file exp/tiny/asr_stats_raw_char/valid/speech_shape --valid_shape_file exp/tiny/asr_stats_raw_char/valid/text_shape.char --fold_length 80000 --fold_length 150 --normalize global_mvn --normalize_conf stats_file=exp/tiny/asr_stats_raw_char/train/feats_stats.npz  --output_dir /tmp/gpu_noise --config conf/train_asr_tiny_pcc.yaml --ngpu 1 --use_amp true --multiprocessing_distributed true  --clip_conf noise_multiplier=0.01 --clip_conf core_by=speaker --max_epoch 2 > $1/noise_amp.log 2>&1
rc=$?
grep "epoch results" $1/noise_amp.log | cut -c1-900
grep -c "Skipping updating" $1/noise_amp.log
python3 -c "import torch; s=torch.load('/tmp/gpu_noise/checkpoint.pth', weights_only=False); print('pcc', s['optimizers'][0]['pcc']['steps'], s['optimizers'][0]['pcc']['max_norm'])"
exit $rc
