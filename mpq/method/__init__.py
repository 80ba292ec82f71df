"""The method of Tang et al. (CVPR 2024): the LSQ quantizer and its CPU kernels, weight-coupled layers with
switchable BN, the bit-width supernet, BitOPs accounting, the training losses (distillation, quantization
error, information distortion mitigation) and the bit-width scheduler. Imports nothing else of ``mpq``."""
