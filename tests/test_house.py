"""The house rules a reader relies on: ARCHITECTURE.md's module map is the tree, and every exception the package
defines is in ``errors.py`` (its docstring draws the tree)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "src" / "actionhooks"
ROW = re.compile(r"^\| `(?P<name>[^`]+)` \| (?P<concept>.*) \|$")
NAMED_FILE = re.compile(r"`(\w[\w/]*(?:\.py|/))`")


def module_map() -> dict[str, str]:
    """ARCHITECTURE.md's module table: each row's module or package → its concept cell."""
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = text.split("## Modules", 1)[1].split("\n## ", 1)[0]
    return {m["name"]: m["concept"] for m in map(ROW.match, section.splitlines()) if m}


def tree() -> set[str]:
    """The package's top-level modules (``x.py``) and packages (``x/``), as the table names them."""
    found = {p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    found |= {f"{p.name}/" for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    return found


def test_the_module_map_lists_every_module_and_package_and_nothing_else() -> None:
    listed = set(module_map())
    assert sorted(tree() - listed) == [], "in the tree, missing from ARCHITECTURE.md's module map"
    assert sorted(listed - tree()) == [], "in ARCHITECTURE.md's module map, not in the tree"


@pytest.mark.parametrize("package", sorted(name for name in tree() if name.endswith("/")))
def test_every_file_a_package_row_names_exists_and_every_module_is_named(package: str) -> None:
    concept = module_map()[package]
    folder = PACKAGE / package
    named = set(NAMED_FILE.findall(concept))
    for name in named:
        assert list(folder.rglob(name.rstrip("/"))), f"{package}: `{name}` is not in {folder}"
    modules = {p.name for p in folder.glob("*.py") if p.name != "__init__.py"}
    modules |= {f"{p.name}/" for p in folder.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert sorted(modules - named) == [], f"{package}: modules the map does not name"


def _exception_classes(path: Path) -> list[str]:
    """Classes in ``path`` that derive, by name, from an exception (``…Error``, ``Exception``, ``…Refused`` …)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ClassDef):
            bases = [ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases]
            if any(b.endswith(("Error", "Exception", "Refused", "Unavailable", "Missing")) for b in bases):
                found.append(node.name)
    return found


def test_every_exception_is_defined_in_errors_py() -> None:
    elsewhere = {
        str(path.relative_to(PACKAGE)): names
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "errors.py" and (names := _exception_classes(path))
    }
    assert elsewhere == {}


def test_the_errors_docstring_draws_every_exception() -> None:
    import actionhooks.errors as errors

    drawn = set(re.findall(r"[├└]── (\w+)", errors.__doc__ or ""))
    defined = set(_exception_classes(PACKAGE / "errors.py")) | {"ActionhooksError"}
    assert sorted(defined - drawn - {"ActionhooksError"}) == [], "exceptions missing from the tree"
