"""scale_out and recycle_pod end to end: a webhook into the service, which acts through
kubernetes-asyncio over real HTTP on the Kubernetes API test server, and the audit."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from remediator.cli.main import main
from remediator.core.fingerprint import fingerprint
from tests.support.alertmanager import alertmanager
from tests.support.kube_api import KubeApiServer, Lags
from tests.support.kubeconfig import write_kubeconfig
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.ports import free_port
from tests.support.process import start_remediator
from tests.support.service import (
    EXAMPLE_RULES,
    ServiceUnderTest,
    example_rules,
    serve,
    settings_for,
)

NS = "llm-research"
OPTED_IN = {"remediator.io/allow": "scale_out,recycle_pod"}


@pytest.fixture
async def kube() -> AsyncIterator[KubeApiServer]:
    async with KubeApiServer(seed=7) as server:
        yield server


def rules_dir(tmp_path: Path, **replacements: str) -> Path:
    """The example rules, with text replaced (e.g. a shorter PDB retry for the test)."""
    return example_rules(tmp_path / "rules", **replacements)


@dataclass
class Harness:
    service: ServiceUnderTest
    kube: KubeApiServer

    async def fire(self, **labels: str) -> list[dict[str, Any]]:
        alert = webhook_alert(labels=labels)
        status, _ = await self.service.post(webhook_payload(alert))
        assert status == 200
        await self.service.settle()
        return await self.service.decisions(fingerprint=fingerprint(labels))

    def calls(self, method: str, suffix: str) -> list[str]:
        return [
            r.path for r in self.kube.requests if r.method == method and r.path.endswith(suffix)
        ]


@pytest.fixture
async def harness(tmp_path: Path, kube: KubeApiServer) -> AsyncIterator[Harness]:
    """The service on the example rules, its ServiceAccount bound by exactly what
    ``remediator rbac`` prints for them: a permission an action uses and does not declare
    is a 403, and fails the test that needs it."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
    rules = rules_dir(tmp_path, **{"pdb_retry_s: 30": "pdb_retry_s: 1"})
    kube.bind_rbac_of(rules)
    settings = settings_for(tmp_path, kubeconfig=kubeconfig, rules_dir=rules)
    async with serve(settings) as service:
        yield Harness(service, kube)


def steps(decisions: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(d["step"], d["reason"]) for d in decisions]


def cpu(deployment: str, namespace: str = NS) -> dict[str, str]:
    return {"alertname": "HighCPUUsage", "namespace": namespace, "deployment": deployment}


def crashloop(pod: str, **extra: str) -> dict[str, str]:
    return {"alertname": "PodCrashLooping", "namespace": NS, "pod": pod, **extra}


# --- scale_out --------------------------------------------------------------------------


async def test_high_cpu_scales_an_opted_in_deployment_within_bounds_once(harness: Harness) -> None:
    harness.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    decisions = await harness.fire(**cpu("api"))
    again = await harness.fire(**cpu("api"))  # a resend of the same episode
    assert steps(decisions) == [
        ("received", None), ("classified", None), ("claimed", None), ("acted", None),
        ("verified", None),
    ]  # fmt: skip
    assert again == decisions
    assert harness.kube.deployment(NS, "api")["spec"]["replicas"] == 5
    assert len(harness.calls("PATCH", "/deployments/api/scale")) == 1
    acted = decisions[3]
    assert (
        acted["sentence"] == "Scaled llm-research/Deployment/api from 3 to 5 replicas (at most 20)."
    )
    assert decisions[4]["details"]["verification"] == "verified"
    events = harness.kube.events(NS)
    assert [e["reason"] for e in events] == ["RemediatorScaledOut"]


async def test_scale_out_stops_at_max_replicas(harness: Harness) -> None:
    harness.kube.add_deployment(NS, "api", replicas=19, annotations=OPTED_IN)
    await harness.fire(**cpu("api"))
    assert harness.kube.deployment(NS, "api")["spec"]["replicas"] == 20


async def test_a_deployment_already_at_max_is_left_alone(harness: Harness) -> None:
    harness.kube.add_deployment(NS, "api", replicas=20, annotations=OPTED_IN)
    decisions = await harness.fire(**cpu("api"))
    assert decisions[3]["sentence"] == (
        "llm-research/Deployment/api already runs 20 replicas, at or above the target of 20;"
        " nothing changed."
    )
    assert harness.calls("PATCH", "/scale") == []


async def test_a_conflict_re_reads_and_decides_again(harness: Harness) -> None:
    harness.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    harness.kube.inject_fault(r"/deployments/api/scale$", method="PATCH", status=409, times=1)
    decisions = await harness.fire(**cpu("api"))
    assert decisions[3]["outcome"] == "succeeded"
    assert harness.kube.deployment(NS, "api")["spec"]["replicas"] == 5
    assert len(harness.calls("PATCH", "/deployments/api/scale")) == 2
    assert len(harness.calls("GET", "/deployments/api/scale")) == 2


