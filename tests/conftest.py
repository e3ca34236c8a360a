"""Test habits: warnings are errors (pyproject), a per-test timeout, and no asyncio task may
outlive the test that started it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from remediator.store.sqlite import SqliteStore
from tests.support.postgres import PostgresServer, Roles


@pytest.fixture(autouse=True)
async def no_leftover_tasks() -> AsyncIterator[None]:
    yield
    current = asyncio.current_task()
    leftover = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert not leftover, f"tasks outlived the test: {leftover}"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A fresh SQLite store in the test's own directory."""
    s = SqliteStore(tmp_path / "state.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def pg() -> AsyncIterator[PostgresServer]:
    """A real PostgreSQL server of the test's own, stopped afterwards."""
    async with PostgresServer() as server:
        yield server


@pytest.fixture
async def roles(pg: PostgresServer) -> Roles:
    """The app, remediator and replication roles on ``pg``."""
    return await pg.create_roles()
