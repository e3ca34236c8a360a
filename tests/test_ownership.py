"""Who owns a Deployment's replicas (``actions/ownership.py``), before ``scale_out`` writes.

- The decision, over a table of what the API server shows: KEDA ScaledObjects (paused or
  not), HPAs, managedFields entries of Argo CD, Flux, scalers and people, Argo CD's
  client-side tracking, and hostile annotations.
- End to end on the Kubernetes test server, which fills managedFields as a real API server
  does and serves KEDA's CRD: the service refuses (nothing written) or scales, as the owner
  and the rule say; the answers of a cluster without KEDA, of an RBAC that denies the list,
  and of a proxy that sends HTML.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from remediator.actions import ownership
from remediator.clients.k8s import Autoscaler, Deployment, FieldOwner, ScaledObject
from remediator.core.fingerprint import fingerprint
from remediator.core.model import StopReason
from tests.support.kube_api import KubeApiServer
from tests.support.kubeconfig import write_kubeconfig
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.service import ServiceUnderTest, example_rules, serve, settings_for

NS = "llm-research"
KEY = f"{NS}/Deployment/api"
OPTED_IN = {"remediator.io/allow": "scale_out"}


def deployment(*owners: FieldOwner, annotations: dict[str, str] | None = None) -> Deployment:
    return Deployment(
        namespace=NS, name="api", uid="u1", resource_version="7", generation=1,
        observed_generation=1, replicas=3, ready_replicas=3, updated_replicas=3,
        annotations=annotations or {}, selector={"app": "api"}, replicas_owners=owners,
    )  # fmt: skip


def scaled(name: str = "api-queue", **annotations: str) -> ScaledObject:
    return ScaledObject(NS, name, annotations)


HPA = Autoscaler(NS, "api-hpa", 3, 10, "9")
ARGO_SSA = FieldOwner("argocd-controller", "Apply")
FLUX = FieldOwner("kustomize-controller", "Apply")
KUBECTL_SCALE = FieldOwner("kubectl", "Update", "scale")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
TRACKING = {"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:llm-research/api"}


def applied(spec: Any) -> dict[str, str]:
    return {**TRACKING, LAST_APPLIED: json.dumps({"kind": "Deployment", "spec": spec})}


# (what the API server shows, the rule's hpa and gitops, the owner named or None)
CASES: dict[str, tuple[Deployment, list[ScaledObject], list[Autoscaler], str, str, str | None]] = {
    "nobody else": (deployment(), [], [], "refuse", "refuse", None),
    "a KEDA ScaledObject": (
        deployment(), [scaled()], [HPA], "raise_min", "act",
        f"KEDA ScaledObject {NS}/api-queue scales it",
    ),
    "a KEDA ScaledObject paused at a count": (
        deployment(), [scaled(**{"autoscaling.keda.sh/paused-replicas": "2"})], [],
        "refuse", "refuse",
        f"KEDA ScaledObject {NS}/api-queue holds it at '2' replicas"
        " (autoscaling.keda.sh/paused-replicas: paused on purpose)",
    ),
    "a KEDA ScaledObject paused": (
        deployment(), [scaled(**{"autoscaling.keda.sh/paused": "TRUE"})], [], "refuse",
        "refuse",
        f"KEDA ScaledObject {NS}/api-queue scales it, paused on purpose"
        " (autoscaling.keda.sh/paused)",
    ),
    "two ScaledObjects": (
        deployment(), [scaled("a"), scaled("b")], [], "refuse", "refuse",
        f"KEDA ScaledObject {NS}/a scales it; KEDA ScaledObject {NS}/b scales it",
    ),
    "an HPA": (deployment(), [], [HPA], "refuse", "act",
               "HorizontalPodAutoscaler api-hpa scales it"),
    "an HPA the rule raises": (deployment(), [], [HPA], "raise_min", "refuse", None),
    "two HPAs, even to raise": (
        deployment(), [], [HPA, Autoscaler(NS, "b", 1, 5, "3")], "raise_min", "refuse",
        "HorizontalPodAutoscaler api-hpa, b scales it",
    ),
    "Argo CD applying the replicas": (
        deployment(ARGO_SSA), [], [], "refuse", "refuse",
        "Argo CD owns spec.replicas (field manager 'argocd-controller', Apply)",
    ),
    "Argo CD applying them, the rule acting anyway": (
        deployment(ARGO_SSA), [], [], "refuse", "act", None,
    ),
    "Flux applying them": (
        deployment(KUBECTL_SCALE, FLUX), [], [], "refuse", "refuse",
        "Flux owns spec.replicas (field manager 'kustomize-controller', Apply)",
    ),
    "Argo CD's manager, but through the scale subresource": (
        deployment(FieldOwner("argocd-controller", "Update", "scale")), [], [], "refuse",
        "refuse", None,
    ),
    "kubectl scale and a person's edit": (
        deployment(KUBECTL_SCALE, FieldOwner("kubectl-edit", "Update")), [], [], "refuse",
        "refuse", None,
    ),
    "a manager named like Argo CD's but not it": (
        deployment(FieldOwner("argocd-controller-x", "Apply")), [], [], "refuse", "refuse",
        None,
    ),
    "Argo CD's client-side apply of the replicas": (
        deployment(FieldOwner("kubectl-client-side-apply", "Update"),
                   annotations=applied({"replicas": 3})),
        [], [], "refuse", "refuse",
        "Argo CD tracks it (argocd.argoproj.io/tracking-id:"
        " 'shop:apps/Deployment:llm-research/api') and its last applied configuration sets"
        " spec.replicas (or cannot be read)",
    ),
    "Argo CD tracking it without the replicas": (
        deployment(annotations=applied({"template": {}})), [], [], "refuse", "refuse", None,
    ),
    "a last-applied configuration that is not JSON": (
        deployment(annotations={**TRACKING, LAST_APPLIED: "{not json"}), [], [], "refuse",
        "refuse", "Argo CD tracks it",
    ),
    "a last-applied spec that is a list": (
        deployment(annotations=applied([1, 2])), [], [], "refuse", "refuse", "Argo CD tracks it",
    ),
    "a last-applied configuration without tracking": (
        deployment(annotations={LAST_APPLIED: json.dumps({"spec": {"replicas": 3}})}), [], [],
        "refuse", "refuse", None,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_owner_of_the_replicas_is_named_in_order_keda_hpa_gitops(
    case: tuple[Deployment, list[ScaledObject], list[Autoscaler], Any, Any, str | None],
) -> None:
    shown, scaled_objects, hpas, hpa, gitops, owner = case
    verdict = ownership.decide(shown, scaled_objects, hpas, hpa=hpa, gitops=gitops)
    if owner is None:
        assert verdict.allowed
        return
    assert verdict.reason is StopReason.OWNED_ELSEWHERE
    assert verdict.sentence.startswith(owner)
    undoer = "KEDA" if scaled_objects else "the autoscaler" if hpas else "its next sync"
    assert verdict.sentence.endswith(
        f"; remediator does not fight another controller over the replicas of {KEY}"
        f" ({undoer} would put the count back)."
    )


# --- end to end: the service against the Kubernetes test server -------------------------


def rules_dir(tmp_path: Path, params: str = "") -> Path:
    """The example rules; ``params`` added to the scale-out action's parameters."""
    end = "scale_in_after_s: 1800}"
    return example_rules(tmp_path / "rules", **({end: f"{end[:-1]}, {params}}}"} if params else {}))


