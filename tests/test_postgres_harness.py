"""Tests for the real-PostgreSQL test harness in ``tests/support/postgres.py``.

Each test gets its own server (about a second to initdb and start), so what one test
signals cannot disturb another.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.support.postgres import (
    Outcome,
    PostgresHarnessError,
    PostgresServer,
    Roles,
)


@pytest.fixture
async def remediator(pg: PostgresServer, roles: Roles) -> AsyncIterator[Any]:
    """A connection as the remediator role, over TCP with its password, as in production."""
    conn = await pg.connect(roles.remediator.name, roles.remediator.password)
    try:
        yield conn
    finally:
        await conn.close()


async def _process_gone(pid: int, timeout_s: float = 5.0) -> bool:
    """Whether ``pid`` exits (or is a zombie awaiting its reaper) within ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        await asyncio.sleep(0.05)
    return False


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


async def test_the_server_starts_and_accepts_the_superuser(pg: PostgresServer) -> None:
    conn = await pg.superuser_connect()
    try:
        row = await conn.fetchrow(
            "SELECT current_user AS user, rolsuper, current_setting('wal_level') AS wal_level,"
            " current_setting('max_wal_senders')::int AS senders,"
            " current_setting('max_connections')::int AS max_connections,"
            " pg_backend_pid() AS pid"
            " FROM pg_roles WHERE rolname = current_user"
        )
    finally:
        await conn.close()
    assert row["user"] == pg.superuser
    assert row["rolsuper"] is True
    assert row["wal_level"] == "replica"
    assert row["senders"] >= 4
    assert row["max_connections"] == 50
    assert await pg.fetchval("SHOW listen_addresses") == "127.0.0.1"
    assert await pg.fetchval("SHOW port") == str(pg.port)
    assert await pg.execute("SELECT 1") == "SELECT 1"
    if os.geteuid() == 0:
        # PostgreSQL refuses root: the server runs as an unprivileged user.
        assert pg.postmaster_pid is not None
        assert _uid_of(pg.postmaster_pid) != 0
        assert pg.data_dir.stat().st_uid != 0


async def test_the_roles_exist_with_the_memberships_the_remediator_needs(
    pg: PostgresServer, roles: Roles
) -> None:
    rows = await pg.fetch(
        "SELECT rolname, rolsuper, rolreplication, rolcanlogin,"
        " pg_has_role(rolname, 'pg_signal_backend', 'MEMBER') AS can_signal,"
        " pg_has_role(rolname, 'pg_read_all_stats', 'MEMBER') AS reads_stats"
        " FROM pg_roles WHERE rolname = ANY($1::text[])",
        ["app", "remediator", "replicator"],
    )
    by_name = {row.pop("rolname"): row for row in rows}
    assert by_name["remediator"] == {
        "rolsuper": False,
        "rolreplication": False,
        "rolcanlogin": True,
        "can_signal": True,
        "reads_stats": True,
    }
    assert by_name["replicator"]["rolreplication"] is True
    assert by_name["replicator"]["rolsuper"] is False
    assert by_name["app"]["rolsuper"] is False
    assert by_name["app"]["can_signal"] is False
    owner = await pg.fetchval(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", roles.app_database
    )
    assert owner == "app"
    # Password roles log in over TCP with the DSN the remediator would be given.
    conn = await asyncpg.connect(
        pg.dsn(roles.app.name, roles.app.password, roles.app_database), timeout=10
    )
    try:
        assert await conn.fetchval("SELECT current_user") == "app"
    finally:
        await conn.close()
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(pg.dsn(roles.app.name, "wrong", roles.app_database), timeout=10)


async def test_a_long_query_shows_as_an_active_client_backend_in_pg_stat_activity(
    pg: PostgresServer, roles: Roles, remediator: Any
) -> None:
    query = await pg.long_query(
        "app", roles.app.password, "appdb", seconds=30, application_name="reporting-job"
    )
    row = await query.started()
    assert row["pid"] == query.pid
    assert row["backend_start"] == query.backend_start
    assert row["state"] == "active"
    assert row["backend_type"] == "client backend"
    assert (row["usename"], row["datname"]) == ("app", "appdb")
    assert row["application_name"] == "reporting-job"
    assert row["query"] == "SELECT pg_sleep(30.0)"
    # pg_read_all_stats: the remediator role sees another role's query text.
    seen = await remediator.fetchrow(
        "SELECT state, query FROM pg_stat_activity WHERE pid = $1", query.pid
    )
    assert dict(seen) == {"state": "active", "query": "SELECT pg_sleep(30.0)"}
    assert query.outcome == Outcome.RUNNING


async def test_pg_cancel_backend_from_the_remediator_role_cancels_the_app_query(
    pg: PostgresServer, roles: Roles, remediator: Any
) -> None:
    query = await pg.long_query("app", roles.app.password, "appdb", seconds=30)
    await query.started()
    assert await remediator.fetchval("SELECT pg_cancel_backend($1)", query.pid) is True
    assert await query.finished() == Outcome.CANCELLED
    assert isinstance(query.error, asyncpg.QueryCanceledError)
    # Cancelling ends the query, not the session: the backend stays, now idle.
    row = await pg.wait_for_activity(
        query.pid, lambda r: r["state"] == "idle", what="idle after the cancel"
    )
    assert row["backend_start"] == query.backend_start
    assert not query.connection_closed


