"""The memorisation study: statistics, canary transcription accuracy, the raw data, the
analysis over training runs and the reports (docs/study.md has the method).

``stats``            intervals and tests over runs (scipy.stats, statsmodels), numpy/scipy only
``accuracy``         the precursor paper's metric: how well a model transcribes sped-up canaries
``accuracy_schema``  its output files (utterances.tsv, summary.json): layouts, writers, reader
``raw``              the study's raw data (runs.tsv, canaries.tsv, meta.json): writer, reader
``export``           model results (`espnet_pcc.study.model_dir`) -> raw data
``analysis``         the pre-registered analysis, and stage 9's comparison of a recipe's modes
``results``          the reports and plots of both, from the raw data
``arms``             a model's arm and seed (from its tag), each arm's one colour in every plot
``claims``           the third study's pre-registered analysis: the paper's claims against the
                     paper's baseline
``claims_report``    its report and plot, from the raw data
"""
