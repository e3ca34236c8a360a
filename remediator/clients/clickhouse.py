"""ClickHouse targets over its HTTP interface, through aiohttp: the only module that speaks to
ClickHouse.

A database target whose DSN is ``clickhouse+http://user:password@host:8123`` (or
``clickhouse+https://``, port 8443 by default) is a ClickHouse server. Every statement is one
POST with bounded time (``CONNECT_TIMEOUT_S``, ``COMMAND_TIMEOUT_S``; the server is told the
same through ``max_execution_time``), a bounded answer (``MAX_ANSWER_BYTES``, at most
``MAX_ROWS`` rows, query texts cut at ``QUERY_TEXT_CHARS`` characters by the server) and a
``query_id`` starting with ``QUERY_ID_PREFIX``: how remediator's own queries are told apart.

Reads ``system.processes`` with the exclusions no rule can lift: remediator's own queries
(by that prefix, and every query of the DSN's user: a query id any client may choose is no
proof), the queries a distributed query runs on its shards (``is_initial_query = 0``: they
follow their initiator), and the users in ``PROTECTED_USERS`` (as the query's user or as its
initial user). Each kill is one ``KILL QUERY`` whose ``WHERE`` re-checks that the chosen query
still runs: same id, same user, same text (``cityHash64``), and running at least as long as
when it was chosen, so a query that ended meanwhile, or a new one that took its id, is not
hit. Failures become our errors: a server that is away, slow or answers what is not rows
``Transient``; a user it refuses, or one whose profile may not kill others' queries,
``Forbidden``; a DSN that is no ClickHouse URL ``ConfigError``. No error or log line holds the
DSN's password: they name the target and its host.
"""

from __future__ import annotations

import base64
import json
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import aiohttp

from remediator.core.errors import ConfigError, Forbidden, Transient

SCHEMES = {"clickhouse+http": ("http", 8123), "clickhouse+https": ("https", 8443)}
"""DSN scheme → the HTTP scheme and default port of ClickHouse's HTTP interface."""
QUERY_ID_PREFIX = "remediator-"
CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 5.0
KILL_SYNC_TIMEOUT_S = 15.0
"""A ``KILL QUERY … SYNC`` answers once the query has stopped: it may take longer than a read."""
MAX_ANSWER_BYTES = 4 << 20
MAX_ROWS = 1000
"""Candidates read per look, longest running first: more than one run may kill (100)."""
QUERY_TEXT_CHARS = 1024
ERROR_CHARS = 200
"""How much of a ClickHouse error message ours quotes: its code and reason."""
MAX_ELAPSED_S = 10 * 365 * 86_400.0
"""An ``elapsed`` past ten years is no query's: the answer is not to be believed."""
PROTECTED_USERS = frozenset({"system"})
"""Users whose queries are never selected, whatever a rule says: the server's own work."""
FORBIDDEN_CODES = frozenset({164, 192, 193, 194, 195, 497, 516})
"""READONLY, UNKNOWN_USER, WRONG_PASSWORD, REQUIRED_PASSWORD, IP_ADDRESS_NOT_ALLOWED,
ACCESS_DENIED, AUTHENTICATION_FAILED: the server refuses this user what it asked."""
_CODE = re.compile(r"^Code: (\d+)")
_U64 = 2**64 - 1


def literal(value: str) -> str:
    """``value`` as a ClickHouse string literal: backslash and quote escaped, so any text a
    client chose (a query id) stays one literal. Our 18.16 server has no query parameters."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True, slots=True)
class Process:
    """One row of ``system.processes``, as far as a decision to kill it needs."""

    query_id: str
    user: str
    address: str
    elapsed_s: float
    query: str
    """Cut at ``QUERY_TEXT_CHARS`` characters."""
    query_hash: int
    """``cityHash64`` of the whole query text: the re-check's proof it is the same query."""
    read_rows: int
    written_rows: int
    memory_bytes: int

    def identity(self) -> tuple[str, str, int]:
        return (self.query_id, self.user, self.query_hash)


@dataclass(frozen=True, slots=True)
class Killed:
    """What ``KILL QUERY`` answered for a query its re-check let through."""

    status: str
    """``finished`` (SYNC: it stopped), ``waiting`` (ASYNC: told to stop), or the server's
    word that it could not (``cant_cancel``)."""


