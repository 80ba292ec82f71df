"""Integer codes packed at their bit-width: ``bits`` bits per code, little-endian within each byte.

Code ``i`` of a flat array occupies bits ``[i * bits, (i + 1) * bits)`` of the byte stream, least
significant bit first; a signed code is stored as its ``bits``-bit two's complement. ``n`` codes take
``ceil(n * bits / 8)`` bytes: 3-bit codes pack 8 per 3 bytes.
"""
from __future__ import annotations

import numpy as np

from mpq.method.quantizer import int_range


def packed_bytes(count: int, bits: int) -> int:
    """Bytes that ``count`` codes of ``bits`` bits take: ``ceil(count * bits / 8)``.

    =====  ====  =====
    count  bits  bytes
    =====  ====  =====
    8      3     3
    9      3     4
    10     4     5
    5      8     5
    =====  ====  =====
    """
    return (count * bits + 7) // 8


def pack_codes(codes: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    """Flat uint8 array of ``codes`` (any shape, integers inside ``int_range(bits, signed)``) at ``bits`` bits each."""
    qmin, qmax = int_range(bits, signed)
    flat = np.asarray(codes).reshape(-1).astype(np.int64)
    if flat.size and (flat.min() < qmin or flat.max() > qmax):
        raise ValueError(f"codes outside the {bits}-bit {'signed' if signed else 'unsigned'} range "
                         f"[{qmin}, {qmax}]: [{flat.min()}, {flat.max()}]")
    raw = flat & ((1 << bits) - 1)                                     # two's complement in `bits` bits
    stream = (raw[:, None] >> np.arange(bits)) & 1                     # (n, bits), least significant bit first
    return np.packbits(stream.astype(np.uint8).reshape(-1), bitorder="little")


def unpack_codes(packed: np.ndarray, bits: int, signed: bool, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of ``pack_codes``: int64 codes of ``shape``."""
    count = int(np.prod(shape, dtype=np.int64))
    if packed.dtype != np.uint8 or packed.ndim != 1 or packed.size != packed_bytes(count, bits):
        raise ValueError(f"packed codes: expected {packed_bytes(count, bits)} uint8 bytes for {count} codes of "
                         f"{bits} bits, got {packed.size} {packed.dtype}")
    stream = np.unpackbits(packed, bitorder="little")[:count * bits].reshape(count, bits).astype(np.int64)
    raw = stream @ (1 << np.arange(bits, dtype=np.int64))
    if signed:
        raw = np.where(raw >= 1 << (bits - 1), raw - (1 << bits), raw)
    return raw.reshape(shape)
