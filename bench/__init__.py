"""Step-time and peak-memory benchmarks of per-core clipping against stock ESPnet.

`python -m bench.run` (see bench/run.py); results in bench/RESULTS.md.
"""
