"""Crash safety, on one replica and on two sharing PostgreSQL: ``kill -9`` (a failpoint's
``os._exit``, or SIGKILL while the API server holds an applied write's answer) at every
named point of the flow, several runs each, a restart on the same state, and Alertmanager's
resend; then exactly one claim with one outcome (a claim that sent nothing is run after
the restart; one that announced its write is settled by observing the API server), and
at most one effective write. And SIGTERM under load: 503 while draining, nothing half
done, exit 0."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.support.clickhouse import ClickHouseServer
from tests.support.kube_api import KubeApiServer
from tests.support.kubeconfig import write_kubeconfig
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.postgres import PostgresServer
from tests.support.process import RemediatorProcess, start_remediator
from tests.support.service import EXAMPLE_RULES, TOKEN, fixture_bytes
from tests.test_kill_query import POLICY
from tests.test_renew_certificate import certificate_rules, expiring

NS = "llm-research"
OPTED_IN = {"remediator.io/allow": "scale_out"}
PAYLOAD = json.dumps(
    webhook_payload(
        webhook_alert(labels={"alertname": "HighCPUUsage", "namespace": NS, "deployment": "api"})
    )
).encode()

RENEW_PAYLOAD = json.dumps(webhook_payload(webhook_alert(labels=expiring()))).encode()

#: Where the crash comes; how many scale writes the API server may then have seen; and the
#: claim's outcome once the restarted process has settled it.
CRASHES = {
    "after_journal_write": (1, "succeeded"),  # acked nothing; the resend and the journal agree
    "before_ack": (1, "succeeded"),
    "before_process": (1, "succeeded"),  # acked; processed after the restart
    "after_claim": (1, "succeeded"),  # claimed, nothing sent: run after the restart, once
    "after_intent": (0, "not_applied"),  # intent durable, nothing sent: observed, escalated
    "side_effect_sent": (1, "succeeded"),  # the PATCH applied, its answer held: observed
    "after_action": (1, "succeeded"),  # acted, outcome lost: observed as applied
    "after_outcome": (1, "succeeded"),  # all recorded: nothing more to do
}
RUNS = 1
HA_RUNS = 1
#: Audit steps that give a claim its outcome: exactly one of them per claim. (A resend that
#: meets the decided episode writes nothing.)
OUTCOME_STEPS = ("acted", "reconciled")


@pytest.fixture
async def kube() -> AsyncIterator[KubeApiServer]:
    async with KubeApiServer(seed=3) as server:
        server.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
        yield server


class SqliteState:
    """The state one replica keeps in its SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.args = ("--state", f"sqlite:///{path}")

    async def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.path) as db:
            return list(db.execute(sql))


class PostgresState:
    """The state replicas share in a PostgreSQL database."""

    def __init__(self, dsn: str) -> None:
        self.args = ("--state", dsn)
        self._dsn = dsn

    async def rows(self, sql: str) -> list[tuple[Any, ...]]:
        connection = await asyncpg.connect(self._dsn)
        try:
            return [tuple(row) for row in await connection.fetch(sql)]
        finally:
            await connection.close()


State = SqliteState | PostgresState


async def claims(state: State) -> list[tuple[int, str | None]]:
    return [(int(r[0]), r[1]) for r in await state.rows("SELECT episode_id, outcome FROM claims")]


async def settled(state: State, within_s: float = 10.0) -> None:
    """Every claim has its outcome (written once its verification ends), within ``within_s``."""
    for _ in range(int(within_s / 0.05)):
        rows = await claims(state)
        if rows and all(outcome is not None for _, outcome in rows):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"claims did not settle: {await claims(state)}")


def scaled(kube: KubeApiServer) -> bool:
    return bool(kube.deployment(NS, "api")["spec"]["replicas"] != 3)


