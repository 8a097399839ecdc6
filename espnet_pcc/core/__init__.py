"""The framework-independent core of per-core clipping: the paper's formulas (`clipping`), the
run's settings (`clip_config`), cores (`cores`), the streaming sums in one process (`sums`) and
under DDP (`ddp_sums`), the optimizer wrapper (`optimizers`), the noise (`noise`), the
accountant (`accounting`), what a noisy run may release (`release`) and the samplers
(`data_loader`).  Imports torch, numpy, scipy and dp-accounting, never espnet2, ESPnet3 or
Lightning (tests/test_layout.py checks it); the trainers' integrations build on it."""
