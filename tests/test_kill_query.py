"""kill_query against a real PostgreSQL 15 started by the test: real sessions of an
application, a superuser, a replication stream and remediator itself; after each action,
pg_stat_activity says who survived. The races near a query's end are in
``test_kill_query_races``."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from remediator.actions.base import ActionRequest
from remediator.actions.kill_query import KillQuery, KillQueryParams, evidence, select
from remediator.clients.postgres import DatabaseHandle, PostgresTarget, Session
from remediator.core.fingerprint import fingerprint
from remediator.core.model import Target
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.ports import free_port
from tests.support.postgres import Outcome, PostgresServer, Roles, classify
from tests.support.service import ServiceUnderTest, serve, settings_for
from tests.test_cli import remediator

POLICY = """
policy:
  namespaces: [llm-research]
  global_budget: {max_actions: 20, window_s: 3600}
defaults:
  escalation: {SEV-1: page, SEV-2: page, SEV-3: page}
escalations:
  page: {tiers: [{after_s: 0, notify: [oncall]}]}
"""


def rules(directory: Path, params: str, target: str = "primary") -> Path:
    directory.mkdir()
    (directory / "00-policy.yaml").write_text(POLICY)
    (directory / "10-db.yaml").write_text(
        "rules:\n"
        "  - name: long-running-query\n"
        "    match: ['alertname=\"LongRunningQuery\"']\n"
        "    severity: SEV-3\n"
        f"    action: {{kind: kill_query, params: {params}}}\n"
        f"    target: {{kind: Database, name: {target}}}\n"
        "    verify_within_s: 5\n"
        "  - name: default\n"
        "    match: []\n"
        "    severity: SEV-3\n"
    )
    return directory


LONG_QUERY = {"alertname": "LongRunningQuery"}


@dataclass
class Harness:
    service: ServiceUnderTest
    pg: PostgresServer

    async def fire(self) -> list[dict[str, Any]]:
        alert = webhook_alert(labels=LONG_QUERY)
        assert (await self.service.post(webhook_payload(alert)))[0] == 200
        await self.service.settle()
        return await self.service.decisions(fingerprint=fingerprint(LONG_QUERY))


def dsn_file(tmp_path: Path, dsn: str) -> str:
    path = tmp_path / "primary.dsn"
    path.write_text(dsn + "\n")
    return f"file:{path}"


@asynccontextmanager
async def running(
    tmp_path: Path,
    pg: PostgresServer,
    role_dsn: str | None,
    params: str,
    target: str = "primary",
) -> AsyncIterator[Harness]:
    """The service with one kill_query rule; ``role_dsn=None``: no ``--database`` at all."""
    databases = {} if role_dsn is None else {"primary": dsn_file(tmp_path, role_dsn)}
    settings = settings_for(
        tmp_path, rules_dir=rules(tmp_path / "rules", params, target), databases=databases
    )
    async with serve(settings) as service:
        yield Harness(service, pg)


@dataclass
class Statement:
    sql: str
    started_at: float = field(default_factory=time.monotonic)
    outcome: Outcome = Outcome.RUNNING
    done_at: float | None = None
    """``time.monotonic()`` when the client had its answer (result or error)."""


@dataclass
class AppClient:
    """An application's connection running statements one after another in a task."""

    conn: Any
    statements: list[Statement] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return int(self.conn.get_server_pid())

    @classmethod
    async def connect(cls, pg: PostgresServer, roles: Roles, **kwargs: Any) -> AppClient:
        app = roles.app
        return cls(await pg.connect(app.name, app.password, roles.app_database, **kwargs))

    async def execute(self, sql: str) -> Statement:
        statement = Statement(sql)
        self.statements.append(statement)
        try:
            await self.conn.execute(sql)
        except Exception as exc:
            statement.outcome = classify(exc)
        else:
            statement.outcome = Outcome.COMPLETED
        statement.done_at = time.monotonic()
        return statement

    def start(self, *sqls: str, then: Callable[[int], str] | None = None) -> None:
        """Run ``sqls``, then ``then(0)``, ``then(1)``, … until the connection goes."""

        async def run() -> None:
            more = (then(i) for i in itertools.count()) if then else ()
            for sql in itertools.chain(sqls, more):
                if (await self.execute(sql)).outcome is Outcome.TERMINATED:
                    return

        self.task = asyncio.create_task(run())

    async def close(self) -> None:
        self.conn.terminate()
        if self.task is not None:
            await asyncio.wait([self.task], timeout=5)


