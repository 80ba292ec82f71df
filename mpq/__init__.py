"""mpq: retraining-free mixed-precision quantization via one-shot weight coupling (Tang et al., CVPR 2024)."""
__version__ = "0.1.0"
