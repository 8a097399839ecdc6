"""Measuring memorisation and accuracy of trained models: canaries (`canary`: texts, TTS,
insertion), their exposure (`exposure`), WER/CER (`wer`), and where a sampler puts the copies
of a canary (`colocation`).  Reads model dirs and writes per-model files; the study
(`espnet_pcc.study`) reads those."""
