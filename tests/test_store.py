"""The repository's DVC store and the split of the pipeline into compute and page stages (DESIGN.md section 6).

The mechanism end to end (push, a fresh clone, pull, a repro that runs nothing, a figure edit that re-runs
pages only) is tested on the smoke profile in tests/test_pipeline.py."""
from __future__ import annotations

import ast
import configparser
import importlib.util

import pytest
import yaml


def _script(root, name):
    spec = importlib.util.spec_from_file_location(name, root / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_store_is_the_default_remote_and_lives_in_the_repository(root):
    config = configparser.ConfigParser()
    config.read(root / ".dvc" / "config")
    sections = {s.strip("'"): config[s] for s in config.sections()}
    name = sections["core"]["remote"]
    url = sections[f'remote "{name}"']["url"]
    assert url == "../dvc-store"                        # relative to .dvc/: every clone uses its own folder
    store = _script(root, "store_check").store_path(root)
    assert store == (root / "dvc-store").resolve() and store.parent == root.resolve()


def test_every_cached_output_of_the_lock_is_in_the_store(root):
    check = _script(root, "store_check")
    if not check.holds_a_run(root):
        pytest.skip("dvc-store/ holds no run yet: this test switches on with the first stage pushed to it "
                    "(the complete run lands there in parts)")
    assert check.missing(root) == [], "run `dvc push` before committing dvc.lock"


def test_every_stage_lists_exactly_the_library_files_it_runs(root):
    """A stage lists its import closure and nothing more of mpq (scripts/stage_deps.py writes the lists): one that
    missed a module would not re-run when it changes, one that listed more would re-run for nothing."""
    assert _script(root, "stage_deps").problems(root) == []


def _files(path):
    return sorted(path.glob("*.py")) if path.is_dir() else [path]


def _top_imports(path) -> set[str]:
    """The top-level packages a file imports, lazy imports inside functions too."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


PRESENTATION = ("mpq/pages", "mpq/studies/stats.py", "notebooks/", "reports/metrics/")


def test_no_compute_stage_depends_on_presentation(root):
    """Editing a figure, a table, the statistics, a page's text or a notebook re-runs no training or search: the
    stages that compute (everything but the notebooks' pages and the report) depend on none of them."""
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    compute = {n: s for n, s in stages.items() if "mpq.pages." not in s["cmd"]}
    assert {"fp_train", "supernet", "baselines", "search", "transfer", "ablation", "replicate"} <= set(compute)
    deps = _script(root, "stage_deps")
    for name, stage in compute.items():
        bad = [d for d in stage.get("deps", []) if str(d).startswith(PRESENTATION) or str(d).endswith("_tables.py")]
        assert not bad, f"compute stage {name} depends on presentation: {bad}"
        drawing = [f"{d} imports {m}" for d in deps.expected(root, stage) for f in _files(root / d)
                   for m in _top_imports(f) if m in ("matplotlib", "seaborn", "IPython")]
        assert not drawing, f"compute stage {name} runs figure or notebook code: {drawing}"
    for name, stage in stages.items():
        if "mpq.pages.pipeline" in stage["cmd"]:       # a page reads stored results: it writes no checkpoint
            outs = [next(iter(o)) if isinstance(o, dict) else o for o in stage.get("outs", [])]
            assert not [o for o in outs if o.startswith("checkpoints")], name


def test_store_check_finds_what_a_current_stage_lacks_and_passes_over_stale_ones(root, tmp_path):
    """A hand-built repository: stage a (current) has one output in the store and one folder whose manifest lists a
    file the store lacks; stage b's parameter changed since it ran, so its missing output is not counted."""
    import hashlib
    import json

    check = _script(root, "store_check")
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text("[core]\n    remote = store\n['remote \"store\"']\n    url = ../dvc-store\n")
    (tmp_path / "params.yaml").write_text("b: {n: 2}\n")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "a": {"cmd": "make a", "outs": ["x.pt", "folder", {"page.html": {"cache": False}}]},
        "b": {"cmd": "make b ${b.n}", "params": ["b"], "outs": ["y.pt"]}}}))
    objects = tmp_path / "dvc-store" / "files" / "md5"

    def put(data: bytes, suffix: str = "") -> str:
        md5 = hashlib.md5(data).hexdigest() + suffix
        (objects / md5[:2]).mkdir(parents=True, exist_ok=True)
        (objects / md5[:2] / md5[2:]).write_bytes(data)
        return md5

    kept, lost = put(b"weights"), hashlib.md5(b"predictions").hexdigest()
    manifest = put(json.dumps([{"md5": kept, "relpath": "w.pt"}, {"md5": lost, "relpath": "p.npz"}]).encode(), ".dir")
    lock = {"schema": "2.0", "stages": {
        "a": {"cmd": "make a", "outs": [{"path": "x.pt", "md5": kept}, {"path": "folder", "md5": manifest},
                                        {"path": "page.html", "md5": "0" * 32}]},
        "b": {"cmd": "make b 1", "params": {"params.yaml": {"b": {"n": 1}}}, "outs": [{"path": "y.pt", "md5": "1" * 32}]}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert check.holds_a_run(tmp_path)
    assert check.stale(tmp_path) == {"b": "parameter b changed"}
    assert check.missing(tmp_path) == ["a: folder (1 of its 2 files, e.g. p.npz)"]
    lock["stages"]["a"]["cmd"] = "make a --old"                 # a changed command makes a stale too
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert check.missing(tmp_path) == [] and set(check.stale(tmp_path)) == {"a", "b"}
