"""``remediator test``: the shipped unit tests of the example rules pass; a failing case
prints its name and expected against got; ``--run`` selects cases; ``--junit`` writes
testsuite/testcase/failure elements with the right counts; a test file that does not load
exits 2 with one sentence naming file, place and field. World facts: the in-memory cluster
answers the prechecks' reads with the real client's values and errors and refuses every
write; a case with ``world:`` inputs has its dry-run claims prechecked against it (opt-in,
HPA, min_healthy refusals, in their exact sentences), a case without has no cluster. Its
database sessions are what kill_query's precheck reads (aged on the case's clock, with the
real query's exclusions; every signal refused), and its sinks answer ok, unavailable
(retried, after ``retry_after_s``) or rejected (dropped, audited as a failed notification),
each send listed with what came of it."""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from remediator.actions.registry import default_registry
from remediator.cli.main import main
from remediator.clients.k8s import Autoscaler, KubeClient, Owner
from remediator.clients.postgres import PostgresTarget, Session
from remediator.core.errors import NotFound
from remediator.core.vocab import Outcome, Step
from remediator.ruleset.load import load_rules
from remediator.simulate import bodies
from remediator.simulate.cases import prepare, run_case
from remediator.simulate.clock import EPOCH, VirtualClock
from remediator.simulate.engine import Engine, settings
from remediator.simulate.testfile import WorldSpec
from remediator.simulate.world import Handles, OfflineWrite, World, WorldClient, uid_of

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path("tests/fixtures/simulate")
SHIPPED = "rules/tests/platform.test.yaml"
WORLD = "rules/tests/world.test.yaml"
AT = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _at_the_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # the paths printed are the ones given


def test_the_shipped_tests_of_the_example_rules_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", SHIPPED]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Unit testing {SHIPPED}\n  PASS  ")
    assert "FAIL" not in out
    assert out.endswith("ok: 9 cases passed in 1 file\n")


def test_the_rules_loader_does_not_read_the_tests_beside_the_rules() -> None:
    ruleset = load_rules(REPO / "rules", default_registry())
    assert ruleset.files == ("00-policy.yaml", "10-platform.yaml")
    assert not ruleset.sinks


def test_a_failing_case_prints_its_name_and_expected_against_got(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["test", str(FIXTURES / "failing.test.yaml")]) == 1
    assert capsys.readouterr().out == (
        "Unit testing tests/fixtures/simulate/failing.test.yaml\n"
        "  FAIL  a scale-out expected refused\n"
        '        at 0s, alert {alertname="HighCPUUsage"}:\n'
        "          expected: step=refused reason=cooldown\n"
        "          got:      step=dry_run reason=dry_run\n"
        "          (Dry-run: would run scale_out on llm-research/Deployment/api (not prechecked:"
        " no backend is configured for scale_out).)\n"
        "  FAIL  a page expected where none is configured\n"
        "        at 10m, notifications sent:\n"
        "          expected: oncall-primary tier 0 trigger\n"
        "          got:      none\n"
        "  PASS  a passing case between failing ones\n"
        "failed: 2 of 3 cases in 1 file\n"
    )


def test_run_selects_the_cases_whose_name_the_regex_finds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["test", str(FIXTURES / "failing.test.yaml"), "--run", "passing"]) == 0
    out = capsys.readouterr().out
    assert "  PASS  a passing case between failing ones\n" in out
    assert "FAIL" not in out and out.endswith("ok: 1 case passed in 1 file\n")


def test_the_junit_file_has_a_suite_per_file_a_case_per_case_and_their_failures(
    tmp_path: Path,
) -> None:
    report = tmp_path / "junit.xml"
    files = [str(FIXTURES / "failing.test.yaml"), SHIPPED]
    assert main(["test", *files, "--junit", str(report)]) == 1
    root = ET.parse(report).getroot()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == files
    assert [(s.get("tests"), s.get("failures"), s.get("errors")) for s in suites] == [
        ("3", "2", "0"),
        ("9", "0", "0"),
    ]
    failing = suites[0].findall("testcase")
    assert [c.get("name") for c in failing] == [
        "a scale-out expected refused",
        "a page expected where none is configured",
        "a passing case between failing ones",
    ]
    failures = [c.find("failure") for c in failing]
    assert failures[2] is None
    assert failures[0] is not None and failures[0].text is not None
    assert "expected: step=refused reason=cooldown" in failures[0].text
    assert failures[0].get("message") == 'at 0s, alert {alertname="HighCPUUsage"}:'
    assert all(c.find("failure") is None for c in suites[1].findall("testcase"))