@asynccontextmanager
async def app_clients(
    pg: PostgresServer, roles: Roles, n: int = 1
) -> AsyncIterator[list[AppClient]]:
    clients = [await AppClient.connect(pg, roles) for _ in range(n)]
    try:
        yield clients
    finally:
        for client in clients:
            await client.close()


@asynccontextmanager
async def kill_query(pg: PostgresServer, roles: Roles) -> AsyncIterator[tuple[KillQuery, Any]]:
    """The action itself on target ``primary`` as the remediator role, and that target."""
    handle = DatabaseHandle()
    handle.targets = {"primary": PostgresTarget("primary", remediator_dsn(pg, roles))}
    try:
        yield KillQuery(handle), handle.targets["primary"]
    finally:
        await handle.close()


def remediator_dsn(pg: PostgresServer, roles: Roles) -> str:
    return pg.dsn(roles.remediator.name, roles.remediator.password)


def request(**params: Any) -> ActionRequest[Any, Any]:
    model = KillQueryParams.model_validate(params)
    return ActionRequest(Target("Database", "", "primary"), model, "rule", 1, {})


def steps(decisions: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(d["step"], d["reason"]) for d in decisions]


ACTIVE = "{min_duration_s: 1, max_per_run: 5, states: [active], grace_s: 1}"


async def test_only_the_applications_long_query_is_cancelled_and_everyone_else_survives(
    tmp_path: Path, pg: PostgresServer, roles: Roles
) -> None:
    app, rem, rep = roles.app, roles.remediator, roles.replicator
    victim = await pg.long_query(app.name, app.password, "appdb", 60)
    idle = await pg.idle_in_transaction(app.name, app.password, "appdb")
    superuser = await pg.superuser_long_query(60)
    stream = await pg.replication_stream(rep.name, rep.password)
    for session in (victim, superuser):
        await session.started()
    await asyncio.sleep(1.2)  # every query is now older than min_duration_s
    async with running(tmp_path, pg, pg.dsn(rem.name, rem.password), ACTIVE) as harness:
        decisions = await harness.fire()
        own = await pg.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'remediator'"
        )
    assert steps(decisions)[2:] == [("claimed", None), ("acted", None), ("verified", None)]
    assert await victim.finished() is Outcome.CANCELLED
    assert (await pg.activity(victim.pid) or {}).get("state") == "idle"  # the session lives on
    assert (await pg.activity(superuser.pid) or {}).get("state") == "active"
    assert (await pg.activity(idle.pid) or {}).get("state") == "idle in transaction"
    assert await stream.alive()
    assert own, "remediator's own pool was connected while it acted"
    [row] = decisions[3]["details"]["sessions"]
    assert (row["pid"], row["user"], row["cancelled"]) == (victim.pid, "app", True)
    assert row["query"] == "SELECT pg_sleep(?)"


async def test_an_idle_transaction_ignores_cancel_and_is_terminated_after_the_grace(
    tmp_path: Path, pg: PostgresServer, roles: Roles
) -> None:
    app, rem = roles.app, roles.remediator
    idle = await pg.idle_in_transaction(app.name, app.password, "appdb")
    await idle.started()
    await asyncio.sleep(1.2)
    params = (
        "{min_duration_s: 1, max_per_run: 5, states: [idle in transaction],"
        " terminate: true, grace_s: 0.5}"
    )
    async with running(tmp_path, pg, pg.dsn(rem.name, rem.password), params) as harness:
        decisions = await harness.fire()
    [row] = decisions[3]["details"]["sessions"]
    assert (row["cancelled"], row["terminated"]) == (True, True)
    await idle.wait_connection_closed()
    await pg.wait_gone(idle.pid)


async def test_max_per_run_signals_only_the_oldest_sessions(
    tmp_path: Path, pg: PostgresServer, roles: Roles
) -> None:
    app, rem = roles.app, roles.remediator
    sessions = []
    for _ in range(3):
        session = await pg.long_query(app.name, app.password, "appdb", 60)
        await session.started()
        sessions.append(session)
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.2)
    params = "{min_duration_s: 1, max_per_run: 2, states: [active]}"
    async with running(tmp_path, pg, pg.dsn(rem.name, rem.password), params) as harness:
        decisions = await harness.fire()
    assert [r["pid"] for r in decisions[3]["details"]["sessions"]] == [s.pid for s in sessions[:2]]
    assert [await s.finished() for s in sessions[:2]] == [Outcome.CANCELLED] * 2
    assert (await pg.activity(sessions[2].pid) or {}).get("state") == "active"


