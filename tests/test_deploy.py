"""Deployment: packed codes, the integer reference against fake quantization and ONNX Runtime, BitOPs of the
graph, the file format, released supernets and the export / evaluate commands."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from mpq.__main__ import main
from mpq.data.datasets import normalize
from mpq.deploy import evaluate, integer
from mpq.deploy.model import FLOAT32_EXACT, load, lower, save
from mpq.deploy.pack import pack_codes, packed_bytes, unpack_codes
from mpq.method.quantizer import int_range, lsq_fake_quant
from mpq.method.supernet import Supernet, recalibrate_bn
from mpq.models import create_model
from mpq.training.oneshot import load_supernet

onnx_export = pytest.importorskip("mpq.deploy.onnx_export")
pytest.importorskip("onnxruntime")

MODELS = ("resnet20", "mobilenetv2_28", "efficientnet_lite_28")


def _random_supernet(name: str, seed: int) -> tuple[Supernet, dict, torch.Tensor]:
    """An untrained width-0.25 supernet at a random configuration, BN statistics from random images."""
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (32, 1, 28, 28), dtype=torch.uint8, generator=gen)
    supernet = Supernet(create_model(name, width_mult=0.25).eval(), (1, 28, 28))
    supernet.calibrate(normalize(pixels))
    cfg = supernet.sample_config(gen)
    supernet.set_config(cfg)
    recalibrate_bn(supernet, [normalize(pixels)])
    return supernet.eval(), cfg, pixels


@pytest.fixture(scope="module")
def checkpoint(trained):
    """The tiny trained ResNet-20 supernet's checkpoint (conftest)."""
    return trained[1]


# --- packing --------------------------------------------------------------------------------------------

