"""Does the repository's DVC store hold every cached output that dvc.lock names?

    python scripts/store_check.py          # prints each missing output; exit 1 when one is missing

A cached output (checkpoints, data; not the reports, which git holds: ``cache: false`` in dvc.yaml) is an
object ``<store>/files/md5/<2 hex>/<30 hex>``; a folder's is its ``.dir`` manifest, and every file the manifest
lists must be there too. Reading the store's files directly needs neither DVC's cache nor a network, so the test
suite can ask it on a fresh clone. The store is the default remote of ``.dvc/config`` (``dvc-store/``).

A stage whose lock entry is stale (its command, a file it depends on in git, or one of its parameters changed
since it ran) is not counted: `dvc repro` re-runs it whatever the store holds. That is the state of the stages
not yet re-run while a run lands in parts; every stage that is current must have its outputs in the store.
"""
from __future__ import annotations

import configparser
import hashlib
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def store_path(root: Path) -> Path:
    """The default remote's folder, as ``.dvc/config`` names it (a path relative to ``.dvc/``)."""
    config = configparser.ConfigParser()
    config.read([root / ".dvc" / "config", root / ".dvc" / "config.local"])   # DVC writes ['remote "NAME"']
    sections = {s.strip("'"): config[s] for s in config.sections()}
    name = sections["core"]["remote"]
    return (root / ".dvc" / sections[f'remote "{name}"']["url"]).resolve()


def uncached_paths(root: Path) -> set[str]:
    """Outputs that dvc.yaml marks ``cache: false`` (git holds them)."""
    out = set()
    for stage in yaml.safe_load((root / "dvc.yaml").read_text())["stages"].values():
        for entry in stage.get("outs", []) + stage.get("metrics", []) + stage.get("plots", []):
            if isinstance(entry, dict):
                for path, opts in entry.items():
                    if opts and opts.get("cache") is False:
                        out.add(path)
    return out


def _object(store: Path, md5: str) -> Path:
    return store / "files" / "md5" / md5[:2] / md5[2:]


def _lookup(params: dict, key: str):
    for part in key.split("."):
        if not isinstance(params, dict) or part not in params:
            return KeyError
        params = params[part]
    return params


def stale_reason(root: Path, name: str, entry: dict, stages: dict, params: dict) -> str | None:
    """Why the lock's entry ``name`` no longer matches dvc.yaml, its files in git or params.yaml; None if it does."""
    base = name.split("@")[0]
    if base not in stages:
        return "no such stage in dvc.yaml"
    pattern = re.escape(stages[base]["cmd"]).replace(r"\$", "$")
    pattern = re.sub(r"\$\\\{[^}]*\\\}", r"\\S+", pattern)
    if not re.fullmatch(pattern, entry.get("cmd", "")):
        return "its command changed"
    for dep in entry.get("deps", []):
        path = root / dep["path"]
        if path.is_file() and not dep["md5"].endswith(".dir") and dep["path"].startswith(
                ("mpq/", "notebooks/", "scripts/", "benchmarks/")):
            if hashlib.md5(path.read_bytes()).hexdigest() != dep["md5"]:
                return f"{dep['path']} changed"
    for key, value in entry.get("params", {}).get("params.yaml", {}).items():
        if _lookup(params, key) != value:
            return f"parameter {key} changed"
    return None


def stale(root: Path = ROOT) -> dict[str, str]:
    """Stage name -> why its lock entry is stale (those `dvc repro` will re-run)."""
    lock = root / "dvc.lock"
    if not lock.is_file():
        return {}
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((root / "params.yaml").read_text())
    out = {}
    for name, entry in yaml.safe_load(lock.read_text()).get("stages", {}).items():
        why = stale_reason(root, name, entry, stages, params)
        if why:
            out[name] = why
    return out


def missing(root: Path = ROOT) -> list[str]:
    """``stage: path`` of every cached output of dvc.lock that the store lacks, whole or in part, among the
    stages whose lock entry is current (``stale``)."""
    lock = root / "dvc.lock"
    if not lock.is_file():
        return []
    store, skip, old = store_path(root), uncached_paths(root), stale(root)
    out = []
    for name, stage in yaml.safe_load(lock.read_text()).get("stages", {}).items():
        if name in old:
            continue
        for entry in stage.get("outs", []):
            if entry["path"] in skip:
                continue
            obj = _object(store, entry["md5"])
            if not obj.is_file():
                out.append(f"{name}: {entry['path']}")
            elif entry["md5"].endswith(".dir"):
                files = json.loads(obj.read_text())
                lost = [f["relpath"] for f in files if not _object(store, f["md5"]).is_file()]
                if lost:
                    out.append(f"{name}: {entry['path']} ({len(lost)} of its {len(files)} files, e.g. {lost[0]})")
    return out


def holds_a_run(root: Path = ROOT) -> bool:
    """Whether the store holds any object yet (it fills with the first complete run)."""
    objects = store_path(root) / "files" / "md5"
    return objects.is_dir() and any(objects.iterdir())


def main() -> int:
    found = missing(ROOT)
    for line in found:
        print(f"missing from the store: {line}; run `dvc push` (the output must be in the cache: `dvc repro` or "
              "`dvc pull` first)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
