"""PostgreSQL targets through asyncpg: the only module that imports it.

One small pool per named target, with short connect, command and statement timeouts and
``application_name = 'remediator'``. Reads ``pg_stat_activity`` with the exclusions no
rule can lift (our own sessions by pid and role: a name any client can set is no proof),
and sends each signal with one statement that re-checks the chosen query: ``pid``,
``backend_start``, ``query_start``, the state it was chosen in and, for an idle state,
``state_change``. A session that moved on is not hit; what the re-check cannot close (a
query ending between the check and the signal) ``moved_on`` finds afterwards. Failures
become our errors: an unreachable server ``Transient``, missing privileges ``Forbidden``,
a DSN no driver can use ``ConfigError``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import asyncpg

from remediator.clients import clickhouse
from remediator.clients.clickhouse import ClickHouseTarget, is_clickhouse
from remediator.core.errors import ConfigError, Forbidden, Transient

log = logging.getLogger(__name__)
T = TypeVar("T")

APPLICATION_NAME = "remediator"
CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 5.0
QUERY_TEXT_CHARS = 1024

IDLE_STATES = frozenset({"idle in transaction", "idle in transaction (aborted)"})
"""States in which a session runs no query: its age is how long it has been idle
(``state_change``), and ``state_change`` is what identifies the moment it was chosen."""

#: Sessions no rule may touch: only client backends, never superusers', never parallel
#: workers (they follow their leader), never remediator's own (this connection's pid and
#: every session of our role, other replicas' included; not ``application_name``, which
#: any client may set to ours). Age counts from the start of the query, or of the idling.
CANDIDATES_SQL = """
SELECT a.pid, a.usename, a.datname, a.application_name, a.state, a.backend_start,
       a.query_start, left(a.query, $3), now() - a.since AS age, a.state_change
FROM (SELECT *, CASE WHEN state = ANY($4::text[]) THEN state_change ELSE query_start END
                AS since
      FROM pg_stat_activity) a
JOIN pg_roles r ON r.oid = a.usesysid
WHERE a.backend_type = 'client backend'
  AND NOT r.rolsuper
  AND (a.leader_pid IS NULL OR a.leader_pid = a.pid)
  AND a.pid <> pg_backend_pid()
  AND a.usename <> session_user
  AND a.since < now() - make_interval(secs => $1)
  AND a.state = ANY($2::text[])
ORDER BY a.since
"""

#: The chosen query, still there: same backend, same query, the state it was chosen in
#: (a cancelled ``BEGIN; SELECT pg_sleep(…)`` is ``idle in transaction (aborted)`` with the
#: same ``query_start``: not the query chosen) and, for an idle state, the same idling.
SAME_QUERY = """a.pid = $1 AND a.backend_start = $2 AND a.query_start = $3 AND a.state = $4
  AND ($5::timestamptz IS NULL OR a.state_change = $5)"""

#: One statement: the re-check and the signal, when it went (the server's clock, as
#: ``query_start``'s) and how long after the statement's start (before it read
#: pg_stat_activity): the window the re-check leaves open.
SIGNAL_SQL = (
    """
SELECT {function}(a.pid), clock_timestamp(), clock_timestamp() - statement_timestamp()
FROM pg_stat_activity a
WHERE a.backend_type = 'client backend' AND """
    + SAME_QUERY
)

#: A plain idle session runs nothing, whatever it was chosen as.
RUNNING_SQL = "SELECT 1 FROM pg_stat_activity a WHERE a.state <> 'idle' AND " + SAME_QUERY

#: Sessions (same backend) whose ``query_start`` is no longer the one chosen.
MOVED_SQL = """
SELECT c.pid, a.query_start
FROM unnest($1::int[], $2::timestamptz[], $3::timestamptz[])
     AS c(pid, backend_start, query_start)
JOIN pg_stat_activity a ON a.pid = c.pid AND a.backend_start = c.backend_start
WHERE a.query_start IS DISTINCT FROM c.query_start
"""

#: What a reviewer of a kill looks at (evidence): the sessions running something, oldest
#: transaction first, with whom each waits for; and the locks those sessions hold or want.
ACTIVITY_SQL = """
SELECT a.pid, a.usename, a.datname, a.application_name, host(a.client_addr), a.state,
       a.backend_start, a.xact_start, a.query_start, a.state_change, a.wait_event_type,
       a.wait_event, pg_blocking_pids(a.pid), left(a.query, $2)
FROM pg_stat_activity a
WHERE a.backend_type = 'client backend' AND a.state <> 'idle' AND a.pid <> pg_backend_pid()
ORDER BY coalesce(a.xact_start, a.query_start) NULLS LAST, a.pid
LIMIT $1
"""
LOCKS_SQL = """
SELECT l.pid, l.locktype, l.mode, l.granted, l.relation::regclass::text, l.transactionid::text,
       l.virtualxid