@pytest.mark.timeout(30)
def test_codes_pack_at_their_bit_width_and_come_back():
    # hand-packed: 2-bit signed 1 -> 01, -2 -> 10, 0 -> 00, -1 -> 11, least significant first: 0b11_00_10_01
    assert pack_codes(np.array([1, -2, 0, -1]), 2, signed=True).tolist() == [0b11001001]
    gen = np.random.default_rng(0)
    for bits in range(2, 9):
        for signed in (True, False):
            qmin, qmax = int_range(bits, signed)
            codes = gen.integers(qmin, qmax + 1, size=(5, 3, 7))
            packed = pack_codes(codes, bits, signed)
            assert packed.size == packed_bytes(codes.size, bits) == -(-codes.size * bits // 8)
            assert np.array_equal(unpack_codes(packed, bits, signed, codes.shape), codes)
    with pytest.raises(ValueError, match="outside"):
        pack_codes(np.array([2]), 2, signed=True)


# --- exactness -----------------------------------------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 8])
@pytest.mark.parametrize("signed", [True, False])
def test_onnx_runtime_quantizer_equals_the_package_quantizer_ties_included(bits, signed):
    qmin, qmax = int_range(bits, signed)
    gen = torch.Generator().manual_seed(bits)
    for step in (0.25, 0.0371, float(torch.rand((), generator=gen)) + 1e-3):
        s = torch.tensor(step, dtype=torch.float32)
        ties = (torch.arange(qmin - 3, qmax + 3, dtype=torch.float32) + 0.5) * s      # exact halves where s is 2^-k
        noise = torch.randn(200_000, generator=gen) * s * (qmax - qmin) / 2
        x = torch.cat([ties, noise, ties.nextafter(torch.tensor(float("inf")))])
        sess = onnx_export.session(onnx_export.quantizer_model(float(s), bits, signed))
        codes = torch.from_numpy(sess.run(["codes"], {"x": x.numpy()})[0])
        assert torch.equal(codes, integer.input_codes(x, float(s), bits, signed))
        assert torch.equal(codes * s, lsq_fake_quant(x, s, qmin, qmax))                  # the training quantizer
    assert torch.equal(integer.input_codes(torch.tensor([0.375, 0.625]), 0.25, 4, True), torch.tensor([2.0, 2.0]))


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", MODELS)
def test_integer_reference_equals_onnx_runtime_and_graph_bitops_equal_the_accounting(name, tmp_path):
    for seed in (0, 1):
        supernet, cfg, pixels = _random_supernet(name, seed)
        deployed = lower(supernet, cfg)
        assert all(op["acc_bound"] < FLOAT32_EXACT for op in deployed.layers)
        ref = integer.forward(deployed, pixels)
        model = onnx_export.to_onnx(deployed)
        assert torch.equal(onnx_export.run(onnx_export.session(model), pixels), ref)
        assert onnx_export.graph_bitops(model) == supernet.bitops(cfg)
        # the fake-quant model computes the same function up to float rounding
        assert torch.allclose(supernet(normalize(pixels)), ref, atol=1e-3, rtol=1e-3)
        save(deployed, tmp_path / f"{seed}")
        again = load(tmp_path / f"{seed}")
        assert torch.equal(integer.forward(again, pixels), ref)
        assert (tmp_path / f"{seed}" / "weights.npz").stat().st_size < 4 * sum(
            deployed.tensors[f"{op['name']}.weight"].numel() for op in deployed.layers)


@pytest.mark.timeout(60)
def test_fake_quant_and_integer_reference_agree_on_a_trained_checkpoint(checkpoint, tiny_splits):
    supernet = load_supernet(checkpoint)
    cfg = supernet.sample_config(torch.Generator().manual_seed(3))
    from mpq.search.evaluation import recalibrate

    recalibrate(supernet, cfg, tiny_splits.calib)
    deployed = lower(supernet, cfg)
    logits = evaluate.logits(deployed, tiny_splits.test, fake_quant=supernet)
    agree = evaluate.accuracies(logits, tiny_splits.test.labels)["top1_agreement_fake_quant_integer"]
    assert agree >= 0.999
    layers = evaluate.code_agreement(deployed, supernet.export(cfg), tiny_splits.test.images[:64])
    assert set(layers) == {op["name"] for op in deployed.layers}
    for name, row in layers.items():
        assert row["differ"] <= 1e-3 and row["max_diff"] <= 1, (name, row)


@pytest.mark.timeout(30)
def test_the_package_imports_without_onnx_and_says_how_to_install_it(tmp_path):
    code = ("import sys; sys.modules['onnx'] = None; sys.modules['onnxruntime'] = None\n"
            "import mpq.deploy.model, mpq.deploy.integer, mpq.deploy.evaluate, mpq.__main__\n"
            "from mpq.deploy import onnx_export\n"
            "try:\n    onnx_export.require_onnx()\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install -e .[deploy]" in out


# --- released supernets and the command line -------------------------------------------------------------

@pytest.mark.timeout(120)
def test_release_then_search_export_and_evaluate(checkpoint, tmp_path, capsys):
    from mpq.deploy.release import main as release_main

    src = checkpoint.parent
    assert release_main([str(src), str(tmp_path / "models"), "--profile", "tiny"]) == 0
    released = tmp_path / "models" / "resnet20.pt"
    info = json.loads((tmp_path / "models" / "resnet20.json").read_text())
    assert info["profile"] == "tiny" and info["data"]["name"] == "fashion_mnist" and info["file"] == "resnet20.pt"
    assert released.stat().st_size < checkpoint.stat().st_size / 2          # no optimizer state
    cfg_path = tmp_path / "cfg.json"
    assert main(["search", str(released), "--level", "4.8", "--score-size", "16", "--out", str(cfg_path)]) == 0
    capsys.readouterr()
    out = tmp_path / "deployed"
    assert main(["export", str(released), "--config", str(cfg_path), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["gbitops_onnx_graph"] == pytest.approx(summary["gbitops"], abs=0)
    assert summary["weight_bytes"] < summary["float32_weight_bytes"] / 4
    assert summary["weight_bytes"] == pytest.approx(summary["size_mib"] * 2**20, abs=len(json.loads(
        (out / "model.json").read_text())["bit_cfg"]) + 2)                 # whole bytes per layer
    assert {p.name for p in out.iterdir()} == {"model.json", "weights.npz", "model.onnx"}
    assert main(["evaluate", str(out), "--test-size", "128"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["onnx_logits_equal_integer"] and result["acc_onnx"] == result["acc_integer"]
    assert main(["evaluate", str(released), "--config", str(cfg_path), "--test-size", "128",
                 "--agreement-images", "16"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["onnx_logits_equal_integer"] and "acc_fake_quant" in result
    assert result["code_agreement"]["max_level_difference"] <= 1


@pytest.mark.timeout(90)
def test_export_and_evaluate_refuse_bad_input_in_one_line(checkpoint, tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    not_json = tmp_path / "bad.json"
    not_json.write_text("{")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"bit_cfg": {"nope": [4, 4]}}))
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = [
        (["export", str(checkpoint), "--config", str(cfg), "--out", str(tmp_path / "o")], "not found"),
        (["export", str(checkpoint), "--config", str(not_json), "--out", str(tmp_path / "o")], "not JSON"),
        (["export", str(checkpoint), "--config", str(wrong), "--out", str(tmp_path / "o")], "unknown layers"),
        (["export", str(checkpoint), "--config", str(wrong), "--out", str(afile)], "is a file"),
        (["export", str(not_json), "--config", str(wrong), "--out", str(tmp_path / "o")], "corrupt"),
        (["evaluate", str(checkpoint)], "pass --config"),
        (["evaluate", str(tmp_path / "nowhere")], "not found"),
        (["evaluate", str(tmp_path)], "not a deployed model"),
        (["evaluate", str(checkpoint), "--config", str(cfg), "--test-size", "0"], "positive"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert not (tmp_path / "o").exists()
