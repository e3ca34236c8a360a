"""kill_query with ``engine: clickhouse`` against a real ClickHouse (Debian's 18.16) started by
the test: real queries of applications, of a ``system`` user, of remediator's own user and
with remediator's query-id prefix; after each action, ``system.processes`` says which still
run. Hostile peers (down, slow, huge or broken answers) are aiohttp servers of the test's."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from remediator.actions.base import ActionRequest, Checked, VerifyResult
from remediator.actions.kill_query import KillQuery
from remediator.actions.kill_query_clickhouse import (
    ClickHouseKillFacts,
    ClickHouseKillIntent,
    ClickHouseKillParams,
    ClickHouseKillQuery,
    evidence,
    query_kind,
)
from remediator.actions.registry import default_registry
from remediator.clients.clickhouse import (
    MAX_ANSWER_BYTES,
    ClickHouseTarget,
    check_dsn,
    literal,
)
from remediator.clients.postgres import DatabaseHandle, checked_dsns
from remediator.core.errors import ConfigError, Forbidden, RuleFileError, Transient
from remediator.core.fingerprint import fingerprint
from remediator.core.model import StopReason, Target
from remediator.ruleset.load import load_rules
from tests.support.clickhouse import USERS, ClickHouseServer, Outcome
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.ports import free_port
from tests.support.service import ServiceUnderTest, serve, settings_for
from tests.test_kill_query import LONG_QUERY, POLICY, steps
from tests.test_rules_load import write_rules

TARGET = Target("Database", "", "metrics")
SELECTS = {"engine": "clickhouse", "min_duration_s": 1, "max_per_run": 5}


@pytest.fixture
async def ch() -> AsyncIterator[ClickHouseServer]:
    async with ClickHouseServer() as server:
        yield server


@asynccontextmanager
async def action_on(dsn: str) -> AsyncIterator[tuple[ClickHouseKillQuery, ClickHouseTarget]]:
    """kill_query for ClickHouse on target ``metrics`` at ``dsn``, and that target."""
    handle = DatabaseHandle()
    handle.clickhouse = {"metrics": ClickHouseTarget("metrics", dsn)}
    try:
        yield ClickHouseKillQuery(handle), handle.clickhouse["metrics"]
    finally:
        await handle.close()


def request(**params: Any) -> ActionRequest[Any, Any]:
    model = ClickHouseKillParams.model_validate({**SELECTS, **params})
    return ActionRequest(TARGET, model, "rule", 1, {}, verify_within_s=5)


async def precheck_and_run(
    action: ClickHouseKillQuery, req: ActionRequest[Any, Any]
) -> tuple[Checked[ClickHouseKillFacts], dict[str, Any]]:
    checked = await action.precheck(req)
    assert checked.facts is not None, checked.verdict.sentence
    result = await action.run(req, checked.facts)
    assert await action.verify(req, result) is VerifyResult.VERIFIED
    return checked, {"sentence": result.sentence, **result.details}


async def test_only_the_applications_long_select_is_killed_and_everyone_else_runs_on(
    ch: ClickHouseServer,
) -> None:
    victim = ch.query(
        "SELECT count() FROM (SELECT sleepEachRow(0.5) FROM numbers(120))"
        " WHERE 'customer-secret' != '' AND 42 > 1"
    )
    protected = ch.long_query("system")
    ours = ch.long_query("remediator")
    prefixed = ch.long_query("app", query_id="remediator-not-really-ours")
    insert = ch.long_insert("etl")
    young = None
    for query in (victim, protected, ours, prefixed, insert):
        await query.started()
    await asyncio.sleep(1.2)
    young = ch.long_query("app")  # younger than min_duration_s
    await young.started()
    async with action_on(ch.dsn()) as (action, _):
        _, details = await precheck_and_run(action, request(min_duration_s=1.1))
    assert await victim.finished() is Outcome.CANCELLED
    running = await ch.running_ids()
    for survivor in (protected, ours, prefixed, insert, young):
        assert survivor.query_id in running, survivor.user
    [row] = details["queries"]
    assert (row["query_id"], row["user"], row["kind"], row["killed"]) == (
        victim.query_id, "app", "Select", True,
    )  # fmt: skip
    assert row["kill_status"] == "waiting"  # ASYNC by default
    assert "customer-secret" not in row["query"] and "42" not in row["query"]
    assert row["query"].endswith("WHERE '?' != '?' AND ? > ?")
    assert details["sentence"] == (
        "On 'metrics': killed 1 of 1 queries chosen (max 5, KILL QUERY ASYNC)."
    )


async def test_an_insert_is_killed_only_by_a_rule_that_allows_inserts(
    ch: ClickHouseServer,
) -> None:
    insert = ch.long_insert("etl")
    await insert.started()
    await asyncio.sleep(1.2)
    async with action_on(ch.dsn()) as (action, _):
        for kinds in (["Select"], ["Select", "Other", "Create"]):
            refused = await action.precheck(request(query_kinds=kinds))
            assert refused.verdict.reason is StopReason.PRECHECK_FAILED
        # allow_insert alone does not make an INSERT a Select: the kinds still choose.
        assert (await action.precheck(request(allow_insert=True))).facts is None
        _, details = await precheck_and_run(
            action, request(allow_insert=True, query_kinds=["Insert"], sync=True)
        )
    assert await insert.finished() is Outcome.CANCELLED
    [row] = details["queries"]
    assert (row["kind"], row["killed"], row["kill_status"]) == ("Insert", True, "finished")
    assert row["written_rows"] > 0


async def test_users_deny_users_pattern_and_max_per_run_choose_the_longest_first(
    ch: ClickHouseServer,
) -> None:
    queries = []
    for _ in range(3):
        queries.append(ch.long_query("app"))
        await queries[-1].started()
        await asyncio.sleep(0.2)
    etl = ch.long_query("etl")
    await etl.started()
    await asyncio.sleep(1.2)
    async with action_on(ch.dsn()) as (action, _):
        assert (await action.precheck(request(users=["nobody"]))).facts is None
        assert (await action.precheck(request(query_pattern=r"numbers\(7\)"))).facts is None
        denied = await action.precheck(request(deny_users=["app"], min_duration_s=1.2))
        assert denied.facts is not None
        assert [p.user for p in denied.facts.processes] == ["etl"]
        _, details = await precheck_and_run(
            action, request(users=["app"], max_per_run=2, query_pattern=r"sleepEachRow\(0\.5\)")
        )
    assert [r["query_id"] for r in details["queries"]] == [q.query_id for q in queries[:2]]
    assert [await q.finished() for q in queries[:2]] == [Outcome.CANCELLED] * 2
    running = await ch.running_ids()
    assert {queries[2].query_id, etl.query_id} <= running


async def test_a_query_that_ended_between_the_choice_and_the_kill_is_not_hit_nor_its_id_reused(
    ch: ClickHouseServer,
) -> None:
    chosen = ch.long_query("app", query_id="nightly-report")
    await chosen.started()
    await asyncio.sleep(1.2)
    async with action_on(ch.dsn()) as (action, target):
        req = request()
        checked = await action.precheck(req)
        assert checked.facts is not None
        [process] = checked.facts.processes
        await ch.execute("KILL QUERY WHERE query_id = 'nightly-report' SYNC")  # it ends
        assert await chosen.finished() is Outcome.CANCELLED
        # The client runs its report again under the same id, as a scheduler would.
        again = ch.long_query("app", query_id="nightly-report")
        await again.started()
        result = await action.run(req, checked.facts)
        assert await target.kill(process, "SYNC") is None
        assert await target.still_running([process]) == set()
    [row] = result.details["queries"]
    assert (row["query_id"], row["killed"]) == ("nightly-report", False)
    assert "kill_status" not in row
    assert result.sentence == (
        "On 'metrics': killed 0 of 1 queries chosen (max 5, KILL QUERY ASYNC). 1 had ended,"
        " or its id named another query, by the kill: the re-check let it alone."
    )
    assert again.outcome is Outcome.RUNNING
    assert "nightly-report" in await ch.running_ids()


async def test_reconcile_counts_a_chosen_query_as_killed_only_once_it_no_longer_runs(
    ch: ClickHouseServer,
) -> None:
    victim = ch.long_query("app")
    await victim.started()
    await asyncio.sleep(1.1)
    async with action_on(ch.dsn()) as (action, target):
        [process] = [p for p in await target.processes(1) if p.query_id == victim.query_id]
        intent = ClickHouseKillIntent(queries=[evidence(process, redact=True)])
        still = await action.reconcile(request(), intent)
        assert (still.applied, still.sentence) == (
            False,
            "On 'metrics', 0 of the 1 queries chosen no longer run: none was killed.",
        )
        assert await target.kill(intent.queries[0].process(), "SYNC") is not None
        gone = await action.reconcile(request(), intent)
    assert gone.applied is True and gone.result is not None
    assert gone.sentence == "On 'metrics', 1 of the 1 queries chosen no longer run."


async def test_odd_unicode_in_query_text_is_matched_redacted_and_audited_intact(
    ch: ClickHouseServer,
) -> None:
    odd = "ﬁ\u202e\u0301😀\u200b"
    victim = ch.query(
        f"SELECT count() FROM (SELECT sleepEachRow(0.5) FROM numbers(120)) /* {odd} */"
        f" WHERE '{odd}\\'' != ''"
    )
    await victim.started()
    await asyncio.sleep(1.2)
    async with action_on(ch.dsn()) as (action, _):
        _, details = await precheck_and_run(action, request(query_pattern="😀\u200b"))
    [row] = details["queries"]
    assert f"/* {odd} */ WHERE '?' != '?'" in row["query"]
    assert await victim.finished() is Outcome.CANCELLED


async def test_a_readonly_user_cannot_kill_and_a_wrong_password_never_shows(
    ch: ClickHouseServer,
) -> None:
    victim = ch.long_query("app")
    await victim.started()
    await asyncio.sleep(1.1)
    async with action_on(ch.dsn("readonly_remediator")) as (action, target):
        with pytest.raises(Forbidden) as readonly:
            await action.precheck(request())
    assert str(readonly.value) == (
        "ClickHouse target 'metrics' refused: Code: 164, e.displayText() = DB::Exception:"
        " Cannot override setting (max_execution_time) in readonly mode, e.what() ="
        " DB::Exception"
    )
    assert victim.outcome is Outcome.RUNNING
    wrong = ch.dsn().replace(USERS["remediator"], "not-the-password-xyz")
    async with action_on(wrong) as (action, target):
        with pytest.raises(Forbidden) as raised:
            await target.processes(1)
    assert "Wrong password for user remediator" in str(raised.value)
    assert "not-the-password-xyz" not in str(raised.value)


async def test_the_service_kills_with_engine_clickhouse_and_refuses_the_wrong_engine(
    tmp_path: Path, ch: ClickHouseServer
) -> None:
    victim = ch.long_query("app")
    await victim.started()
    await asyncio.sleep(1.2)
    async with running(tmp_path / "ch", ch.dsn(), "{engine: clickhouse, min_duration_s: 1,"
                       " max_per_run: 5}") as harness:  # fmt: skip
        decisions = await harness.fire()
    assert steps(decisions)[2:] == [("claimed", None), ("acted", None), ("verified", None)]
    assert await victim.finished() is Outcome.CANCELLED
    [row] = decisions[3]["details"]["queries"]
    assert (row["query_id"], row["killed"]) == (victim.query_id, True)
    other = ch.long_query("app")
    await other.started()
    async with running(tmp_path / "pg", ch.dsn(), "{min_duration_s: 1, max_per_run: 5}") as h:
        refused = await h.fire()
    assert steps(refused)[2:4] == [("claimed", None), ("refused", StopReason.PRECHECK_FAILED)]
    assert refused[3]["sentence"] == (
        "Database target 'metrics' is ClickHouse, but the rule's kill_query is PostgreSQL's"
        " (give it engine: clickhouse); nothing was signalled."
    )
    assert other.query_id in await ch.running_ids()


@dataclass
class Harness:
    service: ServiceUnderTest

    async def fire(self) -> list[dict[str, Any]]:
        alert = webhook_alert(labels=LONG_QUERY)
        assert (await self.service.post(webhook_payload(alert)))[0] == 200
        await self.service.settle()
        return await self.service.decisions(fingerprint=fingerprint(LONG_QUERY))


@asynccontextmanager
async def running(tmp_path: Path, dsn: str | None, params: str) -> AsyncIterator[Harness]:
    tmp_path.mkdir()
    rules = tmp_path / "rules"
    write_rules(rules, {"00-policy.yaml": POLICY, "10-db.yaml": RULE.format(params=params)})
    databases = {}
    if dsn is not None:
        (tmp_path / "metrics.dsn").write_text(dsn + "\n")
        databases = {"metrics": f"file:{tmp_path / 'metrics.dsn'}"}
    settings = settings_for(tmp_path, rules_dir=rules, databases=databases)
    async with serve(settings) as service:
        yield Harness(service)


RULE = """
rules:
  - name: long-running-query
    match: ['alertname="LongRunningQuery"']
    severity: SEV-3
    action: {{kind: kill_query, params: {params}}}
    target: {{kind: Database, name: metrics}}
    verify_within_s: 5
  - name: default
    match: []
    severity: SEV-3
