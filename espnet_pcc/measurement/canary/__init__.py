"""Canaries for the memorisation measurement (Secret-Sharer style).

* :mod:`espnet_pcc.measurement.canary.generate` — random word sequences, TTS, Kaldi dirs, manifest.
* :mod:`espnet_pcc.measurement.canary.insert` — merge canaries (repeated) into a training data dir.
* :mod:`espnet_pcc.measurement.canary.vocab` — canary vocabularies (wordfreq or a text file).
* :mod:`espnet_pcc.measurement.canary.canary_dir` — the canary dir's layout, the manifest's writer
and
  reader, the one checked reader of the dir.
"""
