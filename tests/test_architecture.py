"""The package's layout is its architecture: imports run only downward between the role packages, there is
no import cycle, and no module re-exports another's name under an alias (docs/architecture.md)."""
from __future__ import annotations

import ast
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent

# floor of each top-level part of mpq: a module may import from its own package or from a lower floor
FLOORS = {
    "method": 0, "data": 0, "models": 0,
    "config": 1,
    "training": 2,
    "search": 3, "deploy": 3,
    "studies": 4,
    "pages": 5,
    "__main__": 6, "__init__": 6,
}


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, root: Path = ROOT) -> list[tuple[str, int, list[ast.alias]]]:
    """``(module, line, names)`` for every mpq import of a file, relative imports resolved."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, []) for a in node.names if a.name.split(".")[0] == "mpq"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            if base.split(".")[0] == "mpq":
                out.append((base, node.lineno, list(node.names)))
    return out


def _part(module: str) -> str:
    """The role package of a dotted mpq module (``mpq.training.oneshot`` -> ``training``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _modules(root: Path = ROOT) -> dict[str, Path]:
    return {_module_name(p, root): p for p in sorted((root / "mpq").rglob("*.py"))}


def _resolve(module: str, names: list[ast.alias], known: dict[str, Path]) -> set[str]:
    """The mpq modules an import statement loads (``from mpq.method import cpu_kernels`` -> the module)."""
    found = {f"{module}.{a.name}" for a in names if f"{module}.{a.name}" in known}
    return found or ({module} if module in known else set())


def test_every_module_sits_in_a_known_role_package():
    unknown = sorted(m for m in _modules() if _part(m) not in FLOORS)
    assert not unknown, f"modules outside the role packages of docs/architecture.md: {unknown}"


def upward_imports(root: Path = ROOT) -> list[str]:
    """Imports from a higher floor, and the method's building blocks reaching sideways into data or models."""
    found = []
    for name, path in _modules(root).items():
        for module, line, _ in _imports(path, root):
            mine, theirs = _part(name), _part(module)
            upward = theirs != mine and FLOORS[theirs] > FLOORS[mine]
            sideways = mine == "method" and theirs in ("data", "models")
            if upward or sideways:
                found.append(f"{path.relative_to(root)}:{line} imports {module} ({theirs} from {mine})")
    return found


def test_imports_only_run_downward():
    problems = upward_imports()
    assert not problems, "\n".join(problems)


def import_cycles(root: Path = ROOT) -> list[str]:
    """Every import counts, the lazy ones inside functions too: a cycle through a lazy import is still a cycle."""
    known = _modules(root)
    graph = {name: set() for name in known}
    for name, path in known.items():
        for module, _, names in _imports(path, root):
            graph[name] |= {m for m in _resolve(module, names, known) if m != name}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_no_import_cycles():
    cycles = import_cycles()
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_cycle_check_sees_a_cycle_through_a_lazy_import(tmp_path):
    for rel, text in {"mpq/__init__.py": "", "mpq/training/__init__.py": "",
                      "mpq/training/oneshot.py": "from mpq.training.graphed import GraphedStep\n",
                      "mpq/training/graphed.py": "def f():\n    from mpq.training.oneshot import train_step\n"}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert import_cycles(tmp_path) == ["mpq.training.graphed -> mpq.training.oneshot -> mpq.training.graphed"]


def test_no_aliased_re_exports():
    """``from X import a as b`` in the library gives one function two names; notebooks must use the real one."""
    aliases = [f"{p.relative_to(ROOT)}:{line} {module}.{a.name} as {a.asname}"
               for n, p in _modules().items() for module, line, names in _imports(p) for a in names
               if a.asname and a.asname != a.name and f"{module}.{a.name}" not in _modules()]
    assert not aliases, "\n".join(aliases)


def test_the_architecture_page_names_every_role_package():
    text = (ROOT / "docs/architecture.md").read_text()
    missing = [part for part in FLOORS if not part.startswith("__") and part != "config" and f"mpq/{part}/" not in text]
    assert not missing, f"docs/architecture.md does not describe {missing}"


def test_the_checker_catches_an_upward_and_a_sideways_import(tmp_path):
    """Not vacuous: in a small fake tree, a method module importing a study and one importing the data are
    caught, a study importing the method is not."""
    for rel, text in {"mpq/__init__.py": "", "mpq/method/__init__.py": "",
                      "mpq/method/layers.py": "from mpq.studies.replicates import run_replicate\n",
                      "mpq/method/cost.py": "from mpq.data.datasets import ImageSet\n",
                      "mpq/studies/__init__.py": "",
                      "mpq/studies/replicates.py": "from mpq.method.layers import QConv2d\n"}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    found = upward_imports(tmp_path)
    assert len(found) == 2
    assert any("layers.py" in f and "mpq.studies.replicates" in f for f in found)
    assert any("cost.py" in f and "mpq.data.datasets" in f for f in found)