async def test_a_session_that_moved_on_to_a_new_query_is_not_hit(
    pg: PostgresServer, roles: Roles
) -> None:
    app, rem = roles.app, roles.remediator
    switcher = await pg.query_then_new_query(app.name, app.password, "appdb", 60)
    await switcher.started()
    await asyncio.sleep(1.2)
    target = PostgresTarget("primary", pg.dsn(rem.name, rem.password))
    try:
        [chosen] = select(
            await target.sessions(1, ["active"]), KillQueryParams(min_duration_s=1, max_per_run=5)
        )
        assert chosen.pid == switcher.pid
        row = await switcher.switch()  # same pid, a new query with a new query_start
        assert await target.signal(chosen, "cancel") is False
        assert await target.signal(chosen, "terminate") is False
        after = await pg.activity(switcher.pid)
        assert after is not None and after["query_start"] == row["query_start"]
        assert after["state"] == "active"
    finally:
        await target.close()


async def test_a_database_that_is_down_means_a_refusal_an_escalation_and_no_crash(
    tmp_path: Path, pg: PostgresServer, roles: Roles
) -> None:
    down = f"postgresql://remediator:x@127.0.0.1:{free_port()}/postgres"
    async with running(tmp_path, pg, down, ACTIVE) as harness:
        decisions = await harness.fire()
        status, _ = await harness.service.post(webhook_payload(webhook_alert()))
    assert steps(decisions)[3:] == [("refused", "api_error"), ("escalated", "api_error")]
    assert "database target 'primary'" in decisions[3]["sentence"]
    assert status == 200


async def test_an_unknown_target_name_is_a_refusal_not_a_guess(
    tmp_path: Path, pg: PostgresServer, roles: Roles
) -> None:
    rem = roles.remediator
    async with running(tmp_path, pg, pg.dsn(rem.name, rem.password), ACTIVE, "reports") as harness:
        decisions = await harness.fire()
    assert steps(decisions)[3] == ("refused", "target_gone")
    assert decisions[3]["sentence"] == (
        "No database target named 'reports' is configured (configured: primary)."
    )


async def test_a_role_that_cannot_see_other_sessions_queries_is_refused_clearly(
    tmp_path: Path, pg: PostgresServer, roles: Roles
) -> None:
    await pg.execute("CREATE ROLE weak LOGIN PASSWORD 'weak-secret' IN ROLE pg_signal_backend")
    victim = await pg.long_query(roles.app.name, roles.app.password, "appdb", 60)
    await victim.started()
    async with running(tmp_path, pg, pg.dsn("weak", "weak-secret"), ACTIVE) as harness:
        decisions = await harness.fire()
    assert steps(decisions)[3] == ("refused", "precheck_failed")
    assert "cannot see other sessions' queries" in decisions[3]["sentence"]
    assert (await pg.activity(victim.pid) or {}).get("state") == "active"


# --------------------------------------------------------------------------- as the server answers

TERMINATING = "{min_duration_s: 1, max_per_run: 5, states: [active], terminate: true, grace_s: 1}"


async def test_a_query_cancelled_inside_a_transaction_is_not_then_terminated(
    tmp_path: Path, pg: PostgresServer, roles: Roles
) -> None:
    """Cancelled, the session is ``idle in transaction (aborted)`` with the same
    ``query_start``: the query chosen no longer runs, so the grace ends without a terminate."""
    async with app_clients(pg, roles) as [client]:
        client.start("BEGIN", "SELECT pg_sleep(3600)")
        await pg.wait_for_activity(
            client.pid, lambda row: row["state"] == "active", what="the sleep to run"
        )
        await asyncio.sleep(1.2)
        async with running(tmp_path, pg, remediator_dsn(pg, roles), TERMINATING) as harness:
            decisions = await harness.fire()
            await asyncio.sleep(0.5)
            after = await pg.activity(client.pid)
        [row] = decisions[3]["details"]["sessions"]
        assert (row["cancelled"], row["terminated"]) == (True, False)
        assert after is not None and after["state"] == "idle in transaction (aborted)"
        assert not client.conn.is_closed()
        assert steps(decisions)[4] == ("verified", None)