"""


# ------------------------------------------------------------------------ hostile peers


async def _peer(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.AppRunner:
    app = web.Application()
    app.router.add_post("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    return runner


@asynccontextmanager
async def fake_clickhouse(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    """An HTTP server on a free loopback port answering every POST with ``handler``."""
    runner = await _peer(handler)
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"clickhouse+http://remediator:pw-1234@127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def rows(*items: dict[str, Any]) -> str:
    return "".join(json.dumps(item) + "\n" for item in items)


ROW = {"query_id": "q1", "user": "app", "address": "10.0.0.1", "elapsed": 5.0, "query": "SELECT 1",
       "query_hash": 1, "read_rows": 0, "written_rows": 0, "memory_usage": 0}  # fmt: skip


async def _slow(request: web.Request) -> web.Response:
    # Past the client's 5 s, and no longer: the server's cleanup waits for this handler.
    await asyncio.sleep(5.5)
    return web.Response(text="")


async def _huge(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    chunk = rows(ROW).encode() * 2000
    for _ in range(MAX_ANSWER_BYTES // len(chunk) + 2):
        await response.write(chunk)
    return response


def _answer(text: str, status: int = 200) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=text, status=status)

    return handler


HOSTILE = [
    ("slow", _slow, "ClickHouse target 'metrics' at 127.0.0.1:{port}: SocketTimeoutError:"
     " Timeout on reading data from socket"),
    ("huge", _huge, f"ClickHouse target 'metrics' answered more than {MAX_ANSWER_BYTES} bytes"),
    ("not json", _answer("<html>proxy error</html>"),
     "ClickHouse target 'metrics' answered what is not JSON rows"),
    ("infinite elapsed", _answer(rows(ROW).replace("5.0", "1e400")),
     "ClickHouse target 'metrics' answered a row we cannot read: elapsed is not a number of"
     " seconds from 0 to 3.1536e+08"),
    ("2**70 rows read", _answer(rows({**ROW, "read_rows": 2**70})),
     "ClickHouse target 'metrics' answered a row we cannot read: read_rows is not an integer"
     " from 0 to 18446744073709551615"),
    ("a number for a user", _answer(rows({**ROW, "user": 7})),
     "ClickHouse target 'metrics' answered a row we cannot read: user is not a string"),
    ("a list for a row", _answer("[1, 2]\n"),
     "ClickHouse target 'metrics' answered a row we cannot read: a row is not an object"),
    ("a 500 with a long error", _answer("Code: 241, e.displayText() = Memory limit " + "x" * 5000,
                                        500),
     "ClickHouse target 'metrics' answered 500: "
     + ("Code: 241, e.displayText() = Memory limit " + "x" * 5000)[:200]),
    ("a 403 proxy", _answer("denied", 403), "ClickHouse target 'metrics' refused: denied"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "handler", "message"), HOSTILE, ids=[h[0] for h in HOSTILE])
async def test_a_hostile_server_is_a_clear_error_and_nothing_is_killed(
    case: str, handler: Any, message: str
) -> None:
    async with fake_clickhouse(handler) as dsn, action_on(dsn) as (action, _):
        port = dsn.rpartition(":")[2]
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises((Transient, Forbidden)) as raised:
            await action.precheck(request())
        assert loop.time() - started < 7.0  # bounded: 5 s at most, whatever the peer does
    assert str(raised.value) == message.format(port=port)
    assert "pw-1234" not in str(raised.value)


async def test_a_server_that_is_down_is_transient_and_names_no_password() -> None:
    port = free_port()
    async with action_on(f"clickhouse+http://remediator:pw-1234@127.0.0.1:{port}") as (_, t):
        with pytest.raises(Transient) as raised:
            await t.processes(1)
    assert str(raised.value).startswith(
        f"ClickHouse target 'metrics' at 127.0.0.1:{port}: ClientConnectorError:"
    )
    assert "pw-1234" not in str(raised.value)


BAD_DSNS = [
    ("clickhouse://u:p@host:9000",
     "database target 'metrics': a ClickHouse DSN must be a clickhouse+http:// or"
     " clickhouse+https:// URL (not 'clickhouse')"),
    ("clickhouse+http://u:p@host:99999",
     "database target 'metrics': its ClickHouse DSN is not a URL with a TCP port (1 to 65535):"
     " Port out of range 0-65535"),
    ("clickhouse+http://u:p@host:http",
     "database target 'metrics': its ClickHouse DSN is not a URL with a TCP port (1 to 65535):"
     " Port could not be cast to integer value as 'http'"),
    ("clickhouse+http://u:p@:8123", "database target 'metrics': its ClickHouse DSN names no host"),
    ("clickhouse+http://u:p@host:0", "database target 'metrics': its ClickHouse DSN's port 0 is"
     " no TCP port"),
]  # fmt: skip


@pytest.mark.parametrize(("dsn", "message"), BAD_DSNS, ids=[d for d, _ in BAD_DSNS])
def test_a_bad_dsn_is_a_configuration_error_that_shows_no_password(
    tmp_path: Path, dsn: str, message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        check_dsn("metrics", dsn)
    assert str(raised.value) == message
    (tmp_path / "dsn").write_text(dsn)
    with pytest.raises(ConfigError, match=r"^database target 'metrics'"):
        checked_dsns({"metrics": f"file:{tmp_path / 'dsn'}"})


def test_a_clickhouse_dsn_is_told_from_a_postgresql_one(tmp_path: Path) -> None:
    (tmp_path / "ch").write_text("clickhouse+https://u:p%40ss@ch.example:8443\n")
    (tmp_path / "pg").write_text("postgresql://u:p@pg.example:5432/app\n")
    sources = {"metrics": f"file:{tmp_path / 'ch'}", "primary": f"file:{tmp_path / 'pg'}"}
    assert set(checked_dsns(sources)) == {"metrics", "primary"}
    target = ClickHouseTarget("metrics", "clickhouse+https://u:p%40ss@ch.example")
    assert (target.where, target.user) == ("ch.example:8443", "u")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("SELECT 1", "Select"), ("  (WITH 1 AS x SELECT x)", "Select"),
        ("/* report */ -- x\n insert into t values", "Insert"),
        ("/* unterminated SELECT", "Other"), ("ALTER TABLE t DELETE WHERE 1", "Alter"),
        ("optimize table t final", "Optimize"), ("", "Other"), ("😀 SELECT", "Other"),
        ("/*" + "*" * 100_000, "Other"),
    ],
)  # fmt: skip
def test_a_query_kind_is_read_from_its_first_word(text: str, kind: str) -> None:
    assert query_kind(text) == kind


def test_a_literal_stays_one_literal_whatever_it_holds() -> None:
    assert literal("a'b\\c") == "'a\\'b\\\\c'"
    assert literal("\\'; KILL QUERY WHERE 1 --") == "'\\\\\\'; KILL QUERY WHERE 1 --'"


# ------------------------------------------------------------------------ rule loading


def clickhouse_rule(params: str) -> str:
    return (
        "rules:\n  - name: ch\n    match: ['alertname=\"Q\"']\n    severity: SEV-3\n"
        f"    action: {{kind: kill_query, params: {{{params}}}}}\n"
        "    target: {kind: Database, name: metrics}\n"
        "  - name: default\n    match: []\n    severity: SEV-3\n"
    )


CH = "engine: clickhouse, min_duration_s: 60, max_per_run: 5"
CH_KEYS = (
    "engine, min_duration_s, max_per_run, users, deny_users, allow_insert, query_kinds,"
    " query_pattern, sync, redact_literals"
)
RULE_ERRORS = [
    ("engine: mysql, min_duration_s: 60, max_per_run: 5",
     'field "action.params.engine" must be postgresql or clickhouse, not "mysql".'),
    ("engine: 5, min_duration_s: 60, max_per_run: 5",
     'field "action.params.engine" must be postgresql or clickhouse, not 5.'),
    (f"{CH}, query_kinds: [Insert]",
     'field "action.params.query_kinds" holds "Insert", which needs allow_insert: true (an'
     " interrupted INSERT may leave part of its rows written)."),
    (f"{CH}, query_kinds: [Selec]",
     'field "action.params.query_kinds" holds "Selec", which is not a query kind kill_query'
     " acts on (Select, Insert, Alter, Create, Drop, Optimize, System, Other)."),
    (f"{CH}, query_kinds: []", 'field "action.params.query_kinds" must have at least 1 item.'),
    (f"{CH}, users: [app, system]",
     'field "action.params.users" names "system", whose queries kill_query never kills on'
     " ClickHouse (protected: system)."),
    (f"{CH}, states: [active]",
     f'field "action.params.states" is not a known key (known: {CH_KEYS}).'),
    (f"{CH}, terminate: true",
     f'field "action.params.terminate" is not a known key (known: {CH_KEYS}).'),
    (f"{CH}, query_kind: [Select]",
     'field "action.params.query_kind" is not a known key (did you mean "query_kinds"?).'),
    ("engine: clickhouse, min_duration_s: 86401, max_per_run: 5",
     'field "action.params.min_duration_s" must be at most 86400, not 86401.'),
    ("engine: clickhouse, min_duration_s: 60, max_per_run: 101",
     'field "action.params.max_per_run" must be at most 100, not 101.'),
    ("engine: clickhouse, min_duration_s: .inf, max_per_run: 5",
     'field "action.params.min_duration_s" must be a finite number, not inf.'),
    ("engine: clickhouse, max_per_run: 5", 'field "action.params.min_duration_s" is required.'),
    (f"{CH}, sync: maybe", 'field "action.params.sync" must be true or false, not a string.'),
    (f"{CH}, query_pattern: '(?=x)'",
     'field "action.params.query_pattern" is not usable: it uses a lookahead or lookbehind,'
     " which RE2 (Alertmanager's regex syntax) does not have."),
    ("engine: postgresql, min_duration_s: 60, max_per_run: 5, query_kinds: [Select]",
     'field "action.params.query_kinds" is not a known key (known: engine, min_duration_s,'
     " max_per_run, states, databases, users, applications, deny_databases, deny_users,"
     " deny_applications, query_pattern, grace_s, terminate, redact_literals)."),
]  # fmt: skip


@pytest.mark.parametrize(("params", "message"), RULE_ERRORS, ids=[p for p, _ in RULE_ERRORS])
def test_a_bad_clickhouse_rule_does_not_load_and_the_sentence_says_why(
    tmp_path: Path, params: str, message: str
) -> None:
    directory = write_rules(
        tmp_path / "rules", {"00-policy.yaml": POLICY, "10-rules.yaml": clickhouse_rule(params)}
    )
    with pytest.raises(RuleFileError) as raised:
        load_rules(directory, default_registry())
    assert str(raised.value) == f'10-rules.yaml: rule "ch": {message}'


def test_a_clickhouse_rule_at_its_bounds_loads_as_clickhouses_kill_query(tmp_path: Path) -> None:
    params = (
        "engine: clickhouse, min_duration_s: 86400, max_per_run: 100, users: [default, app],"
        " deny_users: [etl], allow_insert: true, query_kinds: [Select, Insert, Other],"
        " query_pattern: 'FROM metrics\\.', sync: true, redact_literals: false"
    )
    directory = write_rules(
        tmp_path / "rules", {"00-policy.yaml": POLICY, "10-rules.yaml": clickhouse_rule(params)}
    )
    ruleset = load_rules(directory, default_registry())
    [rule] = [r for r in ruleset.rules if r.name == "ch"]
    assert rule.plan is not None
    assert isinstance(rule.plan.action, ClickHouseKillQuery)
    assert rule.plan.action.kind == "kill_query"
    assert isinstance(KillQuery(DatabaseHandle()).variants()["postgresql"], KillQuery)