@dataclass
class Rig:
    service: ServiceUnderTest
    kube: KubeApiServer

    async def fire(self) -> list[dict[str, Any]]:
        labels = {"alertname": "HighCPUUsage", "namespace": NS, "deployment": "api"}
        status, _ = await self.service.post(webhook_payload(webhook_alert(labels=labels)))
        assert status == 200
        await self.service.settle()
        return await self.service.decisions(fingerprint=fingerprint(labels))

    async def scales(self) -> None:
        """The alert's decision is to act, and the Deployment goes from 3 to 5 replicas."""
        assert "acted" in [d["step"] for d in await self.fire()]
        assert self.kube.deployment(NS, "api")["spec"]["replicas"] == 5

    def scale_writes(self) -> list[str]:
        return [r.path for r in self.kube.requests if r.method == "PATCH" and "scale" in r.path]


@asynccontextmanager
async def rig(tmp_path: Path, params: str = "", keda: bool = True) -> AsyncIterator[Rig]:
    """The service on the example rules (the RBAC ``remediator rbac`` prints for them), a
    cluster with KEDA's CRD (unless ``keda`` is false) and Deployment ``api`` opted in."""
    async with KubeApiServer(seed=31) as kube:
        if keda:
            kube.install_keda()
        kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
        rules = rules_dir(tmp_path, params)
        kube.bind_rbac_of(rules)
        settings = settings_for(tmp_path, kubeconfig=kubeconfig, rules_dir=rules)
        async with serve(settings) as service:
            yield Rig(service, kube)


def refusal(decisions: list[dict[str, Any]]) -> tuple[str, str, str]:
    refused = next(d for d in decisions if d["step"] == "refused")
    escalated = [d["reason"] for d in decisions if d["step"] == "escalated"]
    return refused["reason"], refused["sentence"], ",".join(escalated)


HOSTILE_LISTS = {
    "an HTML page": "<html><body>Sign in</body></html>",
    "items that are not a list": {"kind": "ScaledObjectList", "items": "none"},
    "no scaleTargetRef": {
        "kind": "ScaledObjectList",
        "items": [{"metadata": {"name": "q"}, "spec": {}}],
    },
    "annotations of numbers": {
        "kind": "ScaledObjectList",
        "items": [
            {
                "metadata": {"name": "q", "annotations": {"a": 1}},
                "spec": {"scaleTargetRef": {"name": "api"}},
            }
        ],
    },
}


@pytest.mark.parametrize("body", HOSTILE_LISTS.values(), ids=HOSTILE_LISTS.keys())
async def test_a_scaled_object_list_that_is_not_one_is_doubt_and_nothing_is_written(
    tmp_path: Path, body: Any
) -> None:
    async with rig(tmp_path) as r:
        r.kube.inject_fault(r"/scaledobjects$", method="GET", status=200, body=body)
        reason, sentence, escalated = refusal(await r.fire())
        assert (reason, escalated) == ("api_error", "api_error")
        assert "the answer is not the object asked for" in sentence
        assert r.scale_writes() == []


