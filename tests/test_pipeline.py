"""Smoke run of the whole DVC pipeline on the tiny profile, in a temporary copy of the repository."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _copy_repo(root: Path, dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=root, check=True,
                           capture_output=True, text=True).stdout.split()
    for rel in files:
        src = root / rel
        if src.is_file() and not rel.startswith(("reports/", "checkpoints/")):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def test_dvc_repro_tiny_profile(root, tmp_path):
    work = tmp_path / "repo"
    _copy_repo(root, work)
    shutil.copy(root / "profiles/tiny.yaml", work / "params.yaml")
    (work / "dvc.lock").unlink(missing_ok=True)
    _run(["git", "init", "-q"], work)
    _run(["dvc", "repro"], work)
    for name in ("01_fp_train", "02_supernet", "03_baselines", "04_search", "05_bit_interference"):
        assert (work / "reports" / f"{name}.html").stat().st_size > 10_000
    fp = json.loads((work / "reports/metrics/fp.json").read_text())
    assert fp["profile"] == "tiny" and set(fp["models"]) == {"resnet20", "mobilenetv2_28", "efficientnet_lite_28"}
    supernet = json.loads((work / "reports/metrics/supernet.json").read_text())
    for name, result in supernet["models"].items():       # model_bits: MobileNetV2's candidates start at 3 bits
        assert set(result["uniform"]) == ({"4", "6"} if name == "mobilenetv2_28" else {"2", "4", "6"})
        assert min(result["w_bit_choices"]) == (3 if name == "mobilenetv2_28" else 2)
        assert 0.0 <= result["uniform"]["6"]["test_acc"] <= 1.0
    assert (work / "checkpoints/supernet/resnet20.pt").is_file()
    assert (work / "reports/figures/baselines_vs_supernet.png").is_file()
    search = json.loads((work / "reports/metrics/search.json").read_text())
    for name, result in search["models"].items():
        level = "3.9" if name == "mobilenetv2_28" else "2.9"
        config = json.loads((work / f"reports/configs/{name}_level{level}.json").read_text())
        assert config["level"] <= float(level) + 1e-9
        assert min(w for w, _ in config["bit_cfg"].values()) >= (3 if name == "mobilenetv2_28" else 2)
        assert result["start_bits"] == (4 if name == "mobilenetv2_28" else 3)     # model_bits: its own start
        methods = result["levels"][level]
        assert {"greedy", "random", "evolutionary"} <= set(methods)
        assert "no_retrain_minus_retrained" in methods["retrained"]
    assert (work / "reports/tables/main_results.csv").is_file()
    seeds = search["seeds"]                                # ResNet-20's T2 over the main seed and the replicate
    assert seeds["seeds"] == [0, 1] and {g["BitOPs level"] for g in seeds["gaps"]} == {"2.9"}
    assert (work / "checkpoints/replicates/seed-1/result.json").is_file()
    assert [p.name for p in (work / "checkpoints/replicates").glob("seed-1/*.pt")] == ["supernet.pt"]  # only the supernet kept
    budget = search["budget"]                              # F7: the default budget (2 seeds) and twice it (seed 0)
    assert budget["budgets"] == [1, 2] and {(r["budget (x)"], r["seeds"]) for r in budget["rows"]} == {(1, 2), (2, 1)}
    assert (work / "reports/figures/budget_curve.png").is_file()
    study = search["search_study"]                         # S1: each alternative setting against the default, 2 seeds
    assert {r["setting"] for r in study["rows"]} == {"128 scoring images", "start W4A4", "random search, equal evaluations",
                                                     "evolutionary search, equal evaluations"} and study["seeds"] == [0, 1]
    equal = [r for r in study["rows"] if "equal evaluations" in r["setting"]]
    assert all(r["seeds"] == 1 and r["evaluations x default"] <= 1.0 for r in equal)   # main seed; greedy's budget
    index = (work / "reports/index.html").read_text()
    for item in ("F1", "F2-T1", "F3-F4", "T2-T4", "T5", "T6", "F5", "F6", "F7", "S1", "A1"):
        assert f"id='{item}'" in index, item
    page = (work / "reports/04_search.html").read_text()
    assert "Findings (" in page and "greedy_front(" not in page                 # findings shown, code hidden
    toy = json.loads((work / "reports/metrics/interference.json").read_text())
    assert {r["candidates"] for r in toy["runs"]} == {"{4,6}", "{2,4,6}"}
    assert (work / "reports/figures/interference_toy.png").is_file()
    ablation = json.loads((work / "reports/metrics/ablation.json").read_text())
    assert set(ablation["runs"]) == {f"{c}-{s}" for c in ("plain", "sched", "idm", "both", "no2bit") for s in (0, 1)}
    assert {(r["cell"], r["metric"]) for r in ablation["t6"]} == {
        (c, m) for c in ("plain", "sched", "idm", "both") for m in ("W2A2", "W3A3", "greedy 2.9")}
    assert {r["w bits"] for r in ablation["t1"]} == {4, 5, 6}
    for name in ("oscillation.png", "bn_density.png"):
        assert (work / "reports/figures" / name).is_file()
    assert not list((work / "checkpoints/ablation").glob(".*partial"))     # every run completed and renamed
    assert json.loads((work / "reports/metrics/throughput.json").read_text())["ratio_fq_vs_fp_train"] > 0
    transfer = json.loads((work / "reports/metrics/transfer.json").read_text())
    assert {r["target"] for r in transfer["t5"]} == {"animal_mnist", "mnist5k"}
    assert {r["method"] for r in transfer["t5"]} >= {"FP", "LSQ W2A2", "this method, no retraining",
                                                     "supernet without pre-training, no retraining"}
    assert (work / "reports/figures/transfer.png").is_file()
    # nothing changed: a second repro runs no stage
    again = _run(["dvc", "repro"], work)
    assert "Running stage" not in again, again
    # the default profile's choices: no budget beyond the default (F7 pending) and no alternative search setting
    # (S1 keeps its equal-compute rows, on the main seed only)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["replicates"]["budgets"] = []
    params["search_study"].update({"score_sizes": [], "start_bits": []})
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    _run(["dvc", "repro", "report"], work)
    search = json.loads((work / "reports/metrics/search.json").read_text())
    assert search["budget"]["budgets"] == [1] and {r["budget (x)"] for r in search["budget"]["rows"]} == {1}
    assert search["search_study"]["seeds"] == [0]
    assert {r["setting"] for r in search["search_study"]["rows"]} == {"random search, equal evaluations",
                                                                       "evolutionary search, equal evaluations"}
    index = (work / "reports/index.html").read_text()
    f7 = index[index.index("id='F7'"):index.index("id='S1'")]
    assert "Not produced by this run" in f7 and "<img" not in f7
    # a user's image folder: one parameter (and its root) changes, the same notebook runs on it
    folder = _image_folder(tmp_path / "my_images")
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["transfer"].update({"targets": ["folder"], "root": str(folder), "score_size": 32, "calib_size": 32,
                               "seeds": [0]})
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    _run([sys.executable, "-m", "mpq.pages.pipeline", "notebooks/06_transfer.ipynb"], work)
    transfer = json.loads((work / "reports/metrics/transfer.json").read_text())
    assert {r["target"] for r in transfer["t5"]} == {"folder"}
    ckpt = "checkpoints/transfer/resnet20_folder_transferred_seed0.pt"
    out = _run([sys.executable, "-m", "mpq", "search", ckpt, "--level", "2.9", "--data-root", str(folder),
                "--evaluate", "--out", "folder_cfg.json"], work)
    assert json.loads((work / "folder_cfg.json").read_text())["level"] <= 2.9 + 1e-9, out
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run([sys.executable, "-m", "mpq", "search", ckpt, "--level", "2.9"], cwd=work, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "--data-root" in proc.stderr


def _image_folder(root: Path) -> Path:
    """Two classes of 80 small images each, grey and colour, of several sizes."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(("circles", "squares")):
        (root / name).mkdir(parents=True)
        for i in range(80):
            size = 24 + (i % 3) * 8
            arr = rng.integers(0, 60, (size, size), dtype=np.uint8)
            lo, hi = size // 4, 3 * size // 4
            if c:
                arr[lo:hi, lo:hi] = 220
            else:
                yy, xx = np.mgrid[:size, :size]
                arr[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2] = 220
            img = Image.fromarray(arr, "L")
            (img.convert("RGB") if i % 2 else img).save(root / name / f"{i}.png")
    return root
