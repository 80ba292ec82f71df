"""Cost accounting of a bit configuration: BitOPs, model size and the "level" of a budget.

docs/method.md section 2, "Cost accounting" (the BitOPs of Tang et al., CVPR 2024, tables 2-4): BitOPs
of a conv = w_bits * a_bits * k_h * k_w * C_in * C_out * H_out * W_out / groups, of a linear =
w_bits * a_bits * in * out. Layers kept out of the search (first conv, last linear) count at their
fixed bits (8x8). BatchNorm, residual adds and pooling do not count. Model size is the sum of weight
bits (biases not counted) in MiB. The *level* of a budget is the bit-width k such
that uniform WkAk (with the same fixed first and last layers) costs that many BitOPs.

Everything here is a pure function of layer shapes (plain data, no dummy forward pass): the model
registry builds the `CostTable`, the search only ever sees a `bitops(table, .)` closure.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

BitCfg = Mapping[str, tuple[int, int]]

_KINDS = ("conv", "linear")


def layer_macs(shape: LayerShape) -> int:
    """Multiply-accumulates of one conv/linear layer (one image): k_h*k_w*C_in*C_out*H_out*W_out/groups."""
    k_h, k_w = shape.kernel_size
    h_out, w_out = shape.out_hw
    # C_in * C_out / groups is exact: __post_init__ checks both are divisible by groups.
    return k_h * k_w * (shape.in_channels // shape.groups) * shape.out_channels * h_out * w_out


def layer_weight_count(shape: LayerShape) -> int:
    """Number of weights (bias excluded) of one conv/linear layer: C_out*C_in/groups*k_h*k_w."""
    k_h, k_w = shape.kernel_size
    return shape.out_channels * (shape.in_channels // shape.groups) * k_h * k_w


def _check_bits_pair(name: str, bits: Any) -> tuple[int, int]:
    """Return ``bits`` as a (w_bits, a_bits) tuple of positive ints, or raise naming the layer."""
    if (not isinstance(bits, (tuple, list)) or len(bits) != 2
            or any(isinstance(b, bool) or not isinstance(b, int) or b <= 0 for b in bits)):
        raise ValueError(f"layer {name!r}: bits must be a pair (w_bits, a_bits) of positive ints, got {bits!r}")
    return int(bits[0]), int(bits[1])


def check_bit_cfg(table: CostTable, bit_cfg: BitCfg) -> dict[str, tuple[int, int]]:
    """Validate that ``bit_cfg`` covers exactly the searchable layers of ``table``; return a clean copy.

    Raises a ValueError naming the missing layers, the unknown ones and the fixed ones (a fixed
    layer's bits come from ``table.fixed_bits`` and must not be given again).
    """
    searchable = table.searchable
    given = set(bit_cfg)
    missing = [n for n in searchable if n not in given]
    fixed = sorted(n for n in given if n in table.fixed_bits)
    unknown = sorted(n for n in given if n not in table.fixed_bits and n not in set(searchable))
    if missing or fixed or unknown:
        raise ValueError(
            f"bit_cfg must give (w_bits, a_bits) for exactly the {len(searchable)} searchable layers: "
            f"missing {missing}, unknown {unknown}, fixed (not searchable) {fixed}")
    return {n: _check_bits_pair(n, bit_cfg[n]) for n in searchable}


def bitops(table: CostTable, bit_cfg: BitCfg) -> int:
    """BitOPs of ``bit_cfg``: sum of w_bits*a_bits*MACs, searchable layers from ``bit_cfg``, fixed at their bits."""
    cfg = check_bit_cfg(table, bit_cfg)
    total = table.fixed_bitops
    for shape in table.layers:
        if shape.name in cfg:
            w_bits, a_bits = cfg[shape.name]
            total += w_bits * a_bits * layer_macs(shape)
    return total


def model_size_mib(table: CostTable, bit_cfg: BitCfg) -> float:
    """Weight storage of ``bit_cfg`` in MiB: sum(weight_count * w_bits) / 8 / 2**20 (biases, BN not counted)."""
    cfg = check_bit_cfg(table, bit_cfg)
    bits_total = 0
    for shape in table.layers:
        w_bits = cfg[shape.name][0] if shape.name in cfg else table.fixed_bits[shape.name][0]
        bits_total += layer_weight_count(shape) * w_bits
    return bits_total / 8 / 2**20


def uniform_cfg(table: CostTable, w_bits: int, a_bits: int | None = None) -> dict[str, tuple[int, int]]:
    """Every searchable layer at (w_bits, a_bits) (``a_bits`` defaults to ``w_bits``): uniform WkAk."""
    pair = _check_bits_pair("<uniform>", (w_bits, w_bits if a_bits is None else a_bits))
    return {name: pair for name in table.searchable}


def level_bitops(table: CostTable, level: float) -> float:
    """BitOPs of uniform level-bit weights and activations: level**2 * searchable_macs + fixed_bitops.

    Fractional levels are allowed (they interpolate the budget between integer bit-widths).
    """
    if not math.isfinite(level) or level <= 0:
        raise ValueError(f"level must be a positive finite number of bits, got {level}")
    return level**2 * table.searchable_macs + table.fixed_bitops


def bitops_level(table: CostTable, bitops_value: float) -> float:
    """Inverse of `level_bitops`: the level k with uniform WkAk costing ``bitops_value``.

    sqrt((bitops - fixed_bitops) / searchable_macs); raises ValueError when the budget does not even
    pay for the fixed layers.
    """
    if table.searchable_macs == 0:
        raise ValueError("the cost table has no searchable layer, so a budget has no level")
    variable = bitops_value - table.fixed_bitops
    if not math.isfinite(bitops_value) or variable <= 0:
        raise ValueError(f"BitOPs {bitops_value} must exceed the fixed layers' {table.fixed_bitops} "
                         "to have a level")
    return math.sqrt(variable / table.searchable_macs)


def phase1_budget(table: CostTable, target: float, a_bits: int = 5, factor: float = 0.95) -> float:
    """Budget of the greedy search's weight phase for BitOPs ``target`` (docs/method.md section 2, "Greedy search").

    ``factor`` x the BitOPs of uniform weights at the target's level with ``a_bits`` activations
    (the official code's 0.95 x W{level}A5), i.e. factor * (level*a_bits*searchable_macs + fixed).
    The official code rounds the level to an integer through a per-model lookup table; here the
    (fractional) level of the target is used, so any target has a phase-1 budget.
    """
    if factor <= 0 or a_bits <= 0:
        raise ValueError(f"factor and a_bits must be positive, got factor={factor}, a_bits={a_bits}")
    level = bitops_level(table, target)
    return factor * (level * a_bits * table.searchable_macs + table.fixed_bitops)


def cost_rows(table: CostTable, bit_cfg: BitCfg) -> list[dict[str, Any]]:
    """One row per layer (model order, fixed layers included) for reporting tables (flat JSON/CSV scalars)."""
    cfg = check_bit_cfg(table, bit_cfg)
    rows = []
    for shape in table.layers:
        fixed = shape.name in table.fixed_bits
        w_bits, a_bits = table.fixed_bits[shape.name] if fixed else cfg[shape.name]
        macs = layer_macs(shape)
        weights = layer_weight_count(shape)
        rows.append({
            "name": shape.name, "kind": shape.kind, "fixed": fixed,
            "in_channels": shape.in_channels, "out_channels": shape.out_channels,
            "kernel_h": shape.kernel_size[0], "kernel_w": shape.kernel_size[1], "groups": shape.groups,
            "out_h": shape.out_hw[0], "out_w": shape.out_hw[1],
            "macs": macs, "w_bits": w_bits, "a_bits": a_bits, "bitops": w_bits * a_bits * macs,
            "weight_count": weights, "weight_bits": weights * w_bits,
        })
    return rows


def _positive_int(what: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{what} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class LayerShape:
    """Shape of one conv or linear layer, enough to count its MACs and weights (no tensors)."""

    name: str
    kind: str                              # "conv" or "linear"
    in_channels: int                       # linear: in_features
    out_channels: int                      # linear: out_features
    kernel_size: tuple[int, int] = (1, 1)
    groups: int = 1
    out_hw: tuple[int, int] = (1, 1)       # conv output spatial size; (1, 1) for linear

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"layer name must be a non-empty string, got {self.name!r}")
        if self.kind not in _KINDS:
            raise ValueError(f"layer {self.name!r}: kind must be one of {_KINDS}, got {self.kind!r}")
        _positive_int(f"layer {self.name!r}: in_channels", self.in_channels)
        _positive_int(f"layer {self.name!r}: out_channels", self.out_channels)
        _positive_int(f"layer {self.name!r}: groups", self.groups)
        for what in ("kernel_size", "out_hw"):
            pair = getattr(self, what)
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ValueError(f"layer {self.name!r}: {what} must be a pair of positive ints, got {pair!r}")
            for v in pair:
                _positive_int(f"layer {self.name!r}: {what}", v)
            # Lists (e.g. read back from JSON) become tuples so the shape stays hashable and frozen.
            object.__setattr__(self, what, (int(pair[0]), int(pair[1])))
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"layer {self.name!r}: in_channels {self.in_channels} and out_channels "
                             f"{self.out_channels} must both be divisible by groups {self.groups}")
        if self.kind == "linear" and (self.kernel_size != (1, 1) or self.out_hw != (1, 1) or self.groups != 1):
            raise ValueError(f"layer {self.name!r}: a linear layer has kernel_size (1, 1), out_hw (1, 1) "
                             f"and groups 1, got {self.kernel_size}, {self.out_hw}, {self.groups}")


@dataclass(frozen=True)
class CostTable:
    """Every conv/linear layer that counts, in model order, and the ones kept at fixed bits.

    ``fixed_bits`` maps the layers outside the search (the first conv and the last linear, at (8, 8)
    in the paper) to their (w_bits, a_bits); every other layer is searchable.
    """

    layers: tuple[LayerShape, ...]
    fixed_bits: Mapping[str, tuple[int, int]]

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        if not all(isinstance(s, LayerShape) for s in layers):
            raise ValueError("CostTable.layers must hold LayerShape objects")
        names = [s.name for s in layers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"CostTable: duplicate layer names {dupes}")
        unknown = sorted(set(self.fixed_bits) - set(names))
        if unknown:
            raise ValueError(f"CostTable.fixed_bits names layers not in the table: {unknown}; known: {names}")
        fixed = {n: _check_bits_pair(n, self.fixed_bits[n]) for n in names if n in self.fixed_bits}
        object.__setattr__(self, "layers", layers)
        # A read-only view: the table is shared by closures (cost functions), nobody may edit it.
        object.__setattr__(self, "fixed_bits", MappingProxyType(fixed))

    def __deepcopy__(self, memo: dict) -> "CostTable":
        return self  # immutable, and a mappingproxy cannot be deep-copied (models holding a table can)

    def __reduce__(self):
        return (CostTable, (self.layers, dict(self.fixed_bits)))

    @property
    def searchable(self) -> tuple[str, ...]:
        """Names of the layers in the search (not in ``fixed_bits``), in model order."""
        return tuple(s.name for s in self.layers if s.name not in self.fixed_bits)

    @property
    def searchable_macs(self) -> int:
        """Total MACs of the searchable layers."""
        return sum(layer_macs(s) for s in self.layers if s.name not in self.fixed_bits)

    @property
    def fixed_bitops(self) -> int:
        """BitOPs of the fixed layers at their fixed bits (the same for every bit configuration)."""
        return sum(self.fixed_bits[s.name][0] * self.fixed_bits[s.name][1] * layer_macs(s)
                   for s in self.layers if s.name in self.fixed_bits)

    @property
    def total_macs(self) -> int:
        """MACs of every counted layer (searchable and fixed)."""
        return sum(layer_macs(s) for s in self.layers)
