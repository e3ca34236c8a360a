"""Crash safety of the pod-template actions, ``rollback`` and ``restart_rollout``: the same
``kill -9`` at every named point of the flow from the claim on as ``scale_out`` goes through
(``test_crash_safety``), a restart on the same state and Alertmanager's resend; then exactly
one claim with one outcome (a claim that sent nothing runs after the restart; one that
announced its write is settled by observing the Deployment's template) and at most one
template write."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.kube_api import KubeApiServer
from tests.support.kubeconfig import write_kubeconfig
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.process import RemediatorProcess
from tests.support.service import example_rules
from tests.test_crash_safety import CRASHES, check_claim, crash, crash_and_resend
from tests.test_rollouts import NS, OPTED_IN, ROLLOUT_LAGS, ROLLOUT_RULES, V1, V2, released

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


#: Each kind with the points it goes through: the rollback from the claim to its action (a
#: claim resumed after the restart blames the release by the alert's start the claim kept;
#: after the outcome nothing is left to do, for any action: ``test_crash_safety``); the
#: restart at the two its intent decides (written and not sent; sent and applied).
CASES = [("rollback", point) for point in ACTION_POINTS if point != "after_outcome"] + [
    ("restart_rollout", point) for point in ("after_intent", "side_effect_sent")
]


@pytest.mark.parametrize(("kind", "failpoint"), CASES, ids=[f"{k}-{p}" for k, p in CASES])
async def test_a_crash_at_any_point_ends_with_one_claim_one_outcome_and_at_most_one_write(
    tmp_path: Path, kind: str, failpoint: str
) -> None:
    scenario = SCENARIOS[kind]
    rules = example_rules(tmp_path / "rules")
    (rules / "05-rollouts.yaml").write_text(ROLLOUT_RULES)
    body = payload(scenario)
    async with KubeApiServer(seed=5, lags=ROLLOUT_LAGS) as kube:
        await scenario.setup(kube)
        kube.bind_rbac_of(rules)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
        args = ("--kubeconfig", str(kubeconfig))

        async def crash_it(crashing: RemediatorProcess) -> None:
            write = r"/deployments/api$"
            await crash(crashing, kube, failpoint, body, write, scenario.applied)

        # A rollout's outcome comes once its pods are Ready: seconds at the controller's lags.
        state, decisions = await crash_and_resend(
            tmp_path, rules, args, failpoint, crash_it, body, settle_s=30
        )
        expected_writes, outcome = CRASHES[failpoint]
        assert len(writes(kube)) == expected_writes
        assert scenario.applied(kube) == bool(expected_writes)
        assert kube.internal_errors == []
    await check_claim(state, decisions, outcome)
