"""espnet-pcc: per-core clipping for ESPnet2."""
__version__ = "0.1.0"