@pytest.mark.parametrize(
    ("name", "sentence"),
    [
        (
            "bad-duration.test.yaml",
            'tests/fixtures/simulate/bad-duration.test.yaml:5:10: field "tests[0].input[0].at"'
            " is '10x', which is not a duration like 90s, 10m or 1h30m.",
        ),
        (
            "unknown-key.test.yaml",
            "tests/fixtures/simulate/unknown-key.test.yaml:5:52: field"
            ' "tests[0].input[0].alerts[0].staus" is not a known key.',
        ),
    ],
    ids=["duration", "unknown-key"],
)
def test_a_test_file_that_does_not_load_exits_2_naming_file_place_and_field(
    name: str, sentence: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["test", str(FIXTURES / name), SHIPPED]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"remediator: {sentence}\n"
    assert captured.out == ""  # nothing runs before every file has loaded


def test_rules_that_do_not_load_exit_2_naming_the_test_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text("rules: []\n")
    test = tmp_path / "t.test.yaml"
    test.write_text(
        "rules_dir: rules\ntests:\n  - name: x\n    input: [{at: 0s, alerts: [{labels: {a: b}}]}]\n"
        "    expect: [{at: 0s}]\n"
    )
    assert main(["test", str(test)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"remediator: {test}: its rules do not load: rules directory ")
    assert "has rule files but no rule" in err


def test_a_wrong_expectation_in_the_shipped_tests_would_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tests").mkdir()
    for name in ("00-policy.yaml", "10-platform.yaml", "tests/sinks.yaml"):
        (tmp_path / name).write_bytes((REPO / "rules" / name).read_bytes())
    copy = tmp_path / "tests" / "platform.test.yaml"
    copy.write_text((REPO / SHIPPED).read_text().replace("reason: storm", "reason: cooldown"))
    assert main(["test", str(copy), "--run", "storm"]) == 1
    out = capsys.readouterr().out
    assert '        at 0s, alert {deployment="api-11"}:\n' in out
    assert "          expected: reason=cooldown\n          got:      reason=storm\n" in out


def _world(facts: dict[str, object]) -> WorldClient:
    world = World()
    world.apply(WorldSpec.model_validate(facts), AT)
    return world.client


API = {"namespace": "llm-research", "name": "api", "replicas": 3}


def test_the_shipped_world_tests_of_the_example_rules_pass(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["test", WORLD]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out
    assert out.endswith("ok: 18 cases passed in 1 file\n")


PRECHECKED = [
    (
        "a scale-out on a Deployment that does not opt in is refused by its precheck",
        "refused not_opted_in llm-research/Deployment/api does not opt in to scale_out: its"
        " annotation remediator.io/allow does not list it.",
    ),
    (
        "a scale-out on a Deployment that opts in would run",
        "dry_run dry_run Dry-run: would run scale_out on llm-research/Deployment/api; its"
        " precheck passed.",
    ),
    (
        "a Deployment an HPA scales is refused, since the rule says hpa refuse",
        "refused owned_elsewhere HorizontalPodAutoscaler api scales it; remediator does not fight"
        " another controller over the replicas of llm-research/Deployment/api (the autoscaler"
        " would put the count back).",
    ),
    (
        "a scale-out on a Deployment that is not there is refused",
        "refused target_gone llm-research/Deployment/api does not exist.",
    ),
    (
        "a recycle that would leave fewer ready replicas than min_healthy is refused",
        "refused blast_radius Recycling api-7d9f-x2k4q would leave 1 ready replicas of"
        " llm-research/Deployment/api, fewer than min_healthy 66% (2).",
    ),
    (
        "a recycle that keeps min_healthy ready replicas would run",
        "dry_run dry_run Dry-run: would run recycle_pod on llm-research/Pod/api-7d9f-x2k4q; its"
        " precheck passed.",
    ),
    (
        "a query running for 6 minutes would be cancelled",
        "dry_run dry_run Dry-run: would run kill_query on /Database/primary; its precheck passed.",
    ),
    (
        "with only short queries there is nothing to cancel",
        "refused precheck_failed No session on 'primary' matches the rule (at least 300 s in"
        " active); nothing to cancel.",
    ),
    (
        "sessions left idle in a transaction would be released",
        "dry_run dry_run Dry-run: would run kill_query on /Database/primary; its precheck passed.",
    ),
    (
        "a database target whose role cannot signal is refused",
        "refused precheck_failed Database target 'primary': the role is not a member of"
        " pg_signal_backend.",
    ),
    (
        "kill_query finds no database the case does not describe",
        "refused target_gone No database target named 'primary' is configured (configured:"
        " replica).",
    ),
]


@pytest.mark.parametrize(("case", "decided"), PRECHECKED, ids=[c for c, _ in PRECHECKED])
async def test_a_dry_run_claim_is_prechecked_against_the_world_facts(
    case: str, decided: str
) -> None:
    prepared = prepare(REPO / WORLD)
    [spec] = [c for c in prepared.spec.tests if c.name == case]
    result = await run_case(prepared, spec)
    assert result.failures == []
    assert [f"{d.step} {d.reason} {d.sentence}" for d in result.decisions] == [decided]
    assert prepared.kube.client is None  # the world is connected only while its case runs
    assert prepared.databases.targets == {}


async def test_a_case_without_world_facts_has_no_cluster_after_one_with_them() -> None:
    prepared = prepare(REPO / FIXTURES / "world-then-none.test.yaml")
    with_world, without = [await run_case(prepared, case) for case in prepared.spec.tests]
    assert [d.sentence for d in with_world.decisions] == [
        "Dry-run: would run scale_out on llm-research/Deployment/api; its precheck passed."
    ]
    assert [d.sentence for d in without.decisions] == [
        "Dry-run: would run scale_out on llm-research/Deployment/api (not prechecked: no"
        " backend is configured for scale_out)."
    ]


async def test_a_precheck_reads_the_world_as_it_stands_at_the_claims_time() -> None:
    prepared = prepare(REPO / WORLD)
    [spec] = [c for c in prepared.spec.tests if c.name.startswith("the world at")]
    result = await run_case(prepared, spec)
    assert [(d.step, d.reason) for d in result.decisions] == [
        ("refused", "not_opted_in"), ("resolved", ""), ("dry_run", "dry_run"),
    ]  # fmt: skip


async def test_a_deployment_reads_back_with_the_defaults_of_its_fact() -> None:
    kube = _world({"deployments": [API]})
    assert isinstance(kube, KubeClient)  # what the actions are typed against
    deployment = await kube.deployment("llm-research", "api")
    assert (deployment.replicas, deployment.ready_replicas, deployment.updated_replicas) == (
        3,
        3,
        3,
    )
    assert deployment.selector == {"app": "api"} and deployment.annotations == {}
    assert deployment.uid == uid_of("Deployment", "llm-research", "api")
    assert not deployment.rolling_out
    scale = await kube.scale("llm-research", "api")
    assert (scale.replicas, scale.resource_version) == (3, deployment.resource_version)


async def test_a_fact_named_again_replaces_the_object() -> None:
    world = World()
    world.apply(WorldSpec.model_validate({"deployments": [API]}), AT)
    world.apply(WorldSpec.model_validate({"deployments": [{**API, "ready": 1,
                                                          "rolling_out": True}]}), AT)  # fmt: skip
    deployment = await world.client.deployment("llm-research", "api")
    assert deployment.ready_replicas == 1 and deployment.rolling_out
    assert len(world.deployments) == 1


async def test_the_hpas_of_a_deployment_are_those_that_scale_it_in_its_namespace() -> None:
    hpa = {"namespace": "llm-research", "name": "api", "deployment": "api", "max_replicas": 9}
    kube = _world({"hpas": [hpa, {**hpa, "name": "web", "deployment": "web"},
                            {**hpa, "namespace": "other"}]})  # fmt: skip
    assert await kube.hpas_for("llm-research", "api") == [
        Autoscaler("llm-research", "api", 1, 9, "1", uid_of("HorizontalPodAutoscaler",
                                                            "llm-research", "api")),
    ]  # fmt: skip
    assert await kube.hpas_for("llm-research", "db") == []


async def test_a_deployments_pods_are_found_by_its_selector_through_their_replica_set() -> None:
    pod = {"namespace": "llm-research", "deployment": "api"}
    kube = _world({"deployments": [API], "pods": [
        {**pod, "name": "api-1", "restarts": 2, "age": "1h"},
        {**pod, "name": "api-2", "ready": False},
        {"namespace": "llm-research", "name": "agent", "owner": {"kind": "DaemonSet",
                                                                  "name": "agent"}},
    ]})  # fmt: skip
    deployment = await kube.deployment("llm-research", "api")
    pods = await kube.pods("llm-research", deployment.selector)
    assert [(p.name, p.ready, p.restarts, p.created) for p in pods] == [
        ("api-1", True, 2, AT - timedelta(hours=1)), ("api-2", False, 0, AT),
    ]  # fmt: skip
    assert pods[0].owner is not None and pods[0].owner.kind == "ReplicaSet"
    owner = await kube.owner_of_replicaset("llm-research", pods[0].owner.name)
    assert owner == Owner("Deployment", "api", deployment.uid)
    agent = await kube.pod("llm-research", "agent")
    assert agent.owner is not None and (agent.owner.kind, agent.owner.name) == (
        "DaemonSet",
        "agent",
    )


@pytest.mark.parametrize(
    ("read", "message"),
    [
        (lambda k: k.deployment("llm-research", "web"), 'deployments.apps "web" not found'),
        (lambda k: k.scale("llm-research", "web"), 'deployments.apps "web" not found'),
        (lambda k: k.deployment("other", "api"), 'deployments.apps "api" not found'),
        (lambda k: k.pod("llm-research", "api-1"), 'pods "api-1" not found'),
        (
            lambda k: k.owner_of_replicaset("llm-research", "api-1"),
            'replicasets.apps "api-1" not found',
        ),
    ],
    ids=["deployment", "scale", "namespace", "pod", "replica-set"],
)
async def test_an_object_the_world_lacks_is_not_found_as_the_api_server_says(
    read: Callable[[WorldClient], Awaitable[object]], message: str
) -> None:
    with pytest.raises(NotFound) as raised:
        await read(_world({"deployments": [API]}))
    assert (str(raised.value), raised.value.status) == (message, 404)


@pytest.mark.parametrize(
    ("write", "what"),
    [
        (lambda k: k.set_replicas("llm-research", "api", 5, "1"), "scale llm-research/api to 5"),
        (
            lambda k: k.set_hpa_min(Autoscaler("llm-research", "api", 1, 9, "1"), 3),
            "set minReplicas of llm-research/api",
        ),
        (lambda k: k.evict("llm-research", "api-1", "u"), "evict pod llm-research/api-1"),
        (lambda k: k.delete_pod("llm-research", "api-1", "u"), "delete pod llm-research/api-1"),
        (
            lambda k: k.record_event("llm-research", "Pod", "api-1", "u", "R", "m"),
            "record an event on llm-research/api-1",
        ),
    ],
    ids=["set_replicas", "set_hpa_min", "evict", "delete_pod", "record_event"],
)
async def test_every_write_to_the_world_is_refused(
    write: Callable[[WorldClient], Awaitable[object]], what: str
) -> None:
    kube = _world({"deployments": [API]})
    with pytest.raises(OfflineWrite) as raised:
        await write(kube)
    assert str(raised.value) == f"The offline engine never writes to a cluster ({what})."
    assert (await kube.scale("llm-research", "api")).replicas == 3


@pytest.mark.parametrize(
    ("name", "sentence"),
    [
        (
            "world-unknown-key.test.yaml",
            "tests/fixtures/simulate/world-unknown-key.test.yaml:8:62: field"
            ' "tests[0].input[0].world.deployments[0].replcas" is not a known key.',
        ),
        (
            "world-and-alerts.test.yaml",
            'tests/fixtures/simulate/world-and-alerts.test.yaml:6:9: field "tests[0].input[0]"'
            " needs exactly one of alerts, webhook, file or world.",
        ),
        (
            "world-hpa-bounds.test.yaml",
            "tests/fixtures/simulate/world-hpa-bounds.test.yaml:9:15: field"
            ' "tests[0].input[0].world.hpas[0]" needs min_replicas at most max_replicas.',
        ),
    ],
    ids=["unknown-key", "two-sources", "hpa-bounds"],
)
def test_world_facts_that_do_not_load_exit_2_naming_file_place_and_field(
    name: str, sentence: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["test", str(FIXTURES / name)]) == 2
    assert capsys.readouterr().err == f"remediator: {sentence}\n"


def test_a_missing_world_field_is_named_as_required(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    test = tmp_path / "t.test.yaml"
    test.write_text(
        f"rules_dir: {REPO / 'rules'}\ntests:\n  - name: x\n    input:\n      - at: 0s\n"
        "        world: {deployments: [{namespace: ns, name: api}]}\n    expect: [{at: 0s}]\n"
    )
    assert main(["test", str(test)]) == 2
    assert capsys.readouterr().err == (
        f'remediator: {test}:6:31: field "tests[0].input[0].world.deployments[0].replicas"'
        " is required.\n"
    )


async def test_a_session_ages_on_the_cases_clock_until_the_rule_chooses_it() -> None:
    prepared = prepare(REPO / WORLD)
    [spec] = [c for c in prepared.spec.tests if c.name == "a session ages on the case's clock"]
    result = await run_case(prepared, spec)
    assert result.failures == []
    assert [(d.step, d.reason) for d in result.decisions] == [
        ("refused", "precheck_failed"), ("resolved", ""), ("dry_run", "dry_run"),
    ]  # fmt: skip


def _database(sessions: list[dict[str, object]], **fact: object) -> tuple[World, PostgresTarget]:
    world = World()
    world.apply(WorldSpec.model_validate({"databases": {"primary": {"sessions": sessions,
                                                                    **fact}}}), AT)  # fmt: skip
    return world, world.databases["primary"]


SESSIONS: list[dict[str, object]] = [
    {"pid": 11, "state": "active", "duration_s": 400, "query": "SELECT 'secret', 42",
     "user": "reports", "database": "orders", "application": "psql"},
    {"pid": 12, "state": "active", "duration_s": 900, "query": "SELECT 2"},
    {"pid": 13, "state": "active", "duration_s": 100, "query": "SELECT 3"},
    {"pid": 14, "state": "idle in transaction", "duration_s": 800, "query": "UPDATE t SET a = 1"},
    {"pid": 15, "state": "active", "duration_s": 5000, "query": "VACUUM", "superuser": True},
]  # fmt: skip


async def test_a_database_answers_the_sessions_the_real_query_would_oldest_first() -> None:
    _, target = _database(SESSIONS)
    assert isinstance(target, PostgresTarget)  # what kill_query is typed against
    found = await target.sessions(300, ["active"])
    assert [(s.pid, s.age_s) for s in found] == [(12, 900.0), (11, 400.0)]  # no superuser
    since = AT - timedelta(seconds=400)
    assert found[1] == Session(
        pid=11, user="reports", database="orders", application="psql", state="active",
        backend_start=since, query_start=since, query="SELECT 'secret', 42", age_s=400.0,
        state_change=since,
    )  # fmt: skip
    idle = await target.sessions(120, ["idle in transaction"], max_query_chars=6)
    assert [(s.pid, s.query, s.age_s) for s in idle] == [(14, "UPDATE", 800.0)]
    assert await target.sessions(400, ["active"]) == [found[0]]  # older than, as the SQL says
    assert await target.privilege_problems() == []


async def test_a_database_sessions_age_on_the_engines_clock() -> None:
    world, target = _database(SESSIONS[2:3])
    clock = VirtualClock(AT)
    disconnect = Handles(None, None).connect(world, clock)
    clock.set(AT + timedelta(minutes=5))
    assert [(s.pid, s.age_s) for s in await target.sessions(300, ["active"])] == [(13, 400.0)]
    disconnect()
    assert world.clock is None


async def test_a_database_given_again_replaces_its_sessions_and_problems() -> None:
    world, _ = _database(SESSIONS)
    world.apply(WorldSpec.model_validate({"databases": {"primary": {
        "problems": ["the role is not a member of pg_signal_backend"]}}}), AT)  # fmt: skip
    target = world.databases["primary"]
    assert await target.sessions(0, ["active", "idle in transaction"]) == []
    assert await target.privilege_problems() == ["the role is not a member of pg_signal_backend"]


async def test_a_chosen_session_is_still_running_until_the_world_says_otherwise() -> None:
    world, target = _database(SESSIONS)
    [chosen] = await target.sessions(850, ["active"])
    assert await target.still_running(chosen)
    assert await target.moved_on([chosen]) == {}
    world.apply(WorldSpec.model_validate({"databases": {"primary": {"sessions": [
        {**SESSIONS[1], "duration_s": 10}]}}}), AT)  # fmt: skip
    assert not await world.databases["primary"].still_running(chosen)


@pytest.mark.parametrize("how", ["cancel", "terminate"])
async def test_every_signal_to_a_database_is_refused(how: str) -> None:
    _, target = _database(SESSIONS)
    [chosen] = await target.sessions(850, ["active"])
    with pytest.raises(OfflineWrite) as raised:
        await target.signal(chosen, "cancel" if how == "cancel" else "terminate")
    assert str(raised.value) == (
        f"The offline engine never writes to a database ({how} pid 12 on 'primary')."
    )
    assert await target.still_running(chosen)


async def test_a_rejected_page_is_audited_as_a_failed_notification_saying_why() -> None:
    prepared = prepare(REPO / WORLD)
    [spec] = [c for c in prepared.spec.tests if c.name.startswith("a rejected page")]
    world = World()
    world.apply(WorldSpec.model_validate({"sinks": {"oncall-primary": {"answer": "rejected"}}}),
                EPOCH)  # fmt: skip
    handles = Handles(None, prepared.databases)
    async with Engine(prepared.ruleset, world=(handles, world)) as engine:
        await engine.feed(_api_unavailable(), EPOCH)
        await engine.advance(EPOCH)
        notified = [r for r in await engine.records() if r.step is Step.NOTIFIED]
    assert [(r.outcome, r.sentence) for r in notified] == [
        (Outcome.FAILED, "Notifying oncall-primary failed: oncall-primary rejected the"
                         " notification (a world fact of the case)"),
    ]  # fmt: skip
    assert [(p.sink, p.result) for p in engine.pages] == [("oncall-primary", "dropped")]
    assert (await run_case(prepared, spec)).failures == []


def _api_unavailable() -> bytes:
    body = bodies.build([({"alertname": "APIUnavailable"}, {}, "firing")], EPOCH, 0)
    return bodies.encode(body, settings().payload_limits, "a test")[0]


def test_an_unavailable_sink_is_retried_after_the_retry_after_it_asks_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tests").mkdir()
    for name in ("00-policy.yaml", "10-platform.yaml", "tests/sinks.yaml"):
        (tmp_path / name).write_bytes((REPO / "rules" / name).read_bytes())
    copy = tmp_path / "tests" / "world.test.yaml"
    copy.write_text((REPO / WORLD).read_text().replace("retry_after_s: 60", "retry_after_s: 30"))
    assert main(["test", str(copy), "--run", "unavailable for 2 minutes"]) == 1
    assert (
        "        at 1m30s, notifications sent:\n"
        "          expected: oncall-primary tier 0 trigger retried at 0s\n"
        "                    oncall-primary tier 0 trigger retried at 1m\n"
        "          got:      oncall-primary tier 0 trigger retried at 0s\n"
        "                    oncall-primary tier 0 trigger retried at 30s\n"
        "                    oncall-primary tier 0 trigger retried at 1m\n"
        "                    oncall-primary tier 0 trigger retried at 1m30s\n"
    ) in capsys.readouterr().out


def test_a_notification_expected_delivered_but_retried_prints_both(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["test", str(FIXTURES / "failing-sink.test.yaml")]) == 1
    assert capsys.readouterr().out == (
        "Unit testing tests/fixtures/simulate/failing-sink.test.yaml\n"
        "  FAIL  a page expected delivered to an unavailable sink\n"
        "        at 2s, notifications sent:\n"
        "          expected: oncall-primary tier 0 trigger delivered\n"
        "          got:      oncall-primary tier 0 trigger retried\n"
        "                    oncall-primary tier 0 trigger retried at 1s\n"
        "failed: 1 of 1 cases in 1 file\n"
    )


async def test_a_case_with_only_sink_answers_has_no_cluster(tmp_path: Path) -> None:
    test = tmp_path / "t.test.yaml"
    test.write_text(
        f"rule_files: [{REPO / 'rules/00-policy.yaml'}, {REPO / 'rules/10-platform.yaml'},"
        f" {REPO / 'rules/tests/sinks.yaml'}]\ntests:\n  - name: x\n    input:\n"
        "      - {at: 0s, world: {sinks: {ops-channel: {answer: ok}}}}\n"
        "      - {at: 0s, alerts: [{labels: {alertname: HighCPUUsage, namespace: llm-research,"
        " deployment: api}}]}\n    expect: [{at: 0s}]\n"
    )
    prepared = prepare(test)
    result = await run_case(prepared, prepared.spec.tests[0])
    assert [d.sentence for d in result.decisions] == [
        "Dry-run: would run scale_out on llm-research/Deployment/api (not prechecked: no"
        " backend is configured for scale_out)."
    ]


@pytest.mark.parametrize(
    ("name", "sentence"),
    [
        (
            "world-session-state.test.yaml",
            "tests/fixtures/simulate/world-session-state.test.yaml:10:38: field"
            ' "tests[0].input[0].world.databases.primary.sessions[0].state" is "actve", which'
            " is not a state pg_stat_activity shows (active, idle, idle in transaction, idle in"
            " transaction (aborted), fastpath function call, disabled).",
        ),
        (
            "world-session-pid-twice.test.yaml",
            "tests/fixtures/simulate/world-session-pid-twice.test.yaml:9:13: field"
            ' "tests[0].input[0].world.databases.primary" holds pid 4242 more than once.',
        ),
        (
            "world-sink-retry-after.test.yaml",
            "tests/fixtures/simulate/world-sink-retry-after.test.yaml:6:34: field"
            ' "tests[0].input[0].world.sinks.oncall-primary" takes retry_after_s only with'
            " answer unavailable.",
        ),
        (
            "world-sink-unknown.test.yaml",
            "tests/fixtures/simulate/world-sink-unknown.test.yaml:10:34: field"
            ' "tests[1].input[0].world.sinks.oncall-primray" names a sink the rules do not'
            " declare (declared: engineering-manager, oncall-primary, ops-channel,"
            " platform-lead, vp-engineering).",
        ),
    ],
    ids=["session-state", "pid-twice", "retry-after", "unknown-sink"],
)
def test_database_and_sink_facts_that_do_not_load_exit_2_naming_file_place_and_field(
    name: str, sentence: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["test", str(FIXTURES / name)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"remediator: {sentence}\n"
    assert captured.out == ""


@pytest.mark.parametrize(
    ("fact", "message"),
    [
        (
            {"sinks": {"ops-channel": {"answer": "down"}}},
            'is "down", which is not a sink\'s answer (ok, unavailable, rejected)',
        ),
        (
            {
                "databases": {
                    "primary": {
                        "sessions": [{"pid": 0, "state": "active", "duration_s": 1, "query": ""}]
                    }
                }
            },
            "Input should be greater than or equal to 1",
        ),
        (
            {
                "databases": {
                    "primary": {
                        "sessions": [{"pid": 1, "state": "active", "duration_s": -1, "query": ""}]
                    }
                }
            },
            "Input should be greater than or equal to 0",
        ),
        (
            {
                "databases": {
                    "primary": {"sessions": [{"pid": 1, "state": "active", "duration_s": 1}]}
                }
            },
            "Field required",
        ),
        ({}, "needs at least one of deployments, pods, hpas, scaled_objects, databases or sinks"),
    ],
    ids=["answer", "pid", "duration", "query", "empty"],
)
def test_world_facts_out_of_bounds_are_refused(fact: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        WorldSpec.model_validate(fact)


def test_an_approval_no_one_gives_ends_on_the_virtual_clock_as_the_loop_would_end_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The offline engine runs the approvals loop's pass at each approval's due time and
    after each input: a timeout escalates (its refusal and page are news) or runs the action
    (dry-run), and a resolve withdraws the approval."""
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    platform = rules / "10-platform.yaml"
    target = '    target: {kind: Deployment, namespace: "{namespace}", name: "{deployment}"}\n'
    text = platform.read_text()
    five_s, two_s = "  - name: p95-latency-above-5s\n", "  - name: p95-latency-above-2s\n"
    sev2 = text.index(target, text.index(five_s)) + len(target)
    text = text[:sev2] + "    approval: {timeout_s: 300}\n" + text[sev2:]
    sev3 = text.index(target, text.index(two_s)) + len(target)
    text = text[:sev3] + "    approval: {timeout_s: 300, on_timeout: act}\n" + text[sev3:]
    platform.write_text(text)
    cases = rules / "tests" / "approval.test.yaml"
    shutil.copy(REPO / FIXTURES / "approval.test.yaml", cases)
    assert main(["test", str(cases)]) == 0, capsys.readouterr().out