async def test_a_deployment_an_hpa_scales_is_refused_and_escalated(harness: Harness) -> None:
    harness.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    harness.kube.add_hpa(NS, "api-hpa", "api", min_replicas=3, max_replicas=10)
    decisions = await harness.fire(**cpu("api"))
    assert steps(decisions)[3:] == [
        ("refused", "owned_elsewhere"),
        ("escalated", "owned_elsewhere"),
    ]
    assert decisions[3]["sentence"] == (
        "HorizontalPodAutoscaler api-hpa scales it; remediator does not fight another"
        f" controller over the replicas of {NS}/Deployment/api (the autoscaler would put the"
        " count back)."
    )
    assert harness.calls("PATCH", "/scale") == []


async def test_a_deployment_without_the_opt_in_annotation_is_not_touched(
    harness: Harness,
) -> None:
    harness.kube.add_deployment(
        NS, "api", replicas=3, annotations={"remediator.io/allow": "recycle_pod"}
    )
    decisions = await harness.fire(**cpu("api"))
    assert steps(decisions)[3:] == [("refused", "not_opted_in"), ("escalated", "not_opted_in")]
    assert harness.calls("PATCH", "/scale") == []


async def test_forged_labels_naming_kube_system_never_reach_the_api(harness: Harness) -> None:
    harness.kube.add_deployment("kube-system", "coredns", replicas=2, annotations=OPTED_IN)
    decisions = await harness.fire(**cpu("coredns", namespace="kube-system"))
    assert steps(decisions)[2:] == [("refused", "out_of_scope"), ("escalated", "out_of_scope")]
    assert not [r for r in harness.kube.requests if "kube-system" in r.path]


async def test_a_transient_5xx_is_retried_and_the_scale_out_goes_through(harness: Harness) -> None:
    harness.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    harness.kube.inject_fault(r"/deployments/api$", method="GET", status=503, times=2)
    decisions = await harness.fire(**cpu("api"))
    assert decisions[3]["outcome"] == "succeeded"
    assert harness.kube.deployment(NS, "api")["spec"]["replicas"] == 5


async def test_a_403_is_refused_with_the_api_servers_own_words(harness: Harness) -> None:
    harness.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    harness.kube.inject_fault(r"/deployments/api$", method="GET", status=403, times=None)
    decisions = await harness.fire(**cpu("api"))
    assert steps(decisions)[3:] == [("refused", "api_error"), ("escalated", "api_error")]
    assert 'deployments.apps "api" is forbidden' in decisions[3]["sentence"]


BROKEN_DEPLOYMENTS = {
    "html": "<html>502 Bad Gateway</html>",
    "list": [],
    "bare": {"kind": "Deployment", "apiVersion": "apps/v1"},
    "foreign": {"kind": "Deployment", "metadata": {"name": "x", "namespace": NS},
                "spec": {"replicas": "many", "selector": 7}},
}  # fmt: skip
"""Answers of status 200 to a Deployment's GET that are not a Deployment: a proxy's page,
another type, an object without its parts, one whose fields have the wrong types."""


async def test_an_answer_that_is_not_a_deployment_is_refused_as_an_api_error_not_acted_on(
    harness: Harness,
) -> None:
    for name, body in BROKEN_DEPLOYMENTS.items():
        harness.kube.add_deployment(NS, name, replicas=3, annotations=OPTED_IN)
        harness.kube.inject_fault(rf"/deployments/{name}$", method="GET", status=200,
                                  body=body, times=None)  # fmt: skip
    for name in BROKEN_DEPLOYMENTS:
        decisions = await harness.fire(**cpu(name))
        assert steps(decisions)[3:] == [("refused", "api_error"), ("escalated", "api_error")], (
            name, decisions[3:]
        )  # fmt: skip
        assert "not the object asked for" in decisions[3]["sentence"], decisions[3]["sentence"]
        assert harness.kube.deployment(NS, name)["spec"]["replicas"] == 3
    assert harness.calls("PATCH", "/scale") == []
    health = await harness.service.session.get(f"{harness.service.url}/healthz")
    assert health.status == 200
    health.release()


async def test_an_unreachable_api_means_no_action_an_escalation_and_no_crash(
    tmp_path: Path,
) -> None:
    dead = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{free_port()}", "t")
    async with serve(settings_for(tmp_path, kubeconfig=dead, rules_dir=EXAMPLE_RULES)) as service:
        status, _ = await service.post(webhook_payload(webhook_alert(labels=cpu("api"))))
        assert status == 200
        await service.settle()
        decisions = await service.decisions(fingerprint=fingerprint(cpu("api")))
        health = await service.session.get(f"{service.url}/healthz")
        assert health.status == 200
        health.release()
    assert steps(decisions)[3:] == [("refused", "api_error"), ("escalated", "api_error")]


