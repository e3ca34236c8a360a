"""The typed intents, undo states and facts of the actions: they are stored as the very JSON
the store has always held (old rows read back), and a malformed stored value is a clear
error that reconcile and aftercare settle once, audited, instead of failing on every poll."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from remediator.act.aftercare import Aftercare
from remediator.act.reconcile import reconcile_claims
from remediator.actions.base import MalformedState, Nothing, Stored, read_stored
from remediator.actions.kill_query import KillQueryIntent, evidence
from remediator.actions.recycle_pod import RecyclePodFacts, RecyclePodIntent
from remediator.actions.registry import default_registry
from remediator.actions.scale_out import (
    HpaIntent,
    HpaUndo,
    ReplicasIntent,
    ReplicasUndo,
    ScaleOutIntent,
    ScaleOutUndo,
)
from remediator.audit.recorder import Recorder
from remediator.clients.postgres import Session
from remediator.core.metrics import Metrics
from remediator.core.model import AlertStatus
from remediator.escalate import plan as escalate
from remediator.guards.claim import ClaimRequest
from remediator.ruleset.load import load_rules
from remediator.ruleset.rules import Rule, RuleSet
from remediator.store.contract import AuditQuery, Settlement, Sighting, Store
from tests.support.clock import FakeClock
from tests.support.service import EXAMPLE_RULES
from tests.support.stores import runner_for

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
STARTED = datetime(2026, 11, 28, 9, 0, 0, 123456, tzinfo=UTC)
QUERIED = datetime(2026, 11, 28, 9, 50, tzinfo=UTC)


def session() -> Session:
    return Session(7, "app", "appdb", "web", "active", STARTED, QUERIED,
                   "SELECT * FROM t WHERE id = 42", 600.04)  # fmt: skip


def old_evidence() -> dict[str, Any]:
    """What ``evidence`` returned before it had a model, for the session above."""
    return {
        "pid": 7, "user": "app", "database": "appdb", "application": "web", "state": "active",
        "age_s": 600.0, "backend_start": STARTED.isoformat(), "query_start": QUERIED.isoformat(),
        "query": "SELECT * FROM t WHERE id = ?",
    }  # fmt: skip


SHAPES: list[tuple[str, BaseModel, dict[str, Any]]] = [
    ("scale intent",
     ScaleOutIntent(ReplicasIntent(from_replicas=3, to_replicas=5, uid="u-1")),
     {"from": 3, "to": 5, "uid": "u-1"}),
    ("hpa intent",
     ScaleOutIntent(HpaIntent(hpa_name="api-hpa", min_from_replicas=3, min_to_replicas=4,
                              from_replicas=3)),
     {"hpa": "api-hpa", "min_from": 3, "min_to": 4, "from": 3}),
    ("scale undo",
     ScaleOutUndo(ReplicasUndo(restore_to_replicas=3, set_to_replicas=5)),
     {"restore_to": 3, "set_to": 5}),
    ("hpa undo",
     ScaleOutUndo(HpaUndo(hpa_name="api-hpa", restore_min_replicas=3, set_min_replicas=4)),
     {"hpa": "api-hpa", "restore_min": 3, "set_min": 4}),
    ("recycle intent",
     RecyclePodIntent(pod="api-1", uid="u-2", selector={"app": "api"}),
     {"pod": "api-1", "uid": "u-2", "selector": {"app": "api"}}),
    ("recycle intent of a daemonset pod",
     RecyclePodIntent(pod="node-exporter-1", uid="u-3", selector=None),
     {"pod": "node-exporter-1", "uid": "u-3", "selector": None}),
    ("kill intent",
     KillQueryIntent(sessions=[evidence(session(), redact=True)]),
     {"sessions": [old_evidence()]}),
    ("signalled query",
     evidence(session(), redact=True).model_copy(update={"cancelled": True, "terminated": False}),
     {**old_evidence(), "cancelled": True, "terminated": False}),
    ("nothing", Nothing(), {}),
]  # fmt: skip


@pytest.mark.parametrize(("model", "stored"), [s[1:] for s in SHAPES], ids=[s[0] for s in SHAPES])
def test_what_is_stored_is_the_json_the_store_always_held_and_reads_back(
    model: BaseModel, stored: dict[str, Any]
) -> None:
    assert model.model_dump(mode="json") == stored
    assert json.loads(model.model_dump_json()) == stored
    assert read_stored(type(model), json.loads(json.dumps(stored)), "it") == model


def test_a_scale_intent_written_without_a_uid_reads_back_with_an_empty_one() -> None:
    intent = read_stored(ScaleOutIntent, {"from": 3, "to": 5}, "it")
    assert intent.root == ReplicasIntent(from_replicas=3, to_replicas=5, uid="")


def test_recycle_facts_give_the_audit_the_keys_it_always_had() -> None:
    owned = RecyclePodFacts(pod="api-1", uid="u", restarts=4, workload="ns/Deployment/api",
                            selector={"app": "api"})  # fmt: skip
    daemon = RecyclePodFacts(pod="node-exporter-1", uid="u", restarts=0)
    assert owned.details() == {
        "pod": "api-1", "uid": "u", "restarts": 4, "workload": "ns/Deployment/api",
        "selector": {"app": "api"},
    }  # fmt: skip
    assert daemon.details() == {"pod": "node-exporter-1", "uid": "u", "restarts": 0}


def row(**changes: Any) -> dict[str, Any]:
    return {**old_evidence(), **changes}


HOSTILE: list[tuple[str, type[Stored] | type[BaseModel], Any, str]] = [
    ("missing key", ScaleOutIntent, {"from": 3}, "scale.to: Field required"),
    ("a number as text", ScaleOutIntent, {"from": "3", "to": 5},
     "scale.from: Input should be a valid integer"),
    ("a boolean for a count", ScaleOutIntent, {"from": True, "to": 5},
     "scale.from: Input should be a valid integer"),
    ("a float for a count", ScaleOutIntent, {"from": 3.0, "to": 5},
     "scale.from: Input should be a valid integer"),
    ("a huge count", ScaleOutIntent, {"from": 3, "to": 10**30},
     "scale.to: Input should be less than or equal to 1000"),
    ("a negative count", ScaleOutUndo, {"restore_to": -1, "set_to": 5},
     "scale.restore_to: Input should be greater than or equal to 0"),
    ("an extra key", ScaleOutIntent, {"from": 3, "to": 5, "uid": "", "force": True},
     "scale.force: Extra inputs are not permitted"),
    ("the python names, not the stored keys", ScaleOutUndo,
     {"restore_to_replicas": 3, "set_to_replicas": 5}, "scale.restore_to: Field required"),
    ("a list", ScaleOutIntent, [3, 5], "scale: Input should be a valid dictionary"),
    ("null", ScaleOutUndo, None, "scale: Input should be a valid dictionary"),
    ("an empty hpa name", ScaleOutIntent, {"hpa": "", "min_from": 3, "min_to": 4, "from": 3},
     "hpa.hpa: String should have at least 1 character"),
    ("an hpa number", ScaleOutUndo, {"hpa": 5, "restore_min": 3, "set_min": 4},
     "hpa.hpa: Input should be a valid string"),
    ("hpa undo missing a key", ScaleOutUndo, {"hpa": "x", "restore_min": 3},
     "hpa.set_min: Field required"),
    ("an observed count beyond int32", ScaleOutIntent,
     {"hpa": "x", "min_from": 3, "min_to": 4, "from": 2**31},
     "hpa.from: Input should be less than or equal to 2147483647"),
    ("missing selector", RecyclePodIntent, {"pod": "p", "uid": "u"}, "selector: Field required"),
    ("a selector value not text", RecyclePodIntent,
     {"pod": "p", "uid": "u", "selector": {"app": 1}}, "selector.app: Input should be a valid"),
    ("an empty uid", RecyclePodIntent, {"pod": "p", "uid": "", "selector": None},
     "uid: String should have at least 1 character"),
    ("no sessions", KillQueryIntent, {"sessions": []}, "sessions: List should have at least 1"),
    ("a huge pid", KillQueryIntent, {"sessions": [row(pid=2**63)]},
     "sessions.0.pid: Input should be less than or equal to 2147483647"),
    ("a time as seconds", KillQueryIntent, {"sessions": [row(backend_start=1_700_000_000)]},
     "sessions.0.backend_start: Value error, must be an ISO 8601 time"),
    ("a time that is no time", KillQueryIntent, {"sessions": [row(query_start="yesterday")]},
     "sessions.0.query_start: Value error, must be an ISO 8601 time"),
    ("NaN, which json.loads accepts", KillQueryIntent,
     {"sessions": [row(age_s=json.loads("NaN"))]}, "sessions.0.age_s: Input should be a finite"),
    ("an infinite age", KillQueryIntent, {"sessions": [row(age_s=json.loads("1e400"))]},
     "sessions.0.age_s: Input should be a finite"),
    ("a query longer than any evidence", KillQueryIntent, {"sessions": [row(query="x" * 201)]},
     "sessions.0.query: String should have at most 200 characters"),
    ("more sessions than one run may signal", KillQueryIntent,
     {"sessions": [old_evidence()] * 101}, "sessions: List should have at most 100 items"),
    ("something stored for an action that stores nothing", Nothing, {"x": 1},
     "x: Extra inputs are not permitted"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("model", "value", "problem"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE]
)
def test_a_malformed_stored_value_is_refused_with_a_sentence_naming_the_problem(
    model: type[BaseModel], value: Any, problem: str
) -> None:
    with pytest.raises(MalformedState) as caught:
        read_stored(model, value, "the intent it stored")
    assert str(caught.value).startswith("the intent it stored is malformed: ")
    assert problem in str(caught.value)


def test_a_huge_malformed_value_is_summed_up_not_echoed() -> None:
    hostile = {"sessions": [row(pid="x" * 100_000, query_start="x" * 100_000)] * 100}
    with pytest.raises(MalformedState) as caught:
        read_stored(KillQueryIntent, hostile, "the intent it stored")
    message = str(caught.value)
    assert len(message) < 1_000
    assert "xxxx" not in message
    assert message.endswith("more")  # five problems named, the count of the others


def scale_rule(ruleset: RuleSet) -> Rule:
    [rule] = [r for r in ruleset.rules if r.plan and r.plan.kind == "scale_out"][:1]
    return rule


async def claimed(store: Store, rule: Rule) -> tuple[int, int]:
    """A claim of ``rule``'s scale_out on ``ns/Deployment/api``: its id and its episode."""
    assert rule.plan is not None
    [obs] = await store.observe([Sighting("fp", AlertStatus.FIRING, "HighCPUUsage")], T0, 300)
    request = ClaimRequest(
        episode_id=obs.episode.id, rule=rule.name, action=rule.plan.name,
        action_kind="scale_out", target="ns/Deployment/api", destructive=False, dry_run=False,
        cooldown_s=0, rule_limit=None, kind_limit=None, global_budget=None,
    )  # fmt: skip
    result = await store.claim(request, T0)
    assert result.claim_id is not None
    return result.claim_id, obs.episode.id