async def test_pg_terminate_backend_from_the_remediator_role_ends_the_app_session(
    pg: PostgresServer, roles: Roles, remediator: Any
) -> None:
    query = await pg.long_query("app", roles.app.password, "appdb", seconds=30)
    await query.started()
    assert await remediator.fetchval("SELECT pg_terminate_backend($1)", query.pid) is True
    assert await query.finished() == Outcome.TERMINATED
    # asyncpg reports the FATAL 57P01 mid-query as a lost connection.
    assert isinstance(query.error, asyncpg.ConnectionDoesNotExistError | asyncpg.AdminShutdownError)
    assert "administrator command" in str(query.error)
    await pg.wait_gone(query.pid)
    assert query.connection_closed


async def test_the_remediator_role_is_refused_signalling_a_superuser_backend(
    pg: PostgresServer, roles: Roles, remediator: Any
) -> None:
    query = await pg.superuser_long_query(seconds=30)
    row = await query.started()
    assert (row["usename"], row["backend_type"]) == ("postgres", "client backend")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="superuser"):
        await remediator.fetchval("SELECT pg_cancel_backend($1)", query.pid)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="superuser"):
        await remediator.fetchval("SELECT pg_terminate_backend($1)", query.pid)
    still = await query.activity()
    assert still is not None and still["state"] == "active"
    assert query.outcome == Outcome.RUNNING


async def test_an_idle_in_transaction_session_shows_so_and_only_terminate_ends_it(
    pg: PostgresServer, roles: Roles, remediator: Any
) -> None:
    session = await pg.idle_in_transaction("app", roles.app.password, "appdb")
    before = await session.started()
    assert (before["state"], before["backend_type"], before["query"]) == (
        "idle in transaction",
        "client backend",
        "SELECT 1",
    )
    # There is no query to cancel: the cancel is accepted and changes nothing.
    assert await remediator.fetchval("SELECT pg_cancel_backend($1)", session.pid) is True
    await asyncio.sleep(0.2)
    after = await session.activity()
    assert after is not None
    assert (after["state"], after["state_change"]) == (
        "idle in transaction",
        before["state_change"],
    )
    assert await remediator.fetchval("SELECT pg_terminate_backend($1)", session.pid) is True
    await session.wait_connection_closed()
    await pg.wait_gone(session.pid)


async def test_the_replication_stream_is_a_walsender_the_remediator_role_can_terminate(
    pg: PostgresServer, roles: Roles, remediator: Any
) -> None:
    stream = await pg.replication_stream(roles.replicator.name, roles.replicator.password)
    row = await stream.activity()
    assert row is not None
    assert (row["backend_type"], row["usename"], row["datname"]) == (
        "walsender",
        "replicator",
        None,
    )
    assert row["query"].startswith("START_REPLICATION")
    assert await stream.alive()
    # Observed on PostgreSQL 15: pg_signal_backend is enough to terminate a walsender
    # of a non-superuser replication role; nothing but the remediator's own SQL filter
    # (backend_type = 'client backend') keeps it away from replication.
    assert await remediator.fetchval("SELECT pg_terminate_backend($1)", stream.pid) is True
    await pg.wait_gone(stream.pid)
    assert await stream.wait_exit() != 0  # --no-loop: pg_receivewal gives up
    assert not await stream.alive()
    assert "terminating connection due to administrator command" in stream.log_tail()


async def test_a_cancel_from_the_remediator_role_also_breaks_a_replication_stream(
    pg: PostgresServer, roles: Roles, remediator: Any
) -> None:
    stream = await pg.replication_stream(roles.replicator.name, roles.replicator.password)
    assert await remediator.fetchval("SELECT pg_cancel_backend($1)", stream.pid) is True
    assert await stream.wait_exit() != 0
    assert "canceling statement due to user request" in stream.log_tail()
    await pg.wait_gone(stream.pid)


async def test_switching_queries_changes_query_start_but_not_the_pid(
    pg: PostgresServer, roles: Roles
) -> None:
    session = await pg.query_then_new_query("app", roles.app.password, "appdb", seconds=30)
    first = await session.started()
    second = await session.switch()
    assert second["pid"] == first["pid"] == session.pid
    assert second["backend_start"] == first["backend_start"] == session.backend_start
    assert second["query_start"] > first["query_start"]
    assert second["query"] != first["query"]
    assert second["state"] == "active"
    assert session.outcomes == [Outcome.CANCELLED]


async def test_stopping_the_server_closes_every_session_and_removes_its_directory() -> None:
    pg = PostgresServer()
    await pg.start()
    try:
        roles = await pg.create_roles()
        query = await pg.long_query("app", roles.app.password, "appdb", seconds=30)
        idle = await pg.idle_in_transaction("app", roles.app.password, "appdb")
        switcher = await pg.query_then_new_query("app", roles.app.password, "appdb", 30)
        stream = await pg.replication_stream(roles.replicator.name, roles.replicator.password)
        await query.started()
        base = pg.base_dir
        postmaster_pid = pg.postmaster_pid
    finally:
        await pg.stop()
    assert query.outcome == Outcome.CLOSED
    assert query.connection_closed and idle.connection_closed and switcher.connection_closed
    assert not stream.process_running
    assert not base.exists()
    assert postmaster_pid is not None and await _process_gone(postmaster_pid)
    await pg.stop()  # idempotent


async def test_a_server_that_fails_to_start_raises_with_its_log_and_cleans_up() -> None:
    pg = PostgresServer(extra_settings={"shared_buffers": "'not-a-size'"}, use_template=False)
    with pytest.raises(PostgresHarnessError, match="shared_buffers") as excinfo:
        await pg.start()
    log_path = re.search(r"--- (\S+/server\.log) \(tail\) ---", str(excinfo.value))
    assert log_path is not None, str(excinfo.value)
    assert not Path(log_path[1]).parent.exists()
    with pytest.raises(PostgresHarnessError, match="not been started"):
        _ = pg.base_dir