def check_dsn(name: str, dsn: str) -> None:
    """Refuse, as configuration, a ClickHouse DSN we could not use (``ConfigError``)."""
    try:
        parts = urlsplit(dsn)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(
            f"database target {name!r}: its ClickHouse DSN is not a URL with a TCP port"
            f" (1 to 65535): {exc}"
        ) from None
    if parts.scheme not in SCHEMES:
        raise ConfigError(
            f"database target {name!r}: a ClickHouse DSN must be a clickhouse+http:// or"
            f" clickhouse+https:// URL (not {parts.scheme or 'a bare string'!r})"
        )
    if not parts.hostname:
        raise ConfigError(f"database target {name!r}: its ClickHouse DSN names no host")
    if port == 0:
        raise ConfigError(f"database target {name!r}: its ClickHouse DSN's port 0 is no TCP port")


def is_clickhouse(dsn: str) -> bool:
    """Whether ``dsn`` names a ClickHouse server (its scheme starts with ``clickhouse``)."""
    return dsn.partition(":")[0].lower().startswith("clickhouse")


def _error(target: str, status: int, body: str) -> Forbidden | Transient:
    text = " ".join(body.split())[:ERROR_CHARS]
    code = _CODE.match(text)
    if status in (401, 403) or (code and int(code[1]) in FORBIDDEN_CODES):
        return Forbidden(f"ClickHouse target {target!r} refused: {text}", status)
    return Transient(f"ClickHouse target {target!r} answered {status}: {text}", status)


def _int(row: dict[str, Any], key: str, low: int = 0, high: int = _U64) -> int:
    value = row.get(key)
    if isinstance(value, str) and value.isdigit():  # a server quoting its 64-bit integers
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{key} is not an integer from {low} to {high}")
    return value


def _str(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key} is not a string")
    return value


def _process(row: object) -> Process:
    if not isinstance(row, dict):
        raise ValueError("a row is not an object")
    elapsed = row.get("elapsed")
    if (
        not isinstance(elapsed, int | float)
        or isinstance(elapsed, bool)
        or not 0 <= elapsed <= MAX_ELAPSED_S
    ):
        raise ValueError(f"elapsed is not a number of seconds from 0 to {MAX_ELAPSED_S:g}")
    return Process(
        query_id=_str(row, "query_id"),
        user=_str(row, "user"),
        address=_str(row, "address"),
        elapsed_s=float(elapsed),
        query=_str(row, "query")[:QUERY_TEXT_CHARS],
        query_hash=_int(row, "query_hash"),
        read_rows=_int(row, "read_rows"),
        written_rows=_int(row, "written_rows"),
        memory_bytes=_int(row, "memory_usage", -(2**63), 2**63 - 1),
    )


def _seconds(value: float) -> str:
    """A number of seconds as a ClickHouse Float64 literal (never ``inf`` or ``nan``)."""
    assert math.isfinite(value), value
    return f"{value:.6f}"


