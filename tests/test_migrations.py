"""Versioned migrations of the state schema, on both backends, from databases the code before
versions wrote (``tests/fixtures/state``, made by its ``make_fixtures.py``): every row
survives the upgrade and the store works on it; a migrated schema is the schema a new store
gets; opening again changes nothing; a newer schema is refused; and two replicas migrating
one PostgreSQL at once take turns."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from remediator.core.errors import StoreUnavailable
from remediator.core.model import AuditRecord, Outcome, Step
from remediator.guards.claim import ClaimRequest, Limit
from remediator.store import schema
from remediator.store.contract import AuditQuery, Settlement, Store
from remediator.store.postgres import PostgresStore
from remediator.store.program import LOCK_MIGRATE
from remediator.store.sqlite import SqliteStore
from tests.support.postgres import PostgresServer

FIXTURES = Path(__file__).parent / "fixtures" / "state"
T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
TABLES = ("journal", "episodes", "claims", "inflight", "undos", "followups", "outbox", "audit")
PG_TABLES = (*TABLES, "instances", "storm_targets")

PG_COLUMNS = """
SELECT table_name, column_name, data_type, is_nullable, column_default
FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> $1
"""
PG_INDEXES = """
SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename <> $1
"""


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# ----- SQLite


#: Columns later versions added to SQLite's version-1 tables.
ADDED_SINCE = ("owner", "job", "topic", "reference", "note")


def sqlite_rows(path: Path) -> dict[str, set[tuple[Any, ...]]]:
    """Every row of every version-1 table, by the columns version 1 had."""
    with sqlite3.connect(path) as db:
        out = {}
        for table in TABLES:
            info = db.execute(f"PRAGMA table_info({table})")
            columns = [c[1] for c in info if c[1] not in ADDED_SINCE]
            out[table] = set(db.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall())
    return out


def sqlite_schema(path: Path) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
    """Each table's columns (name, type, not null, default, key) and each index's text."""
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        columns = {
            (table, *c[1:]) for table in tables for c in db.execute(f"PRAGMA table_info({table})")
        }
        found = db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'")
        indexes = {(name, " ".join(str(text).replace(" IF NOT EXISTS", "").split()))
                   for name, text in found}  # fmt: skip
    return columns, indexes


async def open_and_close(store: Store) -> None:
    await store.open()
    await store.close()


def sqlite_versions(path: Path) -> list[int]:
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("SELECT version FROM schema_version ORDER BY 1")]


@pytest.fixture
def v1_sqlite(tmp_path: Path) -> Path:
    path = tmp_path / "state.db"
    shutil.copy(FIXTURES / "v1.sqlite", path)
    return path


@pytest.fixture
async def sqlite_store(v1_sqlite: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(v1_sqlite)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def test_a_sqlite_file_from_before_versions_keeps_every_row(v1_sqlite: Path) -> None:
    before = sqlite_rows(v1_sqlite)
    assert all(before.values()), "the fixture has rows in every table"
    await open_and_close(SqliteStore(v1_sqlite))
    assert sqlite_rows(v1_sqlite) == before
    assert sqlite_versions(v1_sqlite) == [1, 2, 3, 4, 5, 6, 7]


async def test_a_migrated_sqlite_file_has_the_schema_a_new_one_gets(
    v1_sqlite: Path, tmp_path: Path
) -> None:
    await open_and_close(SqliteStore(tmp_path / "fresh.db"))
    await open_and_close(SqliteStore(v1_sqlite))
    assert sqlite_schema(v1_sqlite) == sqlite_schema(tmp_path / "fresh.db")


async def test_the_store_works_on_a_migrated_sqlite_file(sqlite_store: SqliteStore) -> None:
    assert await sqlite_store.journal_pending() == [2, 3]
    entry = await sqlite_store.journal_entry(2)
    assert entry.body == b'{"alerts": [{"status": "resolved"}]}'
    unfinished = await sqlite_store.unfinished_claims()
    assert [(c.claim_id, c.intent) for c in unfinished] == [(2, {"pods": ["pod-b"]}), (3, None)]
    [undo] = await sqlite_store.undo_due(at(100))
    assert (undo.target, undo.state) == ("ns/pod-a", {"replicas": 3})
    await works_after_migration(sqlite_store)


async def works_after_migration(store: Store) -> None:
    """Claim, hold an exclusive key, audit, queue and deliver: on the rows of version 1."""
    assert await store.claim_intent(3, {"pods": ["pod-c"]}, "recycle:ns/deploy-b") == "busy"
    limit = Limit(10, 3600)
    request = ClaimRequest(1, "other", "restart", "pod.delete", "ns/pod-d", True, False, 0,
                           limit, limit, limit)  # fmt: skip
    result = await store.claim(request, at(31))
    assert result.claim_id is not None and result.claim_id > 3
    assert await store.claim_intent(result.claim_id, {"pods": ["pod-d"]}, "x") == "recorded"
    assert await store.settle(Settlement(2, "succeeded"), at(32))
    record = AuditRecord(at(33), Step.ACTED, Outcome.SUCCEEDED, "Restarted again.", episode_id=1)
    await store.audit([record], resolved_episodes=[1, 3], now=at(33))
    [new] = await store.decisions(AuditQuery(after_id=3))
    assert (new.id, new.sentence) == (4, "Restarted again.")
    due = await store.outbox_due(at(1000), 10)
    assert {(i.dedup_key, i.event, i.tier) for i in due} == {
        ("remediator-episode-1", "trigger", 1),
        ("remediator-episode-1", "trigger", 2),
        ("remediator-episode-1", "resolve", 0),
        ("remediator-episode-2", "resolve", 0),
    }  # the retried trigger, the later tier, both resolves; the storm's incident stays open
    await store.outbox_done(due[0].id or 0, at(1001), True)
    assert len(await store.outbox_due(at(1000), 10)) == 3


async def test_opening_a_migrated_sqlite_file_again_changes_nothing(v1_sqlite: Path) -> None:
    await open_and_close(SqliteStore(v1_sqlite))
    rows, layout = sqlite_rows(v1_sqlite), sqlite_schema(v1_sqlite)
    again = SqliteStore(v1_sqlite)
    await again.open()
    try:
        assert await again.migrate() == schema.VERSION
    finally:
        await again.close()
    assert (sqlite_rows(v1_sqlite), sqlite_schema(v1_sqlite)) == (rows, layout)
    assert sqlite_versions(v1_sqlite) == [1, 2, 3, 4, 5, 6, 7]


async def test_a_sqlite_file_newer_than_the_code_is_refused(v1_sqlite: Path) -> None:
    await open_and_close(SqliteStore(v1_sqlite))
    with sqlite3.connect(v1_sqlite) as db:
        db.execute("INSERT INTO schema_version VALUES (99)")
    newer = SqliteStore(v1_sqlite)
    with pytest.raises(StoreUnavailable, match="schema is version 99, newer than this"):
        await newer.open()
    await newer.close()


async def test_a_sqlite_file_from_before_intents_gets_them_on_the_way(v1_sqlite: Path) -> None:
    with sqlite3.connect(v1_sqlite) as db:  # as the code before intents left it
        db.executescript("ALTER TABLE claims DROP COLUMN intent; DROP TABLE inflight;")
        db.execute("PRAGMA user_version = 0")
    store = SqliteStore(v1_sqlite)
    await store.open()
    try:
        assert [c.intent for c in await store.unfinished_claims()] == [None, None]
    finally:
        await store.close()
    assert sqlite_versions(v1_sqlite) == [1, 2, 3, 4, 5, 6, 7]


# ----- PostgreSQL


async def load_dump(server: PostgresServer) -> str:
    """A state database loaded from the version-1 dump, as the state role owns it; its DSN."""
    dsn = await server.create_state_database()
    load = [
        "psql",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        dsn,
        "-f",
        str(FIXTURES / "v1.postgres.sql"),
    ]
    done = await asyncio.to_thread(subprocess.run, load, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return dsn


@asynccontextmanager
async def session(server: PostgresServer, database: str = "state") -> AsyncIterator[Any]:
    connection = await server.superuser_connect(database)
    try:
        yield connection
    finally:
        await connection.close()


#: Columns later versions added to PostgreSQL's version-1 tables.
PG_ADDED = {"job", "topic", "reference", "note"}
PG_TABLE_COLUMNS = (
    "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public'"
    " AND table_name = $1 ORDER BY ordinal_position"
)


async def pg_rows(server: PostgresServer) -> dict[str, set[tuple[Any, ...]]]:
    """Every row of every version-1 table, by the columns version 1 had."""
    async with session(server) as db:
        out = {}
        for table in PG_TABLES:
            names = [r[0] for r in await db.fetch(PG_TABLE_COLUMNS, table)]
            columns = ", ".join(n for n in names if n not in PG_ADDED)
            out[table] = {tuple(r) for r in await db.fetch(f"SELECT {columns} FROM {table}")}
        return out


async def pg_schema(server: PostgresServer, database: str) -> tuple[set[Any], set[Any]]:
    async with session(server, database) as db:
        columns = {tuple(r) for r in await db.fetch(PG_COLUMNS, "schema_migrations")}
        return columns, {tuple(r) for r in await db.fetch(PG_INDEXES, "schema_migrations")}


async def pg_versions(server: PostgresServer) -> list[int]:
    async with session(server) as db:
        return [r[0] for r in await db.fetch("SELECT version FROM schema_version ORDER BY 1")]


async def test_a_postgres_database_from_before_versions_keeps_every_row(
    pg: PostgresServer,
) -> None:
    dsn = await load_dump(pg)
    before = await pg_rows(pg)
    assert all(before.values()), "the dump has rows in every table"
    await open_and_close(PostgresStore(dsn, "replica-a"))
    assert await pg_rows(pg) == before
    assert await pg_versions(pg) == [1, 2, 3, 4, 5, 6, 7]


async def test_a_migrated_postgres_database_has_the_schema_a_new_one_gets(
    pg: PostgresServer,
) -> None:
    dsn = await load_dump(pg)
    await pg.execute("CREATE DATABASE fresh OWNER state")
    for url in (dsn, dsn.rsplit("/", 1)[0] + "/fresh"):
        await open_and_close(PostgresStore(url, "replica-a"))
    assert await pg_schema(pg, "state") == await pg_schema(pg, "fresh")


async def test_the_store_works_on_a_migrated_postgres_database(pg: PostgresServer) -> None:
    dsn = await load_dump(pg)
    store = PostgresStore(dsn, "replica-a")
    await store.open()
    try:
        assert await store.journal_pending() == [2, 3]
        taken = await store.take_over(at(14 + 30), lease_s=20)  # replica-b's lease ran out
        assert (taken.journal_ids, taken.claims) == ([4], [])
        assert await store.journal_pending() == [2, 3, 4]
        assert await store.storm_add("ns/pod-c", at(16), 60) == 3
        await works_after_migration(store)
    finally:
        await store.close()


async def test_opening_a_migrated_postgres_database_again_changes_nothing(
    pg: PostgresServer,
) -> None:
    dsn = await load_dump(pg)
    await open_and_close(PostgresStore(dsn, "replica-a"))
    rows, layout = await pg_rows(pg), await pg_schema(pg, "state")
    again = PostgresStore(dsn, "replica-a")
    await again.open()
    try:
        assert await again.migrate() == schema.VERSION
    finally:
        await again.close()
    assert (await pg_rows(pg), await pg_schema(pg, "state")) == (rows, layout)
    assert await pg_versions(pg) == [1, 2, 3, 4, 5, 6, 7]


async def test_a_postgres_database_newer_than_the_code_is_refused(pg: PostgresServer) -> None:
    dsn = await load_dump(pg)
    await open_and_close(PostgresStore(dsn, "replica-a"))
    async with session(pg) as db:
        await db.execute("INSERT INTO schema_version VALUES (99)")
    newer = PostgresStore(dsn, "replica-a")
    with pytest.raises(StoreUnavailable, match="schema is version 99, newer than this"):
        await newer.open()
    await newer.close()


async def test_two_replicas_migrating_one_postgres_database_take_turns(
    pg: PostgresServer,
) -> None:
    dsn = await load_dump(pg)
    holder = await pg.superuser_connect("state")
    await holder.execute("SELECT pg_advisory_lock($1)", LOCK_MIGRATE)
    replicas = [PostgresStore(dsn, "replica-a"), PostgresStore(dsn, "replica-b")]
    opening = [asyncio.create_task(r.open()) for r in replicas]
    try:
        await asyncio.sleep(0.5)
        assert not any(t.done() for t in opening), "both wait for the migration lock"
        assert await pg_versions_or_none(pg) is None
        await holder.execute("SELECT pg_advisory_unlock($1)", LOCK_MIGRATE)
        await asyncio.gather(*opening)  # one migrates, then the other finds nothing to do
        assert await pg_versions(pg) == [1, 2, 3, 4, 5, 6, 7]
        assert await replicas[1].journal_pending() == [4]
    finally:
        await holder.close()
        for task in opening:
            await asyncio.wait([task])
        for r in replicas:
            await r.close()


async def pg_versions_or_none(server: PostgresServer) -> list[int] | None:
    async with session(server) as db:
        if await db.fetchval("SELECT to_regclass('schema_version')") is None:
            return None
    return await pg_versions(server)