async def crash(
    crashing: RemediatorProcess,
    kube: KubeApiServer,
    failpoint: str,
    payload: bytes = PAYLOAD,
    write: str = r"/scale$",
    landed: Callable[[KubeApiServer], bool] = scaled,
) -> None:
    """Post the alert and see the process die at ``failpoint``. ``side_effect_sent`` is no
    failpoint of ours: the API server applies the PATCH (``write``) and holds its answer,
    and the process is killed with SIGKILL while it waits, once the write ``landed``."""
    if failpoint != "side_effect_sent":
        await crashing.post(payload)
        # The failpoint comes after the action's reads: seconds at the controllers' lags,
        # more on a loaded machine.
        assert await crashing.wait_exit(timeout_s=30) == 137
        return
    kube.inject_fault(write, method="PATCH", drop=True, served=True, delay=60)
    posted = asyncio.create_task(crashing.post(payload))
    for _ in range(400):
        if landed(kube):
            break
        await asyncio.sleep(0.025)
    crashing.proc.kill()
    assert await crashing.wait_exit() == -signal.SIGKILL
    await posted
    kube.clear_faults()


async def crash_and_resend(
    tmp_path: Path,
    rules: Path,
    args: tuple[str, ...],
    failpoint: str,
    crash_it: Callable[[RemediatorProcess], Awaitable[None]],
    payload: bytes,
    settle_s: float = 10.0,
) -> tuple[SqliteState, list[dict[str, Any]]]:
    """One replica on SQLite crashed by ``crash_it`` at ``failpoint``, started again on the
    same state, and given Alertmanager's resend of ``payload``: its state and decisions once
    every claim has its outcome."""
    crashing = await start_remediator(tmp_path, rules=rules, failpoints=failpoint, extra_args=args)
    try:
        await crash_it(crashing)
    finally:
        await crashing.stop()
    state = SqliteState(tmp_path / "state.db")
    service = await start_remediator(tmp_path, rules=rules, extra_args=args)
    try:
        assert await service.post(payload) == 200  # Alertmanager resends
        await settled(state, settle_s)
        await asyncio.sleep(0.3)
        decisions = await service.decisions()
    finally:
        assert await service.stop() == 0
    return state, decisions


async def check_claim(state: State, decisions: list[dict[str, Any]], outcome: str) -> list[str]:
    """One claim with ``outcome``, one outcome record, one decision, and a page exactly when
    the fix is not known to be in place; the steps audited."""
    assert [o for _, o in await claims(state)] == [outcome]
    steps = [d["step"] for d in decisions]
    assert sum(step in OUTCOME_STEPS for step in steps) == 1, steps
    # One decision: the restart's reprocessing and the resend find the episode decided.
    assert (steps.count("received"), steps.count("claimed")) == (1, 1), steps
    escalated = [d["reason"] for d in decisions if d["step"] == "escalated"]
    assert escalated == ([] if outcome == "succeeded" else ["not_applied"])
    return steps


async def check(
    kube: KubeApiServer, state: State, decisions: list[dict[str, Any]], failpoint: str
) -> None:
    """One claim with the outcome the crash point leads to, one outcome record, at most
    one scale write, and a page exactly when the fix is not known to be in place."""
    writes, outcome = CRASHES[failpoint]
    patches = [r for r in kube.requests if r.method == "PATCH" and r.path.endswith("/scale")]
    assert len(patches) == writes
    assert kube.deployment(NS, "api")["spec"]["replicas"] == 3 + 2 * writes
    steps = await check_claim(state, decisions, outcome)
    if "reconciled" in steps and outcome == "succeeded":
        # The fix was observed in place: its follow-up is armed as after a normal run.
        assert await state.rows("SELECT claim_id FROM followups") != []


@pytest.mark.parametrize("run", range(RUNS), ids=[f"run{n}" for n in range(RUNS)])
@pytest.mark.parametrize("failpoint", list(CRASHES))
async def test_a_crash_at_any_point_ends_with_one_claim_one_outcome_and_at_most_one_write(
    tmp_path: Path, kube: KubeApiServer, failpoint: str, run: int
) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
    args = ("--kubeconfig", str(kubeconfig))
    crashing = await start_remediator(
        tmp_path, rules=EXAMPLE_RULES, failpoints=failpoint, extra_args=args
    )
    try:
        await crash(crashing, kube, failpoint)
    finally:
        await crashing.stop()
    state = SqliteState(tmp_path / "state.db")
    service = await start_remediator(tmp_path, rules=EXAMPLE_RULES, extra_args=args)
    try:
        assert await service.post(PAYLOAD) == 200  # Alertmanager resends
        await settled(state)
        await asyncio.sleep(0.3)
        decisions = await service.decisions()
    finally:
        assert await service.stop() == 0
    await check(kube, state, decisions, failpoint)


