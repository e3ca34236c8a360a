"""Test habits: warnings are errors (pyproject), a per-test timeout, and no asyncio task may
outlive the test that started it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from remediator.clients.http import HttpClient
from remediator.store.contract import Store
from remediator.store.postgres import PostgresStore
from remediator.store.sqlite import SqliteStore
from tests.support.postgres import PostgresServer, Roles


@pytest.fixture(autouse=True)
async def no_leftover_tasks() -> AsyncIterator[None]:
    yield
    current = asyncio.current_task()
    leftover = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert not leftover, f"tasks outlived the test: {leftover}"


@asynccontextmanager
async def postgres_store() -> AsyncIterator[PostgresStore]:
    """A PostgreSQL store on a real server of its own, as a non-superuser role."""
    async with PostgresServer() as server:
        store = PostgresStore(await server.create_state_database(), "test-instance")
        await store.open()
        try:
            yield store
        finally:
            await store.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh store of each backend: the contract tests run against both."""
    if request.param == "postgres":
        async with postgres_store() as pg_store:
            yield pg_store
        return
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


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    """The HTTP client the sinks are given, as the app opens it, for sink tests."""
    http = HttpClient.open(timeout_s=5)
    yield http
    await http.close()