async def test_an_idle_transaction_is_as_old_as_its_idling_not_its_last_query(
    pg: PostgresServer, roles: Roles
) -> None:
    """``BEGIN; SELECT pg_sleep(2.5)`` then a moment idle: not 2 s idle, whatever
    ``query_start`` says; chosen once it has idled 2 s, with the idling as its age."""
    idle_states = ["idle in transaction"]
    async with app_clients(pg, roles) as [client], kill_query(pg, roles) as (_, target):
        client.start("BEGIN", "SELECT pg_sleep(2.5)")
        # Idle after the sleep, not in the moment between BEGIN and the sleep.
        row = await pg.wait_for_activity(
            client.pid,
            lambda r: r["state"] == "idle in transaction" and r["query"] == "SELECT pg_sleep(2.5)",
            what="idle after the sleep",
            timeout_s=5,
        )
        assert [s.pid for s in await target.sessions(2, idle_states)] == []
        await asyncio.sleep(2.1)
        [seen] = await target.sessions(2, idle_states)
        assert (seen.pid, seen.state_change) == (client.pid, row["state_change"])
        assert 2 <= seen.age_s < 3, seen.age_s


async def test_an_application_that_names_itself_remediator_is_not_spared(
    tmp_path: Path, pg: PostgresServer, roles: Roles
) -> None:
    app = roles.app
    victim = await pg.long_query(app.name, app.password, "appdb", 60, application_name="remediator")
    await victim.started()
    await asyncio.sleep(1.2)
    async with running(tmp_path, pg, remediator_dsn(pg, roles), ACTIVE) as harness:
        decisions = await harness.fire()
    assert await victim.finished() is Outcome.CANCELLED
    [row] = decisions[3]["details"]["sessions"]
    assert (row["pid"], row["application"]) == (victim.pid, "remediator")


async def test_no_database_configured_at_all_is_the_unknown_target_refusal_not_a_dry_run(
    tmp_path: Path, pg: PostgresServer
) -> None:
    async with running(tmp_path, pg, None, ACTIVE) as harness:
        decisions = await harness.fire()
    assert steps(decisions)[3] == ("refused", "target_gone")
    assert decisions[3]["sentence"] == (
        "No database target named 'primary' is configured (configured: none)."
    )


def test_a_dsn_whose_port_is_no_tcp_port_stops_serve_with_one_sentence(tmp_path: Path) -> None:
    """Exit 2, and the sentence is stderr's only line: checked before anything starts."""
    dsn, token = tmp_path / "primary.dsn", tmp_path / "token"
    dsn.write_text("postgresql://remediator:secret@127.0.0.1:99999/postgres\n")
    token.write_text("t\n")
    result = remediator(
        "serve", "--token-file", str(token), "--state", f"sqlite:///{tmp_path}/s.db",
        "--listen", "127.0.0.1:0", "--database", f"primary=file:{dsn}",
    )  # fmt: skip
    assert (result.returncode, "Traceback" in result.stderr) == (2, False), result.stderr
    assert result.stderr.splitlines() == [
        "remediator: database target 'primary': its DSN's port 99999 is not a TCP port (1 to 65535)"
    ]
    assert "secret" not in result.stderr


def moved_from(query_start: datetime) -> Callable[[dict[str, Any]], bool]:
    return lambda row: row["query_start"] != query_start


async def test_a_session_turning_queries_over_at_the_threshold_is_not_signalled(
    pg: PostgresServer, roles: Roles
) -> None:
    """Queries of 1.2 s back to back, a rule of 1 s: one is chosen in its last 0.2 s and
    has ended by the second read, so precheck refuses and nothing is cancelled."""
    async with app_clients(pg, roles) as [client], kill_query(pg, roles) as (action, _):
        client.start(then=lambda i: f"SELECT pg_sleep(1.2) AS q_{i}")
        sentences = []
        for _ in range(3):
            row = await pg.wait_for_activity(
                client.pid, lambda r: r["state"] == "active", what="a query"
            )
            started = row["query_start"]
            age = (await pg.fetchval("SELECT now() - $1::timestamptz", started)).total_seconds()
            await asyncio.sleep(max(0.0, 1.05 - age))
            checked = await action.precheck(request(min_duration_s=1, max_per_run=5))
            assert not checked.verdict.allowed
            sentences.append(checked.verdict.sentence)
            await pg.wait_for_activity(client.pid, moved_from(started), what="the next query")
        assert all("changed within 0.25 s" in s for s in sentences), sentences
        assert {s.outcome for s in client.statements[:-1]} == {Outcome.COMPLETED}


