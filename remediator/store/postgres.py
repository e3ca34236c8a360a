"""PostgreSQL backend of the ``Store`` contract: for several replicas sharing one truth.

The same statements and programs as the SQLite backend (``sqlstore``), each program in one
transaction. Episodes and claims are decided under transaction-scoped advisory locks, so
two replicas (and two Alertmanagers) never open two episodes for one fingerprint nor take
two claims past one guard. Each replica processes the journal entries it accepted and
settles the claims it took (``instance_id``), and renews a lease on them; a replica whose
lease runs out leaves them to the first live replica that notices (``take_over``). The
schema is migrated under a lock too, so replicas may start together.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from remediator.clients.state_db import StateDatabase, Tx
from remediator.store import sql
from remediator.store.contract import TakenOver
from remediator.store.program import (
    LOCK_TAKEOVER,
    Op,
    Program,
    count,
    drive_async,
    lock,
    rows,
    script,
    value,
)
from remediator.store.rows import ts, unfinished_claim
from remediator.store.schema import POSTGRES
from remediator.store.sqlstore import Lane, SqlStore

T = TypeVar("T")


async def answer(tx: Tx, op: Op) -> Any:
    """One step of a program, inside ``tx``."""
    if op.kind == "lock":
        await tx.lock(op.key)
    elif op.kind == "script":
        await tx.execute(op.statement.text)
    elif op.kind == "many":
        text, names = op.statement.numbered()
        await tx.executemany(text, [[p[name] for name in names] for p in op.batch])
    elif op.kind == "rows":
        return await tx.fetch(*_positional(op))
    else:
        return await tx.execute(*_positional(op))
    return None


def _positional(op: Op) -> list[Any]:
    text, args = op.statement.positional(op.params)
    return [text, *args]


def _take_over(owner: str, since: float) -> Program[TakenOver]:
    yield from lock(LOCK_TAKEOVER)
    found = yield from rows(sql.EXPIRED_OWNERS, {"since": since, "owner": owner})
    expired = [r[0] for r in found]
    if not expired:
        return TakenOver([], [])
    moves, params = sql.take_over(expired)
    params["owner"] = owner
    journal = yield from rows(moves["journal"], params)
    claimed = yield from rows(moves["claims"], params)
    yield from count(moves["instances"], params)
    if not claimed:
        return TakenOver(sorted(int(r[0]) for r in journal), [])
    statement, among = sql.unfinished_among([int(r[0]) for r in claimed])
    claims = yield from rows(statement, {**among, "owner": owner})
    return TakenOver(sorted(int(r[0]) for r in journal), [unfinished_claim(r) for r in claims])


def _storm_add(target: str, now: float, window_s: float) -> Program[int]:
    # A sighting, not a decision: no need to wait for the WAL flush.
    yield from script("SET LOCAL synchronous_commit = off")
    yield from count(sql.STORM_FORGET, {"since": now - window_s})
    yield from count(sql.STORM_SEEN, {"target": target, "now": now})
    return int((yield from value(sql.STORM_COUNT, {})) or 0)


class PostgresStore(SqlStore):
    dialect = POSTGRES

    def __init__(self, dsn: str, instance_id: str) -> None:
        self.dsn = dsn
        self.owner = instance_id
        self._db = StateDatabase(dsn)

    async def _run(self, program: Program[T], lane: Lane, atomic: bool) -> T:
        async with self._db.transaction() as tx:
            return await drive_async(program, lambda op: answer(tx, op))

    async def open(self) -> None:
        await self._db.open()
        await self.migrate()

    async def close(self) -> None:
        await self._db.close()

    async def heartbeat(self, now: datetime) -> None:
        await self.run(count(sql.HEARTBEAT, {"owner": self.owner, "now": ts(now)}))

    async def take_over(self, now: datetime, lease_s: float) -> TakenOver:
        return await self.run(_take_over(self.owner, ts(now) - lease_s))

    async def storm_add(self, target: str, now: datetime, window_s: float) -> int:
        return await self.run(_storm_add(target, ts(now), window_s))

    async def storm_peek(self, target: str, now: datetime, window_s: float) -> int:
        since = {"since": ts(now) - window_s, "target": target}
        return 1 + int(await self.run(value(sql.STORM_OTHERS, since)) or 0)