@pytest.mark.parametrize("run", range(HA_RUNS), ids=[f"run{n}" for n in range(HA_RUNS)])
@pytest.mark.parametrize("failpoint", list(CRASHES))
async def test_a_crash_of_one_of_two_replicas_ends_with_one_claim_and_one_outcome(
    tmp_path: Path, kube: KubeApiServer, pg: PostgresServer, failpoint: str, run: int
) -> None:
    """Replica A crashes at ``failpoint`` and restarts under its name; both replicas then
    get the resend, as behind two Alertmanagers."""
    state = PostgresState(await pg.create_state_database())
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")

    def args(name: str) -> tuple[str, ...]:
        return (*state.args, "--instance-id", name, "--kubeconfig", str(kubeconfig))

    other = await start_remediator(tmp_path / "b", rules=EXAMPLE_RULES, extra_args=args("b"))
    try:
        crashing = await start_remediator(
            tmp_path / "a", rules=EXAMPLE_RULES, failpoints=failpoint, extra_args=args("a")
        )
        try:
            await crash(crashing, kube, failpoint)
        finally:
            await crashing.stop()
        back = await start_remediator(tmp_path / "a", rules=EXAMPLE_RULES, extra_args=args("a"))
        try:
            assert await asyncio.gather(back.post(PAYLOAD), other.post(PAYLOAD)) == [200, 200]
            await settled(state)
            await asyncio.sleep(0.3)
            decisions = await other.decisions()
        finally:
            assert await back.stop() == 0
    finally:
        assert await other.stop() == 0
    await check(kube, state, decisions, failpoint)


@pytest.fixture
async def certificates() -> AsyncIterator[KubeApiServer]:
    async with KubeApiServer(seed=3) as server:
        manager = server.install_cert_manager()
        manager.request_lag_s, manager.issue_lag_s = (0.02, 0.1), (0.05, 0.2)
        opted_in = {"remediator.io/allow": "renew_certificate"}
        manager.add_certificate(NS, "api-tls", annotations=opted_in)
        yield server


def triggered(kube: KubeApiServer) -> bool:
    assert kube.cert_manager is not None
    status = kube.cert_manager.certificate(NS, "api-tls")["status"]
    return status["revision"] != 1 or any(c["type"] == "Issuing" for c in status["conditions"])


#: The crash points its intent decides: those before it (journal, ack, processing, the claim
#: run after a restart) and after the outcome are the same for every action, and the
#: scale-out's runs go through them.
ACT_CRASHES = ("after_intent", "side_effect_sent", "after_action")


@pytest.mark.parametrize("failpoint", ACT_CRASHES)
async def test_a_crash_of_renew_certificate_at_any_point_ends_with_one_claim_and_one_trigger(
    tmp_path: Path, certificates: KubeApiServer, failpoint: str
) -> None:
    """As for a scale-out: the trigger is a status PATCH, observed after a crash by the
    Issuing condition it set or the revision cert-manager issued since."""
    # The alert's own check comes after 300 s, as the scale-out's: not within the test.
    kube, rules = certificates, certificate_rules(tmp_path / "rules", verify_within_s=300)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
    args = ("--kubeconfig", str(kubeconfig))

    async def crash_it(crashing: RemediatorProcess) -> None:
        await crash(crashing, kube, failpoint, RENEW_PAYLOAD, r"/status$", triggered)

    state, decisions = await crash_and_resend(
        tmp_path, rules, args, failpoint, crash_it, RENEW_PAYLOAD
    )
    writes, outcome = CRASHES[failpoint]
    patches = [r for r in kube.requests if r.method == "PATCH" and r.path.endswith("/status")]
    assert len(patches) == writes
    assert kube.cert_manager is not None
    assert kube.cert_manager.certificate(NS, "api-tls")["status"]["revision"] == 1 + writes
    await check_claim(state, decisions, outcome)


