"""Recipe helpers called by egs2/TEMPLATE/asr1/pcc_asr.sh: data prep, synthetic corpus, scoring, report."""
