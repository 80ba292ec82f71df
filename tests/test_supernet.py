"""Weight-coupled layers, switchable BN, the supernet's configuration API, export and BN recalibration."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mpq.method.cost import layer_macs
from mpq.method import layers
from mpq.method.layers import QConv2d, QLinear, SwitchableBatchNorm2d, nchw_bn_below
from mpq.models import create_model
from mpq.method.supernet import Supernet, config_from_json, config_to_json, recalibrate_bn


def _supernet(name="resnet20", width=0.25):
    model = create_model(name, width_mult=width).eval()
    sn = Supernet(model, (1, 28, 28))
    sn.calibrate(torch.randn(32, 1, 28, 28))
    return model, sn


@pytest.mark.parametrize("kwargs", [dict(stride=2, padding=1), dict(groups=4, padding=2, dilation=2),
                                    dict(bias=True, padding=0), dict(stride=1, padding=1, groups=8)])
def test_qconv_at_no_quantization_is_the_float_conv(kwargs):
    conv = nn.Conv2d(8, 16, 3, **{"bias": False, **kwargs})
    q = QConv2d.from_float(conv, (2, 4), (2, 4))
    x = torch.randn(2, 8, 11, 11)
    assert torch.equal(q(x), conv(x))
    assert q.is_depthwise is (kwargs.get("groups") == 8)


def test_qlinear_at_no_quantization_is_the_float_linear():
    lin = nn.Linear(12, 5)
    q = QLinear.from_float(lin, (8,), (8,))
    x = torch.randn(3, 12)
    assert torch.equal(q(x), lin(x))


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2_28", "efficientnet_lite_28"])
def test_supernet_in_float_mode_is_the_float_model(name):
    model, sn = _supernet(name)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(sn.eval()(x), model(x))


def test_first_and_last_layers_fixed_and_depthwise_floor():
    _, sn = _supernet("mobilenetv2_28")
    assert sn.fixed_names == ("features.0.0", "classifier")
    assert sn.cost_table.fixed_bits == {"features.0.0": (8, 8), "classifier": (8, 8)}
    depthwise = [n for n, m in sn.model.named_modules() if isinstance(m, QConv2d) and m.is_depthwise]
    assert depthwise and all(sn.choices[n][0] == (3, 4, 5, 6) for n in depthwise)
    assert all(sn.choices[n][0] == (2, 3, 4, 5, 6) for n in sn.searchable if n not in depthwise)
    # the first conv sees the raw image: its input is never quantized
    assert sn.model.get_submodule("features.0.0").quantize_input is False


def test_activation_sign_from_calibration():
    _, sn = _supernet("mobilenetv2_28")
    signed = {n for n, m in sn.model.named_modules() if isinstance(m, (QConv2d, QLinear))
              and m.quantize_input and m.input_quantizer.signed}
    # expansion convs that follow a linear bottleneck see negative inputs; depthwise convs follow ReLU6
    assert "features.2.block.0.0" in signed
    assert not any(n.endswith("block.1.0") for n in signed)


def test_switchable_bn_keeps_separate_statistics():
    bn = nn.BatchNorm2d(4)
    sbn = SwitchableBatchNorm2d(bn, [(2, 2), (4, 4)])
    sbn.train()
    sbn.set_bits(2, 2)
    sbn(torch.randn(8, 4, 5, 5) + 3.0)
    assert sbn.bns["w2a2"].running_mean.mean() > 0.2
    assert torch.equal(sbn.bns["w4a4"].running_mean, torch.zeros(4))
    assert torch.equal(sbn.bns["fp"].running_mean, torch.zeros(4))
    with pytest.raises(ValueError, match="no BN for the pair w3a3"):
        sbn.set_bits(3, 3)


def test_config_set_sample_and_json_roundtrip():
    _, sn = _supernet()
    cfg = sn.sample_config(torch.Generator().manual_seed(1))
    assert cfg == sn.sample_config(torch.Generator().manual_seed(1))
    back = config_from_json(config_to_json(cfg, bitops=sn.bitops(cfg)))
    assert back == cfg
    sn.set_config(back)
    assert sn.config == cfg


@pytest.mark.parametrize("bad, message", [
    ({"nope": (4, 4)}, "unknown layers \\['nope'\\]"),
    ("partial", "missing layers"),
    ("bits", "outside its candidates"),
    ("shape", "two ints"),
])
def test_bad_configs_rejected(bad, message):
    _, sn = _supernet()
    cfg = sn.uniform_config(4)
    if bad == "partial":
        cfg.pop(next(iter(cfg)))
    elif bad == "bits":
        cfg[next(iter(cfg))] = (7, 4)
    elif bad == "shape":
        cfg[next(iter(cfg))] = (4,)
    else:
        cfg.update(bad)
    with pytest.raises(ValueError, match=message):
        sn.set_config(cfg)


def test_export_matches_supernet():
    _, sn = _supernet("mobilenetv2_28")
    cfg = sn.sample_config(torch.Generator().manual_seed(2))
    sn.set_config(cfg)
    x = torch.randn(4, 1, 28, 28)
    fixed = sn.export(cfg).eval()
    assert not any(isinstance(m, SwitchableBatchNorm2d) for m in fixed.modules())
    with torch.no_grad():
        assert torch.equal(fixed(x), sn.eval()(x))
    assert sn.config == cfg        # exporting leaves the supernet as it was


def test_cost_table_from_resnet18_shapes():
    sn = Supernet(create_model("resnet18", num_classes=1000).eval(), (3, 224, 224))
    # total MACs of ResNet-18 at 224x224 (convs + fc), the hand-written figure in test_cost.py
    assert sum(layer_macs(s) for s in sn.cost_table.layers) == 1_814_073_344
    assert sn.fixed_names == ("stem.0", "fc")
    assert len(sn.searchable) == 19        # 16 3x3 convs + 3 downsample convs


def test_recalibration_changes_bn_statistics_and_only_them():
    _, sn = _supernet()
    cfg = sn.uniform_config(3)
    sn.set_config(cfg)
    before = {k: v.clone() for k, v in sn.state_dict().items() if torch.is_tensor(v)}
    recalibrate_bn(sn, [torch.randn(16, 1, 28, 28) * 2 for _ in range(2)])
    after = sn.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "recalibration changed nothing"
    assert all(k.split(".")[-1] in {"running_mean", "running_var", "num_batches_tracked"} for k in changed)
    # only the BNs of the active pair (w3a3) and plain BNs (the fixed first conv's) move
    assert all(".bns.w3a3." in k or ".bns." not in k for k in changed)
    assert all(bn.momentum == 0.1 for bn in sn.modules() if isinstance(bn, nn.BatchNorm2d))


@pytest.mark.parametrize("name", ["mobilenetv2_28", "efficientnet_lite_28"])
def test_no_configuration_puts_a_depthwise_conv_below_its_floor(name):
    """The supernet, every uniform LSQ baseline (W2A2 included) and every configuration they can take keep
    depthwise convs at 3-bit weights and activations or more; the W2A2 baseline is the supernet's uniform W2A2
    point."""
    from mpq.training.recipe import OneShotConfig

    cfg = OneShotConfig()
    model = create_model(name, width_mult=0.25)
    supernet = Supernet(model, (1, 28, 28), cfg.supernet_spec())
    depthwise = [n for n, m in supernet.model.named_modules() if isinstance(m, QConv2d) and m.is_depthwise]
    assert depthwise
    gen = torch.Generator().manual_seed(0)
    for bits in (2, 3, 4, 5, 6):
        base = Supernet(model, (1, 28, 28), cfg.baseline(bits).supernet_spec())
        assert all(base.choices[n] == ((max(bits, 3),), (max(bits, 3),)) for n in depthwise)
        assert all(base.choices[n] == ((bits,), (bits,)) for n in base.searchable if n not in depthwise)
        uniform = base.uniform_config(bits)
        assert uniform == supernet.uniform_config(bits)
        assert base.bitops(uniform) == supernet.bitops(uniform)
        for net in (base, supernet):
            for cfg_ in (net.min_config(), uniform, *(net.sample_config(gen) for _ in range(20))):
                assert all(cfg_[n][0] >= 3 and cfg_[n][1] >= 3 for n in depthwise)


@pytest.mark.timeout(10)
def test_a_depthwise_activation_never_samples_2_bits():
    """The official depthwise convs take candidates 6..3 for weights and activations alike
    (``depthwise_floor_activations``); without it (this package's rule before) their activations reach 2 bits."""
    from mpq.training.recipe import OneShotConfig

    model = create_model("mobilenetv2_28", width_mult=0.25)
    sn = Supernet(model, (1, 28, 28), OneShotConfig().supernet_spec())
    depthwise = [n for n, m in sn.model.named_modules() if isinstance(m, QConv2d) and m.is_depthwise]
    others = [n for n in sn.searchable if n not in depthwise]
    assert depthwise and all(sn.choices[n] == ((3, 4, 5, 6), (3, 4, 5, 6)) for n in depthwise)
    assert all(sn.choices[n] == ((2, 3, 4, 5, 6), (2, 3, 4, 5, 6)) for n in others)
    # the quantizer has no 2-bit activation step size, and the switchable BN no pair with 2-bit activations
    layer = sn.model.get_submodule(depthwise[0])
    assert sorted(layer.input_quantizer.step_size) == ["3", "4", "5", "6"]
    assert not [k for k in sn.bn_layers()[depthwise[0]].bns if k.endswith("a2")]
    gen = torch.Generator().manual_seed(0)
    drawn = [sn.sample_config(gen) for _ in range(200)]
    assert all(c[n][1] >= 3 for c in drawn for n in depthwise)
    assert any(c[n][1] == 2 for c in drawn for n in others)
    assert all(sn.uniform_config(2)[n] == (3, 3) and sn.min_config()[n] == (3, 3) for n in depthwise)
    with pytest.raises(ValueError, match="outside its candidates"):
        sn.validate({**sn.uniform_config(4), depthwise[0]: (4, 2)})
    before = Supernet(model, (1, 28, 28), OneShotConfig(depthwise_floor_activations=False).supernet_spec())
    assert all(before.choices[n] == ((3, 4, 5, 6), (2, 3, 4, 5, 6)) for n in depthwise)


def test_nchw_bn_route_only_where_measured():
    assert nchw_bn_below("AVX512") == 16 and nchw_bn_below("avx512_bf16") == 16
    assert nchw_bn_below("AVX2") == 0 and nchw_bn_below("DEFAULT") == 0


@pytest.mark.parametrize("channels", [4, 8, 12])    # all under the AVX-512 crossing: each takes the route
def test_small_channel_bn_route_equals_plain_bn(monkeypatch, channels):
    """Batch-statistics BN on a channels_last input: the NCHW route gives the plain BN's outputs, gradients and
    running statistics (to float rounding) and hands back channels_last."""
    monkeypatch.setattr(layers, "_NCHW_BN_BELOW", 16)
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(channels)
    nn.init.uniform_(bn.weight, 0.5, 1.5), nn.init.uniform_(bn.bias, -0.5, 0.5)
    sw = SwitchableBatchNorm2d(bn, [(4, 4)])
    sw.set_bits(4, 4)
    ref = SwitchableBatchNorm2d(bn, [(4, 4)])
    ref.set_bits(4, 4)
    ref.load_state_dict(sw.state_dict())
    x = (torch.randn(32, channels, 12, 12) * 2 + 1).contiguous(memory_format=torch.channels_last)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    g = torch.randn_like(x)
    y1 = sw(x1)
    monkeypatch.setattr(layers, "_NCHW_BN_BELOW", 0)
    y2 = ref(x2)
    assert y1.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y1, y2, rtol=1e-5, atol=1e-5)
    (y1 * g).sum().backward(), (y2 * g).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-5)
    for (name, a), (_, b) in zip(sw.named_buffers(), ref.named_buffers()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    for (name, a), (_, b) in zip(sw.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-4, msg=name)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2_28"])
def test_layers_listed_once_are_the_models_layers_also_in_a_copy(name):
    """``Supernet.layers`` (listed at construction, read on every one-shot step) is ``quant_layers`` of the model:
    the same modules in the same order, in a deep copy too (the EMA model is one)."""
    import copy

    _, sn = _supernet(name)
    for net in (sn, copy.deepcopy(sn)):
        walked = layers.quant_layers(net.model)
        assert list(net.layers) == list(walked)
        assert all(net.layers[n] is m for n, m in walked.items())
