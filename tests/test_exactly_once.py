"""Exactly once in effect, end to end: replicas of ``remediator serve`` on a real PostgreSQL
state database, against the test Kubernetes API, through the failures that test it.

A replica killed with 160 claims queued behind a slow API server (restarted, or its work
taken over); the state database crashed for 20 s with actions in flight; two replicas
receiving every notification; and a ``kill_query`` whose target vanishes while ``verify``
polls. Each test prints one line of figures (``pytest -s``) and asserts that every
Deployment is scaled once, every claim has one outcome and no episode is paged twice.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.support.alertmanager import alertmanager
from tests.support.payloads import (
    fleet_labels,
    fleet_notifications,
    notifications,
    page_only_labels,
    webhook_alert,
    webhook_payload,
)
from tests.support.postgres import PostgresServer, Roles
from tests.support.process import RemediatorProcess, start_remediator
from tests.support.replicas import (
    SCALE_PATH,
    Fleet,
    StateTables,
    deployment_of,
    fleet,
    force_resends,
    per_episode,
    ready,
    scale_writes,
)
from tests.support.service import serve, settings_for
from tests.support.tcp_proxy import TcpProxy
from tests.test_kill_query import LONG_QUERY, dsn_file, rules

LEASE = ("--lease-seconds", "1.5")
SETTLE_S = 180.0
"""Long enough for 160 claims, 32 at a time, each verified on lagging controllers, while
other tests load the machine (with 320 claims, 120 s left 9 still verifying on a loaded run
of the whole suite, every Deployment already scaled once); the figure printed is how long it
took."""


def now() -> float:
    return asyncio.get_running_loop().time()


async def settle(tables: StateTables, timeout_s: float = SETTLE_S) -> float | None:
    """Seconds until no claim is left without an outcome (state database errors while it
    is away are retried), or None after ``timeout_s``."""
    started = now()
    while now() - started < timeout_s:
        try:
            if await tables.open_claims() == 0:
                return round(now() - started, 1)
        except (OSError, asyncpg.PostgresError) as exc:
            logging.getLogger(__name__).info("state database not answering yet: %s", exc)
        await asyncio.sleep(0.2)
    return None


async def stop_all(replicas: list[RemediatorProcess]) -> None:
    for replica in replicas:
        await replica.stop()


def log_faults(replicas: list[RemediatorProcess]) -> list[str]:
    """Log records (a line and its traceback) of a failed action task, or of
    StoreUnavailable raised through the act stage."""
    faults = []
    for replica in replicas:
        text = replica.log_path.read_text(errors="replace")
        for record in re.split(r"\n(?=\d{4}-\d\d-\d\dT)", text):
            act_trace = "Traceback" in record and "/remediator/act/" in record
            if "action task failed" in record or (act_trace and "StoreUnavailable" in record):
                faults.append(record[:300])
    return faults


def outage_lines(replica: RemediatorProcess) -> dict[str, int]:
    """How a replica's log told an outage: the lines it went and came back, and tracebacks."""
    text = replica.log_path.read_text(errors="replace")
    return {
        "gone": text.count("state store unavailable ("),
        "back": text.count("state store is back"),
        "tracebacks": text.count("Traceback"),
    }


def figures(name: str, **values: object) -> None:
    print(f"\n[{name}] " + " ".join(f"{k}={v}" for k, v in values.items()))


# --------------------------------------------------------------------------- kill -9

QUEUED = 160
"""Five times ``max_concurrent_actions``: four in five wait their turn at the kill."""
SLOW_SCALE_S = 4.0


async def fill_the_queue(f: Fleet, replica: RemediatorProcess, tables: StateTables) -> None:
    """Every alert claimed by ``replica`` while each scale read takes ``SLOW_SCALE_S``: at
    most ``max_concurrent_actions`` (32) are in progress, the rest wait their turn."""
    f.kube.inject_fault(SCALE_PATH, method="GET", times=None, delay=SLOW_SCALE_S)
    bodies = fleet_notifications(QUEUED, per_payload=32)
    assert set(await asyncio.gather(*(replica.post(b) for b in bodies))) == {200}
    deadline = now() + 30
    while await tables.count_claims() < QUEUED:
        assert now() < deadline, f"only {await tables.count_claims()} claims after 30 s"
        await asyncio.sleep(0.05)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("restarted", [True, False], ids=["restarted", "not-restarted"])
