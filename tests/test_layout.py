"""The tree's architecture, checked: imports go down the layers, and SQL stays in the adapters
(SQLite's and PostgreSQL's), each named only by the composition root.

Each module's imports are read with `ast` (nothing is imported), including those under
`TYPE_CHECKING`: a type is a dependency too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Final

import attrs
import pytest

ROOT: Final = Path(__file__).resolve().parent.parent

LAYERS: Final[dict[str, int]] = {
    "pagerd": 1,  # app.py (the composition root), main.py (the command line), __main__.py
    "pagerd.front": 2,
    "pagerd.engine": 3,
    "pagerd.delivery": 4,
    "pagerd.storage": 5,
    "pagerd.operations": 6,
    "pagerd.config": 6,
    "pagerd.timing": 7,
    "pagerd.access": 7,
    "pager": 8,
}
"""Top to bottom: a module imports from its own package or from a lower layer, never up, and
never sideways into another package of its own layer."""

COMPOSITION_ROOT: Final = frozenset({"pagerd.app", "pagerd.main"})
"""The only modules outside an adapter that may name it."""

SQLITE: Final = "pagerd.storage.sqlite"
POSTGRESQL: Final = "pagerd.storage.postgresql"
ADAPTERS: Final = (SQLITE, POSTGRESQL)

_SQL: Final = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE|CREATE)\s")


@attrs.frozen
class Module:
    name: str
    path: Path
    tree: ast.Module

    @property
    def package(self) -> str:
        """The layer's package this module is in (`pagerd.storage` for its `sqlite/` too)."""
        for prefix in sorted(LAYERS, key=len, reverse=True):
            if self.name == prefix or self.name.startswith(prefix + "."):
                return prefix
        raise AssertionError(f"{self.name} is in no layer: add its package to LAYERS")

    def imports(self) -> list[tuple[int, str]]:
        """(line, module) of every import, with `from X import y` also as `X.y`: y may be a
        module (`from pagerd.storage import retention`)."""
        found: list[tuple[int, str]] = []
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                found += [(node.lineno, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{self.path}:{node.lineno}: a relative import"
                base = node.module or ""
                found.append((node.lineno, base))
                found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        return found


def modules(root: Path = ROOT) -> list[Module]:
    found = []
    for top in ("pager", "pagerd"):
        for path in sorted((root / top).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found.append(Module(name, path, ast.parse(path.read_text(), str(path))))
    return found


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def layer_problems(module: Module) -> list[str]:
    """The module's imports that go up the layers, or sideways, or into the SQLite adapter."""
    problems = []
    own = module.package
    for line, imported in module.imports():
        if not (_within(imported, "pager") or _within(imported, "pagerd")):
            continue
        where = f"{module.path.relative_to(ROOT)}:{line}: {module.name} imports {imported}"
        target = Module(imported, module.path, module.tree).package
        if own == "pager" and target != "pager":
            problems.append(f"{where}: the core imports nothing of pagerd")
        elif target != own and LAYERS[target] <= LAYERS[own] and imported != "pagerd":
            problems.append(f"{where}: {target} is not below {own}")
        elif module.name not in COMPOSITION_ROOT and any(
            _within(imported, adapter) and not _within(module.name, adapter) for adapter in ADAPTERS
        ):
            problems.append(f"{where}: only the composition root names a storage adapter")
    return problems


def sqlite_problems(module: Module) -> list[str]:
    """SQLite outside its adapter: `import sqlite3`, SQL (but in PostgreSQL's adapter), or the
    database file's name."""
    if _within(module.name, SQLITE):
        return []
    problems = []
    for line, imported in module.imports():
        if _within(imported, "sqlite3"):
            problems.append(f"{module.path.relative_to(ROOT)}:{line}: imports sqlite3")
    if _within(module.name, POSTGRESQL):
        return problems
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if _SQL.match(text) or "pager.db" in text:
                problems.append(f"{module.path.relative_to(ROOT)}:{node.lineno}: {text[:40]!r}")
    return problems


@pytest.mark.parametrize("module", modules(), ids=lambda m: m.name)
def test_imports_go_down_the_layers(module: Module) -> None:
    assert layer_problems(module) == []


@pytest.mark.parametrize("module", modules(), ids=lambda m: m.name)
def test_sqlite_stays_in_its_adapter(module: Module) -> None:
    assert sqlite_problems(module) == []


def test_every_package_says_what_it_is_for() -> None:
    for init in sorted((ROOT / "pagerd").rglob("__init__.py")):
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init}: no docstring"


@pytest.mark.parametrize(
    ("name", "source", "problem"),
    [
        ("pagerd.storage.commits", "from pagerd.engine.actors import Services", "not below"),
        ("pagerd.config.model", "from pagerd.operations import metrics", "not below"),
        ("pager.domain", "from pagerd.timing.clock import Clock", "core imports nothing"),
        ("pagerd.delivery.outbox", "from pagerd.storage.sqlite.store import Store", "adapter"),
        ("pagerd.front.server", "if TYPE_CHECKING:\n    import pagerd.front.server", ""),
    ],
)
def test_a_wrong_import_is_caught(name: str, source: str, problem: str) -> None:
    module = Module(name, ROOT / "pagerd" / "x.py", ast.parse(source))
    found = layer_problems(module)
    assert (problem in found[0]) if problem else found == [], found


@pytest.mark.parametrize(
    "source",
    ["import sqlite3", "q = 'SELECT 1'", "x = ' DELETE FROM events'", "f = 'pager.db-wal'"],
)
def test_sqlite_outside_its_adapter_is_caught(source: str) -> None:
    module = Module("pagerd.delivery.outbox", ROOT / "pagerd" / "x.py", ast.parse(source))
    assert sqlite_problems(module) != []