async def test_sigterm_under_load_answers_503_while_draining_and_leaves_nothing_half_done(
    tmp_path: Path,
) -> None:
    service = await start_remediator(tmp_path)
    body = fixture_bytes("mixed-1002-alerts-one-resolved.json")
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    statuses: list[int] = []
    refused = 0
    warmed_up = asyncio.Event()

    async def load(session: aiohttp.ClientSession) -> None:
        nonlocal refused
        for _ in range(200):
            try:
                async with session.post(service.webhook_url, data=body, headers=headers) as r:
                    statuses.append(r.status)
                if len(statuses) >= 10:
                    warmed_up.set()
            except aiohttp.ClientError:
                refused += 1  # the listener closed: Alertmanager retries elsewhere or later
                if refused > 20:
                    return
                await asyncio.sleep(0.01)

    try:
        async with aiohttp.ClientSession() as session:
            clients = [asyncio.create_task(load(session)) for _ in range(4)]
            await asyncio.wait_for(warmed_up.wait(), 20)
            service.proc.send_signal(signal.SIGTERM)
            await asyncio.gather(*clients)
        assert await service.wait_exit(30) == 0
    finally:
        await service.stop()
    assert set(statuses) == {200, 503}, statuses  # 503 (never 500) while draining
    with sqlite3.connect(tmp_path / "state.db") as db:
        pending = db.execute("SELECT count(*) FROM journal WHERE done_at IS NULL").fetchone()[0]
        open_claims = db.execute("SELECT count(*) FROM claims WHERE outcome IS NULL").fetchone()[0]
    assert (pending, open_claims) == (0, 0)


#: kill_query on ClickHouse: where the crash comes; whether the chosen query was killed; and
#: the claim's outcome once the restarted process has settled it.
CLICKHOUSE_CRASHES = {
    "after_claim": (True, "succeeded"),  # nothing sent: run after the restart, once
    "after_intent": (False, "not_applied"),  # the query ids durable, no KILL sent: observed
    "after_action": (True, "succeeded"),  # killed, outcome lost: observed as gone
}
CLICKHOUSE_ALERT = json.dumps(
    webhook_payload(webhook_alert(labels={"alertname": "LongRunningQuery"}))
).encode()


@pytest.mark.parametrize("failpoint", list(CLICKHOUSE_CRASHES))
async def test_a_clickhouse_kill_crashed_at_any_point_ends_with_one_outcome_and_one_kill(
    tmp_path: Path, failpoint: str
) -> None:
    killed, outcome = CLICKHOUSE_CRASHES[failpoint]
    async with ClickHouseServer() as ch:
        victim = ch.long_query("app")
        await victim.started()
        (tmp_path / "metrics.dsn").write_text(ch.dsn() + "\n")
        rules = tmp_path / "rules"
        rules.mkdir()
        (rules / "00-policy.yaml").write_text(POLICY)
        (rules / "10-db.yaml").write_text(CLICKHOUSE_RULE)
        args = ("--database", f"metrics=file:{tmp_path / 'metrics.dsn'}")
        await asyncio.sleep(1.1)

        async def crash_it(crashing: RemediatorProcess) -> None:
            await crashing.post(CLICKHOUSE_ALERT)
            assert await crashing.wait_exit() == 137

        state, decisions = await crash_and_resend(
            tmp_path, rules, args, failpoint, crash_it, CLICKHOUSE_ALERT
        )
        still = victim.query_id in await ch.running_ids()
    assert still is not killed
    await check_claim(state, decisions, outcome)


CLICKHOUSE_RULE = """
rules:
  - name: long-running-query
    match: ['alertname="LongRunningQuery"']
    severity: SEV-3
    action: {kind: kill_query, params: {engine: clickhouse, min_duration_s: 1, max_per_run: 5}}
    target: {kind: Database, name: metrics}
    verify_within_s: 5
  - name: default
    match: []
    severity: SEV-3
"""
