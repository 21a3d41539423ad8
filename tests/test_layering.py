"""Each layer imports only what DESIGN.md allows (parsed with `ast`, no import is executed)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = {"aira_async", "populations", "primitives", "store"}
ALLOWED = {
    "primitives": {"primitives"},
    "populations": {"populations"},
    "store": {"store", "populations"},
    "aira_async": PROJECT,
}
FORBIDDEN_THIRD_PARTY = {
    "primitives": {"sqlalchemy", "alembic", "networkx", "typer", "rich", "asyncio"},
    "populations": {"torch", "sqlalchemy", "alembic", "asyncio", "typer", "rich", "aiohttp"},
    "store": {"torch", "asyncio", "typer", "rich"},
    "aira_async": set(),
}


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_layer_imports(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, package
    for path in files:
        roots = imported_roots(path)
        wrong = (roots & PROJECT) - ALLOWED[package]
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"
        banned = roots & FORBIDDEN_THIRD_PARTY[package]
        assert not banned, f"{path.relative_to(ROOT)} imports {sorted(banned)}"


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from store import Archive\nimport torch.nn as nn\n")
    assert imported_roots(bad) == {"store", "torch"}
