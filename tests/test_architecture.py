"""The package's import graph has no cycles.

Every ``import`` of every module under ``src/actionhooks`` counts, wherever it is written: at the top, inside a
function (a cycle deferred to call time is still a cycle), under ``if TYPE_CHECKING:``. Importing ``a.b.c`` runs
the packages ``a`` and ``a.b`` first, so it depends on their ``__init__`` too (except the packages the importer is
itself inside, which are already running).

Two views: modules, and the parts of each package — within ``actionhooks``, ``catalog`` (all its modules as one)
must not depend on ``events`` while ``events`` depends on ``catalog``, even when no single module closes the loop.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "actionhooks"
ROOT = Path(__file__).parents[1] / "src" / PACKAGE

Graph = dict[str, set[str]]


def modules(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Every module by dotted name; a package by its own name (its ``__init__``)."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _ancestors(name: str) -> Iterator[str]:
    parts = name.split(".")
    for i in range(1, len(parts)):
        yield ".".join(parts[:i])


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of the package that ``name`` imports, and the packages it thereby runs."""
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rpartition(".")[0]  # what a relative import starts from
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
            source = (f"{base}.{node.module}" if node.module else base) if node.level else (node.module or "")
            for alias in node.names:  # ``from p import m``: the submodule m when there is one, else p's name
                sub = f"{source}.{alias.name}"
                targets.add(sub if sub in known else source)
    running = set(_ancestors(name)) | ({name} if is_package else set())  # already being imported
    out = {t for t in targets if t in known}
    out.update(a for t in targets for a in _ancestors(t) if a in known and a not in running)
    out.discard(name)
    return out


def graph(root: Path = ROOT, package: str = PACKAGE) -> Graph:
    found = modules(root, package)
    known = set(found)
    return {name: imports(name, path, known) for name, path in found.items()}


def cycles(g: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (or a module importing itself), each sorted
    (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for start in sorted(g):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(g[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in g:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(g[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in g[node]:
                        out.append(sorted(component))
    return sorted(out)


def parts_graph(g: Graph, package: str) -> Graph:
    """The dependencies among ``package``'s direct parts (its modules and subpackages, each with all it holds)."""
    prefix = package + "."

    def part(module: str) -> str | None:
        return prefix + module[len(prefix) :].split(".")[0] if module.startswith(prefix) else None

    out: Graph = {}
    for module, targets in g.items():
        source = part(module)
        if source is None:
            continue
        out.setdefault(source, set()).update(t for t in map(part, targets) if t is not None and t != source)
    return out


def _path(g: Graph, component: list[str]) -> str:
    """One cycle through the component's first module, as ``a → b → a``."""
    members, first = set(component), component[0]
    trail, seen = [first], {first}
    while True:
        nxt = sorted(n for n in g[trail[-1]] if n in members)
        back = [n for n in nxt if n == first]
        if back and len(trail) > 1:
            return " → ".join([*trail, first])
        fresh = [n for n in nxt if n not in seen]
        if not fresh:
            return " ↔ ".join(component)
        trail.append(fresh[0])
        seen.add(fresh[0])


def test_the_package_has_no_import_cycles() -> None:
    g = graph()
    assert len(g) > 30 and "actionhooks.events" in g  # the walk found the package
    found = cycles(g)
    assert found == [], "import cycles:\n" + "\n".join(_path(g, c) for c in found)


def test_the_parts_of_every_package_have_no_import_cycles() -> None:
    g = graph()
    packages = sorted(name for name, path in modules().items() if path.name == "__init__.py")
    assert PACKAGE in packages and f"{PACKAGE}.catalog" in packages
    found = {p: cycles(parts_graph(g, p)) for p in packages}
    report = [f"in {p}: {_path(parts_graph(g, p), c)}" for p, cs in found.items() for c in cs]
    assert report == [], "import cycles between parts of a package:\n" + "\n".join(report)


# --- the checker itself: it finds what it must, and only that -------------------------------------------


def _package(tmp_path: Path, files: dict[str, str]) -> Graph:
    root = tmp_path / "pkg"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return graph(root, "pkg")


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    g = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from .b import thing\n",
            "b.py": "def thing():\n    from . import a\n    return a\n",
        },
    )
    assert cycles(g) == [["pkg.a", "pkg.b"]]


def test_a_cycle_through_a_package_init_is_found(tmp_path: Path) -> None:
    g = _package(
        tmp_path,
        {
            "__init__.py": "",
            "config.py": "from .dispatch.retry import Policy\n",
            "dispatch/__init__.py": "from .worker import Worker\n",
            "dispatch/retry.py": "",
            "dispatch/worker.py": "from ..config import Settings\n",
        },
    )
    assert cycles(g) == [["pkg.config", "pkg.dispatch", "pkg.dispatch.worker"]]


def test_a_cycle_between_parts_of_a_package_is_found(tmp_path: Path) -> None:
    g = _package(
        tmp_path,
        {
            "__init__.py": "",
            "catalog/__init__.py": "",
            "catalog/schemas.py": "from ..events import ID_PATTERN\n",
            "events.py": "from .catalog import catalog\n",
        },
    )
    assert cycles(g) == []  # no module closes the loop…
    assert cycles(parts_graph(g, "pkg")) == [["pkg.catalog", "pkg.events"]]  # …but catalog and events do


def test_type_checking_imports_count_and_plain_packages_are_no_cycle(tmp_path: Path) -> None:
    g = _package(
        tmp_path,
        {
            "__init__.py": "",
            "api/__init__.py": "from .app import create_app\n",
            "api/app.py": "from . import hooks\nfrom .hooks import route\nfrom .. import errors\n",
            "api/hooks.py": "from ..errors import E\n",
            "errors.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .guard import G\n",
            "guard.py": "import pkg.errors\n",
        },
    )
    assert cycles(g) == [["pkg.errors", "pkg.guard"]]
