"""Reconcile by observation: a claim left without an outcome is settled by looking at the
world its intent named (the scale, the pod's UID, the backend), never by acting again.

Each action's ``reconcile`` against the real parts (the Kubernetes API test server through
kubernetes-asyncio, a real PostgreSQL), then ``reconcile_claims`` on a store: what is
audited, armed and escalated for each answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from remediator.act.reconcile import reconcile_claims
from remediator.actions.base import ActionRequest
from remediator.actions.kill_query import KillQuery, KillQueryIntent, KillQueryParams, evidence
from remediator.actions.recycle_pod import RecyclePod, RecyclePodIntent, RecyclePodParams
from remediator.actions.registry import default_registry
from remediator.actions.scale_out import ScaleOut, ScaleOutIntent, ScaleOutParams, ScaleOutUndo
from remediator.audit.recorder import Recorder
from remediator.clients.k8s import KubeClient, KubeHandle
from remediator.clients.postgres import DatabaseHandle
from remediator.core.metrics import Metrics
from remediator.core.model import AlertStatus, Target
from remediator.escalate import plan as escalate
from remediator.guards.claim import ClaimRequest
from remediator.ruleset.load import load_rules
from remediator.store.contract import AuditQuery, Settlement, Sighting, Store
from tests.support.clock import FakeClock
from tests.support.kube_api import KubeApiServer
from tests.support.kubeconfig import write_kubeconfig
from tests.support.postgres import PostgresServer, Roles
from tests.support.service import EXAMPLE_RULES
from tests.support.stores import runner_for

NS = "llm-research"
T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[tuple[KubeApiServer, KubeHandle]]:
    async with KubeApiServer(seed=11) as server:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server.url, server.token or "")
        handle = KubeHandle()
        handle.client = await KubeClient.connect(kubeconfig, None)
        try:
            yield server, handle
        finally:
            await handle.client.close()


def request(target: Target, params: Any) -> ActionRequest[Any, Any]:
    return ActionRequest(target, params, "rule", 1, {})


SCALE = ScaleOutParams(max_replicas=20, step=2, scale_in_after_s=600)
API = Target("Deployment", NS, "api")


@pytest.mark.parametrize(
    ("replicas", "applied"),
    [(5, True), (7, True), (3, False), (4, None), (2, None)],
    ids=["at-target", "above", "unchanged", "moved-by-someone", "scaled-in-by-someone"],
)
async def test_scale_out_is_observed_as_applied_only_at_or_above_the_intended_count(
    kube: tuple[KubeApiServer, KubeHandle], replicas: int, applied: bool | None
) -> None:
    server, handle = kube
    server.add_deployment(NS, "api", replicas=3)
    assert handle.client is not None
    if replicas != 3:
        scale = await handle.client.scale(NS, "api")
        await handle.client.set_replicas(NS, "api", replicas, scale.resource_version)
    intent = ScaleOutIntent.model_validate({"from": 3, "to": 5, "uid": ""})
    seen = await ScaleOut(handle).reconcile(request(API, SCALE), intent)
    assert seen.applied is applied, seen.sentence
    if applied:
        assert seen.result is not None
        # scale-in still comes
        assert seen.result.undo == ScaleOutUndo.model_validate({"restore_to": 3, "set_to": 5})
    writes = [r for r in server.requests if r.method == "PATCH"]
    assert len(writes) == (0 if replicas == 3 else 1)  # observing wrote nothing


@pytest.mark.parametrize(
    ("min_replicas", "applied"),
    [(5, True), (3, False), (4, None)],
    ids=["raised", "unchanged", "moved-by-someone"],
)
async def test_an_hpa_raise_is_observed_by_its_min_replicas(
    kube: tuple[KubeApiServer, KubeHandle], min_replicas: int, applied: bool | None
) -> None:
    server, handle = kube
    server.add_deployment(NS, "api", replicas=3)
    server.add_hpa(NS, "api", "api", min_replicas=3, max_replicas=10)
    assert handle.client is not None
    if min_replicas != 3:
        [hpa] = await handle.client.hpas_for(NS, "api")
        await handle.client.set_hpa_min(hpa, min_replicas)
    params = ScaleOutParams(max_replicas=20, step=2, hpa="raise_min", scale_in_after_s=600)
    intent = ScaleOutIntent.model_validate({"hpa": "api", "min_from": 3, "min_to": 5, "from": 3})
    seen = await ScaleOut(handle).reconcile(request(API, params), intent)
    assert seen.applied is applied, seen.sentence
    if applied:
        assert seen.result is not None
        undo = {"hpa": "api", "restore_min": 3, "set_min": 5}
        assert seen.result.undo == ScaleOutUndo.model_validate(undo)


async def test_a_pod_is_observed_as_evicted_when_its_uid_is_gone_or_terminating(
    kube: tuple[KubeApiServer, KubeHandle],
) -> None:
    server, handle = kube
    server.add_deployment(NS, "web", replicas=2)
    pods = server.pods(NS, {"app": "web"})
    [first, second] = [(p["metadata"]["name"], p["metadata"]["uid"]) for p in pods]
    action, params = RecyclePod(handle), RecyclePodParams(min_healthy=1)
    target = Target("Pod", NS, first[0])
    intent = RecyclePodIntent.model_validate(
        {"pod": first[0], "uid": first[1], "selector": {"app": "web"}}
    )
    still = await action.reconcile(request(target, params), intent)
    assert still.applied is False
    assert handle.client is not None
    await handle.client.evict(NS, first[0], first[1])
    gone = await action.reconcile(request(target, params), intent)
    assert gone.applied is True and gone.result is not None
    assert gone.result.details["evicted"] is True
    replaced = RecyclePodIntent.model_validate(
        {"pod": second[0], "uid": "uid-of-an-earlier-pod", "selector": {}}
    )
    assert (await action.reconcile(request(target, params), replaced)).applied is True
    writes = [r.path for r in server.requests if r.method in ("POST", "DELETE", "PATCH")]
    assert writes == [f"/api/v1/namespaces/{NS}/pods/{first[0]}/eviction"]  # ours, not its


async def test_a_query_is_observed_as_cancelled_only_once_it_stopped_running(
    tmp_path: Path, pg: PostgresServer, roles: Roles
) -> None:
    app, rem = roles.app, roles.remediator
    victim = await pg.long_query(app.name, app.password, "appdb", 60)
    await victim.started()
    await asyncio.sleep(1.1)
    dsn_file = tmp_path / "primary.dsn"
    dsn_file.write_text(pg.dsn(rem.name, rem.password) + "\n")
    handle = DatabaseHandle()
    await handle.open({"primary": f"file:{dsn_file}"})
    target = handle.targets["primary"]
    try:
        params = KillQueryParams(min_duration_s=1, max_per_run=1)
        [session] = [s for s in await target.sessions(1, ["active"]) if s.pid == victim.pid]
        intent = KillQueryIntent(sessions=[evidence(session, redact=True)])
        action, where = KillQuery(handle), Target("Database", "", "primary")
        assert (await action.reconcile(request(where, params), intent)).applied is False
        assert await target.signal(session, "cancel")
        await victim.finished()
        seen = await action.reconcile(request(where, params), intent)
        assert seen.applied is True, seen.sentence
    finally:
        await handle.close()


async def claimed(store: Store, rule: str, action: str, target: str) -> int:
    [obs] = await store.observe([Sighting("fp", AlertStatus.FIRING, "HighCPUUsage")], T0, 300)
    request = ClaimRequest(
        episode_id=obs.episode.id, rule=rule, action=action, action_kind="scale_out",
        target=target, destructive=False, dry_run=False, cooldown_s=0, rule_limit=None,
        kind_limit=None, global_budget=None,
    )  # fmt: skip
    result = await store.claim(request, T0)
    assert result.claim_id is not None
    return result.claim_id


@pytest.mark.parametrize(
    ("intent", "replicas", "settled", "escalated"),
    [
        (None, 3, ("failed", "not_applied"), ["not_applied"]),
        ({"from": 3, "to": 5}, 3, ("failed", "not_applied"), ["not_applied"]),
        ({"from": 3, "to": 5}, 5, ("succeeded", None), []),
        ({"from": 3, "to": 5}, 4, ("failed", "outcome_unknown"), ["outcome_unknown"]),
    ],
    ids=["no-intent", "not-applied", "applied", "moved-by-someone"],
)
async def test_a_claim_is_settled_by_what_is_observed_and_pages_unless_the_fix_is_in_place(
    store: Store,
    kube: tuple[KubeApiServer, KubeHandle],
    intent: dict[str, int] | None,
    replicas: int,
    settled: tuple[str, str | None],
    escalated: list[str],
) -> None:
    server, handle = kube
    server.add_deployment(NS, "api", replicas=replicas)
    ruleset = load_rules(EXAMPLE_RULES, default_registry(handle))
    [rule] = [r for r in ruleset.rules if r.plan and r.plan.kind == "scale_out"][:1]
    assert rule.plan is not None
    claim_id = await claimed(store, rule.name, rule.plan.name, f"{NS}/Deployment/api")
    if intent is not None:
        assert await store.claim_intent(claim_id, intent, None) == "recorded"
    unfinished = await store.unfinished_claims()
    clock = FakeClock(T0)
    recorder = Recorder(store, Metrics(CollectorRegistry(), []), clock, ruleset, escalate.plan)
    runner = runner_for(store, recorder, clock)
    assert await reconcile_claims(unfinished, recorder, clock, runner) == {"settled": 1}
    assert await store.unfinished_claims() == []
    assert not await store.settle(Settlement(claim_id, "again"), T0)  # it has its outcome
    records = await store.decisions(AuditQuery(limit=100))
    [reconciled] = [r for r in records if r.step == "reconciled"]
    assert (reconciled.outcome.value, reconciled.reason) == settled
    assert [r.reason for r in records if r.step == "escalated"] == escalated
    followups = await store.followup_due(datetime(2100, 1, 1, tzinfo=UTC))
    assert len(followups) == (1 if not escalated else 0)
    assert [r for r in server.requests if r.method == "PATCH"] == []  # never re-run
