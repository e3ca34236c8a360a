"""Crash safety of the pod-template actions, ``rollback`` and ``restart_rollout``: the same
``kill -9`` at every named point of the flow from the claim on as ``scale_out`` goes
through (``test_crash_safety``), a restart on the same state and Alertmanager's resend; then exactly
one claim with one outcome (a claim that sent nothing runs after the restart; one that
announced its write is settled by observing the Deployment's template) and at most one
template write."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.kube_api import KubeApiServer
from tests.support.kubeconfig import write_kubeconfig
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.process import RemediatorProcess, start_remediator
from tests.support.service import example_rules
from tests.test_crash_safety import CRASHES, OUTCOME_STEPS, SqliteState, claims
from tests.test_rollouts import NS, OPTED_IN, ROLLOUT_RULES, V1, V2, released

PRE_CLAIM = ("after_journal_write", "before_ack", "before_process")

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
#: The points from the claim on: the ones before it (the journal, the ack) are the same for
#: every action and ``test_crash_safety`` goes through them.
ACTION_POINTS = [point for point in CRASHES if point not in PRE_CLAIM]


@dataclass(frozen=True)
class Scenario:
    alertname: str
    setup: Callable[[KubeApiServer], Awaitable[None]]
    applied: Callable[[KubeApiServer], bool]
    """Whether the template write is in place."""


async def on_v2(kube: KubeApiServer) -> None:
    kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN, image=V1)
    await released(kube, V2)


async def four_pods(kube: KubeApiServer) -> None:
    kube.add_deployment(NS, "api", replicas=4, annotations=OPTED_IN)


def template(kube: KubeApiServer) -> dict[str, Any]:
    found: dict[str, Any] = kube.deployment(NS, "api")["spec"]["template"]
    return found


SCENARIOS = {
    "rollback": Scenario(
        "BadRelease", on_v2, lambda kube: template(kube)["spec"]["containers"][0]["image"] == V1
    ),
    "restart_rollout": Scenario(
        "PoolLeaked",
        four_pods,
        lambda kube: RESTARTED_AT in (template(kube)["metadata"].get("annotations") or {}),
    ),
}


def payload(scenario: Scenario) -> bytes:
    labels = {"alertname": scenario.alertname, "namespace": NS, "deployment": "api"}
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps(webhook_payload(webhook_alert(labels=labels, startsAt=started))).encode()


def writes(kube: KubeApiServer) -> list[Any]:
    return [r for r in kube.requests if r.method == "PATCH" and r.path.endswith("/deployments/api")]


async def crash(
    crashing: RemediatorProcess, kube: KubeApiServer, scenario: Scenario, body: bytes, point: str
) -> None:
    """Post the alert and see the process die at ``point``; ``side_effect_sent``: the API
    server applies the template write and holds its answer, and the process is SIGKILLed."""
    if point != "side_effect_sent":
        await crashing.post(body)
        assert await crashing.wait_exit() == 137
        return
    kube.inject_fault(r"/deployments/api$", method="PATCH", drop=True, served=True, delay=60)
    posted = asyncio.create_task(crashing.post(body))
    for _ in range(400):
        if scenario.applied(kube):
            break
        await asyncio.sleep(0.025)
    crashing.proc.kill()
    assert await crashing.wait_exit() == -signal.SIGKILL
    await posted
    kube.clear_faults()


async def settled(state: SqliteState) -> None:
    """Every claim has its outcome (written once a verification of a rollout ends)."""
    for _ in range(600):
        rows = await claims(state)
        if rows and all(outcome is not None for _, outcome in rows):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"claims did not settle: {await claims(state)}")


@pytest.mark.parametrize("failpoint", ACTION_POINTS)
@pytest.mark.parametrize("kind", list(SCENARIOS))
async def test_a_crash_at_any_point_ends_with_one_claim_one_outcome_and_at_most_one_write(
    tmp_path: Path, kind: str, failpoint: str
) -> None:
    scenario = SCENARIOS[kind]
    rules = example_rules(tmp_path / "rules")
    (rules / "05-rollouts.yaml").write_text(ROLLOUT_RULES)
    body = payload(scenario)
    async with KubeApiServer(seed=5) as kube:
        await scenario.setup(kube)
        kube.bind_rbac_of(rules)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
        args = ("--kubeconfig", str(kubeconfig))
        crashing = await start_remediator(
            tmp_path, rules=rules, failpoints=failpoint, extra_args=args
        )
        try:
            await crash(crashing, kube, scenario, body, failpoint)
        finally:
            await crashing.stop()
        state = SqliteState(tmp_path / "state.db")
        service = await start_remediator(tmp_path, rules=rules, extra_args=args)
        try:
            assert await service.post(body) == 200  # Alertmanager resends
            await settled(state)
            await asyncio.sleep(0.3)
            decisions = await service.decisions()
        finally:
            assert await service.stop() == 0
        expected_writes, outcome = CRASHES[failpoint]
        assert len(writes(kube)) == expected_writes
        assert scenario.applied(kube) == bool(expected_writes)
        assert kube.internal_errors == []
    assert [o for _, o in await claims(state)] == [outcome]
    steps = [d["step"] for d in decisions]
    assert sum(step in OUTCOME_STEPS for step in steps) == 1, steps
    assert (steps.count("received"), steps.count("claimed")) == (1, 1), steps
    escalated = [d["reason"] for d in decisions if d["step"] == "escalated"]
    assert escalated == ([] if outcome == "succeeded" else ["not_applied"])
