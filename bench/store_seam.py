"""The state store's seam: our own (``store.program`` over sqlite3 and asyncpg) against
SQLAlchemy Core 2 (over aiosqlite and asyncpg), side by side in one run.

Two operations, each driven back to back by one caller for ``--seconds``:

* ``append``: a journal append, the webhook's write before its ack (SQLite: autocommit on
  a connection of its own; PostgreSQL: one transaction);
* ``claim``: a claim transaction (the claim guards' reads, then the insert, under the
  claims lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite) and the audit insert after it.

Both sides run the same statements on the same schema (created by our store), each on a
fresh database per round; rounds interleave the four systems so drift hits all alike.
Prints operations per second per system and round, the median round, and SQLAlchemy's
median as a fraction of ours. PostgreSQL is a throwaway server of the test harness's.

Usage: ``python bench/store_seam.py [--seconds 3] [--rounds 5] [--only sqlite|postgres]``
(needs ``sqlalchemy[asyncio]`` and ``aiosqlite``: ``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lz4.frame
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from remediator.core.model import AlertStatus, AuditRecord, Outcome, Step  # noqa: E402
from remediator.guards import claim as claim_guards  # noqa: E402
from remediator.guards.claim import ClaimFacts, ClaimRequest, Limit  # noqa: E402
from remediator.store.contract import Sighting  # noqa: E402
from remediator.store.postgres import PostgresStore  # noqa: E402
from remediator.store.program import LOCK_CLAIMS  # noqa: E402
from remediator.store.rows import audit_row, claim_windows  # noqa: E402
from remediator.store.sqlite import SqliteStore  # noqa: E402
from remediator.store.sqlstore import SqlStore  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402

BODY = (REPO_ROOT / "tests/fixtures/alertmanager-0.25/firing-2-alerts.json").read_bytes()
LIMIT = Limit(1_000_000, 3600)
Op = Callable[[int], Awaitable[object]]

META = sa.MetaData()
JOURNAL = sa.Table(
    "journal", META, sa.Column("id", sa.Integer, primary_key=True), sa.Column("owner", sa.Text),
    sa.Column("received_at", sa.Float), sa.Column("body", sa.LargeBinary),
)  # fmt: skip
CLAIMS = sa.Table(
    "claims", META, sa.Column("id", sa.Integer, primary_key=True),
    *(sa.Column(c, sa.Integer) for c in ("episode_id", "destructive", "dry_run")),
    *(sa.Column(c, sa.Text) for c in ("rule", "action", "action_kind", "target", "owner")),
    sa.Column("claimed_at", sa.Float),
)  # fmt: skip
AUDIT = sa.Table(
    "audit", META, sa.Column("id", sa.Integer, primary_key=True), sa.Column("at", sa.Float),
    sa.Column("journal_id", sa.Integer), sa.Column("episode_id", sa.Integer),
    *(sa.Column(c, sa.Text) for c in (
        "step", "outcome", "sentence", "fingerprint", "alertname", "rule", "ruleset_hash",
        "severity", "reason", "target", "action", "details")),
)  # fmt: skip
#: The claim windows' conditions, as SQLAlchemy expressions, by ``ClaimFacts`` field.
WINDOWS: dict[str, Callable[[ClaimRequest], Any]] = {
    "rule_claims": lambda r: CLAIMS.c.rule == r.rule,
    "kind_claims": lambda r: CLAIMS.c.action_kind == r.action_kind,
    "destructive_claims": lambda r: CLAIMS.c.destructive == 1,
    "target_claims": lambda r: CLAIMS.c.target == r.target,
    "same_fix_claims": lambda r: sa.and_(
        CLAIMS.c.target == r.target, CLAIMS.c.action_kind == r.action_kind
    ),
}


def now() -> datetime:
    return datetime.now(UTC)


def request(episode_id: int, i: int) -> ClaimRequest:
    return ClaimRequest(
        episode_id, f"rule-{i}", "restart", "pod.delete", f"ns/pod-{i}", True, False, 0,
        LIMIT, LIMIT, LIMIT, LIMIT, LIMIT,
    )  # fmt: skip


def record(episode_id: int, i: int) -> AuditRecord:
    return AuditRecord(now(), Step.CLAIMED, Outcome.CLAIMED, f"claim {i}", episode_id=episode_id)


# ----- ours


def ours(store: SqlStore, episode_id: int) -> dict[str, Op]:
    async def append(i: int) -> object:
        return await store.journal_append(BODY, now())

    async def claim(i: int) -> object:
        result = await store.claim(request(episode_id, i), now())
        await store.audit([record(episode_id, i)])
        return result

    return {"append": append, "claim": claim}


# ----- SQLAlchemy Core


def sqlite_engines(path: Path) -> tuple[AsyncEngine, AsyncEngine]:
    """The journal's engine (autocommit) and the work engine (``BEGIN IMMEDIATE``)."""
    engines = []
    for autocommit in (True, False):
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
        sa.event.listen(engine.sync_engine, "connect", _sqlite_connect)
        if not autocommit:
            sa.event.listen(engine.sync_engine, "begin", _begin_immediate)
        engines.append(engine.execution_options(isolation_level="AUTOCOMMIT") if autocommit
                       else engine)  # fmt: skip
    return engines[0], engines[1]


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # the driver's own BEGIN, off: ours is below
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _begin_immediate(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


async def _facts(conn: Any, r: ClaimRequest, at: float) -> ClaimFacts:
    same = (
        CLAIMS.c.episode_id == r.episode_id,
        CLAIMS.c.rule == r.rule,
        CLAIMS.c.action == r.action,
    )
    already = (await conn.execute(sa.select(sa.literal(1)).where(*same))).first()
    last = await conn.scalar(
        sa.select(sa.func.max(CLAIMS.c.claimed_at)).where(
            CLAIMS.c.target == r.target, CLAIMS.c.dry_run == int(r.dry_run)
        )
    )
    counts = {}
    for name, _where, _params, limit in claim_windows(r):
        assert limit is not None
        where = (CLAIMS.c.dry_run == 0, WINDOWS[name](r), CLAIMS.c.claimed_at > at - limit.window_s)
        counts[name] = await conn.scalar(sa.select(sa.func.count()).where(*where))
    return ClaimFacts(already is not None, None if last is None else at - last, **counts)


def alchemy(journal: AsyncEngine, work: AsyncEngine, episode_id: int, pg: bool) -> dict[str, Op]:
    async def append(i: int) -> object:
        values = {"owner": "", "received_at": now().timestamp(), "body": lz4.frame.compress(BODY)}
        async with journal.begin() as conn:
            return await conn.scalar(sa.insert(JOURNAL).values(values).returning(JOURNAL.c.id))

    async def claim(i: int) -> object:
        r, at = request(episode_id, i), now().timestamp()
        async with work.begin() as conn:
            if pg:
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(LOCK_CLAIMS)))
            verdict = claim_guards.decide(r, await _facts(conn, r, at))
            values = {
                "episode_id": r.episode_id, "rule": r.rule, "action": r.action,
                "action_kind": r.action_kind, "target": r.target, "destructive": 1,
                "dry_run": 0, "claimed_at": at, "owner": "",
            }  # fmt: skip
            await conn.scalar(sa.insert(CLAIMS).values(values).returning(CLAIMS.c.id))
        async with work.begin() as conn:
            await conn.execute(sa.insert(AUDIT), [audit_row(record(episode_id, i))])
        return verdict

    return {"append": append, "claim": claim}