async def test_without_a_cluster_kubernetes_actions_are_planned_as_dry_run(tmp_path: Path) -> None:
    async with serve(settings_for(tmp_path, rules_dir=EXAMPLE_RULES)) as service:
        await service.post(webhook_payload(webhook_alert(labels=cpu("api"))))
        await service.settle()
        decisions = await service.decisions(fingerprint=fingerprint(cpu("api")))
    assert steps(decisions)[2:] == [("claimed", None), ("dry_run", "dry_run")]
    assert decisions[-1]["sentence"] == (
        "Dry-run (no backend is configured for scale_out): would run scale_out on"
        " llm-research/Deployment/api."
    )


async def test_a_dry_run_reads_what_a_live_run_would_and_writes_nothing(
    tmp_path: Path, kube: KubeApiServer
) -> None:
    """Dry-run with a cluster: the precheck runs, so "would run" is only said where a live
    run would go ahead; the opt-in, the HPA and a missing Deployment refuse as they would."""
    kube.add_deployment(NS, "opted", replicas=3, annotations=OPTED_IN)
    kube.add_deployment(NS, "plain", replicas=3)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
    kube.bind_rbac_of(EXAMPLE_RULES)
    settings = settings_for(tmp_path, kubeconfig=kubeconfig, rules_dir=EXAMPLE_RULES,
                            dry_run=True)  # fmt: skip
    async with serve(settings) as service:
        harness = Harness(service, kube)
        opted, plain, gone = [await harness.fire(**cpu(d)) for d in ("opted", "plain", "gone")]
    assert steps(opted)[3:] == [("dry_run", "dry_run")]
    assert opted[3]["sentence"] == (
        "Dry-run: would run scale_out on llm-research/Deployment/opted; its precheck passed."
    )
    assert opted[3]["details"]["prechecked"] is True
    assert steps(plain)[3][0] == "refused" and steps(plain)[4] == ("escalated", steps(plain)[3][1])
    assert "remediator.io/allow" in plain[3]["sentence"]
    assert steps(gone)[3][0] == "refused"
    assert [r.method for r in kube.requests if r.method not in ("GET", "HEAD")] == []
    assert [kube.deployment(NS, d)["spec"]["replicas"] for d in ("opted", "plain")] == [3, 3]


# --- recycle_pod ------------------------------------------------------------------------


def first_pod(kube: KubeApiServer, app: str) -> dict[str, Any]:
    return kube.pods(NS, {"app": app})[0]


async def test_a_crashlooping_pod_is_evicted_and_replaced(harness: Harness) -> None:
    harness.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    pod = first_pod(harness.kube, "api")
    decisions = await harness.fire(**crashloop(pod["metadata"]["name"]))
    assert steps(decisions)[2:] == [("claimed", None), ("acted", None), ("verified", None)]
    evictions = [r for r in harness.kube.requests if r.path.endswith("/eviction")]
    assert len(evictions) == 1
    assert evictions[0].body["deleteOptions"]["preconditions"]["uid"] == pod["metadata"]["uid"]
    assert not harness.kube.has_pod(NS, pod["metadata"]["name"])
    assert len(harness.kube.pods(NS, {"app": "api"})) == 3
    assert decisions[-1]["details"]["verification"] == "verified"


async def test_two_pods_of_one_workload_are_never_recycled_at_once(harness: Harness) -> None:
    harness.kube.add_deployment(NS, "api", replicas=4, annotations=OPTED_IN)
    names = [p["metadata"]["name"] for p in harness.kube.pods(NS, {"app": "api"})][:2]
    # The first eviction takes a while to be answered: the workload is held meanwhile.
    harness.kube.inject_fault(r"/eviction$", method="POST", delay=1.0)
    alerts = [webhook_alert(labels=crashloop(name)) for name in names]
    assert (await harness.service.post(webhook_payload(*alerts)))[0] == 200
    await harness.service.settle()
    decisions = await harness.service.decisions()
    evictions = [r for r in harness.kube.requests if r.path.endswith("/eviction")]
    assert len(evictions) == 1
    [refused] = [d for d in decisions if d["step"] == "refused"]
    assert (refused["reason"], refused["sentence"]) == (
        "blast_radius",
        "llm-research/Deployment/api is being remediated already.",
    )
    assert [d["step"] for d in decisions].count("acted") == 1