async def test_claims_queued_at_a_kill_9_are_each_run_once_by_the_restart_or_the_other_replica(
    tmp_path: Path, pg: PostgresServer, restarted: bool
) -> None:
    async with fleet(tmp_path, pg, QUEUED, seed=21) as f:
        tables = StateTables(f.dsn)
        doomed = await start_remediator(
            tmp_path / "a", rules=f.rules, extra_args=(*f.args("a"), *LEASE)
        )
        replicas = [doomed]
        if not restarted:
            replicas.append(
                await start_remediator(
                    tmp_path / "b", rules=f.rules, extra_args=(*f.args("b"), *LEASE)
                )
            )
        try:
            await fill_the_queue(f, doomed, tables)
            at_kill = await tables.claims()
            patched_at_kill = sum(scale_writes(f.kube).values())
            doomed.proc.kill()
            await doomed.wait_exit()
            f.kube.clear_faults()
            if restarted:
                replicas.append(
                    await start_remediator(
                        tmp_path / "a", rules=f.rules, extra_args=(*f.args("a"), *LEASE)
                    )
                )
            settled_s = await settle(tables)
            await asyncio.sleep(1.0)  # a duplicate write would land by now
            claims, records = await tables.claims(), await tables.audit()
        finally:
            await stop_all(replicas)
    patches = scale_writes(f.kube)
    unscaled = [i for i in range(QUEUED) if f.replicas_of(i) != 2]
    open_claims = [c for c in claims if c["outcome"] is None]
    pages = [r for r in records if r["step"] == "escalated"]
    figures(
        f"kill-9 {'restarted' if restarted else 'taken over'}",
        claims=len(claims),
        with_intent_at_kill=sum(c["intent"] is not None for c in at_kill),
        settled_at_kill=sum(c["outcome"] is not None for c in at_kill),
        patched_at_kill=patched_at_kill,
        acted=sum(patches.values()),
        pages=len(pages),
        page_reasons=dict(Counter(r["reason"] for r in pages)),
        outcomes=dict(Counter(c["outcome"] for c in claims)),
        duplicates=sum(n > 1 for n in patches.values()),
        lost=f"{len(open_claims)} claims/{len(unscaled)} deployments",
        settle_s=settled_s,
    )
    # The queue really was full at the kill: every claim made, nearly none sent.
    assert len(at_kill) == QUEUED and patched_at_kill <= 32
    assert len(claims) == QUEUED
    # A claim whose intent was written between the look at the queue and the kill, its
    # write not applied, is observed after it and escalated, never run again (once seen on
    # a loaded machine); every other Deployment is scaled, each once.
    not_applied = [c for c in claims if c["outcome"] == "not_applied"]
    assert len(not_applied) <= 32
    assert per_episode(records, "escalated", "not_applied").total() == len(not_applied)
    assert len(patches) == QUEUED - len(not_applied) and set(patches.values()) == {1}
    assert len(unscaled) == len(not_applied)
    assert [c for c in claims if c["outcome"] == "not_run"] == []
    assert per_episode(records, "escalated", "not_run") == Counter()
    assert open_claims == [] and settled_s is not None
    assert max(per_episode(records, "acted").values()) == 1


# --------------------------------------------------------------------------- outage

IN_FLIGHT = 100
OUTAGE_S = 20.0
SLOW_WRITE_S = 3.0
INTENDED = 20
"""Intents stored (scale writes under way) when the database crashes."""


@pytest.fixture
async def durable_pg() -> AsyncIterator[PostgresServer]:
    """A server whose commits survive a crash: ``synchronous_commit`` on (the harness
    default, off, loses the last commits to ``pg_ctl stop -m immediate``)."""
    async with PostgresServer(extra_settings={"synchronous_commit": "on"}) as server:
        yield server


