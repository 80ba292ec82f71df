"""Smoke run of the whole DVC pipeline on the tiny profile, in a temporary copy of the repository."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
    for result in supernet["models"].values():
        assert set(result["uniform"]) == {"2", "4", "6"}
        assert 0.0 <= result["uniform"]["6"]["test_acc"] <= 1.0
    assert (work / "checkpoints/supernet/resnet20.pt").is_file()
    assert (work / "reports/figures/baselines_vs_supernet.png").is_file()
    search = json.loads((work / "reports/metrics/search.json").read_text())
    for name, result in search["models"].items():
        config = json.loads((work / f"reports/configs/{name}_level2.9.json").read_text())
        assert config["level"] <= 2.9 + 1e-9
        for level in ("2.9",):
            methods = result["levels"][level]
            assert {"greedy", "random", "evolutionary"} <= set(methods)
            assert "no_retrain_minus_retrained" in methods["retrained"]
    assert (work / "reports/tables/main_results.csv").is_file()
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
    # nothing changed: a second repro runs no stage
    again = _run(["dvc", "repro"], work)
    assert "Running stage" not in again, again