async def test_a_pdb_that_keeps_refusing_ends_in_an_escalation_not_a_delete(
    harness: Harness,
) -> None:
    harness.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    harness.kube.add_pdb(NS, "api-pdb", {"app": "api"}, min_available=3)
    pod = first_pod(harness.kube, "api")
    decisions = await harness.fire(**crashloop(pod["metadata"]["name"]))
    assert steps(decisions)[3:] == [("acted", None), ("escalated", None)]
    assert decisions[3]["outcome"] == "failed"
    assert "PodDisruptionBudget kept refusing" in decisions[3]["sentence"]
    assert harness.kube.has_pod(NS, pod["metadata"]["name"])
    assert harness.calls("DELETE", pod["metadata"]["name"]) == []


async def test_a_pod_replaced_since_the_alert_is_not_evicted(harness: Harness) -> None:
    harness.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    pod = first_pod(harness.kube, "api")
    labels = crashloop(pod["metadata"]["name"], uid="0b0b0b0b-dead-beef-0000-000000000000")
    decisions = await harness.fire(**labels)
    assert steps(decisions)[3:] == [("refused", "target_gone"), ("escalated", "target_gone")]
    assert harness.calls("POST", "/eviction") == []


async def test_a_standalone_pod_is_refused(harness: Harness) -> None:
    harness.kube.add_standalone_pod(NS, "debug-shell", {"app": "debug"})
    decisions = await harness.fire(**crashloop("debug-shell"))
    assert steps(decisions)[3:] == [
        ("refused", "precheck_failed"),
        ("escalated", "precheck_failed"),
    ]
    assert "has no controller" in decisions[3]["sentence"]
    assert harness.calls("POST", "/eviction") == []


async def test_a_recycle_that_would_leave_too_few_ready_replicas_is_refused(
    harness: Harness,
) -> None:
    harness.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    pods = harness.kube.pods(NS, {"app": "api"})
    harness.kube.set_pod_ready(NS, pods[1]["metadata"]["name"], False)
    decisions = await harness.fire(**crashloop(pods[0]["metadata"]["name"]))
    assert steps(decisions)[3:] == [("refused", "blast_radius"), ("escalated", "blast_radius")]
    assert "would leave 1 ready replicas" in decisions[3]["sentence"]
    assert harness.calls("POST", "/eviction") == []


async def test_no_pod_is_recycled_while_its_deployment_rolls_out(harness: Harness) -> None:
    harness.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    harness.kube.start_rollout(NS, "api")
    pod = first_pod(harness.kube, "api")
    decisions = await harness.fire(**crashloop(pod["metadata"]["name"]))
    assert steps(decisions)[3] == ("refused", "blast_radius")
    assert "rolling out" in decisions[3]["sentence"]


# --- scale back in ----------------------------------------------------------------------


@pytest.fixture
async def quick_scale_in(tmp_path: Path, kube: KubeApiServer) -> AsyncIterator[Harness]:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
    rules = rules_dir(tmp_path, **{"scale_in_after_s: 1800": "scale_in_after_s: 0.2"})
    settings = settings_for(tmp_path, kubeconfig=kubeconfig, rules_dir=rules, aftercare_poll_s=0.05)
    async with serve(settings) as service:
        yield Harness(service, kube)


async def scale_by_hand(kube: KubeApiServer, deployment: str, replicas: int) -> None:
    url = f"{kube.url}/apis/apps/v1/namespaces/{NS}/deployments/{deployment}/scale"
    headers = {
        "Authorization": f"Bearer {kube.token}",
        "Content-Type": "application/merge-patch+json",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.patch(url, json={"spec": {"replicas": replicas}}, headers=headers) as resp,
    ):
        assert resp.status == 200


async def resolve_and_wait(harness: Harness, labels: dict[str, str]) -> list[dict[str, Any]]:
    resolved = webhook_alert(status="resolved", labels=labels)
    assert (await harness.service.post(webhook_payload(resolved)))[0] == 200
    await harness.service.settle()
    for _ in range(100):
        decisions = await harness.service.decisions(fingerprint=fingerprint(labels))
        if decisions[-1]["step"] == "undone":
            return decisions
        await asyncio.sleep(0.05)
    raise AssertionError(f"no scale-in recorded: {steps(decisions)}")


async def test_after_the_quiet_period_the_deployment_returns_to_its_count(
    quick_scale_in: Harness,
) -> None:
    quick_scale_in.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    await quick_scale_in.fire(**cpu("api"))
    assert quick_scale_in.kube.deployment(NS, "api")["spec"]["replicas"] == 5
    decisions = await resolve_and_wait(quick_scale_in, cpu("api"))
    assert [d["step"] for d in decisions][-2:] == ["resolved", "undone"]
    assert decisions[-1]["sentence"] == (
        "Scaled llm-research/Deployment/api back in from 5 to 3 replicas (started from 3)."
    )
    assert quick_scale_in.kube.deployment(NS, "api")["spec"]["replicas"] == 3


