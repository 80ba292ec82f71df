"""Smoke run of the whole DVC pipeline on the smoke profile (minimal sizes), in a temporary copy of the repository.

Each study function is unit-tested on its own (tests/test_*.py); this test checks that the stages fit together:
the DAG starts at the data, every stage runs and writes what the next one reads, a second repro runs nothing,
and a changed data file marks what depends on it. Then the store (DESIGN.md section 6): `dvc push` into the
repository's own `dvc-store/`, a fresh `git clone`, `dvc pull`, and `dvc repro` runs nothing; an edit of the
figure code re-runs page stages only and calls no training or search function; an edited training parameter
re-runs its stage and everything downstream of it. A user's image folder through transfer and the command line is
tested in tests/test_transfer.py."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mpq.studies.stats import audit_verdicts

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def _copy_repo(root: Path, dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=root, check=True,
                           capture_output=True, text=True).stdout.split()
    for rel in files:
        src = root / rel
        if src.is_file() and not rel.startswith(("reports/", "models/", "dvc-store/files/")) and (
                not rel.startswith("checkpoints/") or rel.endswith(".gitignore")):   # as a clone has, less the store
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _run(cmd: list[str], cwd: Path, **extra_env: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", **extra_env}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def test_dvc_repro_smoke_profile(root, tmp_path):
    work = tmp_path / "repo"
    _copy_repo(root, work)
    shutil.copy(root / "profiles/smoke.yaml", work / "params.yaml")
    (work / "dvc.lock").unlink(missing_ok=True)
    _run(["git", "init", "-q"], work)
    dag = _run(["dvc", "dag", "--dot"], work)                  # the data stage is the root of every training stage
    for stage in ("fp_train", "supernet", "search", "ablation@0", "transfer"):
        assert f"\"data\" -> \"{stage}\"" in dag or f"data -> {stage}" in dag.replace('"', ""), stage
    _run(["dvc", "repro"], work)
    manifest = json.loads((work / "data/manifest.json").read_text())
    assert [d["name"] for d in manifest["data_sets"]] == ["fashion_mnist", "animal_mnist", "mnist5k"]
    for name in ("01_fp_train", "02_supernet", "03_baselines", "04_search", "05_bit_interference", "06_transfer"):
        assert (work / "reports" / f"{name}.html").stat().st_size > 10_000
    fp = json.loads((work / "reports/metrics/fp.json").read_text())
    assert fp["profile"] == "smoke" and set(fp["models"]) == {"resnet20", "mobilenetv2_28", "efficientnet_lite_28"}
    supernet = json.loads((work / "reports/metrics/supernet.json").read_text())
    for name, result in supernet["models"].items():       # model_bits: MobileNetV2's candidates start at 3 bits
        assert set(result["uniform"]) == ({"4", "6"} if name == "mobilenetv2_28" else {"2", "4", "6"})
        assert min(result["w_bit_choices"]) == (3 if name == "mobilenetv2_28" else 2)
        assert 0.0 <= result["uniform"]["6"]["test_acc"] <= 1.0
    assert (work / "reports/figures/baselines_vs_supernet.png").is_file()
    search = json.loads((work / "reports/metrics/search.json").read_text())
    for name, result in search["models"].items():
        level = "3.9" if name == "mobilenetv2_28" else "2.9"
        config = json.loads((work / f"reports/configs/{name}_level{level}.json").read_text())
        assert config["level"] <= float(level) + 1e-9
        assert min(w for w, _ in config["bit_cfg"].values()) >= (3 if name == "mobilenetv2_28" else 2)
        assert result["start_bits"] == (4 if name == "mobilenetv2_28" else 3)     # model_bits: its own start
        assert {"greedy", "random", "evolutionary"} <= set(result["levels"][level])
        assert "no_retrain_minus_retrained" in result["levels"][level]["retrained"]
    seeds = search["seeds"]                                # ResNet-20's T2 over the main seed and the replicate
    assert seeds["seeds"] == [0, 1] and {g["BitOPs level"] for g in seeds["gaps"]} == {"2.9"}
    assert [p.name for p in (work / "checkpoints/replicates").glob("seed-1/*.pt")] == ["supernet.pt"]
    assert search["budget"]["budgets"] == [1] and {r["budget (x)"] for r in search["budget"]["rows"]} == {1}
    other = search["model_seeds"]["models"]["mobilenetv2_28"]   # C1, C6 and F5 of another model over its seeds
    assert other["seeds"] == [0, 1] and {r["comparison"] for r in other["comparisons"]} >= {
        "greedy 3.9 minus retrained", "greedy 3.9 minus random", "greedy 3.9 minus evolutionary"}
    assert (work / "checkpoints/model_replicates/mobilenetv2_28/seed-1/result.json").is_file()
    assert search["search_study"]["seeds"] == [0]          # S1 without alternatives: the equal-compute rows
    assert {r["setting"] for r in search["search_study"]["rows"]} == {"random search, equal evaluations",
                                                                       "evolutionary search, equal evaluations"}
    # C1 and S1 pair per test image: the supernet, baselines and search_study stages keep their predictions
    assert {r["pairing"] for r in search["search_study"]["rows"] + search["c1"]["rows"]} == {"per image"}
    # baselines.levels [2]: MobileNetV2 (floor 3) has no LSQ model; ResNet-20 over the main seed and its replicate,
    # EfficientNet-Lite (no replicates in this profile) one run
    assert {(r["model"], r["bits"], len(r["seeds"])) for r in search["c1"]["rows"]} == {
        ("resnet20", "W2A2", 2), ("efficientnet_lite_28", "W2A2", 1)}
    index = (work / "reports/index.html").read_text()
    for item in ("F1", "F2-T1", "F3-F4", "T2-T4", "T5", "T6", "F5", "F6", "F7", "S1", "A1"):
        assert f"id='{item}'" in index, item
    f7 = index[index.index("id='F7'"):index.index("id='S1'")]        # the default budget's seeds, drawn; no curve
    assert "Only the default budget" in f7 and "data:image/png" in f7 and "figures/budget_curve.png" not in f7
    held = index[index.index("id='held'"):index.index("id='C1'")]     # every claim has its verdict words
    assert held.count("<li>") == 6 and "no verdict yet" not in held
    page = (work / "reports/04_search.html").read_text()
    assert "Findings (" in page and "search_models(" not in page                 # findings shown, code hidden
    toy = json.loads((work / "reports/metrics/interference.json").read_text())
    assert {r["candidates"] for r in toy["runs"]} == {"{4,6}", "{2,4,6}"}
    ablation = json.loads((work / "reports/metrics/ablation.json").read_text())
    assert set(ablation["runs"]) == {f"{c}-{s}" for c in ("plain", "both", "no2bit", "sched_full") for s in (0, 1)}
    covered = {(r["cell"], m) for r in ablation["t6"]["rows"]       # a metric repeating another's is named, not a row
               for m in [r["metric"], *filter(None, r.get("same as", "").split(", "))]}
    assert covered == {(c, m) for c in ("plain", "both", "sched_full") for m in ("W2A2", "W3A3", "greedy 2.9", "lowest")}
    assert ("plain", "lowest") not in {(r["cell"], r["metric"]) for r in ablation["t6"]["rows"]}   # = its W2A2
    assert ablation["runs"]["sched_full-0"]["sched_score_candidates"] == "full"      # this package's variant
    assert "frozen_overlap" in ablation["runs"]["sched_full-0"] and ablation["runs"]["plain-0"]["frozen_overlap"] is None
    assert all(r["health"]["finite"] for r in ablation["runs"].values())
    assert {r["w bits"] for r in ablation["t1"]} == {4, 5, 6}
    assert not list((work / "checkpoints/ablation").glob(".*partial"))     # every run completed and renamed
    assert json.loads((work / "reports/metrics/throughput.json").read_text())["ratio_fq_vs_fp_train"] > 0
    # every verdict the stages wrote records its components and df, and none on fewer than 3 seeds has a word
    found, problems = 0, []
    for path in sorted((work / "reports/metrics").glob("*.json")):
        k, p = audit_verdicts(json.loads(path.read_text()), path.stem)
        found, problems = found + k, problems + p
    assert found > 20 and problems == [], problems[:5]
    assert not re.search(r"\b(holds|reversed here|higher|lower|on par)(: | \()[^;<]*test-image noise only", held)
    released = json.loads((work / "models/resnet20.json").read_text())        # the release stage: small files in git
    assert released["profile"] == "smoke" and (work / "models/resnet20.pt").stat().st_size == released["bytes"]
    transfer = json.loads((work / "reports/metrics/transfer.json").read_text())
    assert {r["target"] for r in transfer["t5"]} == {"animal_mnist"}
    assert all(b["equal_passes"] for b in transfer["budget"].values())
    assert {r["method"] for r in transfer["t5"]} >= {
        "FP", "LSQ W2A2", "this method, no retraining",
        "supernet from the FP model (no one-shot pre-training), no retraining"}
    arms = {r["arm"] for r in transfer["runs"]}        # every arm records its grid, its chosen rate, its convergence
    assert {c["arm"] for c in transfer["lr_grid"]["choices"]} == arms == {r["arm"] for r in
                                                                          transfer["convergence"]["rows"]}
    assert all(c["grid"] and c["chosen"] in c["grid"] for c in transfer["lr_grid"]["choices"])
    # nothing changed: a second repro runs no stage; a changed data file marks exactly what reads it
    again = _run(["dvc", "repro"], work)
    assert "Running stage" not in again, again
    with open(work / "data/mnist5k/mnist_5k.csv.gz", "ab") as fh:
        fh.write(b"\0")
    status = json.loads(_run(["dvc", "status", "--json"], work).splitlines()[-1])
    assert {"data", "transfer"} <= set(status) and "fp_train" not in status, status
    with open(work / "data/mnist5k/mnist_5k.csv.gz", "rb+") as fh:    # put it back as it was
        fh.seek(-1, os.SEEK_END)
        fh.truncate()
    _store_round_trip(work, tmp_path)


# The functions that train or search: a page stage must call none of them.
TRACED = {"mpq.training.fp": ["train_fp"], "mpq.training.oneshot": ["train_oneshot"],
          "mpq.search.greedy": ["greedy_front"], "mpq.search.sampling": ["random_search", "evolutionary_search"]}

SITECUSTOMIZE = """
import importlib.abc, importlib.util, os, sys
TRACED = %r
class _Wrap(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in TRACED:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        run = spec.loader.exec_module
        def exec_module(module):
            run(module)
            for fn in TRACED[name]:
                setattr(module, fn, _traced(name, fn, getattr(module, fn)))
        spec.loader.exec_module = exec_module
        return spec
def _traced(module, name, fn):
    def call(*args, **kwargs):
        with open(os.environ["MPQ_CALL_LOG"], "a") as log:
            log.write(f"{module}.{name}\\n")
        return fn(*args, **kwargs)
    return call
sys.meta_path.insert(0, _Wrap())
"""


def _stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def _downstream(clone: Path, stages: set[str]) -> set[str]:
    """``stages`` and every stage that depends on them, from `dvc dag --dot`'s edges."""
    edges = re.findall(r'"?([\w@.-]+)"?\s*->\s*"?([\w@.-]+)"?', _run(["dvc", "dag", "--dot"], clone))
    found, todo = set(stages), list(stages)
    while todo:
        node = todo.pop()
        for a, b in edges:
            if a == node and b not in found:
                found.add(b)
                todo.append(b)
    return found


def _store_round_trip(work: Path, tmp_path: Path) -> None:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    _run(["dvc", "push"], work)
    assert list((work / "dvc-store/files/md5").iterdir())
    _run(["git", "add", "-A"], work)
    _run([*git, "commit", "-qm", "smoke run"], work)
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(work), str(clone)], tmp_path)
    assert not (clone / "checkpoints/fp").exists()            # a clone carries no checkpoint, only the store
    _run(["dvc", "pull"], clone)
    again = _run(["dvc", "repro"], clone)
    assert _stages_run(again) == set(), again
    assert "Data and pipelines are up to date" in _run(["dvc", "status"], clone)
    # the store holds every cached output of the lock; an object lost from it is found
    check = [sys.executable, "scripts/store_check.py"]
    _run(check, clone)
    victim = next(p for p in (clone / "dvc-store/files/md5").rglob("*") if p.is_file() and p.suffix != ".dir")
    data = victim.read_bytes()
    victim.chmod(0o644)
    victim.unlink()
    proc = subprocess.run(check, cwd=clone, capture_output=True, text=True)
    assert proc.returncode == 1 and "missing from the store" in proc.stdout, proc.stdout
    victim.write_bytes(data)

    # a figure edit: page stages only, and no training or search function is called
    tracer = tmp_path / "tracer"
    tracer.mkdir()
    (tracer / "sitecustomize.py").write_text(SITECUSTOMIZE % (TRACED,))
    calls = tmp_path / "calls.log"
    calls.write_text("")
    (tracer / "probe.py").write_text("import mpq.training.fp as f; print(f.train_fp.__name__)")
    assert _run([sys.executable, str(tracer / "probe.py")], clone, PYTHONPATH=str(tracer),
                MPQ_CALL_LOG=str(calls)).strip() == "call"          # the tracer is in place
    with open(clone / "mpq/pages/plotting.py", "a") as fh:
        fh.write("# an edit of the figure code\n")
    start = time.perf_counter()
    out = _run(["dvc", "repro"], clone, PYTHONPATH=str(tracer), MPQ_CALL_LOG=str(calls))
    seconds = time.perf_counter() - start
    ran = _stages_run(out)
    stages = yaml.safe_load((clone / "dvc.yaml").read_text())["stages"].items()
    pages = {n for n, s in stages if "mpq.pages." in s["cmd"]}
    assert ran and ran <= pages, (ran, pages)
    assert calls.read_text() == "", calls.read_text()
    print(f"figure edit: {len(ran)} page stages re-ran in {seconds:.0f} s")

    # a training parameter: its stage and everything downstream of it, nothing else
    params = (clone / "params.yaml").read_text()
    assert "\nbaselines:\n  levels: [2]\n" in params
    (clone / "params.yaml").write_text(params.replace("\nbaselines:\n  levels: [2]\n", "\nbaselines:\n  levels: [2, 4]\n"))
    reading = {n for n, s in stages if "baselines" in s.get("params", [])}
    locked = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]
    reading = {n for n in locked if n.split("@")[0] in reading}          # a matrix stage runs once per item
    dry = _stages_run(_run(["dvc", "repro", "--dry"], clone))
    # DVC re-runs exactly the stages that read the parameter (--dry lists those; the stages downstream of them
    # follow when their outputs change, as the data edit above showed)
    assert {"baselines", "baselines_page", "search", "transfer"} <= reading and dry == reading, (dry, reading)
    assert not {"data", "fp_train", "supernet"} & dry
    assert {"baselines_page", "search_page", "transfer_page", "report"} <= _downstream(clone, {"baselines"})