async def test_a_denied_list_of_scaled_objects_is_refused_as_the_api_error_it_is(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        r.kube.inject_fault(r"/scaledobjects$", method="GET", status=403)
        reason, sentence, _ = refusal(await r.fire())
        assert reason == "api_error" and "scaledobjects" in sentence and "forbidden" in sentence
        assert r.scale_writes() == []


async def test_without_keda_installed_nothing_owns_the_replicas_and_it_scales(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, keda=False) as r:
        await r.scales()
        listed = [q for q in r.kube.requests if q.path.endswith("/scaledobjects")]
        assert [q.status for q in listed] == [404]


async def test_a_scaled_object_paused_or_not_is_named_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        r.kube.add_scaled_object(NS, "api-queue", "api")
        reason, sentence, escalated = refusal(await r.fire())
        assert (reason, escalated) == ("owned_elsewhere", "owned_elsewhere")
        assert sentence.startswith(f"KEDA ScaledObject {NS}/api-queue scales it;")
        assert r.scale_writes() == []
    async with rig(tmp_path / "paused") as r:
        r.kube.add_scaled_object(
            NS, "api-queue", "api", annotations={"autoscaling.keda.sh/paused-replicas": "3"}
        )
        reason, sentence, _ = refusal(await r.fire())
        assert reason == "owned_elsewhere" and "holds it at '3' replicas" in sentence
        assert r.scale_writes() == []


def applied_deployment(replicas: int | None) -> dict[str, Any]:
    """What a GitOps controller applies of Deployment ``api``: its labels and, when given,
    its replicas."""
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": "api"}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "api", "namespace": NS, "labels": {"app": "api"}},
        "spec": spec,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("manager", "tool"),
    [("argocd-controller", "Argo CD"), ("kustomize-controller", "Flux")],
)
async def test_replicas_a_gitops_controller_applies_are_not_scaled_unless_the_rule_says(
    tmp_path: Path, manager: str, tool: str
) -> None:
    async with rig(tmp_path) as r:
        r.kube.apply("deployments", NS, "api", applied_deployment(3), manager, force=True)
        reason, sentence, _ = refusal(await r.fire())
        assert reason == "owned_elsewhere"
        assert sentence.startswith(f"{tool} owns spec.replicas (field manager '{manager}', Apply)")
        assert r.scale_writes() == []
    async with rig(tmp_path / "act", params="gitops: act") as r:
        r.kube.apply("deployments", NS, "api", applied_deployment(3), manager, force=True)
        await r.scales()


async def test_a_gitops_controller_that_leaves_the_replicas_out_does_not_own_them(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        r.kube.apply("deployments", NS, "api", applied_deployment(None), "argocd-controller")
        await r.scales()


async def test_argo_cds_client_side_apply_of_the_replicas_is_seen_by_its_annotations(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        last = json.dumps(applied_deployment(3))
        r.kube.apply(
            "deployments", NS, "api",
            {**applied_deployment(3), "metadata": {
                "name": "api", "namespace": NS,
                "annotations": {"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:x/api",
                                "kubectl.kubernetes.io/last-applied-configuration": last}}},
            "kubectl-client-side-apply", force=True,
        )  # fmt: skip
        reason, sentence, _ = refusal(await r.fire())
        assert reason == "owned_elsewhere" and sentence.startswith("Argo CD tracks it")
        assert r.scale_writes() == []


def with_managed_fields(kube: KubeApiServer, entries: Any) -> dict[str, Any]:
    """Deployment ``api`` as the API server shows it, its managedFields ``entries``."""
    shown = json.loads(json.dumps(kube.deployment(NS, "api")))
    shown["metadata"]["managedFields"] = entries
    return {"kind": "Deployment", "apiVersion": "apps/v1", **shown}


HOSTILE_MANAGED_FIELDS = {
    "a field set that is text": [
        {"manager": "argocd-controller", "operation": "Apply", "fieldsType": "FieldsV1",
         "fieldsV1": "f:spec.f:replicas"},
    ],
    "a spec that is a list": [
        {"manager": "argocd-controller", "operation": "Apply", "fieldsType": "FieldsV1",
         "fieldsV1": {"f:spec": ["f:replicas"]}},
    ],
}  # fmt: skip


@pytest.mark.parametrize("entries", HOSTILE_MANAGED_FIELDS.values(), ids=HOSTILE_MANAGED_FIELDS)
async def test_managed_fields_that_cannot_be_read_are_doubt_and_nothing_is_written(
    tmp_path: Path, entries: Any
) -> None:
    async with rig(tmp_path) as r:
        body = with_managed_fields(r.kube, entries)
        r.kube.inject_fault(r"/deployments/api$", method="GET", status=200, body=body, times=None)
        reason, sentence, _ = refusal(await r.fire())
        assert reason == "api_error" and "not the object asked for" in sentence
        assert r.scale_writes() == []