FROM pg_locks l
WHERE l.pid = ANY($1::int[])
ORDER BY l.granted, l.pid, l.locktype
LIMIT $2
"""
ACTIVITY_COLUMNS = ("pid", "user", "database", "application", "client_addr", "state",
                    "backend_start", "xact_start", "query_start", "state_change",
                    "wait_event_type", "wait_event", "blocked_by", "query")  # fmt: skip
LOCK_COLUMNS = ("pid", "locktype", "mode", "granted", "relation", "transactionid", "virtualxid")

PRIVILEGES_SQL = """
SELECT r.rolsuper,
       pg_has_role(current_user, 'pg_signal_backend', 'MEMBER'),
       pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER')
FROM pg_roles r WHERE r.rolname = current_user
"""


@dataclass(frozen=True, slots=True)
class Session:
    """One row of ``pg_stat_activity``, as far as a decision to signal it needs."""

    pid: int
    user: str
    database: str
    application: str
    state: str
    backend_start: datetime
    query_start: datetime
    query: str
    age_s: float
    """Seconds since the query started or, in an idle state, since the session went idle."""
    state_change: datetime | None = None

    @property
    def idle(self) -> bool:
        return self.state in IDLE_STATES

    def identity(self) -> tuple[object, ...]:
        """What the re-check matches (``SAME_QUERY``): pid, both starts, the state, and
        ``state_change`` for an idle state (a running query's is not its identity)."""
        return (
            self.pid,
            self.backend_start,
            self.query_start,
            self.state,
            self.state_change if self.idle else None,
        )


@dataclass(frozen=True, slots=True)
class Signalled:
    """A signal the re-check let through."""

    at: datetime
    """The server's clock just after the signal went."""
    window_s: float
    """Seconds from the statement's start, before its re-check read, to the signal: an upper
    bound of the time in which the chosen query could end unseen."""


def check_dsn(name: str, dsn: str) -> None:
    """Refuse, as configuration, a DSN the driver would fail on with no usable error."""
    try:
        parts = urlsplit(dsn)
    except ValueError as exc:
        raise ConfigError(f"database target {name!r}: its DSN is not a URL: {exc}") from None
    if parts.scheme not in ("postgres", "postgresql"):
        raise ConfigError(
            f"database target {name!r}: its DSN must be a postgresql:// URL"
            f" (not {parts.scheme or 'a bare string'!r})"
        )
    for host in parts.netloc.rpartition("@")[2].split(","):
        port = host.rpartition("]")[2].partition(":")[2]
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ConfigError(
                f"database target {name!r}: its DSN's port {port} is not a TCP port (1 to 65535)"
            )


async def _translate(call: Callable[[], Awaitable[T]], target: str) -> T:
    try:
        return await call()
    except asyncpg.InsufficientPrivilegeError as exc:
        raise Forbidden(f"database target {target!r}: {exc}") from None
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise Transient(f"database target {target!r}: {type(exc).__name__}: {exc}") from None


class PostgresTarget:
    """A named database target: its DSN comes from a file or an environment variable."""

    def __init__(self, name: str, dsn: str) -> None:
        self.name = name
        self._dsn = dsn
        self._pool: asyncpg.Pool | None = None

    async def _acquire_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=0,
                max_size=2,
                timeout=CONNECT_TIMEOUT_S,
                command_timeout=COMMAND_TIMEOUT_S,
                server_settings={
                    "application_name": APPLICATION_NAME,
                    "statement_timeout": str(int(COMMAND_TIMEOUT_S * 1000)),
                },
            )
        return self._pool

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        async def call() -> list[Any]:
            pool = await self._acquire_pool()
            return list(await pool.fetch(sql, *args, timeout=COMMAND_TIMEOUT_S))

        return await _translate(call, self.name)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def privilege_problems(self) -> list[str]:
        """What keeps this role from doing its work safely; empty when all is well."""
        [row] = await self._fetch(PRIVILEGES_SQL)
        superuser, can_signal, can_read = row
        problems = []
        if superuser:
            problems.append("the role is a superuser; use a role with pg_signal_backend")
        if not can_signal:
            problems.append("the role is not a member of pg_signal_backend")
        if not can_read:
            problems.append(
                "the role cannot see other sessions' queries"
                " (grant pg_read_all_stats or pg_monitor)"
            )
        return problems

    async def sessions(
        self, min_duration_s: float, states: list[str], max_query_chars: int = QUERY_TEXT_CHARS
    ) -> list[Session]:
        rows = await self._fetch(
            CANDIDATES_SQL, min_duration_s, states, max_query_chars, sorted(IDLE_STATES)
        )
        return [
            Session(r[0], r[1] or "", r[2] or "", r[3] or "", r[4] or "", r[5], r[6], r[7] or "",
                    r[8].total_seconds(), r[9])
            for r in rows
        ]  # fmt: skip

    async def activity(self, limit: int, max_query_chars: int) -> list[dict[str, Any]]:
        """Sessions running something (``ACTIVITY_SQL``) as JSON values, for evidence."""
        found = await self._fetch(ACTIVITY_SQL, limit, max_query_chars)
        return [_json_row(ACTIVITY_COLUMNS, r) for r in found]

    async def locks(self, pids: Sequence[int], limit: int) -> list[dict[str, Any]]:
        """The locks ``pids`` hold or wait for (``LOCKS_SQL``) as JSON values."""
        if not pids:
            return []
        found = await self._fetch(LOCKS_SQL, list(pids), limit)
        return [_json_row(LOCK_COLUMNS, r) for r in found]

    async def send(self, session: Session, how: Literal["cancel", "terminate"]) -> Signalled | None:
        """Cancel or terminate ``session``, only if it is still as chosen (``SAME_QUERY``);
        ``None`` when it had moved on or ended."""
        function = "pg_cancel_backend" if how == "cancel" else "pg_terminate_backend"
        rows = await self._fetch(SIGNAL_SQL.format(function=function), *session.identity())
        if not (rows and rows[0][0]):
            return None
        return Signalled(rows[0][1], rows[0][2].total_seconds())

    async def signal(self, session: Session, how: Literal["cancel", "terminate"]) -> bool:
        """Whether :meth:`send` sent the signal."""
        return await self.send(session, how) is not None

    async def still_running(self, session: Session) -> bool:
        """Whether ``session`` still runs the query, or still idles the idling, it was
        chosen for."""
        return bool(await self._fetch(RUNNING_SQL, *session.identity()))

    async def moved_on(self, sessions: Sequence[Session]) -> dict[int, datetime]:
        """The pids of ``sessions`` whose backend now shows a query other than the chosen
        one, with that query's start: after a cancel, the chosen query ended near the signal,
        and the cancel may have reached the query after it."""
        if not sessions:
            return {}
        rows = await self._fetch(
            MOVED_SQL,
            [s.pid for s in sessions],
            [s.backend_start for s in sessions],
            [s.query_start for s in sessions],
        )
        return {row[0]: row[1] for row in rows}


