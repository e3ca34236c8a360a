"""kill_query's signals against queries that end near them, on a real PostgreSQL 15: what
the one-statement re-check guarantees, the window it leaves open, and how a cancel that
reached a session's next query is found afterwards.

Each lane is an application connection and a target of its own; a lane's attempts run one
after another, the lanes side by side. The figures printed are the ones the README quotes.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import pytest

from remediator.actions.kill_query import LANDING_S
from remediator.clients.postgres import SIGNAL_SQL, PostgresTarget, Session, Signalled
from tests.support.postgres import Outcome, PostgresServer, Roles
from tests.test_exactly_once import figures
from tests.test_kill_query import AppClient, remediator_dsn

T = TypeVar("T")

LANES = 10
SPREAD_S = 0.01
"""Signals go from this long before a query's expected end to this long after it."""


def offsets(n: int) -> list[float]:
    return [-SPREAD_S + 2 * SPREAD_S * i / (n - 1) for i in range(n)]


async def lanes(
    pg: PostgresServer, roles: Roles, lane: Callable[[PostgresTarget], Awaitable[T]]
) -> list[T]:
    targets = [PostgresTarget(f"lane-{i}", remediator_dsn(pg, roles)) for i in range(LANES)]
    try:
        return list(await asyncio.gather(*(lane(t) for t in targets)))
    finally:
        for target in targets:
            await target.close()


async def until(condition: Callable[[], bool], timeout_s: float = 5) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.002)


async def chosen(target: PostgresTarget, pid: int, query: str) -> Session:
    """The session of ``pid`` as kill_query would choose it, once it runs ``query``."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for session in await target.sessions(0.001, ["active"]):
            if session.pid == pid and session.query == query:
                return session
        await asyncio.sleep(0.002)
    raise AssertionError(f"pid {pid} never ran {query!r}")


async def running_now(target: PostgresTarget, client: AppClient) -> tuple[int, Session]:
    """The client's statement its session is seen running, and the session as kill_query
    would choose it. The queries run back to back: on a loaded machine the one the client
    had just started may have ended by the first look, so the one seen is taken."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for session in await target.sessions(0.001, ["active"]):
            texts = [statement.sql for statement in client.statements]
            if session.pid == client.pid and session.query in texts:
                return texts.index(session.query), session  # each statement's text is its own
        await asyncio.sleep(0.002)
    raise AssertionError(f"pid {client.pid} was never seen running a query")


def summary(windows: list[float]) -> str:
    if not windows:
        return "none"
    ms = sorted(w * 1000 for w in windows)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"p50={statistics.median(ms):.3f}ms,p99={p99:.3f}ms,max={ms[-1]:.3f}ms"


# --------------------------------------------------------------------------- terminate

TERMINATE_SLEEP_S = 0.3
TERMINATE_ATTEMPTS = 6
"""Per lane."""


@dataclass(frozen=True)
class Termination:
    signal: Signalled | None
    outcome: Outcome
    answered_before_sent: bool
    """The client had its query's answer before the terminate statement was sent."""
    closed: bool


async def terminate_near_the_end(
    pg: PostgresServer, roles: Roles, target: PostgresTarget, offset_s: float
) -> Termination:
    client = await AppClient.connect(pg, roles)
    try:
        query = f"SELECT pg_sleep({TERMINATE_SLEEP_S})"
        started = time.monotonic()
        client.start(query)
        session = await chosen(target, client.pid, query)
        await asyncio.sleep(max(0.0, started + TERMINATE_SLEEP_S + offset_s - time.monotonic()))
        sent_at = time.monotonic()
        signal = await target.send(session, "terminate")
        assert client.task is not None
        await asyncio.wait([client.task], timeout=5)
        await asyncio.sleep(0.1)  # a terminate reaching an idle session closes it by now
        [statement] = client.statements
        answered = statement.done_at is not None and statement.done_at < sent_at
        return Termination(signal, statement.outcome, answered, client.conn.is_closed())
    finally:
        await client.close()


@pytest.mark.timeout(120)
async def test_no_session_is_terminated_once_its_query_has_answered(
    pg: PostgresServer, roles: Roles
) -> None:
    """Terminates sent from 10 ms before to 10 ms after each query's end: one whose
    client already had its answer is never sent (the statement requires ``active``), and
    no session that was not signalled loses its connection."""

    async def lane(target: PostgresTarget) -> list[Termination]:
        return [
            await terminate_near_the_end(pg, roles, target, offset)
            for offset in offsets(TERMINATE_ATTEMPTS)
        ]

    results = [t for ts in await lanes(pg, roles, lane) for t in ts]
    sent = [t for t in results if t.signal]
    in_window = [t for t in sent if t.outcome is Outcome.COMPLETED]
    figures(
        "terminate near the end",
        attempts=len(results),
        sent=len(sent),
        killed_running=sum(1 for t in sent if t.outcome is Outcome.TERMINATED),
        answered_then_killed=len(in_window),
        skipped=len(results) - len(sent),
        window=summary([t.signal.window_s for t in sent if t.signal]),
    )
    assert [t for t in sent if t.answered_before_sent] == []
    assert [t for t in results if not t.signal and t.closed] == []
    assert [t for t in results if not t.signal and t.outcome is not Outcome.COMPLETED] == []
    assert sent and len(sent) < len(results), "the signals did not straddle the queries' ends"


