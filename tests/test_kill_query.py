"""kill_query against a real PostgreSQL 15 started by the test: real sessions of an
application, a superuser, a replication stream and remediator itself; after each action,
pg_stat_activity says who survived."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from remediator.actions.kill_query import KillQueryParams, evidence, select
from remediator.clients.postgres import PostgresTarget, Session
from remediator.core.fingerprint import fingerprint
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.ports import free_port
from tests.support.postgres import Outcome, PostgresServer, Roles
from tests.support.service import ServiceUnderTest, serve, settings_for

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
    tmp_path: Path, pg: PostgresServer, role_dsn: str, params: str, target: str = "primary"
) -> AsyncIterator[Harness]:
    settings = settings_for(
        tmp_path,
        rules_dir=rules(tmp_path / "rules", params, target),
        databases={"primary": dsn_file(tmp_path, role_dsn)},
    )
    async with serve(settings) as service:
        yield Harness(service, pg)


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
