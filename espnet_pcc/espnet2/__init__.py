"""Per-core clipping in espnet2's trainer: the task (`task.PCCASRTask`, what
``python -m espnet_pcc.bin.asr_train`` runs), the trainer (`trainer.PCCTrainer`), checkpoints
and resume (`checkpoints`), progress lines (`progress`), a noisy run's logs (`release`) and the
core's samplers as espnet2 batch samplers (`samplers`).  A thin layer over `espnet_pcc.core`."""