@pytest.mark.timeout(240)
async def test_a_state_database_crash_with_actions_in_flight_leaves_one_outcome_per_claim(
    tmp_path: Path, durable_pg: PostgresServer
) -> None:
    """Both replicas get every notification; scale reads and writes take 3 s each. Once
    every claim is made and the first intents are stored (writes on their way), the state
    database crashes for 20 s, then comes back."""
    pg = durable_pg
    async with fleet(tmp_path, pg, IN_FLIGHT, seed=22) as f:
        tables = StateTables(f.dsn)
        replicas = [
            await start_remediator(tmp_path / name, rules=f.rules, extra_args=f.args(name))
            for name in ("a", "b")
        ]
        try:
            for method in ("GET", "PATCH"):
                f.kube.inject_fault(SCALE_PATH, method=method, times=None, delay=SLOW_WRITE_S)
            bodies = fleet_notifications(IN_FLIGHT, per_payload=20)
            await asyncio.gather(*(r.post(b) for r in replicas for b in bodies))
            deadline = now() + 30
            while True:
                at_crash = await tables.claims()
                intents = sum(c["intent"] is not None for c in at_crash)
                if len(at_crash) == IN_FLIGHT and intents >= INTENDED:
                    break
                assert now() < deadline, "the claims and first intents were not all made"
                await asyncio.sleep(0.05)
            patched_at_crash = sum(scale_writes(f.kube).values())
            await pg.crash()
            await asyncio.sleep(OUTAGE_S)
            await pg.restart()
            f.kube.clear_faults()
            settled_s = await settle(tables)
            await asyncio.sleep(1.0)
            claims, records = await tables.claims(), await tables.audit()
            readiness = [await ready(r) for r in replicas]
            told = [outage_lines(r) for r in replicas]
        finally:
            await stop_all(replicas)
    patches = scale_writes(f.kube)
    by_target = {c["episode_id"]: deployment_of(c["target"]) for c in claims}
    confirmed = {
        deployment_of(r["target"])
        for r in records
        if r["step"] in ("acted", "reconciled") and r["outcome"] == "succeeded"
    }
    unconfirmed = sorted({deployment_of(p) for p in patches} - confirmed)
    unscaled = {e for e, d in by_target.items() if f.replicas_of(int(d[1:])) != 2}
    pages = per_episode(records, "escalated")
    faults = log_faults(replicas)
    figures(
        "state db crash",
        claims=len(claims),
        in_flight_at_crash=sum(c["outcome"] is None for c in at_crash),
        with_intent_at_crash=sum(c["intent"] is not None for c in at_crash),
        patched_at_crash=patched_at_crash,
        acted=sum(patches.values()),
        pages=sum(pages.values()),
        outcomes=dict(Counter(c["outcome"] for c in claims)),
        duplicates=sum(n > 1 for n in patches.values()),
        patched_unrecorded=len(unconfirmed),
        unscaled_unpaged=sum(pages[e] != 1 for e in unscaled),
        paged_twice=sum(n > 1 for n in pages.values()),
        lost=sum(c["outcome"] is None for c in claims),
        task_failures=len(faults),
        readyz=readiness,
        log=told,
        settle_s=settled_s,
    )
    assert len(at_crash) == IN_FLIGHT and len(claims) == IN_FLIGHT  # no commit lost
    assert [c["id"] for c in claims if c["outcome"] is None] == [] and settled_s is not None
    assert unconfirmed == [], "scale writes with no acted or reconciled record"
    assert {e: pages[e] for e in unscaled if pages[e] != 1} == {}
    assert [e for e, n in pages.items() if n > 1] == []
    assert faults == []
    assert readiness == [200, 200]
    # Quiet: the outage is told when it goes and when it is back, with no traceback.
    assert all(t["tracebacks"] == 0 and t["gone"] >= 1 and t["back"] == t["gone"] for t in told)


# --------------------------------------------------------------------------- both receive

EPISODES = 240


@pytest.mark.timeout(240)
async def test_replicas_that_both_receive_every_notification_decide_each_episode_once(
    tmp_path: Path, pg: PostgresServer
) -> None:
    half = EPISODES // 2
    labels = [fleet_labels(i) for i in range(half)] + [page_only_labels(i) for i in range(half)]
    async with fleet(tmp_path, pg, half, seed=23) as f:
        tables = StateTables(f.dsn)
        replicas = [
            await start_remediator(tmp_path / name, rules=f.rules, extra_args=f.args(name))
            for name in ("a", "b")
        ]
        try:
            async with (
                alertmanager(tmp_path / "am-a", replicas[0].webhook_url,
                             credentials_file=tmp_path / "a" / "token") as am_a,
                alertmanager(tmp_path / "am-b", replicas[1].webhook_url,
                             credentials_file=tmp_path / "b" / "token") as am_b,
            ):  # fmt: skip
                alerts = [{"labels": ls} for ls in labels]
                started = now()
                await asyncio.gather(
                    am_a.post_alerts(alerts),
                    am_b.post_alerts(alerts),
                    force_resends(replicas, notifications(labels, per_payload=25)),
                )
                while now() - started < SETTLE_S:
                    try:
                        records = await tables.audit()
                    except OSError as exc:  # a connect slower than its timeout on a loaded host
                        logging.getLogger(__name__).info("audit not read yet: %s", exc)
                        records = []
                    if (
                        len(scale_writes(f.kube)) >= half
                        and len(per_episode(records, "escalated")) >= half
                    ):
                        break
                    await asyncio.sleep(0.3)
                settled_s = round(now() - started, 1)
                await asyncio.sleep(2.5)  # both replicas got both deliveries by now
                claims, records = await tables.claims(), await tables.audit()
                episodes = await tables.fetch("SELECT id, alertname FROM episodes")
        finally:
            await stop_all(replicas)
    patches = scale_writes(f.kube)
    received, classified = per_episode(records, "received"), per_episode(records, "classified")
    pages, claimed = per_episode(records, "escalated"), Counter(c["episode_id"] for c in claims)
    scale_episodes = {e["id"] for e in episodes if e["alertname"] == "HighCPUUsage"}
    figures(
        "both receive",
        episodes=len(episodes),
        claims=len(claims),
        acted=sum(patches.values()),
        pages=sum(pages.values()),
        received_not_once=sum(n != 1 for n in received.values()),
        received_total=sum(received.values()),
        classified_not_once=sum(n != 1 for n in classified.values()),
        paged_twice=sum(n > 1 for n in pages.values()),
        duplicates=sum(n > 1 for n in patches.values()),
        lost=len(scale_episodes - set(claimed)) + (half - len(patches)),
        settle_s=settled_s,
    )
    assert len(episodes) == EPISODES and len(scale_episodes) == half
    assert set(received) == set(classified) == {e["id"] for e in episodes}
    assert set(received.values()) == {1}
    assert set(classified.values()) == {1}
    assert max(pages.values()) == 1
    assert set(claimed) == scale_episodes and set(claimed.values()) == {1}
    assert len(patches) == half and set(patches.values()) == {1}


