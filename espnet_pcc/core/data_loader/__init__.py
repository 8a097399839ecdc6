"""Batch samplers for per-core clipping (torch ``Sampler``s with ``generate(seed)``): Poisson
sampling of privacy units into hashed cores (`poisson`, what the accountant assumes), new
batches every epoch (`shuffled`), one speaker per core (`speaker_cores`), and what a privacy
unit is (`units`).  `espnet_pcc.espnet2.samplers` makes them espnet2 batch samplers."""