# ----- the run


async def measure(op: Op, seconds: float) -> float:
    """Operations per second, one caller back to back, after a short warm-up."""
    for i in range(20):
        await op(-1 - i)
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        await op(done)
        done += 1
    return done / elapsed


async def episode(store: SqlStore) -> int:
    """An episode for the claims to hang on."""
    [obs] = await store.observe([Sighting("fp", AlertStatus.FIRING, "X")], now(), 60)
    return obs.episode.id


async def sqlite_round(kind: str, seconds: float, work_dir: Path) -> dict[str, float]:
    path = Path(tempfile.mkdtemp(dir=work_dir)) / "state.db"
    store = SqliteStore(path)
    await store.open()
    try:
        episode_id = await episode(store)
        if kind == "ours":
            return {
                name: await measure(op, seconds) for name, op in ours(store, episode_id).items()
            }
    finally:
        await store.close()
    journal, work = sqlite_engines(path)
    try:
        ops = alchemy(journal, work, episode_id, pg=False)
        return {name: await measure(op, seconds) for name, op in ops.items()}
    finally:
        await journal.dispose()
        await work.dispose()


async def postgres_round(
    kind: str, seconds: float, server: PostgresServer, name: str
) -> dict[str, float]:
    await server.execute(f"CREATE DATABASE {name} OWNER state")
    dsn = server.dsn("state", "state-secret", name)
    store = PostgresStore(dsn, "")
    await store.open()
    try:
        episode_id = await episode(store)
        if kind == "ours":
            return {n: await measure(op, seconds) for n, op in ours(store, episode_id).items()}
    finally:
        await store.close()
    engine = create_async_engine(dsn.replace("postgresql://", "postgresql+asyncpg://"),
                                 pool_size=4)  # fmt: skip
    try:
        ops = alchemy(engine, engine, episode_id, pg=True)
        return {n: await measure(op, seconds) for n, op in ops.items()}
    finally:
        await engine.dispose()


def report(results: dict[str, list[dict[str, float]]]) -> None:
    print(f"{'system':<20}{'op':<8}{'rounds (ops/s)':<44}median")
    medians: dict[tuple[str, str], float] = {}
    for system, rounds in results.items():
        for op in ("append", "claim"):
            values = [r[op] for r in rounds]
            medians[system, op] = statistics.median(values)
            shown = " ".join(f"{v:8.0f}" for v in values)
            print(f"{system:<20}{op:<8}{shown:<44}{medians[system, op]:8.0f}")
    print()
    for backend in ("sqlite", "postgres"):
        mine, theirs = results.get(f"ours/{backend}", []), results.get(f"sqlalchemy/{backend}", [])
        for op in ("append", "claim") if mine and theirs else ():
            paired = [t[op] / m[op] for m, t in zip(mine, theirs, strict=True)]
            ratio = medians[f"sqlalchemy/{backend}", op] / medians[f"ours/{backend}", op]
            print(
                f"{backend:<9}{op:<8}sqlalchemy / ours: {ratio:5.2f} of the medians,"
                f" {statistics.median(paired):5.2f} the median of the rounds' own ratios"
            )


async def main(opts: argparse.Namespace) -> None:
    backends = ("sqlite", "postgres") if opts.only is None else (opts.only,)
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as work_dir:
        async with PostgresServer() as server:
            await server.execute("CREATE ROLE state LOGIN PASSWORD 'state-secret'")
            for n in range(opts.rounds):
                order = ("ours", "sqlalchemy") if n % 2 == 0 else ("sqlalchemy", "ours")
                for backend in backends:
                    for kind in order:
                        print(f"round {n + 1}: {kind}/{backend}", file=sys.stderr)
                        if backend == "sqlite":
                            got = await sqlite_round(kind, opts.seconds, Path(work_dir))
                        else:
                            got = await postgres_round(kind, opts.seconds, server, f"b{n}_{kind}")
                        results.setdefault(f"{kind}/{backend}", []).append(got)
    report(results)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured window per op")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=("sqlite", "postgres"))
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