async def test_replicas_someone_else_changed_are_not_scaled_back(quick_scale_in: Harness) -> None:
    quick_scale_in.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    await quick_scale_in.fire(**cpu("api"))
    await scale_by_hand(quick_scale_in.kube, "api", 8)  # an SRE scaled it meanwhile
    decisions = await resolve_and_wait(quick_scale_in, cpu("api"))
    assert "someone else changed it, so it is not scaled back" in decisions[-1]["sentence"]
    assert quick_scale_in.kube.deployment(NS, "api")["spec"]["replicas"] == 8


def rbac_documents(
    rules: Path, capsys: pytest.CaptureFixture[str], *flags: str
) -> list[dict[str, Any]]:
    """What ``remediator rbac --rules rules`` prints: a Role and its binding per namespace
    (with ``--cluster-role``: the ClusterRole, then its bindings)."""
    assert main(["rbac", "--rules", str(rules), *flags]) == 0
    return list(yaml.safe_load_all(capsys.readouterr().out))


def granted(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """The verbs a role grants, by (API group, resource)."""
    return {
        (r["apiGroups"][0], res): set(r["verbs"]) for r in role["rules"] for res in r["resources"]
    }


async def test_the_rbac_command_lists_what_the_example_actions_need(
    capsys: pytest.CaptureFixture[str],
) -> None:
    role, binding = rbac_documents(EXAMPLE_RULES, capsys)
    assert (role["kind"], role["metadata"]["namespace"]) == ("Role", NS)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "remediator"
    }  # fmt: skip
    rules = granted(role)
    assert rules[("", "pods/eviction")] == {"create"}
    assert rules[("apps", "deployments/scale")] == {"get", "patch"}
    # No example rule sets allow_delete_fallback, so pods leave by eviction only (a delete
    # would bypass their PodDisruptionBudgets); none says hpa: raise_min, so HPAs are listed.
    assert rules[("", "pods")] == {"get", "list"}
    assert rules[("autoscaling", "horizontalpodautoscalers")] == {"list"}
    assert (binding["kind"], binding["metadata"]["namespace"]) == ("RoleBinding", NS)


async def test_asked_for_a_cluster_role_the_rbac_is_one_cluster_role_bound_per_namespace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = rules_dir(tmp_path, **{"namespaces: [llm-research]": "namespaces: [a, b]"})
    role, *bindings = rbac_documents(rules, capsys, "--cluster-role", "--name", "rem")
    assert (role["kind"], role["metadata"]) == ("ClusterRole", {"name": "rem"})
    assert granted(role) == granted(rbac_documents(rules, capsys)[0])
    assert [(b["kind"], b["metadata"], b["roleRef"]["kind"]) for b in bindings] == [
        ("RoleBinding", {"name": "rem", "namespace": "a"}, "ClusterRole"),
        ("RoleBinding", {"name": "rem", "namespace": "b"}, "ClusterRole"),
    ]


