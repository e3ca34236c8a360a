"""rollback and restart_rollout end to end: a webhook into the service, which reads the
Deployment and its ReplicaSets and writes the pod template through kubernetes-asyncio over
real HTTP on the Kubernetes API test server (whose deployment controller rolls out within
maxSurge/maxUnavailable, re-adopts an older ReplicaSet as the newest revision, and writes
its status at realistic lags), its ServiceAccount bound by what ``remediator rbac`` prints.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from remediator.actions.revisions import Rollout, read_rollout
from remediator.core.errors import ApiError
from remediator.core.fingerprint import fingerprint
from tests.support.kube_api import REALISTIC, KubeApiServer
from tests.support.kubeconfig import write_kubeconfig
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.service import ServiceUnderTest, example_rules, serve, settings_for

NS = "llm-research"
KEY = f"{NS}/Deployment/api"
OPTED_IN = {"remediator.io/allow": "rollback,restart_rollout"}
V1, V2, V3 = "registry.example/api:1", "registry.example/api:2", "registry.example/api:3"
ROLLOUT_RULES = """\
actions:
  roll-back:
    kind: rollback
    params: {max_age_s: 1800}
  restart-pods:
    kind: restart_rollout
    params: {min_healthy: "75%"}
rules:
  - name: bad-release
    matchers: ['alertname="BadRelease"']
    severity: SEV-2
    action: roll-back
    # remediator: allow unguaranteed-label
    target: {kind: Deployment, namespace: "{namespace}", name: "{deployment}"}
    cooldown_s: 3600
    verify_within_s: 8
  - name: pool-leaked
    matchers: ['alertname="PoolLeaked"']
    severity: SEV-3
    action: restart-pods
    # remediator: allow unguaranteed-label
    target: {kind: Deployment, namespace: "{namespace}", name: "{deployment}"}
    cooldown_s: 600
    verify_within_s: 8
