"""Each DVC stage's library dependencies, from the import closure of what it runs.

    python scripts/stage_deps.py           # rewrite the mpq/ entries of every stage's deps in dvc.yaml
    python scripts/stage_deps.py --check   # exit 1, naming each stage, where dvc.yaml lists other ones

A stage runs its notebook's code cells (``python -m mpq.pages.pipeline NOTEBOOK``), a module (``python -m
mpq.X``) or a script; every ``mpq`` module these import, directly or through other ``mpq`` modules (imports
inside functions included), is a dependency, and nothing else of ``mpq`` is: a stage that forgot one would not
re-run when it changes, and one that listed more would re-run for nothing (a figure edit retraining a model).
A package whose ``__init__`` imports mpq modules counts as its folder. The other deps (data, notebooks,
checkpoints, results) are written by hand and kept as they are.
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent


def mpq_imports(source: str, package: str = "") -> set[str]:
    """The ``mpq`` modules a piece of code imports, as dotted names (``mpq.models`` for a package); relative
    imports are resolved against ``package``, the importing file's package (``mpq`` or ``mpq.models``)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "mpq"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:                                 # from .layers import ..., from . import cpu_kernels
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            if base.split(".")[0] != "mpq":
                continue
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}   # from mpq.method import cpu_kernels (others: not modules)
    return found


def module_file(root: Path, name: str) -> Path | None:
    """The file (or package folder) of an ``mpq`` module, relative to the root; None for the package itself."""
    parts = name.split(".")
    if len(parts) == 1:
        return None
    path = root.joinpath(*parts)
    if path.is_dir():             # a subpackage whose __init__ imports nothing is no dependency of its own
        init = path / "__init__.py"
        if init.exists() and not mpq_imports(init.read_text(), name):
            return None
        return path.relative_to(root)
    path = path.with_suffix(".py")
    return path.relative_to(root) if path.exists() else None


def closure(root: Path, sources: list[str]) -> set[Path]:
    """Every mpq file the sources import, directly or through other mpq files (a package counts as its folder)."""
    todo = [m for s in sources for m in mpq_imports(s)]
    files: set[Path] = set()
    while todo:
        path = module_file(root, todo.pop())
        if path is None or path in files:
            continue
        files.add(path)
        inner = sorted((root / path).glob("*.py")) if (root / path).is_dir() else [root / path]
        todo += [m for f in inner for m in mpq_imports(f.read_text(), ".".join(f.relative_to(root).parent.parts))]
    return files


def stage_sources(root: Path, cmd: str) -> list[str]:
    """The code a stage's command runs: its notebook's code cells, its module or its script."""
    words = cmd.split()
    if "-m" in words and words[words.index("-m") + 1] == "mpq.pages.pipeline":
        notebook = nbformat.read(root / words[-1], as_version=4)
        return [c.source for c in notebook.cells if c.cell_type == "code"] + ["import mpq.pages.pipeline"]
    if "-m" in words:
        return [f"import {words[words.index('-m') + 1]}"]
    return [(root / next(w for w in words if w.endswith(".py"))).read_text()]


def stages(root: Path) -> dict:
    return yaml.safe_load((root / "dvc.yaml").read_text())["stages"]


def expected(root: Path, stage: dict) -> list[str]:
    """The sorted ``mpq`` deps of one stage."""
    return sorted(str(p) for p in closure(root, stage_sources(root, stage["cmd"])))


def listed(stage: dict) -> list[str]:
    return sorted(str(d) for d in stage.get("deps", []) if str(d).startswith("mpq/"))


def problems(root: Path) -> list[str]:
    out = []
    for name, stage in stages(root).items():
        want, have = expected(root, stage), listed(stage)
        if want != have:
            missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
            out.append(f"stage {name}: dvc.yaml lists {extra} that it does not import and misses {missing} that it "
                       "imports; run `python scripts/stage_deps.py`")
    return out


def rewrite(root: Path) -> None:
    """Replace each stage's ``- mpq/...`` deps lines with its closure, after its other deps."""
    text = (root / "dvc.yaml").read_text()
    for name, stage in stages(root).items():
        block = re.search(rf"(?m)^  {re.escape(name)}:.*?(?=^  \S|\Z)", text, re.S)
        deps = re.search(r"(?m)^    deps:\n((?:      - .*\n)+)", block.group(0))
        lines = [ln for ln in deps.group(1).splitlines(keepends=True) if not ln.strip().startswith("- mpq/")]
        lines += [f"      - {p}\n" for p in expected(root, stage)]
        new_block = block.group(0).replace(deps.group(0), "    deps:\n" + "".join(lines), 1)
        text = text[:block.start()] + new_block + text[block.end():]
    (root / "dvc.yaml").write_text(text)


def main(argv: list[str]) -> int:
    if "--check" in argv:
        found = problems(ROOT)
        print("\n".join(found) or "every stage lists exactly the library files it runs")
        return 1 if found else 0
    rewrite(ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