async def test_a_session_that_showed_another_query_after_the_cancel_is_audited_as_maybe_missed(
    tmp_path: Path, pg: PostgresServer, roles: Roles
) -> None:
    """An application that starts its next query the moment one is cancelled: the check
    after the cancel sees another ``query_start``, which a cancel landing on the next query
    would look like too; the audit says so, naming the pid."""
    async with app_clients(pg, roles) as [client]:
        client.start(then=lambda i: f"SELECT pg_sleep(60) AS q_{i}")
        await pg.wait_for_activity(client.pid, lambda r: r["state"] == "active", what="q_0")
        await asyncio.sleep(1.2)
        async with running(tmp_path, pg, remediator_dsn(pg, roles), ACTIVE) as harness:
            decisions = await harness.fire()
        [row] = decisions[3]["details"]["sessions"]
        assert (row["cancelled"], row["moved_on"]) == (True, True)
        assert abs(row["next_query_after_s"]) < 1  # a retry at once: no verdict, a figure
        assert f"{client.pid} ({row['next_query_after_s']:+g} s)" in decisions[3]["sentence"]
        assert [s.outcome for s in client.statements[:1]] == [Outcome.CANCELLED]
        assert steps(decisions)[4] == ("verified", None)


def session(**overrides: Any) -> Session:
    base: dict[str, Any] = {
        "pid": 1, "user": "app", "database": "appdb", "application": "web", "state": "active",
        "backend_start": datetime(2026, 11, 28, tzinfo=UTC),
        "query_start": datetime(2026, 11, 28, 0, 1, tzinfo=UTC),
        "query": "SELECT * FROM t WHERE email = 'a@b.c' AND id = 42", "age_s": 600.0,
    }  # fmt: skip
    base.update(overrides)
    return Session(**base)


@pytest.mark.parametrize(
    ("params", "chosen"),
    [
        ({}, True),
        ({"min_duration_s": 601}, False),
        ({"states": ["idle in transaction"]}, False),
        ({"databases": ["other"]}, False),
        ({"deny_databases": ["appdb"]}, False),
        ({"users": ["app"]}, True),
        ({"deny_users": ["app"]}, False),
        ({"applications": ["batch"]}, False),
        ({"deny_applications": ["web"]}, False),
        ({"query_pattern": "FROM t "}, True),
        ({"query_pattern": "^UPDATE"}, False),
    ],
)
def test_rule_filters_choose_or_spare_a_session(params: dict[str, Any], chosen: bool) -> None:
    rule = KillQueryParams.model_validate({"min_duration_s": 60, "max_per_run": 5, **params})
    assert bool(select([session()], rule)) is chosen


def test_evidence_redacts_literals_and_truncates_the_query() -> None:
    row = evidence(session(query="SELECT '" + "x" * 500 + "', 7"), redact=True)
    assert row.query == "SELECT '?', ?"
    assert evidence(session(), redact=False).query.endswith("id = 42")


def test_a_query_pattern_python_has_and_re2_has_not_is_refused_with_the_reason() -> None:
    with pytest.raises(ValidationError) as caught:
        KillQueryParams.model_validate(
            {"min_duration_s": 60, "max_per_run": 5, "query_pattern": r"(SELECT) \1"}
        )
    assert "backreference" in str(caught.value)


def test_a_backtracking_pattern_cannot_be_made_slow_by_a_clients_query_text() -> None:
    """Any database client writes query text; RE2 matches it in linear time."""
    rule = KillQueryParams.model_validate(
        {"min_duration_s": 60, "max_per_run": 5, "query_pattern": r"^(a+)+$"}
    )
    timings = []
    for size in (10_000, 100_000):
        hostile = session(query="a" * size + "!")
        started = time.perf_counter()
        assert select([hostile], rule) == []
        timings.append(time.perf_counter() - started)
    assert timings[1] < 0.5 and timings[1] < 40 * max(timings[0], 1e-4)