"""


@dataclass
class Harness:
    service: ServiceUnderTest
    kube: KubeApiServer

    async def fire(
        self, alertname: str, started: datetime | None = None, deployment: str = "api"
    ) -> list[dict[str, Any]]:
        labels = {"alertname": alertname, "namespace": NS, "deployment": deployment}
        moment = started or datetime.now(UTC)
        alert = webhook_alert(labels=labels, startsAt=moment.strftime("%Y-%m-%dT%H:%M:%SZ"))
        status, _ = await self.service.post(webhook_payload(alert))
        assert status == 200
        await self.service.settle()
        return await self.service.decisions(fingerprint=fingerprint(labels))

    async def until(self, alertname: str, step: str, deployment: str = "api") -> list[Any]:
        """The episode's decisions once one has ``step`` (within 40 s: a rollout of three
        pods at the controller's lags, then the verification's next look)."""
        labels = {"alertname": alertname, "namespace": NS, "deployment": deployment}
        for _ in range(400):
            decisions = await self.service.decisions(fingerprint=fingerprint(labels))
            if step in [d["step"] for d in decisions]:
                return decisions
            await asyncio.sleep(0.1)
        raise AssertionError(f"no {step}: {[(d['step'], d['reason']) for d in decisions]}")

    def template_writes(self) -> list[Any]:
        return [
            r
            for r in self.kube.requests
            if r.method == "PATCH" and r.path.endswith("/deployments/api")
        ]

    def image(self) -> str:
        template = self.kube.deployment(NS, "api")["spec"]["template"]
        return str(template["spec"]["containers"][0]["image"])


ROLLOUT_LAGS = dataclasses.replace(REALISTIC, pod_created_s=(0.02, 0.3), pod_ready_s=(0.1, 0.5))
"""The controllers' realistic lags, pods a few times quicker: a rollout is still many steps
at the controllers' pace, and the status writes still race a guarded write, in a second or
two rather than several."""


@pytest.fixture
async def kube() -> AsyncIterator[KubeApiServer]:
    async with KubeApiServer(seed=11, lags=ROLLOUT_LAGS) as server:
        yield server
        assert server.internal_errors == []


@pytest.fixture
async def harness(tmp_path: Path, kube: KubeApiServer) -> AsyncIterator[Harness]:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
    # A recycle a PodDisruptionBudget refuses holds its Deployment 3 s, not 30.
    rules = example_rules(tmp_path / "rules", **{"pdb_retry_s: 30": "pdb_retry_s: 3"})
    (rules / "05-rollouts.yaml").write_text(ROLLOUT_RULES)
    kube.bind_rbac_of(rules)
    settings = settings_for(tmp_path, kubeconfig=kubeconfig, rules_dir=rules)
    async with serve(settings) as service:
        yield Harness(service, kube)


def steps(decisions: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(d["step"], d["reason"]) for d in decisions]


def rollout_of(kube: KubeApiServer) -> Rollout:
    return read_rollout(kube.deployment(NS, "api"), {"items": kube.replicasets(NS)})


async def released(kube: KubeApiServer, image: str, **fields: Any) -> Rollout:
    """Deploy ``image`` on api and wait until it serves every replica."""
    kube.deploy(NS, "api", image, **fields)
    for _ in range(600):
        rollout = rollout_of(kube)
        current = rollout.current()
        if current is not None and rollout.serves(current):
            return rollout
        await asyncio.sleep(0.05)
    raise AssertionError(f"{image} never served")


async def pods_of(kube: KubeApiServer, image: str, count: int) -> None:
    """Wait until ``count`` pods run ``image`` (Ready or not): how far a rollout got."""
    for _ in range(200):
        if sum(p["spec"]["containers"][0]["image"] == image for p in kube.pods(NS)) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} pods of {image}")


async def api_on_v2(kube: KubeApiServer, replicas: int = 3) -> Rollout:
    kube.add_deployment(NS, "api", replicas=replicas, annotations=OPTED_IN, image=V1)
    return await released(kube, V2)


# --- rollback ----------------------------------------------------------------------------


async def test_a_bad_release_is_rolled_back_to_the_previous_revision_and_verified(
    harness: Harness,
) -> None:
    before = await api_on_v2(harness.kube)
    bad = before.current()
    assert bad is not None and bad.number == 2
    decisions = await harness.fire("BadRelease")
    assert steps(decisions)[:4] == [
        ("received", None), ("classified", None), ("claimed", None), ("acted", None),
    ]  # fmt: skip
    acted = decisions[3]
    [good] = [r for r in before.revisions if r.number == 1]
    assert acted["sentence"] == (
        f"Rolled {KEY} back from revision 2 ({bad.name}) to revision 1 ({good.name})."
    )
    assert acted["details"]["from_revision"] == 2 and acted["details"]["to_revision"] == 1
    assert harness.image() == V1
    decisions = await harness.until("BadRelease", "verified")
    assert decisions[-1]["details"]["verification"] == "verified"
    after = rollout_of(harness.kube)
    current = after.current()
    assert current is not None and current.name == good.name and current.number == 3
    assert after.serves(current)
    assert len(harness.template_writes()) == 1
    [body] = [r.body for r in harness.template_writes()]
    assert [op["path"] for op in body] == ["/metadata/resourceVersion", "/spec/template"]
    assert "pod-template-hash" not in body[1]["value"]["metadata"]["labels"]
    assert [e["reason"] for e in harness.kube.events(NS)] == ["RemediatorRolledBack"]


async def test_a_release_older_than_max_age_before_the_alert_is_not_rolled_back(
    harness: Harness,
) -> None:
    rollout = await api_on_v2(harness.kube)
    assert rollout.revisions[0].number == 2
    began = datetime.now(UTC) - timedelta(hours=2)
    harness.kube.set_created("replicasets", NS, rollout.revisions[0].name, began)
    decisions = await harness.fire("BadRelease")
    assert steps(decisions)[3:] == [
        ("refused", "precheck_failed"), ("escalated", "precheck_failed"),
    ]  # fmt: skip
    assert (
        "s before the alert started, more than max_age_s 1800: too old to blame"
        in (decisions[3]["sentence"])
    )
    assert harness.template_writes() == [] and harness.image() == V2


async def test_an_alert_that_started_before_the_release_is_not_blamed_on_it(
    harness: Harness,
) -> None:
    await api_on_v2(harness.kube)
    decisions = await harness.fire("BadRelease", started=datetime.now(UTC) - timedelta(hours=1))
    assert steps(decisions)[3] == ("refused", "precheck_failed")
    assert "the release did not cause it; no rollback." in decisions[3]["sentence"]
    assert harness.template_writes() == []


async def test_a_deployment_with_one_revision_has_nothing_to_roll_back_to(
    harness: Harness,
) -> None:
    harness.kube.add_deployment(NS, "api", replicas=2, annotations=OPTED_IN)
    decisions = await harness.fire("BadRelease")
    assert steps(decisions)[3] == ("refused", "precheck_failed")
    assert decisions[3]["sentence"] == (
        f"{KEY} has no revision older than 1 kept (revisionHistoryLimit); nothing to roll back to."
    )
    assert harness.template_writes() == []


async def test_a_history_limit_of_zero_leaves_nothing_to_roll_back_to(harness: Harness) -> None:
    harness.kube.add_deployment(
        NS, "api", replicas=2, annotations=OPTED_IN, image=V1, revision_history_limit=0
    )
    await released(harness.kube, V2)
    for _ in range(100):
        if len(harness.kube.replicasets(NS)) == 1:
            break
        await asyncio.sleep(0.05)
    decisions = await harness.fire("BadRelease")
    assert "has no revision older than 2 kept" in decisions[3]["sentence"]
    assert harness.template_writes() == []


async def test_a_paused_deployment_is_not_rolled_back(harness: Harness) -> None:
    await api_on_v2(harness.kube)
    harness.kube.apply(
        "deployments", NS, "api", {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "api", "namespace": NS}, "spec": {"paused": True}}, "kubectl",
    )  # fmt: skip
    decisions = await harness.fire("BadRelease")
    assert steps(decisions)[3] == ("refused", "precheck_failed")
    assert decisions[3]["sentence"] == (
        f"{KEY} is paused (spec.paused): its rollout is held on purpose; no rollback until"
        " someone resumes it."
    )
    assert harness.template_writes() == []


async def test_a_release_argo_cd_deploys_is_not_rolled_back_unless_the_rule_says_so(
    harness: Harness,
) -> None:
    harness.kube.add_deployment(NS, "api", replicas=2, annotations=OPTED_IN, image=V1)
    await released(harness.kube, V2, manager="argocd-controller")
    decisions = await harness.fire("BadRelease")
    assert steps(decisions)[3] == ("refused", "owned_elsewhere")
    assert decisions[3]["sentence"] == (
        "Argo CD owns spec.template (field manager 'argocd-controller', Update); remediator"
        f" does not change the pod template of {KEY} under it (its next sync would put the"
        " template back)."
    )
    assert harness.template_writes() == []


async def test_a_previous_revision_that_fails_too_is_not_restored(harness: Harness) -> None:
    harness.kube.add_deployment(NS, "api", replicas=4, annotations=OPTED_IN, image=V1)
    harness.kube.failing_images.add(V1)  # v1's pods lose readiness, and v2's never get it
    for pod in harness.kube.pods(NS):
        harness.kube.set_pod_ready(NS, pod["metadata"]["name"], False)
    harness.kube.failing_images.add(V2)
    harness.kube.deploy(NS, "api", V2)
    await pods_of(harness.kube, V2, 1)  # the rollout goes as far as maxUnavailable lets it
    decisions = await harness.fire("BadRelease")
    assert steps(decisions)[3] == ("refused", "precheck_failed")
    assert "and none is Ready: it fails too; no rollback." in decisions[3]["sentence"]
    assert harness.template_writes() == []


async def test_a_stalled_release_is_rolled_back_while_it_still_rolls_out(
    harness: Harness,
) -> None:
    harness.kube.add_deployment(NS, "api", replicas=4, annotations=OPTED_IN, image=V1)
    harness.kube.failing_images.add(V2)
    harness.kube.deploy(NS, "api", V2)
    await pods_of(harness.kube, V2, 2)  # two v2 pods that never get Ready, three v1 serving
    decisions = await harness.fire("BadRelease")
    assert decisions[3]["step"] == "acted", steps(decisions)
    assert harness.image() == V1
    decisions = await harness.until("BadRelease", "verified")
    assert decisions[-1]["details"]["verification"] == "verified"
    assert all(p["spec"]["containers"][0]["image"] == V1 for p in harness.kube.pods(NS))


async def test_a_rollback_of_a_rollback_is_refused(harness: Harness) -> None:
    rollout = await api_on_v2(harness.kube)
    [good] = [r for r in rollout.revisions if r.number == 1]
    template = dict(good.template)
    await released(harness.kube, V1)  # someone rolled back by hand: revision 1 becomes 3
    assert template == dict(rollout_of(harness.kube).template)
    decisions = await harness.fire("BadRelease")
    assert steps(decisions)[3] == ("refused", "precheck_failed")
    assert (
        "itself restored by a rollback: rolling back again would restore the release"
        in (decisions[3]["sentence"])
    )
    assert harness.template_writes() == []


async def test_a_second_alert_during_the_rollback_is_refused_by_the_cooldown(
    harness: Harness,
) -> None:
    await api_on_v2(harness.kube)
    first = await harness.fire("BadRelease")
    assert first[3]["step"] == "acted"
    second = await harness.fire("PoolLeaked")  # another rule, the same Deployment
    assert steps(second)[2:] == [("refused", "cooldown"), ("escalated", "cooldown")]
    assert len(harness.template_writes()) == 1


async def test_no_rollback_while_a_pod_of_the_deployment_is_being_recycled(
    harness: Harness,
) -> None:
    kube = harness.kube
    kube.add_deployment(NS, "api", replicas=3, image=V1,
                        annotations={"remediator.io/allow": "rollback,recycle_pod"})  # fmt: skip
    await released(kube, V2)
    kube.add_pdb(NS, "api-pdb", {"app": "api"}, min_available=3)  # the eviction keeps waiting
    pod = kube.pods(NS)[0]["metadata"]["name"]
    crashloop = {"alertname": "PodCrashLooping", "namespace": NS, "pod": pod}
    alert = webhook_alert(labels=crashloop)
    assert (await harness.service.post(webhook_payload(alert)))[0] == 200
    for _ in range(200):  # the recycle holds the Deployment while the PDB refuses
        if any(r.path.endswith("/eviction") for r in kube.requests):
            break
        await asyncio.sleep(0.025)
    decisions = await harness.fire("BadRelease")
    assert steps(decisions)[3:5] == [("refused", "blast_radius"), ("escalated", "blast_radius")]
    assert decisions[3]["sentence"].endswith(f"{KEY} is being remediated already.")
    assert harness.template_writes() == [] and harness.image() == V2


async def test_a_409_in_the_middle_is_read_again_and_the_rollback_goes_through(
    harness: Harness,
) -> None:
    await api_on_v2(harness.kube)
    harness.kube.inject_fault(r"/deployments/api$", method="PATCH", status=409, times=1)
    decisions = await harness.fire("BadRelease")
    assert decisions[3]["outcome"] == "succeeded"
    assert harness.image() == V1
    assert len(harness.template_writes()) == 2


async def test_a_write_whose_answer_is_lost_is_seen_to_have_landed(harness: Harness) -> None:
    await api_on_v2(harness.kube)
    harness.kube.inject_fault(r"/deployments/api$", method="PATCH", drop=True, served=True)
    decisions = await harness.fire("BadRelease")
    assert decisions[3]["outcome"] == "succeeded"
    assert harness.image() == V1
    writes = harness.template_writes()
    assert len(writes) == 2 and writes[1].status == 409  # the retry met the first's landing


async def test_a_release_made_between_precheck_and_write_is_not_written_over(
    harness: Harness,
) -> None:
    await api_on_v2(harness.kube)
    harness.kube.inject_fault(r"/deployments/api$", method="PATCH", delay=1.0)
    labels = {"alertname": "BadRelease", "namespace": NS, "deployment": "api"}
    alert = webhook_alert(labels=labels, startsAt=datetime.now(UTC).strftime("%FT%TZ"))
    assert (await harness.service.post(webhook_payload(alert)))[0] == 200
    for _ in range(200):
        if harness.template_writes():
            break
        await asyncio.sleep(0.01)
    harness.kube.deploy(NS, "api", V3)  # a person's release lands while the write waits
    decisions = await harness.until("BadRelease", "escalated")
    acted = next(d for d in decisions if d["step"] == "acted")
    assert acted["outcome"] == "failed"
    assert acted["sentence"].startswith(f"The pod template of {KEY} changed under remediator")
    assert harness.image() == V3


async def test_a_restored_revision_that_never_gets_ready_is_ineffective_and_escalated(
    harness: Harness,
) -> None:
    await api_on_v2(harness.kube)
    harness.kube.failing_images.add(V1)  # v1's new pods will not pass readiness any more
    labels = {"alertname": "BadRelease", "namespace": NS, "deployment": "api"}
    alert = webhook_alert(labels=labels, startsAt=datetime.now(UTC).strftime("%FT%TZ"))
    assert (await harness.service.post(webhook_payload(alert)))[0] == 200
    decisions = await harness.until("BadRelease", "escalated")  # after verify_within_s 8
    assert [d["step"] for d in decisions][3:] == ["acted", "verified", "escalated"]
    assert harness.image() == V1
    verified = next(d for d in decisions if d["step"] == "verified")
    assert verified["details"]["verification"] == "ineffective"


# --- restart_rollout ---------------------------------------------------------------------


async def test_a_leaked_pool_restarts_every_pod_within_bounds(harness: Harness) -> None:
    harness.kube.add_deployment(NS, "api", replicas=4, annotations=OPTED_IN)
    before = {p["metadata"]["uid"] for p in harness.kube.pods(NS)}
    decisions = await harness.fire("PoolLeaked")
    acted = decisions[3]
    assert acted["step"] == "acted", steps(decisions)
    moment = acted["details"]["restarted_at"]
    template = harness.kube.deployment(NS, "api")["spec"]["template"]
    assert template["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] == moment
    decisions = await harness.until("PoolLeaked", "verified")
    assert decisions[-1]["details"]["verification"] == "verified"
    pods = harness.kube.pods(NS)
    assert len(pods) == 4 and not before & {p["metadata"]["uid"] for p in pods}
    assert [e["reason"] for e in harness.kube.events(NS)] == ["RemediatorRestarted"]


RESTART_REFUSALS: dict[str, tuple[int, dict[str, Any] | None, int, str]] = {
    # name: (replicas, strategy, pods made not Ready, sentence's end)
    "maxUnavailable would cut below min_healthy": (
        4, {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2, "maxSurge": 0}}, 0,
        "could leave 2 Ready replicas of 4 (4 Ready now, maxUnavailable 2), fewer than"
        " min_healthy 75% (3).",
    ),
    "Recreate takes every pod down": (
        4, {"type": "Recreate"}, 0,
        "could leave 0 Ready replicas of 4 (4 Ready now, Recreate takes every pod down),"
        " fewer than min_healthy 75% (3).",
    ),
    "already degraded": (
        4, None, 1,
        "could leave 2 Ready replicas of 4 (3 Ready now, maxUnavailable 1), fewer than"
        " min_healthy 75% (3).",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", RESTART_REFUSALS, ids=list(RESTART_REFUSALS))
async def test_a_restart_that_could_leave_too_few_ready_pods_is_refused(
    harness: Harness, case: str
) -> None:
    replicas, strategy, unready, ending = RESTART_REFUSALS[case]
    harness.kube.add_deployment(
        NS, "api", replicas=replicas, annotations=OPTED_IN, strategy=strategy
    )
    for pod in harness.kube.pods(NS)[:unready]:
        harness.kube.set_pod_ready(NS, pod["metadata"]["name"], False)
    decisions = await harness.fire("PoolLeaked")
    assert steps(decisions)[3:] == [("refused", "blast_radius"), ("escalated", "blast_radius")]
    assert decisions[3]["sentence"] == f"Restarting {KEY} {ending}"
    assert harness.template_writes() == []


async def test_no_restart_while_a_rollout_is_under_way(harness: Harness) -> None:
    harness.kube.add_deployment(NS, "api", replicas=4, annotations=OPTED_IN)
    harness.kube.start_rollout(NS, "api")
    decisions = await harness.fire("PoolLeaked")
    assert steps(decisions)[3] == ("refused", "blast_radius")
    assert decisions[3]["sentence"] == f"{KEY} is rolling out; no restart now."
    assert harness.template_writes() == []


async def test_a_deployment_that_did_not_opt_in_to_restarts_is_not_restarted(
    harness: Harness,
) -> None:
    harness.kube.add_deployment(
        NS, "api", replicas=4, annotations={"remediator.io/allow": "rollback"}
    )
    decisions = await harness.fire("PoolLeaked")
    assert steps(decisions)[3] == ("refused", "not_opted_in")
    assert harness.template_writes() == []


async def test_a_409_during_the_restart_is_read_again_and_written_once(harness: Harness) -> None:
    harness.kube.add_deployment(NS, "api", replicas=4, annotations=OPTED_IN)
    harness.kube.inject_fault(r"/deployments/api$", method="PATCH", status=409, times=1)
    decisions = await harness.fire("PoolLeaked")
    assert decisions[3]["outcome"] == "succeeded"
    assert len(harness.template_writes()) == 2
    generation = harness.kube.deployment(NS, "api")["metadata"]["generation"]
    assert generation == 2  # one template change, one rollout


# --- what the API server sends, read strictly ---------------------------------------------

GOOD_RS = {
    "metadata": {
        "name": "api-1", "uid": "r1", "creationTimestamp": "2026-12-01T10:00:00Z",
        "annotations": {"deployment.kubernetes.io/revision": "1"},
        "ownerReferences": [{"uid": "d1", "controller": True}],
    },
    "spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": "api"}}}},
    "status": {"replicas": 1, "readyReplicas": 1},
}  # fmt: skip
GOOD_DEPLOYMENT = {
    "metadata": {"name": "api", "namespace": NS, "uid": "d1", "resourceVersion": "9",
                 "generation": 1},
    "spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": "api"}}}},
    "status": {"observedGeneration": 1, "readyReplicas": 1, "updatedReplicas": 1},
}  # fmt: skip


def _with(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = changed
    for part in parents:
        node = node[part]
    node[last] = value
    return changed


HOSTILE_ROLLOUTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "a revision that is not a number": (
        GOOD_DEPLOYMENT,
        _with(GOOD_RS, "metadata.annotations", {"deployment.kubernetes.io/revision": "two"}),
    ),
    "a revision past int64": (
        GOOD_DEPLOYMENT,
        _with(
            GOOD_RS,
            "metadata.annotations",
            {"deployment.kubernetes.io/revision": "99999999999999999999"},
        ),
    ),
    "a revision in fullwidth digits": (
        GOOD_DEPLOYMENT,
        _with(GOOD_RS, "metadata.annotations", {"deployment.kubernetes.io/revision": "\uff11"}),
    ),
    "a revision of zero": (
        GOOD_DEPLOYMENT,
        _with(GOOD_RS, "metadata.annotations", {"deployment.kubernetes.io/revision": "0"}),
    ),
    "no creation time": (GOOD_DEPLOYMENT, _with(GOOD_RS, "metadata.creationTimestamp", None)),
    "a creation time without a zone": (
        GOOD_DEPLOYMENT,
        _with(GOOD_RS, "metadata.creationTimestamp", "2026-12-01T10:00:00"),
    ),
    "a template that is a list": (GOOD_DEPLOYMENT, _with(GOOD_RS, "spec.template", [])),
    "replicas as a string": (_with(GOOD_DEPLOYMENT, "spec.replicas", "3"), GOOD_RS),
    "replicas as a bool": (_with(GOOD_DEPLOYMENT, "spec.replicas", True), GOOD_RS),
    "a negative ready count": (_with(GOOD_DEPLOYMENT, "status.readyReplicas", -1), GOOD_RS),
    "no resourceVersion": (_with(GOOD_DEPLOYMENT, "metadata.resourceVersion", ""), GOOD_RS),
    "a strategy fencepost that is neither": (
        _with(GOOD_DEPLOYMENT, "spec.strategy", {"rollingUpdate": {"maxSurge": "lots"}}),
        GOOD_RS,
    ),
    "a strategy that is a string": (_with(GOOD_DEPLOYMENT, "spec.strategy", "fast"), GOOD_RS),
}


@pytest.mark.parametrize("case", HOSTILE_ROLLOUTS, ids=list(HOSTILE_ROLLOUTS))
def test_a_rollout_that_does_not_read_as_one_is_an_api_error_naming_why(case: str) -> None:
    deployment, replicaset = HOSTILE_ROLLOUTS[case]
    with pytest.raises(ApiError, match=r"^the Deployment or its ReplicaSets do not read as such"):
        read_rollout(deployment, {"items": [replicaset]})


def test_a_well_formed_rollout_reads_and_other_owners_replicasets_are_not_its_own() -> None:
    foreign = _with(GOOD_RS, "metadata.ownerReferences", [{"uid": "other", "controller": True}])
    rollout = read_rollout(GOOD_DEPLOYMENT, {"items": [GOOD_RS, foreign]})
    current = rollout.current()
    assert current is not None and current.name == "api-1" and rollout.serves(current)
    assert len(rollout.revisions) == 1 and rollout.previous(current) is None