class ClickHouseTarget:
    """A named ClickHouse database target: its DSN comes from a file or an environment
    variable; the password in it is only ever sent in the Authorization header."""

    def __init__(self, name: str, dsn: str) -> None:
        check_dsn(name, dsn)
        parts = urlsplit(dsn)
        scheme, default_port = SCHEMES[parts.scheme]
        host = parts.hostname or ""
        shown_host = f"[{host}]" if ":" in host else host
        self.name = name
        self.where = f"{shown_host}:{parts.port or default_port}"
        """Host and port, for sentences: never the user or the password."""
        self._url = f"{scheme}://{self.where}/"
        self.user = unquote(parts.username or "default")
        credentials = f"{self.user}:{unquote(parts.password or '')}".encode()
        self._headers = {"Authorization": "Basic " + base64.b64encode(credentials).decode()}
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers, connector=aiohttp.TCPConnector(limit=2)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _rows(self, sql: str, timeout_s: float = COMMAND_TIMEOUT_S) -> list[Any]:
        """``sql`` (ending in ``FORMAT JSONEachRow``) run under our query id, its rows."""
        params = {
            "query_id": f"{QUERY_ID_PREFIX}{uuid.uuid4()}",
            "max_execution_time": str(int(timeout_s)),
            "max_result_rows": str(MAX_ROWS),
            "result_overflow_mode": "throw",
            "output_format_json_quote_64bit_integers": "0",
        }
        timeout = aiohttp.ClientTimeout(
            total=timeout_s, connect=CONNECT_TIMEOUT_S, sock_read=timeout_s
        )
        try:
            async with self._client().post(
                self._url, params=params, data=sql.encode(), timeout=timeout
            ) as response:
                body = await _bounded(response, self.name)
                text = body.decode("utf-8", errors="replace")
                if response.status != 200:
                    raise _error(self.name, response.status, text)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Transient(
                f"ClickHouse target {self.name!r} at {self.where}: {type(exc).__name__}"
                f"{': ' + str(exc) if isinstance(exc, OSError) else ''}"
            ) from None
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError:
            raise Transient(
                f"ClickHouse target {self.name!r} answered what is not JSON rows"
            ) from None

    async def version(self) -> str:
        [row] = await self._rows("SELECT version() AS v FORMAT JSONEachRow")
        return str(row["v"])[:64] if isinstance(row, dict) else ""

    async def processes(self, min_elapsed_s: float) -> list[Process]:
        """The queries running at least ``min_elapsed_s``, longest first, at most
        ``MAX_ROWS``, without those no rule may touch (this module's docstring)."""
        excluded = ", ".join(literal(u) for u in sorted(PROTECTED_USERS | {self.user}))
        sql = f"""
SELECT query_id, user, address, elapsed, substringUTF8(query, 1, {QUERY_TEXT_CHARS}) AS query,
       cityHash64(query) AS query_hash, read_rows, written_rows, memory_usage
FROM system.processes
WHERE is_initial_query = 1
  AND query_id NOT LIKE {literal(QUERY_ID_PREFIX + "%")}
  AND user NOT IN ({excluded}) AND initial_user NOT IN ({excluded})
  AND elapsed >= {_seconds(min_elapsed_s)}
ORDER BY elapsed DESC
LIMIT {MAX_ROWS}
FORMAT JSONEachRow"""
        try:
            return [_process(row) for row in await self._rows(sql)]
        except ValueError as exc:
            raise Transient(
                f"ClickHouse target {self.name!r} answered a row we cannot read: {exc}"
            ) from None

    def _same_query(self, process: Process) -> str:
        """The re-check: the chosen query, still running (a query only grows older)."""
        query_id, user, query_hash = process.identity()
        return (
            f"query_id = {literal(query_id)} AND user = {literal(user)}"
            f" AND cityHash64(query) = {query_hash} AND is_initial_query = 1"
            f" AND elapsed >= {_seconds(max(process.elapsed_s - 0.001, 0.0))}"
        )

    async def kill(self, process: Process, mode: Literal["SYNC", "ASYNC"]) -> Killed | None:
        """Kill ``process`` if the re-check finds it still running; ``None`` when it had
        ended (or its id now names another query)."""
        sql = f"KILL QUERY WHERE {self._same_query(process)} {mode} FORMAT JSONEachRow"
        timeout_s = KILL_SYNC_TIMEOUT_S if mode == "SYNC" else COMMAND_TIMEOUT_S
        rows = await self._rows(sql, timeout_s)
        if not rows:
            return None
        status = rows[0].get("kill_status") if isinstance(rows[0], dict) else None
        return Killed(str(status)[:32] if status is not None else "unknown")

    async def still_running(self, processes: Sequence[Process]) -> set[str]:
        """The query ids of ``processes`` that still run the query they were chosen as."""
        if not processes:
            return set()
        same = " OR ".join(f"({self._same_query(p)})" for p in processes)
        rows = await self._rows(
            f"SELECT query_id FROM system.processes WHERE {same} FORMAT JSONEachRow"
        )
        return {str(r.get("query_id")) for r in rows if isinstance(r, dict)}

    async def activity(self, limit: int, max_query_chars: int) -> list[dict[str, Any]]:
        """Every query running (ours excepted), longest first, as JSON values: evidence."""
        rows = await self._rows(
            f"""
SELECT query_id, user, initial_user, address, is_initial_query, elapsed, is_cancelled,
       read_rows, written_rows, memory_usage, substringUTF8(query, 1, {int(max_query_chars)})
       AS query
FROM system.processes
WHERE query_id NOT LIKE {literal(QUERY_ID_PREFIX + "%")}
ORDER BY elapsed DESC
LIMIT {int(limit)}
FORMAT JSONEachRow"""
        )
        return [r for r in rows if isinstance(r, dict)]


async def _bounded(response: aiohttp.ClientResponse, target: str) -> bytes:
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 << 10):
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise Transient(
                f"ClickHouse target {target!r} answered more than {MAX_ANSWER_BYTES} bytes"
            )
    return bytes(body)
