"""Cost accounting (DESIGN.md section 2, "Cost accounting"): hand-computed MACs, BitOPs and sizes."""
from __future__ import annotations

import json
import math

import pytest

from mpq.method.cost import (CostTable, LayerShape, bitops, bitops_level, check_bit_cfg, cost_rows, layer_macs,
                             layer_weight_count, level_bitops, model_size_mib, phase1_budget, uniform_cfg)


def tiny_table() -> CostTable:
    # conv 3x3, 3 -> 8 channels, 4x4 output: MACs 9*3*8*16 = 3456, weights 9*3*8 = 216.
    # linear 8 -> 10: MACs 80, weights 80; kept at (8, 8).
    return CostTable(
        layers=(LayerShape("conv", "conv", 3, 8, (3, 3), 1, (4, 4)), LayerShape("fc", "linear", 8, 10)),
        fixed_bits={"fc": (8, 8)})


def resnet18_table() -> CostTable:
    """Full-size ResNet-18 at 224x224, written from the architecture (He et al. 2016, table 1)."""
    layers = [LayerShape("conv1", "conv", 3, 64, (7, 7), 1, (112, 112))]   # 7x7 stride 2 -> 112, maxpool -> 56
    in_ch, hw = 64, 56
    for stage, out_ch in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            stride = 2 if (stage > 1 and block == 0) else 1
            out_hw = hw // stride
            prefix = f"layer{stage}.{block}"
            layers.append(LayerShape(f"{prefix}.conv1", "conv", in_ch, out_ch, (3, 3), 1, (out_hw, out_hw)))
            layers.append(LayerShape(f"{prefix}.conv2", "conv", out_ch, out_ch, (3, 3), 1, (out_hw, out_hw)))
            if stride != 1 or in_ch != out_ch:
                layers.append(LayerShape(f"{prefix}.downsample", "conv", in_ch, out_ch, (1, 1), 1,
                                         (out_hw, out_hw)))
            in_ch, hw = out_ch, out_hw
    layers.append(LayerShape("fc", "linear", 512, 1000))
    return CostTable(layers=tuple(layers), fixed_bits={"conv1": (8, 8), "fc": (8, 8)})


def test_tiny_table_by_hand():
    table = tiny_table()
    assert table.searchable == ("conv",)
    assert layer_macs(table.layers[0]) == 3456 and layer_weight_count(table.layers[0]) == 216
    assert layer_macs(table.layers[1]) == 80 and layer_weight_count(table.layers[1]) == 80
    assert table.searchable_macs == 3456 and table.fixed_bitops == 64 * 80
    # W4A2 conv: 8*3456 = 27648, plus the fixed fc 64*80 = 5120.
    assert bitops(table, {"conv": (4, 2)}) == 32768
    # 216 weights at 4 bits + 80 at 8 bits = 1504 bits = 188 bytes.
    assert model_size_mib(table, {"conv": (4, 2)}) == pytest.approx(188 / 2**20)
    rows = cost_rows(table, {"conv": (4, 2)})
    assert [r["name"] for r in rows] == ["conv", "fc"] and [r["fixed"] for r in rows] == [False, True]
    assert sum(r["bitops"] for r in rows) == 32768 and rows[1]["w_bits"] == 8
    json.dumps(rows)   # plain scalars only


def test_depthwise_conv():
    # 3x3 depthwise over 32 channels, 10x10 output: 9 * 32 * 100 MACs, 9 * 32 weights.
    dw = LayerShape("dw", "conv", 32, 32, (3, 3), groups=32, out_hw=(10, 10))
    assert layer_macs(dw) == 28800
    assert layer_weight_count(dw) == 288
    # Grouped (not depthwise): 64 -> 128 in 4 groups, 1x1, 7x7 output: 64/4*128*49.
    assert layer_macs(LayerShape("g", "conv", 64, 128, (1, 1), 4, (7, 7))) == 16 * 128 * 49


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="x", kind="pool", in_channels=1, out_channels=1), "kind"),
    (dict(name="x", kind="conv", in_channels=0, out_channels=1), "in_channels"),
    (dict(name="x", kind="conv", in_channels=6, out_channels=4, groups=4), "divisible by groups"),
    (dict(name="x", kind="conv", in_channels=4, out_channels=4, kernel_size=(3, 0)), "kernel_size"),
    (dict(name="x", kind="linear", in_channels=4, out_channels=4, out_hw=(2, 2)), "linear"),
    (dict(name="", kind="conv", in_channels=4, out_channels=4), "name"),
])
def test_layer_shape_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LayerShape(**kwargs)