def _json_row(columns: Sequence[str], found: Any) -> dict[str, Any]:
    return {column: _json_value(v) for column, v in zip(columns, found, strict=True)}


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def read_dsn(source: str) -> str:
    """``file:/path`` or ``env:NAME`` → the DSN. Never a DSN itself: no secret in argv."""
    kind, _, where = source.partition(":")
    if kind == "file":
        try:
            return Path(where).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the DSN file {where}: {exc.strerror}") from None
    if kind == "env":
        value = os.environ.get(where)
        if not value:
            raise ConfigError(f"environment variable {where} holding a DSN is not set")
        return value
    raise ConfigError(f"a database source must be file:PATH or env:NAME, not {kind!r}")


def checked_dsns(sources: Mapping[str, str]) -> dict[str, str]:
    """Each target's DSN, read from its source and checked (``ConfigError`` if not): a
    ``clickhouse+http(s)://`` one as ClickHouse's, any other as PostgreSQL's."""
    dsns = {}
    for name, source in sources.items():
        dsns[name] = read_dsn(source)
        (clickhouse.check_dsn if is_clickhouse(dsns[name]) else check_dsn)(name, dsns[name])
    return dsns


class DatabaseHandle:
    """The configured database targets once the app has opened them, PostgreSQL's and
    ClickHouse's (a DSN's scheme says which), with what the start-up privilege check found
    wrong with each PostgreSQL one (an action refuses a target with problems)."""

    def __init__(self) -> None:
        self.targets: dict[str, PostgresTarget] = {}
        self.clickhouse: dict[str, ClickHouseTarget] = {}
        self.problems: dict[str, list[str]] = {}

    def engine_of(self, name: str) -> str | None:
        """``postgresql`` or ``clickhouse`` for a configured target; ``None`` for another."""
        if name in self.targets:
            return "postgresql"
        return "clickhouse" if name in self.clickhouse else None

    async def open(self, sources: Mapping[str, str]) -> None:
        dsns = checked_dsns(sources)
        self.targets = {n: PostgresTarget(n, d) for n, d in dsns.items() if not is_clickhouse(d)}
        self.clickhouse = {n: ClickHouseTarget(n, d) for n, d in dsns.items() if is_clickhouse(d)}
        for name, target in self.targets.items():
            try:
                self.problems[name] = await target.privilege_problems()
            except (Transient, Forbidden) as exc:
                log.warning("database target %s not checked yet: %s", name, exc)
                continue
            for problem in self.problems[name]:
                log.error("database target %s: %s", name, problem)

    async def close(self) -> None:
        for target in self.targets.values():
            await target.close()
        for clickhouse_target in self.clickhouse.values():
            await clickhouse_target.close()
        self.targets, self.clickhouse = {}, {}
