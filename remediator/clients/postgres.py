"""PostgreSQL targets through asyncpg: the only module that imports it.

One small pool per named target, with short connect, command and statement timeouts and
``application_name = 'remediator'``. Reads ``pg_stat_activity`` with the exclusions no
rule can lift, and sends each signal with one statement that re-checks ``pid``,
``backend_start`` and ``query_start``, so a session that moved on is never hit. Failures
become our errors: an unreachable server ``Transient``, missing privileges ``Forbidden``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import asyncpg

from remediator.core.errors import ConfigError, Forbidden, Transient

log = logging.getLogger(__name__)
T = TypeVar("T")

APPLICATION_NAME = "remediator"
CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 5.0
QUERY_TEXT_CHARS = 1024

#: Sessions no rule may touch: only client backends, never superusers', never parallel
#: workers (they follow their leader), never remediator's own.
CANDIDATES_SQL = """
SELECT a.pid, a.usename, a.datname, a.application_name, a.state, a.backend_start,
       a.query_start, left(a.query, $3), now() - a.query_start AS age
FROM pg_stat_activity a
JOIN pg_roles r ON r.oid = a.usesysid
WHERE a.backend_type = 'client backend'
  AND NOT r.rolsuper
  AND (a.leader_pid IS NULL OR a.leader_pid = a.pid)
  AND a.pid <> pg_backend_pid()
  AND a.application_name <> $4
  AND a.usename <> current_user
  AND a.query_start < now() - make_interval(secs => $1)
  AND a.state = ANY($2::text[])
ORDER BY a.query_start
"""

SIGNAL_SQL = """
SELECT {function}(a.pid) FROM pg_stat_activity a
WHERE a.pid = $1 AND a.backend_start = $2 AND a.query_start = $3
  AND a.backend_type = 'client backend'
"""

RUNNING_SQL = """
SELECT 1 FROM pg_stat_activity
WHERE pid = $1 AND backend_start = $2 AND query_start = $3 AND state <> 'idle'
"""

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
            CANDIDATES_SQL, min_duration_s, states, max_query_chars, APPLICATION_NAME
        )
        return [
            Session(r[0], r[1] or "", r[2] or "", r[3] or "", r[4] or "", r[5], r[6], r[7] or "",
                    r[8].total_seconds())
            for r in rows
        ]  # fmt: skip

    async def signal(self, session: Session, how: Literal["cancel", "terminate"]) -> bool:
        """Cancel or terminate ``session``, only if it still runs the same query. True when
        a signal was sent; False when the session had moved on or ended."""
        function = "pg_cancel_backend" if how == "cancel" else "pg_terminate_backend"
        rows = await self._fetch(
            SIGNAL_SQL.format(function=function),
            session.pid,
            session.backend_start,
            session.query_start,
        )
        return bool(rows and rows[0][0])

    async def still_running(self, session: Session) -> bool:
        rows = await self._fetch(
            RUNNING_SQL, session.pid, session.backend_start, session.query_start
        )
        return bool(rows)


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


def open_targets(sources: Mapping[str, str]) -> dict[str, PostgresTarget]:
    return {name: PostgresTarget(name, read_dsn(source)) for name, source in sources.items()}


class DatabaseHandle:
    """The configured database targets once the app has opened them, with what the start-up
    privilege check found wrong with each (an action refuses a target with problems)."""

    def __init__(self) -> None:
        self.targets: dict[str, PostgresTarget] = {}
        self.problems: dict[str, list[str]] = {}

    async def open(self, sources: Mapping[str, str]) -> None:
        self.targets = open_targets(sources)
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
        self.targets = {}
