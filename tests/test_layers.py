"""Layering: third-party API clients are imported only under ``remediator/clients``, so
their types and errors never leak into decisions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "remediator"
EDGE_ONLY = ("kubernetes_asyncio", "asyncpg", "aioboto3")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    "module",
    sorted(p for p in PACKAGE.rglob("*.py") if "clients" not in p.parts),
    ids=lambda path: str(path.relative_to(PACKAGE)),
)
def test_only_the_clients_package_imports_api_clients(module: Path) -> None:
    leaked = {m for m in imported_modules(module) if m.split(".")[0] in EDGE_ONLY}
    assert not leaked, f"{module.relative_to(PACKAGE)} imports {sorted(leaked)}"


def test_the_kubernetes_client_is_imported_at_the_edge() -> None:
    assert "kubernetes_asyncio" in imported_modules(PACKAGE / "clients" / "k8s.py")
