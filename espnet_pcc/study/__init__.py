"""The memorisation study: statistics, canary transcription accuracy and the cross-seed report.

``stats``       intervals and paired tests (scipy.stats), pure numpy/scipy
``accuracy``    the precursor paper's metric: how well a model transcribes sped-up canaries
``trajectory``  memorisation against validation loss over epochs; exposure at equal utility
``report``      aggregates every model of a study (modes x seeds x epochs) into tables and plots
"""
