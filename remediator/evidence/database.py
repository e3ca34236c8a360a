"""What a reviewer of a ``kill_query`` looks at: the sessions running something on the
database (``pg_stat_activity``, oldest transaction first, with whom each waits for) and the
locks they hold or want (``pg_locks``), before the signals and after; on a ClickHouse
target, the queries running (``system.processes``, longest first, remediator's own left
out). The sessions chosen and what each signal did are the action's own outcome, in the
``after`` bundle.

Query texts are cut to ``QUERY_CHARS`` and their string and number literals replaced with
``?`` (a literal is where a password or a customer's data sits in a query), with RE2: the
texts are any client's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import re2

from remediator.actions.kill_query_clickhouse import without_literals as without_clickhouse_literals
from remediator.clients.postgres import DatabaseHandle
from remediator.core.model import Target
from remediator.evidence.bundle import Phase

Read = Callable[[], Awaitable[Any]]
SESSIONS = 50
"""Sessions at most in a bundle, the oldest transactions first."""
LOCKS = 500
QUERY_CHARS = 1024
_LITERAL = re2.compile(r"'(?:[^']|'')*'|\b\d+(?:\.\d+)?\b")


class DatabaseEvidence:
    def __init__(self, handle: DatabaseHandle) -> None:
        self._handle = handle

    def reads(self, target: Target, phase: Phase) -> dict[str, Read]:
        if target.kind != "Database":
            return {}
        if target.name in self._handle.clickhouse:
            return {"clickhouse": self._clickhouse_reads(target.name)}
        database = self._handle.targets.get(target.name)
        if database is None:
            return {}

        async def activity() -> dict[str, Any]:
            sessions = await database.activity(SESSIONS, QUERY_CHARS)
            for session in sessions:
                session["query"] = without_literals(str(session.get("query") or ""))
            pids = [int(s["pid"]) for s in sessions if isinstance(s.get("pid"), int)]
            return {"sessions": sessions, "locks": await database.locks(pids, LOCKS)}

        return {"postgres": activity}

    def _clickhouse_reads(self, name: str) -> Read:
        server = self._handle.clickhouse[name]

        async def processes() -> dict[str, Any]:
            queries = await server.activity(SESSIONS, QUERY_CHARS)
            for query in queries:
                query["query"] = without_clickhouse_literals(str(query.get("query") or ""))
            return {"processes": queries}

        return processes


def without_literals(query: str) -> str:
    return str(_LITERAL.sub("?", query))
