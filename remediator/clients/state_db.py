"""The PostgreSQL state database through asyncpg (the only other asyncpg importer, beside
the kill_query targets): a pool, transactions, and our ``StoreUnavailable`` for every
failure, so the store stays free of the driver's types."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from remediator.core.errors import StoreRejected, StoreUnavailable

CONNECT_TIMEOUT_S = 5.0
#: SQLSTATE classes 22 (data exception: NUL in text, a number out of range) and 23
#: (integrity constraint), and a value asyncpg cannot encode: the same write fails again.
REFUSED_VALUES = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    UnicodeEncodeError,
    OverflowError,
)
COMMAND_TIMEOUT_S = 10.0


class Tx:
    """Statements inside one transaction; rows come back as plain tuples."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in await self._connection.fetch(sql, *args)]

    async def fetchrow(self, sql: str, *args: Any) -> tuple[Any, ...] | None:
        row = await self._connection.fetchrow(sql, *args)
        return None if row is None else tuple(row)

    async def execute(self, sql: str, *args: Any) -> int:
        """The number of rows the statement touched."""
        status: str = await self._connection.execute(sql, *args)
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            await self._connection.executemany(sql, rows)

    async def lock(self, key: int) -> None:
        """Serialise with every other transaction taking ``key``, until this one ends."""
        await self._connection.execute("SELECT pg_advisory_xact_lock($1)", key)


class StateDatabase:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._pool: Any = None

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=4,
                timeout=CONNECT_TIMEOUT_S,
                command_timeout=COMMAND_TIMEOUT_S,
                server_settings={"application_name": "remediator-state"},
            )
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            raise StoreUnavailable(f"PostgreSQL state store: {exc}") from None

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        if self._pool is None:
            raise StoreUnavailable("PostgreSQL state store is not open")
        try:
            async with self._pool.acquire() as connection, connection.transaction():
                yield Tx(connection)
        except REFUSED_VALUES as exc:
            raise StoreRejected(f"PostgreSQL state store refused a value: {exc}") from None
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreUnavailable(f"PostgreSQL state store: {exc}") from None