# --------------------------------------------------------------------------- cancel

CANCEL_SLEEP_S = 0.2
CANCEL_ATTEMPTS = 20
"""Per lane."""


@dataclass(frozen=True)
class Cancel:
    signal: Signalled | None
    chosen_outcome: Outcome
    hit_next: bool
    """Ground truth, from the client: the chosen query completed and a later one was
    cancelled."""
    flagged: bool
    """What ``moved_on`` said ``LANDING_S`` after the cancel."""
    after_s: float | None
    """When flagged: from the signal to the start of the query seen after it."""


def numbered(i: int) -> str:
    return f"SELECT pg_sleep({CANCEL_SLEEP_S}) AS q_{i}"


async def cancel_near_the_end(client: AppClient, target: PostgresTarget, offset_s: float) -> Cancel:
    """Choose the client's current query, cancel it near its expected end, and read what
    each of the following queries did."""
    k, session = await running_now(target, client)
    started = client.statements[k].started_at
    await asyncio.sleep(max(0.0, started + CANCEL_SLEEP_S + offset_s - time.monotonic()))
    signal = await target.send(session, "cancel")
    after_s = None
    if signal:
        await asyncio.sleep(LANDING_S)
        moved = await target.moved_on([session])
        if client.pid in moved:
            after_s = (moved[client.pid] - signal.at).total_seconds()
    await until(lambda: len(client.statements) >= k + 3)  # the one after the next started
    outcome = client.statements[k].outcome
    later = [s.outcome for s in client.statements[k + 1 : k + 2]]
    hit_next = outcome is Outcome.COMPLETED and Outcome.CANCELLED in later
    return Cancel(signal, outcome, hit_next, after_s is not None, after_s)


@pytest.mark.timeout(180)
async def test_a_cancel_that_reached_the_next_query_is_always_flagged(
    pg: PostgresServer, roles: Roles
) -> None:
    """Back-to-back 0.2 s queries, cancels from 10 ms before to 10 ms after each one's
    expected end, with no precheck to keep them away: a cancel that reached the query after
    the chosen one is never unflagged. Prints the signal's window and how often it missed."""

    async def lane(target: PostgresTarget) -> list[Cancel]:
        client = await AppClient.connect(pg, roles)
        try:
            client.start(then=numbered)
            await until(lambda: bool(client.statements))
            return [
                await cancel_near_the_end(client, target, offset)
                for offset in offsets(CANCEL_ATTEMPTS)
            ]
        finally:
            await client.close()

    results = [c for cs in await lanes(pg, roles, lane) for c in cs]
    sent = [c for c in results if c.signal]
    missed = [c for c in sent if c.hit_next]
    figures(
        "cancel near the end",
        attempts=len(results),
        sent=len(sent),
        cancelled_chosen=sum(1 for c in sent if c.chosen_outcome is Outcome.CANCELLED),
        reached_next=len(missed),
        flagged=sum(1 for c in sent if c.flagged),
        next_started_after_correct_cancel=summary(
            [c.after_s for c in sent if c.after_s is not None and not c.hit_next]
        ),
        next_started_after_missed_cancel=summary(
            [c.after_s for c in missed if c.after_s is not None]
        ),
        window=summary([c.signal.window_s for c in sent if c.signal]),
    )
    assert [c for c in missed if not c.flagged] == []
    assert [c for c in results if not c.signal and c.hit_next] == []
    assert sent and len(sent) < len(results), "the signals did not straddle the queries' ends"


async def test_a_cancel_sent_on_a_stale_view_reaches_the_next_query_and_is_found(
    pg: PostgresServer, roles: Roles
) -> None:
    """The window made wide on purpose: inside one transaction PostgreSQL keeps the
    ``pg_stat_activity`` it read first, so the signal statement re-checks a query that has
    since been replaced. The cancel lands on the replacement, and ``moved_on`` says so."""
    app, rem = roles.app, roles.remediator
    switcher = await pg.query_then_new_query(app.name, app.password, "appdb", 60)
    await switcher.started()
    target = PostgresTarget("primary", remediator_dsn(pg, roles))
    stale = await pg.connect(rem.name, rem.password)
    try:
        [session] = [s for s in await target.sessions(0.001, ["active"]) if s.pid == switcher.pid]
        async with stale.transaction():
            await stale.fetch("SELECT pid FROM pg_stat_activity")  # the view is now fixed
            await switcher.switch()
            rows = await stale.fetch(
                SIGNAL_SQL.format(function="pg_cancel_backend"), *session.identity()
            )
        [(sent, at, _)] = rows
        assert sent is True
        after = await pg.wait_for_activity(
            switcher.pid, lambda r: r["state"] == "idle", what="the replacement to be cancelled"
        )
        assert after["query"].endswith("phase_2")
        moved = await target.moved_on([session])
        assert list(moved) == [switcher.pid]
        assert moved[switcher.pid] < at, "the query it reached had begun before the signal"
    finally:
        await stale.close()
        await target.close()