def test_cost_table_validation():
    conv = LayerShape("conv", "conv", 3, 8, (3, 3), 1, (4, 4))
    with pytest.raises(ValueError, match="duplicate"):
        CostTable((conv, conv), {})
    with pytest.raises(ValueError, match="not in the table"):
        CostTable((conv,), {"fc": (8, 8)})
    with pytest.raises(ValueError, match="positive ints"):
        CostTable((conv,), {"conv": (8, 0)})


def test_resnet18_macs_bitops_size():
    table = resnet18_table()
    assert len(table.layers) == 21 and len(table.searchable) == 19   # 16 3x3 + 3 downsample convs
    # conv1 7*7*3*64*112^2 = 118,013,952; layer1 4 * 9*64*64*56^2 = 462,422,016; layers 2..4 each
    # 9*C*2C*H^2 + 3*9*(2C)^2*H^2 + C*2C*H^2 = 411,041,792; fc 512,000.
    assert layer_macs(table.layers[0]) == 118_013_952
    assert table.total_macs == 118_013_952 + 462_422_016 + 3 * 411_041_792 + 512_000 == 1_814_073_344
    assert table.total_macs == pytest.approx(1.814e9, rel=1e-3)    # the usual "1.82 GFLOPs"
    assert table.searchable_macs == 1_814_073_344 - 118_013_952 - 512_000 == 1_695_547_392
    # Uniform W8A8 (searchable at 8 too): 64 * every MAC.
    assert bitops(table, uniform_cfg(table, 8)) == 64 * 1_814_073_344 == 116_100_694_016
    # W4A4 with the first conv and fc at 8x8: 16 * 1,695,547,392 + 64 * 118,525,952.
    assert bitops(table, uniform_cfg(table, 4, 4)) == 27_128_758_272 + 7_585_660_928 == 34_714_419_200
    assert bitops(table, uniform_cfg(table, 4)) / 1e9 == pytest.approx(34.71, abs=0.01)  # paper's 4-bit ~ 34.7 G
    # Weights: 9,408 + 147,456 + 524,288 + 2,097,152 + 8,388,608 + 512,000 = 11,678,912 (the "11.7 M").
    assert sum(layer_weight_count(s) for s in table.layers) == 11_678_912
    # 4-bit searchable weights, 8-bit conv1 and fc: (11,157,504*4 + 521,408*8) bits = 48,801,280 bits.
    assert model_size_mib(table, uniform_cfg(table, 4)) == pytest.approx(48_801_280 / 8 / 2**20)
    assert model_size_mib(table, uniform_cfg(table, 4)) == pytest.approx(5.8176, abs=1e-4)


def test_level_round_trip():
    table = resnet18_table()
    assert level_bitops(table, 4) == bitops(table, uniform_cfg(table, 4))
    assert bitops_level(table, bitops(table, uniform_cfg(table, 3))) == pytest.approx(3.0)
    for level in (2.0, 2.7, 3.5, 6.0):
        assert bitops_level(table, level_bitops(table, level)) == pytest.approx(level)
    with pytest.raises(ValueError, match="fixed"):
        bitops_level(table, table.fixed_bitops)
    with pytest.raises(ValueError, match="positive"):
        level_bitops(table, -1)


def test_phase1_budget():
    table = resnet18_table()
    target = level_bitops(table, 3)
    expected = 0.95 * (3 * 5 * table.searchable_macs + table.fixed_bitops)   # 0.95 x W3A5
    assert phase1_budget(table, target) == pytest.approx(expected)
    assert phase1_budget(table, target) == pytest.approx(0.95 * bitops(table, uniform_cfg(table, 3, 5)))


def test_bad_bit_cfg_rejected():
    table = resnet18_table()
    cfg = uniform_cfg(table, 4)
    missing = dict(cfg)
    del missing["layer2.0.downsample"]
    with pytest.raises(ValueError, match=r"missing \['layer2.0.downsample'\]"):
        bitops(table, missing)
    with pytest.raises(ValueError, match=r"unknown \['layer9.conv'\]"):
        bitops(table, {**cfg, "layer9.conv": (4, 4)})
    with pytest.raises(ValueError, match=r"fixed \(not searchable\) \['fc'\]"):
        model_size_mib(table, {**cfg, "fc": (8, 8)})
    with pytest.raises(ValueError, match="layer1.0.conv1"):
        bitops(table, {**cfg, "layer1.0.conv1": (4, 0)})
    with pytest.raises(ValueError, match="positive ints"):
        uniform_cfg(table, 4, True)
    # JSON lists are accepted and come back as tuples.
    assert check_bit_cfg(table, {n: [4, 4] for n in cfg}) == cfg
    assert math.isclose(bitops(table, {n: [4, 4] for n in cfg}), bitops(table, cfg))
