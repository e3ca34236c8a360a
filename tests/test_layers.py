"""Layering: the import-linter contracts in ``pyproject.toml`` hold (run as ``make lint`` runs
them), they catch what they exist to catch, and the rule they cannot see holds too: only
``remediator/clients`` uses aiohttp's client side, so no third-party type or error leaks
into decisions."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import aiohttp.client
import aiohttp.connector
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "remediator"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
EDGE_ONLY = ("kubernetes_asyncio", "asyncpg", "aioboto3", "botocore", "slack_sdk")
CLIENT_API = frozenset(aiohttp.client.__all__) | frozenset(aiohttp.connector.__all__)
CLIENT_MODULES = ("aiohttp.client", "aiohttp.connector")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    command = [str(LINT_IMPORTS), "--no-cache", "--no-logo"]
    return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=60)


def contracts() -> list[dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    return found


def top_level() -> set[str]:
    """The package's direct children, as the contracts name them."""
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")}
    return {f"remediator.{name}" for name in packages | modules}


def test_the_import_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("forbidden", "allowed"),
    [
        (EDGE_ONLY, {"clients"}),
        (("lz4",), {"store"}),
        (("aiohttp",), {"clients", "ingest", "runtime"}),
    ],
    ids=["api-clients", "lz4", "aiohttp"],
)
def test_every_package_but_the_allowed_ones_is_forbidden_the_edge_imports(
    forbidden: tuple[str, ...], allowed: set[str]
) -> None:
    """A package added later is covered too: the contract must name it."""
    [contract] = [c for c in contracts() if set(forbidden) == set(c.get("forbidden_modules", ()))]
    assert set(contract["source_modules"]) == top_level() - {f"remediator.{a}" for a in allowed}


SEEDED = [
    ("decide/worker.py", "import asyncpg", "Kubernetes, PostgreSQL and AWS API clients"),
    ("escalate/sinks/slack.py", "import aiohttp", "speak HTTP"),
    ("ingest/journal.py", "import lz4.frame", "compresses journal bodies"),
    ("core/clock.py", "import remediator.store.contract", "remediator.core is not allowed"),
    ("clients/http.py", "import remediator.config", "remediator.clients is not allowed"),
]


@pytest.mark.parametrize(("module", "line", "broken"), SEEDED, ids=[s[0] for s in SEEDED])
def test_a_seeded_upward_or_edge_import_breaks_a_contract(
    tmp_path: Path, module: str, line: str, broken: str
) -> None:
    shutil.copytree(PACKAGE, tmp_path / "remediator", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    seeded = tmp_path / "remediator" / module
    seeded.write_text(f"{seeded.read_text()}\n{line}  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert broken in result.stdout
    assert "BROKEN" in result.stdout


def aiohttp_client_uses(path: Path) -> list[str]:
    """Each place ``path`` reaches aiohttp's client side: ``aiohttp.ClientSession``,
    ``from aiohttp import ClientError``, ``import aiohttp.client``…, as ``line: text``."""
    uses = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            hit = node.value.id == "aiohttp" and node.attr in CLIENT_API
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aiohttp"):
            module = node.module or ""
            hit = module.startswith(CLIENT_MODULES) or any(a.name in CLIENT_API for a in node.names)
        elif isinstance(node, ast.Import):
            hit = any(alias.name.startswith(CLIENT_MODULES) for alias in node.names)
        else:
            continue
        if hit:
            uses.append(f"{node.lineno}: {ast.unparse(node)}")
    return uses


@pytest.mark.parametrize(
    "module",
    sorted(p for p in PACKAGE.rglob("*.py") if "clients" not in p.parts),
    ids=lambda path: str(path.relative_to(PACKAGE)),
)
def test_only_the_clients_package_uses_aiohttps_client_side(module: Path) -> None:
    assert aiohttp_client_uses(module) == []


def test_the_client_edges_are_where_the_clients_are_used() -> None:
    assert aiohttp_client_uses(PACKAGE / "clients" / "http.py")
    source = (PACKAGE / "clients" / "k8s.py").read_text()
    assert "from kubernetes_asyncio import" in source


def test_the_command_imports_no_aws_client_until_an_object_store_is_opened() -> None:
    """botocore takes some 0.4 s to import: every ``remediator`` command and every test's
    child process would pay it without an archive."""
    probe = "import sys, remediator.cli.main; print(sorted(m for m in sys.modules if 'boto' in m))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert (result.returncode, result.stdout) == (0, "[]\n"), result.stderr