async def test_the_rbac_grants_what_each_rule_s_parameters_use_and_no_more(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``hpa: raise_min`` patches the HPA; ``allow_delete_fallback`` deletes pods."""
    rules = rules_dir(
        tmp_path,
        **{
            "params: {step: 2, max_replicas: 20, scale_in_after_s: 1800}":
            "params: {step: 2, max_replicas: 20, hpa: raise_min, scale_in_after_s: 1800}",
            "pdb_retry_s: 30": "pdb_retry_s: 30, allow_delete_fallback: true",
        },
    )  # fmt: skip
    verbs = granted(rbac_documents(rules, capsys)[0])
    assert verbs[("autoscaling", "horizontalpodautoscalers")] == {"list", "patch"}
    assert verbs[("", "pods")] == {"get", "list", "delete"}


async def test_a_real_alertmanager_webhook_ends_in_one_eviction_on_the_api_server(
    tmp_path: Path, kube: KubeApiServer
) -> None:
    kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    pod = first_pod(kube, "api")["metadata"]["name"]
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
    service = await start_remediator(
        tmp_path / "remediator", rules=EXAMPLE_RULES, extra_args=("--kubeconfig", str(kubeconfig))
    )
    try:
        async with alertmanager(
            tmp_path / "am",
            service.webhook_url,
            credentials_file=tmp_path / "remediator" / "token",
            group_interval="1s",
        ) as am:
            await am.post_alerts([{"labels": crashloop(pod), "annotations": {}}])
            for _ in range(200):
                if any(d["step"] == "verified" for d in await service.decisions()):
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(2.5)  # room for any further notification to arrive and act
            decisions = await service.decisions()
    finally:
        await service.stop()
    assert [d["step"] for d in decisions] == [
        "received", "classified", "claimed", "acted", "verified",
    ]  # fmt: skip
    evictions = [r for r in kube.requests if r.method == "POST" and r.path.endswith("/eviction")]
    assert [r.path for r in evictions] == [f"/api/v1/namespaces/{NS}/pods/{pod}/eviction"]
    assert not kube.has_pod(NS, pod)


async def test_api_throttling_with_retry_after_is_waited_out(harness: Harness) -> None:
    harness.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    harness.kube.inject_fault(r"/deployments/api/scale$", method="GET", status=429, retry_after=1)
    decisions = await harness.fire(**cpu("api"))
    assert decisions[3]["outcome"] == "succeeded"
    assert harness.kube.deployment(NS, "api")["spec"]["replicas"] == 5


async def test_a_dropped_connection_is_retried(harness: Harness) -> None:
    harness.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    harness.kube.inject_fault(r"/horizontalpodautoscalers$", method="GET", drop=True)
    decisions = await harness.fire(**cpu("api"))
    assert decisions[3]["outcome"] == "succeeded"


async def test_a_daemonset_pod_is_refused_unless_the_rule_allows_it(harness: Harness) -> None:
    pod = harness.kube.add_daemonset_pod(NS, "node-exporter")["metadata"]["name"]
    decisions = await harness.fire(**crashloop(pod))
    assert steps(decisions)[3] == ("refused", "precheck_failed")
    assert "belongs to DaemonSet node-exporter" in decisions[3]["sentence"]
    assert harness.calls("POST", "/eviction") == []


async def wait_for_step(
    harness: Harness, labels: dict[str, str], count: int
) -> list[dict[str, Any]]:
    """The episode's decisions once there are ``count`` of them (within 15 s: as long as a
    verification on lagging controllers takes)."""
    for _ in range(300):
        decisions = await harness.service.decisions(fingerprint=fingerprint(labels))
        if len(decisions) >= count:
            return decisions
        await asyncio.sleep(0.05)
    raise AssertionError(f"only {steps(decisions)}")


async def test_a_rule_may_scale_through_the_hpa_by_raising_its_min_replicas(
    tmp_path: Path, kube: KubeApiServer
) -> None:
    kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    kube.add_hpa(NS, "api-hpa", "api", min_replicas=3, max_replicas=4)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
    rules = rules_dir(
        tmp_path,
        **{
            "params: {step: 2, max_replicas: 20, scale_in_after_s: 1800}":
            "params: {step: 2, max_replicas: 20, hpa: raise_min, scale_in_after_s: 0.2}",
        },
    )  # fmt: skip
    kube.bind_rbac_of(rules)  # raising minReplicas is a patch the rule's RBAC grants
    # The HPA acts on its next sync, the pods are Ready after that: verification waits for
    # both (a controller manager run with --horizontal-pod-autoscaler-sync-period=1s).
    kube.lags = dataclasses.replace(kube.lags, hpa_sync_s=1.0)
    settings = settings_for(tmp_path, kubeconfig=kubeconfig, rules_dir=rules, aftercare_poll_s=0.05)
    async with serve(settings) as service:
        harness = Harness(service, kube)
        await harness.fire(**cpu("api"))
        decisions = await wait_for_step(harness, cpu("api"), 5)
        assert decisions[4]["details"]["verification"] == "verified"
        # The HPA's own maximum (4) bounds the step as much as the rule's does.
        assert decisions[3]["sentence"] == (
            "Raised minReplicas of HorizontalPodAutoscaler api-hpa from 3 to 4, so it scales"
            " llm-research/Deployment/api out."
        )
        assert kube.deployment(NS, "api")["spec"]["replicas"] == 4
        assert harness.calls("PATCH", "/scale") == []
        undone = await resolve_and_wait(harness, cpu("api"))
    assert undone[-1]["sentence"] == (
        "Lowered minReplicas of HorizontalPodAutoscaler api-hpa back to 3."
    )
    events = sorted((e["reason"], e["involvedObject"]["kind"]) for e in kube.events(NS))
    assert events == [
        ("RemediatorLoweredMin", "HorizontalPodAutoscaler"),
        ("RemediatorRaisedMin", "HorizontalPodAutoscaler"),
    ]


@pytest.fixture
async def quick_verify(tmp_path: Path, kube: KubeApiServer) -> AsyncIterator[Harness]:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
    # Long enough for the new pods to be Ready (at most 2 s after the write), short enough
    # for the alert that keeps firing to outlast it.
    rules = rules_dir(tmp_path, **{"verify_within_s: 300": "verify_within_s: 3"})
    settings = settings_for(tmp_path, kubeconfig=kubeconfig, rules_dir=rules, aftercare_poll_s=0.05)
    async with serve(settings) as service:
        yield Harness(service, kube)


async def test_a_fix_that_holds_while_the_alert_keeps_firing_is_ineffective_and_escalated(
    quick_verify: Harness,
) -> None:
    quick_verify.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    await quick_verify.fire(**cpu("api"))
    decisions = await wait_for_step(quick_verify, cpu("api"), 7)
    assert [d["step"] for d in decisions] == [
        "received", "classified", "claimed", "acted", "verified", "verified", "escalated",
    ]  # fmt: skip
    assert decisions[5]["outcome"] == "failed"
    assert decisions[5]["details"]["verification"] == "ineffective"
    assert "still fires" in decisions[5]["sentence"]


async def test_a_fix_after_which_the_alert_resolves_is_verified(quick_verify: Harness) -> None:
    quick_verify.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    await quick_verify.fire(**cpu("api"))
    resolved = webhook_alert(status="resolved", labels=cpu("api"))
    assert (await quick_verify.service.post(webhook_payload(resolved)))[0] == 200
    decisions = await wait_for_step(quick_verify, cpu("api"), 7)
    assert [d["step"] for d in decisions][-2:] == ["resolved", "verified"]
    assert decisions[-1]["sentence"] == (
        "The alert resolved after scale-out-api on llm-research/Deployment/api."
    )


async def test_a_scale_write_whose_answer_is_lost_is_not_applied_twice(harness: Harness) -> None:
    harness.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    # The API server applies the PATCH, then the connection drops before the answer: the
    # client retries the same write (409, stale resourceVersion) and reads the scale again.
    harness.kube.inject_fault(r"/deployments/api/scale$", method="PATCH", drop=True, served=True)
    decisions = await harness.fire(**cpu("api"))
    assert harness.kube.deployment(NS, "api")["spec"]["replicas"] == 5
    assert decisions[3]["outcome"] == "succeeded"
    assert decisions[3]["sentence"] == (
        "Scaled llm-research/Deployment/api from 3 to 5 replicas; the write landed though its"
        " answer was lost."
    )
    assert len(harness.calls("PATCH", "/deployments/api/scale")) == 2  # the retry met 409


# --- as the real API server answers (issue findings) ------------------------------------


async def test_a_409_while_scaling_back_is_read_again_and_the_scale_in_goes_through(
    quick_scale_in: Harness,
) -> None:
    """The deployment controller's status writes bump resourceVersion between a read and
    a write: a 409 with the replicas still at what remediator set is retried, not given up."""
    quick_scale_in.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    await quick_scale_in.fire(**cpu("api"))
    assert quick_scale_in.kube.deployment(NS, "api")["spec"]["replicas"] == 5
    quick_scale_in.kube.inject_fault(r"/deployments/api/scale$", method="PATCH", status=409)
    decisions = await resolve_and_wait(quick_scale_in, cpu("api"))
    assert decisions[-1]["sentence"] == (
        "Scaled llm-research/Deployment/api back in from 5 to 3 replicas (started from 3)."
    )
    assert quick_scale_in.kube.deployment(NS, "api")["spec"]["replicas"] == 3
    events = sorted(e["reason"] for e in quick_scale_in.kube.events(NS))
    assert events == ["RemediatorScaledIn", "RemediatorScaledOut"]


async def test_on_a_busy_cluster_scaling_out_and_back_waits_out_the_controller_s_status_writes(
    quick_scale_in: Harness,
) -> None:
    """The deployment controller writes status four times in 1.6 s after each replica change,
    and each write lands between remediator's read and its guarded write: tries in quick
    succession all meet 409. Backing off, a scale-out just after someone scaled by hand goes
    through, and so does the scale back in after it."""
    kube = quick_scale_in.kube
    kube.lags = dataclasses.replace(
        kube.lags, status_writes=(4, 4), status_write_gap_s=(0.4, 0.4), busy_conflict=1.0
    )
    kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    await scale_by_hand(kube, "api", 4)
    decisions = await quick_scale_in.fire(**cpu("api"))
    assert decisions[3]["sentence"] == (
        "Scaled llm-research/Deployment/api from 4 to 6 replicas (at most 20)."
    )
    out = len(quick_scale_in.calls("PATCH", "/deployments/api/scale"))
    assert out > 1 + 1  # the hand's write, then 409s waited out
    decisions = await resolve_and_wait(quick_scale_in, cpu("api"))
    assert decisions[-1]["sentence"] == (
        "Scaled llm-research/Deployment/api back in from 6 to 4 replicas (started from 4)."
    )
    assert kube.deployment(NS, "api")["spec"]["replicas"] == 4


async def test_a_recycle_refused_before_it_acted_starts_no_cooldown(harness: Harness) -> None:
    """Refused by the blast radius, nothing happened to the pod: a later episode of the
    same pod is judged on its own, not refused as "acted on 0 s ago"."""
    harness.kube.add_deployment(NS, "api", replicas=1, annotations=OPTED_IN)
    pod = first_pod(harness.kube, "api")["metadata"]["name"]
    first = await harness.fire(**crashloop(pod, instance="a"))
    assert steps(first)[3:] == [("refused", "blast_radius"), ("escalated", "blast_radius")]
    again = await harness.fire(**crashloop(pod, instance="b"))  # another episode, same pod
    assert ("refused", "cooldown") not in steps(again)
    assert steps(again)[3] == ("refused", "blast_radius")


async def test_a_403_on_the_write_is_an_api_error_refusal_counted_as_one(
    harness: Harness,
) -> None:
    harness.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    harness.kube.inject_fault(r"/deployments/api/scale$", method="PATCH", status=403, times=None)
    decisions = await harness.fire(**cpu("api"))
    assert steps(decisions)[3:] == [("refused", "api_error"), ("escalated", "api_error")]
    assert "is forbidden" in decisions[3]["sentence"]
    assert harness.kube.deployment(NS, "api")["spec"]["replicas"] == 3
    refusals = await harness.service.metric_by_label("remediator_guard_refusals_total")
    assert refusals["api_error"] == 1


async def test_an_eviction_answered_5xx_is_retried(harness: Harness) -> None:
    harness.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    pod = first_pod(harness.kube, "api")["metadata"]["name"]
    harness.kube.inject_fault(r"/eviction$", method="POST", status=503, times=1)
    decisions = await harness.fire(**crashloop(pod))
    assert steps(decisions)[3:] == [("acted", None), ("verified", None)]
    assert len(harness.calls("POST", "/eviction")) == 2
    assert not harness.kube.has_pod(NS, pod)


async def test_the_pdb_retry_waits_as_long_as_the_server_s_retry_after(
    tmp_path: Path, kube: KubeApiServer
) -> None:
    """An uncomputed PDB answers 429 with Retry-After: 10. Within a 5 s retry budget the
    eviction is not tried again every 2 s: it is tried once, and the budget ends it."""
    kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    pod = first_pod(kube, "api")["metadata"]["name"]
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 429,
            "reason": "TooManyRequests", "message": "Cannot evict pod as it would violate the"
            " pod's disruption budget.", "details": {"retryAfterSeconds": 10}}  # fmt: skip
    kube.inject_fault(
        r"/eviction$", method="POST", status=429, body=body, retry_after=10, times=None
    )
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
    rules = rules_dir(tmp_path, **{"pdb_retry_s: 30": "pdb_retry_s: 5"})
    async with serve(settings_for(tmp_path, kubeconfig=kubeconfig, rules_dir=rules)) as service:
        decisions = await Harness(service, kube).fire(**crashloop(pod))
    assert decisions[3]["outcome"] == "failed"
    assert len([r for r in kube.requests if r.path.endswith("/eviction")]) == 1


async def test_a_pod_of_a_deployment_that_did_not_opt_in_is_refused_as_not_opted_in(
    harness: Harness,
) -> None:
    """Not opted in comes first, whatever the workload's state (here too few replicas)."""
    harness.kube.add_deployment(NS, "api", replicas=1)
    pod = first_pod(harness.kube, "api")["metadata"]["name"]
    decisions = await harness.fire(**crashloop(pod))
    assert steps(decisions)[3] == ("refused", "not_opted_in")


async def test_a_recycle_is_verified_only_once_its_replacement_is_ready(harness: Harness) -> None:
    """The ReplicaSet creates the replacement after the eviction, and the kubelet readies
    it later still: the other pods, Ready all along, do not verify the recycle."""
    harness.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    harness.kube.lags = Lags(pod_created_s=(0.1, 0.1), pod_ready_s=(0.9, 0.9))
    pod = first_pod(harness.kube, "api")
    decisions = await harness.fire(**crashloop(pod["metadata"]["name"]))
    acted, verified = decisions[3], decisions[4]
    assert (acted["step"], verified["step"]) == ("acted", "verified")
    assert verified["details"]["verification"] == "verified"
    waited_s = datetime.fromisoformat(verified["at"]) - datetime.fromisoformat(acted["at"])
    assert waited_s.total_seconds() >= 0.7  # the replacement's readiness, not the others'
    uids = {p["metadata"]["uid"] for p in harness.kube.pods(NS, {"app": "api"})}
    assert pod["metadata"]["uid"] not in uids and len(uids) == 3