# --------------------------------------------------------------------------- verify raising

IGNORES_CANCEL = (
    "{min_duration_s: 1, max_per_run: 5, states: [idle in transaction], terminate: false}"
)


async def verify_polling(pg: PostgresServer, timeout_s: float = 15.0) -> None:
    """Return once the server has logged remediator's cancel (its role logs statements) and,
    after it, a poll of ``verify`` (the cancel's answer is back: ``run`` has returned)."""
    deadline = now() + timeout_s
    while now() < deadline:
        text = pg.log_path.read_text(errors="replace")
        cancel = text.find("pg_cancel_backend")
        if cancel >= 0 and "state <> 'idle'" in text[cancel:]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("remediator never sent the cancel, or never verified it")


def claim_outcomes(state_db: Path) -> list[str | None]:
    with sqlite3.connect(state_db) as db:
        return [row[0] for row in db.execute("SELECT outcome FROM claims")]


@pytest.mark.timeout(60)
async def test_a_target_that_vanishes_while_verify_polls_makes_the_outcome_unknown_and_pages_once(
    tmp_path: Path, pg: PostgresServer, roles: Roles, caplog: pytest.LogCaptureFixture
) -> None:
    """An idle transaction ignores the cancel, so ``verify`` keeps polling; the target is
    cut once it polls. The claim ends ``unknown`` and a human is paged, once."""
    app, rem = roles.app, roles.remediator
    await pg.execute(f"ALTER ROLE {rem.name} SET log_statement = 'all'")
    idle = await pg.idle_in_transaction(app.name, app.password, "appdb")
    await idle.started()
    await asyncio.sleep(1.2)
    async with TcpProxy(pg.host, pg.port) as proxy:
        target = dsn_file(tmp_path, pg.dsn(rem.name, rem.password, port=proxy.port))
        settings = settings_for(
            tmp_path,
            rules_dir=rules(tmp_path / "rules", IGNORES_CANCEL),
            databases={"primary": target},
        )
        with caplog.at_level(logging.INFO):
            async with serve(settings) as service:
                status, _ = await service.post(webhook_payload(webhook_alert(labels=LONG_QUERY)))
                assert status == 200
                await verify_polling(pg)
                cut = now()
                await proxy.down()
                deadline = now() + 10
                while None in (outcomes := claim_outcomes(tmp_path / "state.db")) or not outcomes:
                    if now() > deadline:
                        break
                    await asyncio.sleep(0.1)
                settled_s = round(now() - cut, 1)
                decisions = await service.decisions()
    verified = [d for d in decisions if d["step"] == "verified"]
    pages = [d for d in decisions if d["step"] == "escalated"]
    failed = [r.getMessage() for r in caplog.records if "action task failed" in r.getMessage()]
    figures(
        "verify raising",
        claims=len(outcomes),
        outcomes=outcomes,
        steps=[(d["step"], d["outcome"], d["reason"]) for d in decisions[2:]],
        pages=len(pages),
        task_failures=len(failed),
        settle_s=settled_s,
    )
    assert outcomes == ["unknown"]
    assert [(d["outcome"], d["reason"]) for d in verified] == [("unknown", "verify_failed")]
    assert [d["reason"] for d in pages] == ["verify_failed"]
    assert failed == []