def recorder_for(store: Store, ruleset: RuleSet, clock: FakeClock) -> Recorder:
    return Recorder(store, Metrics(CollectorRegistry(), []), clock, ruleset, escalate.plan)


async def test_a_claim_whose_stored_intent_is_malformed_is_settled_as_unknown_and_paged(
    store: Store,
) -> None:
    ruleset = load_rules(EXAMPLE_RULES, default_registry())
    claim_id, _ = await claimed(store, scale_rule(ruleset))
    hostile = {"from": "3", "to": 10**30, "force": True}
    assert await store.claim_intent(claim_id, hostile, None) == "recorded"
    clock = FakeClock(T0)
    unfinished = await store.unfinished_claims()
    recorder = recorder_for(store, ruleset, clock)
    runner = runner_for(store, recorder, clock)
    assert await reconcile_claims(unfinished, recorder, clock, runner) == {"settled": 1}
    assert await store.unfinished_claims() == []
    records = await store.decisions(AuditQuery(limit=100))
    [reconciled] = [r for r in records if r.step == "reconciled"]
    assert reconciled.reason == "outcome_unknown"
    assert "the intent it stored is malformed: scale.from: Input should be a valid integer" in (
        reconciled.sentence
    )
    assert [r.reason for r in records if r.step == "escalated"] == ["outcome_unknown"]


async def test_an_undo_whose_stored_state_is_malformed_is_audited_failed_once_and_dropped(
    store: Store,
) -> None:
    ruleset = load_rules(EXAMPLE_RULES, default_registry())
    claim_id, episode_id = await claimed(store, scale_rule(ruleset))
    undo = Settlement(claim_id, "succeeded", "ns/Deployment/api", {"restore_to": 3, "set_to": "5"})
    await store.settle(undo, T0)
    await store.undo_arm([episode_id], T0)
    clock = FakeClock(T0)
    aftercare = Aftercare(store, recorder_for(store, ruleset, clock), clock, poll_s=0.01)
    await aftercare.run_due()
    await aftercare.run_due()  # the next poll finds nothing left to retry
    records = await store.decisions(AuditQuery(limit=100))
    [undone] = [r for r in records if r.step == "undone"]
    assert undone.outcome.value == "failed"
    assert undone.sentence == (
        "Undoing scale-out-api on ns/Deployment/api failed: the undo state it stored is"
        " malformed: scale.set_to: Input should be a valid integer"
    )
    assert await store.undo_due(datetime(2100, 1, 1, tzinfo=UTC)) == []
