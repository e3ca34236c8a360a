"""The test kube-apiserver (tests/support/kube_api.py), driven only through kubernetes-asyncio.

Each test loads a kubeconfig written by tests/support/kubeconfig.py and talks to the server
the way remediator will. Then it checks the status codes, the ``kind: Status`` bodies and the
state the simulated controllers leave behind.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.api_client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from tests.support.kube_api import REALISTIC, KubeApiServer, Lags
from tests.support.kubeconfig import write_kubeconfig
from tests.support.service import SCALE_FLEET_RULES

NS = "shop"
USER = "system:serviceaccount:remediator:remediator"
MERGE_PATCH = "application/merge-patch+json"


@pytest.fixture
async def kube() -> AsyncIterator[KubeApiServer]:
    async with KubeApiServer(user=USER, seed=7) as server:
        server.add_namespace(NS)
        yield server
        assert server.internal_errors == []


@pytest.fixture
async def api(kube: KubeApiServer, tmp_path: Path) -> AsyncIterator[ApiClient]:
    assert kube.token is not None
    path = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token)
    api_client = await config.new_client_from_config(config_file=str(path), context="test")
    try:
        yield api_client
    finally:
        await api_client.close()


def status_body(exc: ApiException) -> dict[str, Any]:
    assert exc.body is not None
    body: dict[str, Any] = json.loads(exc.body)
    return body


def headers(exc: ApiException) -> Mapping[str, str]:
    assert exc.headers is not None
    return exc.headers


def eviction(name: str, uid: str | None = None) -> client.V1Eviction:
    options = None
    if uid is not None:
        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid))
    return client.V1Eviction(
        api_version="policy/v1",
        kind="Eviction",
        metadata=client.V1ObjectMeta(name=name, namespace=NS),
        delete_options=options,
    )


async def evict(api: ApiClient, name: str, uid: str | None = None) -> int:
    """POST an eviction; return the HTTP status (raises ApiException on errors)."""
    core = client.CoreV1Api(api)
    _, status, _ = await core.create_namespaced_pod_eviction_with_http_info(
        name, NS, eviction(name, uid)
    )
    return int(status)


async def pod_names(api: ApiClient, selector: str = "", field_selector: str = "") -> list[str]:
    pods = await client.CoreV1Api(api).list_namespaced_pod(
        NS, label_selector=selector, field_selector=field_selector
    )
    return sorted(p.metadata.name for p in pods.items)


def is_ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


async def poll(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 15.0) -> float:
    """Poll ``check`` every 10 ms, as a client waits for controllers; return the seconds it
    took to hold. Tests wait this way whatever the server's lags (see ``KUBE_API_LAGS``)."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < timeout_s, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def ready_replicas(api: ApiClient, name: str = "web") -> int:
    d = await client.AppsV1Api(api).read_namespaced_deployment(name, NS)
    return int(d.status.ready_replicas or 0)


async def ready_is(api: ApiClient, count: int) -> bool:
    return await ready_replicas(api) == count


async def pods_are(api: ApiClient, selector: str, count: int) -> None:
    async def counted() -> bool:
        return len(await pod_names(api, selector)) == count

    await poll(counted, f"{count} pods {selector}")


# ---- scale ----------------------------------------------------------------------------------


async def test_the_scale_subresource_is_read_and_patched_and_the_controllers_follow(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_deployment(NS, "web", replicas=3)
    apps = client.AppsV1Api(api)

    scale = await apps.read_namespaced_deployment_scale("web", NS)
    assert (scale.kind, scale.api_version) == ("Scale", "autoscaling/v1")
    assert scale.spec.replicas == 3
    assert scale.status.replicas == 3
    assert scale.status.selector == "app=web"
    deployment = kube.deployment(NS, "web")
    assert scale.metadata.resource_version == deployment["metadata"]["resourceVersion"]
    assert scale.metadata.uid == deployment["metadata"]["uid"]

    patched = await apps.patch_namespaced_deployment_scale(  # type: ignore[call-arg]  # not in the stubs
        "web", NS, {"spec": {"replicas": 5}}, _content_type=MERGE_PATCH
    )
    assert patched.spec.replicas == 5
    assert patched.status.replicas == 3  # the answer predates the controller's work
    assert int(patched.metadata.resource_version) > int(scale.metadata.resource_version)

    await poll(lambda: ready_is(api, 5), "5 Ready replicas")
    d = await apps.read_namespaced_deployment("web", NS)
    assert d.spec.replicas == 5
    assert d.metadata.generation == 2
    assert d.status.observed_generation == 2
    assert (d.status.replicas, d.status.ready_replicas, d.status.available_replicas) == (5, 5, 5)
    assert d.status.updated_replicas == 5
    assert len(await pod_names(api, "app=web")) == 5

    # kubernetes-asyncio's default content type for a dict body: strategic merge patch.
    await apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": 1}})
    assert kube.requests[-1].content_type == "application/strategic-merge-patch+json"
    await pods_are(api, "app=web", 1)


async def test_scaling_down_removes_the_newest_pods_first(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_deployment(NS, "web", replicas=3)
    originals = await pod_names(api, "app=web")
    apps = client.AppsV1Api(api)
    await apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": 5}})
    await poll(lambda: ready_is(api, 5), "5 Ready replicas")

    await apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": 3}})

    await pods_are(api, "app=web", 3)
    assert await pod_names(api, "app=web") == originals


async def test_patching_the_scale_with_a_stale_resource_version_is_a_conflict(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_deployment(NS, "web", replicas=3)
    apps = client.AppsV1Api(api)
    stale = (await apps.read_namespaced_deployment_scale("web", NS)).metadata.resource_version
    await apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": 4}})

    with pytest.raises(ApiException) as caught:
        await apps.patch_namespaced_deployment_scale(  # type: ignore[call-arg]
            "web",
            NS,
            {"metadata": {"resourceVersion": stale}, "spec": {"replicas": 6}},
            _content_type=MERGE_PATCH,
        )
    assert caught.value.status == 409
    assert caught.value.reason == "Conflict"
    assert status_body(caught.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'Operation cannot be fulfilled on deployments.apps "web": the object has been '
        "modified; please apply your changes to the latest version and try again",
        "reason": "Conflict",
        "details": {"name": "web", "group": "apps", "kind": "deployments"},
        "code": 409,
    }

    body = client.V1Scale(
        metadata=client.V1ObjectMeta(name="web", namespace=NS, resource_version=stale),
        spec=client.V1ScaleSpec(replicas=7),
    )
    with pytest.raises(ApiException) as caught:
        await apps.replace_namespaced_deployment_scale("web", NS, body)
    assert caught.value.status == 409
    assert kube.deployment(NS, "web")["spec"]["replicas"] == 4

    body.metadata = client.V1ObjectMeta(name="web", namespace=NS)  # unconditional PUT
    replaced = await apps.replace_namespaced_deployment_scale("web", NS, body)
    assert replaced.spec.replicas == 7


async def test_a_missing_deployment_is_not_found(kube: KubeApiServer, api: ApiClient) -> None:
    apps = client.AppsV1Api(api)
    expected = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'deployments.apps "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "group": "apps", "kind": "deployments"},
        "code": 404,
    }
    for call in (apps.read_namespaced_deployment_scale, apps.read_namespaced_deployment):
        with pytest.raises(ApiException) as caught:
            await call("nope", NS)
        assert caught.value.status == 404
        assert status_body(caught.value) == expected

    with pytest.raises(ApiException) as caught:
        await apps.patch_namespaced_deployment_scale("nope", NS, {"spec": {"replicas": 1}})
    assert caught.value.status == 404


async def test_a_negative_replica_count_is_invalid(kube: KubeApiServer, api: ApiClient) -> None:
    kube.add_deployment(NS, "web", replicas=2)
    with pytest.raises(ApiException) as caught:
        await client.AppsV1Api(api).patch_namespaced_deployment_scale(
            "web", NS, {"spec": {"replicas": -1}}
        )
    assert caught.value.status == 422
    body = status_body(caught.value)
    assert body["reason"] == "Invalid"
    assert body["message"] == (
        'Scale.autoscaling "web" is invalid: spec.replicas: Invalid value: -1: must be greater '
        "than or equal to 0"
    )


async def test_json_patches_and_dry_runs_are_honoured(kube: KubeApiServer, api: ApiClient) -> None:
    kube.add_deployment(NS, "web", replicas=2)
    apps = client.AppsV1Api(api)

    patched = await apps.patch_namespaced_deployment_scale(
        "web", NS, [{"op": "replace", "path": "/spec/replicas", "value": 3}]
    )
    assert patched.spec.replicas == 3
    assert kube.requests[-1].content_type == "application/json-patch+json"

    generation = kube.deployment(NS, "web")["metadata"]["generation"]
    preview = await apps.patch_namespaced_deployment_scale(
        "web", NS, {"spec": {"replicas": 9}}, dry_run="All"
    )
    assert preview.spec.replicas == 9
    assert kube.deployment(NS, "web")["spec"]["replicas"] == 3
    assert kube.deployment(NS, "web")["metadata"]["generation"] == generation


# ---- deployments ----------------------------------------------------------------------------


async def test_without_a_kubelet_new_pods_stay_pending_and_the_deployment_is_unavailable(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_deployment(NS, "web", replicas=2)
    kube.kubelet = False
    apps = client.AppsV1Api(api)

    await apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": 4}})

    await pods_are(api, "app=web", 4)
    pods = (await client.CoreV1Api(api).list_namespaced_pod(NS, label_selector="app=web")).items
    phases = sorted(p.status.phase for p in pods)
    assert phases == ["Pending", "Pending", "Running", "Running"]
    pending = [p for p in pods if p.status.phase == "Pending"]
    assert all(p.status.conditions is None and p.spec.node_name is None for p in pending)
    d = await apps.read_namespaced_deployment("web", NS)
    assert (d.status.replicas, d.status.ready_replicas, d.status.unavailable_replicas) == (4, 2, 2)
    available = next(c for c in d.status.conditions if c.type == "Available")
    assert (available.status, available.reason) == ("False", "MinimumReplicasUnavailable")

    kube.kubelet = True
    await poll(lambda: ready_is(api, 4), "4 Ready replicas")
    d = await apps.read_namespaced_deployment("web", NS)
    assert d.status.ready_replicas == 4
    assert d.status.unavailable_replicas is None


async def test_a_deployment_mid_rollout_has_its_observed_generation_behind(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_deployment(NS, "web", replicas=3)
    kube.start_rollout(NS, "web", updated_replicas=1)
    apps = client.AppsV1Api(api)

    d = await apps.read_namespaced_deployment("web", NS)
    assert d.metadata.generation == 2
    assert d.status.observed_generation == 1
    assert d.status.updated_replicas == 1

    kube.finish_rollout(NS, "web")
    d = await apps.read_namespaced_deployment("web", NS)
    assert d.status.observed_generation == 2
    assert d.status.updated_replicas == 3


async def test_a_pod_template_change_rolls_out_a_new_replicaset(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_deployment(NS, "web", replicas=2, annotations={"team": "shop"})
    before = {p["metadata"]["uid"] for p in kube.pods(NS)}
    apps = client.AppsV1Api(api)
    restart = {
        "spec": {
            "template": {
                "metadata": {
                    "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}
                }
            }
        }
    }

    d = await apps.patch_namespaced_deployment("web", NS, restart)

    assert d.metadata.generation == 2
    assert d.metadata.annotations["team"] == "shop"

    async def rolled_out() -> bool:
        pods = (await client.CoreV1Api(api).list_namespaced_pod(NS)).items
        return len(pods) == 2 and not before & {p.metadata.uid for p in pods}

    await poll(rolled_out, "the new ReplicaSet's pods")
    replicasets = (await apps.list_namespaced_replica_set(NS)).items
    assert sorted(rs.spec.replicas for rs in replicasets) == [0, 2]
    new_rs = next(rs for rs in replicasets if rs.spec.replicas == 2)
    assert new_rs.metadata.owner_references[0].kind == "Deployment"
    assert new_rs.metadata.owner_references[0].controller is True
    assert new_rs.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    pods = (await client.CoreV1Api(api).list_namespaced_pod(NS)).items
    assert len(pods) == 2
    assert not before & {p.metadata.uid for p in pods}
    assert all(p.metadata.name.startswith(new_rs.metadata.name + "-") for p in pods)
    assert all(p.metadata.owner_references[0].uid == new_rs.metadata.uid for p in pods)
    d = await apps.read_namespaced_deployment("web", NS)
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "2"


async def test_a_rolling_update_never_has_fewer_available_pods_than_max_unavailable_allows(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_deployment(NS, "web", replicas=4)  # maxSurge 25 % (1), maxUnavailable 25 % (1)
    seen: list[tuple[int, int]] = []

    async def rolled_out() -> bool:
        replicasets = (await client.AppsV1Api(api).list_namespaced_replica_set(NS)).items
        available = sum(rs.status.available_replicas or 0 for rs in replicasets)
        pods = sum(rs.spec.replicas or 0 for rs in replicasets)
        seen.append((available, pods))
        return (
            sorted(rs.spec.replicas for rs in replicasets) == [0, 4]
            and available == 4
            and (len([rs for rs in replicasets if rs.status.ready_replicas]) == 1)
        )

    kube.deploy(NS, "web", "registry.example/web:2")
    await poll(rolled_out, "the rollout of revision 2")
    assert min(available for available, _ in seen) >= 3
    assert max(pods for _, pods in seen) <= 5
    assert len({pods for _, pods in seen}) > 1, "the rollout went in steps"


async def test_a_release_whose_pods_never_get_ready_stalls_within_max_unavailable(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_deployment(NS, "web", replicas=4)
    kube.failing_images.add("registry.example/web:bad")
    kube.deploy(NS, "web", "registry.example/web:bad")

    async def stalled() -> bool:
        d = await client.AppsV1Api(api).read_namespaced_deployment("web", NS)
        return bool(d.status.updated_replicas == 2)

    await poll(stalled, "two pods of the bad release")
    await asyncio.sleep(2.5)  # more than a pod's lags: the rollout goes no further
    d = await client.AppsV1Api(api).read_namespaced_deployment("web", NS)
    assert d.status.ready_replicas == 3  # the old ReplicaSet keeps 4 - maxUnavailable
    assert d.status.updated_replicas == 2  # 1 surge + 1 unavailable, none of them Ready
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "2"


async def test_an_older_template_made_current_again_becomes_the_newest_revision(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_deployment(NS, "web", replicas=2)
    first = kube.replicasets(NS)[0]["spec"]["template"]
    kube.deploy(NS, "web", "registry.example/web:2")
    apps = client.AppsV1Api(api)
    d = await apps.read_namespaced_deployment("web", NS)
    template = dict(first)
    template["metadata"] = {"labels": {"app": "web"}}  # without pod-template-hash
    body = [
        {
            "op": "replace",
            "path": "/metadata/resourceVersion",
            "value": d.metadata.resource_version,
        },
        {"op": "replace", "path": "/spec/template", "value": template},
    ]
    await apps.patch_namespaced_deployment("web", NS, body)

    async def back_on_the_first() -> bool:
        replicasets = (await apps.list_namespaced_replica_set(NS)).items
        return any(rs.spec.replicas == 2 and rs.status.ready_replicas == 2 for rs in replicasets)

    await poll(back_on_the_first, "the first ReplicaSet serving again")
    revisions = {
        rs["metadata"]["name"]: rs["metadata"]["annotations"] for rs in kube.replicasets(NS)
    }
    restored = revisions[f"web-{first['metadata']['labels']['pod-template-hash']}"]
    assert restored["deployment.kubernetes.io/revision"] == "3"
    assert restored["deployment.kubernetes.io/revision-history"] == "1"
    assert len(revisions) == 2
    d = await apps.read_namespaced_deployment("web", NS)
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "3"


async def test_a_stale_resource_version_in_a_json_patch_is_a_conflict(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_deployment(NS, "web", replicas=1)
    body = [{"op": "replace", "path": "/metadata/resourceVersion", "value": "1"}]
    with pytest.raises(ApiException) as raised:
        await client.AppsV1Api(api).patch_namespaced_deployment("web", NS, body)
    assert raised.value.status == 409
    assert status_body(raised.value)["reason"] == "Conflict"


async def test_old_replicasets_beyond_the_revision_history_limit_are_deleted(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_deployment(NS, "web", replicas=1, revision_history_limit=1)
    for release in (2, 3, 4):
        kube.deploy(NS, "web", f"registry.example/web:{release}")

        async def settled(release: int = release) -> bool:
            replicasets = kube.replicasets(NS)
            return (
                any(
                    rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                    == str(release)
                    and rs["status"].get("readyReplicas") == 1
                    for rs in replicasets
                )
                and len(replicasets) <= 2
            )

        await poll(settled, f"revision {release} serving, one older kept")
    numbers = sorted(
        int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"])
        for rs in kube.replicasets(NS)
    )
    assert numbers == [3, 4]


# ---- pods: listing --------------------------------------------------------------------------


async def test_pods_are_listed_with_equality_and_set_based_label_selectors(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_standalone_pod(NS, "api-1", {"app": "api", "tier": "backend"})
    kube.add_standalone_pod(NS, "api-2", {"app": "api", "tier": "frontend"})
    kube.add_standalone_pod(NS, "db-1", {"app": "db", "tier": "backend"})
    kube.add_standalone_pod(NS, "job-1", {"app": "job"})

    assert await pod_names(api, "app=api") == ["api-1", "api-2"]
    assert await pod_names(api, "app==api") == ["api-1", "api-2"]
    assert await pod_names(api, "app!=api") == ["db-1", "job-1"]
    assert await pod_names(api, "tier in (backend)") == ["api-1", "db-1"]
    assert await pod_names(api, "tier notin (backend)") == ["api-2", "job-1"]
    assert await pod_names(api, "tier") == ["api-1", "api-2", "db-1"]
    assert await pod_names(api, "!tier") == ["job-1"]
    assert await pod_names(api, "app in (api, db),tier!=frontend") == ["api-1", "db-1"]
    assert await pod_names(api) == ["api-1", "api-2", "db-1", "job-1"]
    assert await pod_names(api, field_selector="metadata.name=db-1") == ["db-1"]

    with pytest.raises(ApiException) as caught:
        await pod_names(api, "tier in backend")
    assert caught.value.status == 400
    assert status_body(caught.value)["reason"] == "BadRequest"


async def test_pod_lists_are_paginated_with_limit_and_continue(
    kube: KubeApiServer, api: ApiClient
) -> None:
    for i in range(5):
        kube.add_standalone_pod(NS, f"p{i}", {"app": "p"})
    core = client.CoreV1Api(api)

    first = await core.list_namespaced_pod(NS, limit=2)
    assert [p.metadata.name for p in first.items] == ["p0", "p1"]
    assert first.metadata.remaining_item_count == 3
    rest = await core.list_namespaced_pod(NS, limit=10, _continue=first.metadata._continue)
    assert [p.metadata.name for p in rest.items] == ["p2", "p3", "p4"]
    assert rest.metadata._continue is None


# ---- pods: eviction -------------------------------------------------------------------------


async def test_an_allowed_eviction_answers_201_and_a_replacement_pod_gets_a_new_uid(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_deployment(NS, "web", replicas=3)
    core = client.CoreV1Api(api)
    before = (await core.list_namespaced_pod(NS, label_selector="app=web")).items
    victim = before[0]

    assert await evict(api, victim.metadata.name, victim.metadata.uid) == 201

    await poll(lambda: ready_is(api, 3), "the replacement to be Ready")
    posted = kube.requests_to(r"/pods/[^/]+/eviction$", "POST")
    assert [r.status for r in posted] == [201]
    assert posted[0].body["kind"] == "Eviction"
    after = (await core.list_namespaced_pod(NS, label_selector="app=web")).items
    assert len(after) == 3
    assert victim.metadata.name not in {p.metadata.name for p in after}
    new = [p for p in after if p.metadata.uid not in {b.metadata.uid for b in before}]
    assert len(new) == 1
    assert new[0].metadata.owner_references[0].uid == victim.metadata.owner_references[0].uid
    assert is_ready(new[0])
    with pytest.raises(ApiException) as caught:
        await core.read_namespaced_pod(victim.metadata.name, NS)
    assert status_body(caught.value)["message"] == f'pods "{victim.metadata.name}" not found'


async def test_evicting_a_missing_pod_is_not_found(kube: KubeApiServer, api: ApiClient) -> None:
    with pytest.raises(ApiException) as caught:
        await evict(api, "ghost")
    assert caught.value.status == 404
    assert status_body(caught.value)["details"] == {"name": "ghost", "kind": "pods"}


async def test_a_pdb_with_min_available_2_over_3_ready_pods_allows_one_eviction_then_429(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_deployment(NS, "web", replicas=3)
    kube.add_pdb(NS, "web", {"app": "web"}, min_available=2)
    kube.kubelet = False  # as on the real cluster: the replacement pod stays Pending
    policy = client.PolicyV1Api(api)
    pdb = await policy.read_namespaced_pod_disruption_budget("web", NS)
    assert pdb.status.disruptions_allowed == 1
    assert (pdb.status.current_healthy, pdb.status.desired_healthy) == (3, 2)
    assert (pdb.status.expected_pods, pdb.status.observed_generation) == (3, 1)
    first, second, _ = await pod_names(api, "app=web")

    assert await evict(api, first) == 201
    with pytest.raises(ApiException) as caught:
        await evict(api, second)

    assert caught.value.status == 429
    assert "Retry-After" not in headers(caught.value)
    body = status_body(caught.value)
    assert body["reason"] == "TooManyRequests"
    assert body["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert body["details"] == {
        "causes": [
            {
                "reason": "DisruptionBudget",
                "message": "The disruption budget web needs 2 healthy pods and has 2 currently",
            }
        ]
    }
    assert kube.has_pod(NS, second)
    pdb = await policy.read_namespaced_pod_disruption_budget("web", NS)
    assert (pdb.status.disruptions_allowed, pdb.status.current_healthy) == (0, 2)


async def test_an_unready_pod_uses_up_the_budget_but_can_itself_be_evicted(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_deployment(NS, "web", replicas=3)
    kube.add_pdb(NS, "web", {"app": "web"}, min_available=2)
    unready, ready, _ = await pod_names(api, "app=web")
    kube.set_pod_ready(NS, unready, False)
    assert kube.pdb(NS, "web")["status"]["disruptionsAllowed"] == 0

    with pytest.raises(ApiException) as caught:
        await evict(api, ready)
    assert caught.value.status == 429

    assert await evict(api, unready) == 201


async def test_a_pdb_whose_status_is_not_computed_yet_blocks_eviction_with_429(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_deployment(NS, "web", replicas=3)
    kube.add_pdb(NS, "web", {"app": "web"}, max_unavailable=1, computed=False)
    pdb = await client.PolicyV1Api(api).read_namespaced_pod_disruption_budget("web", NS)
    assert pdb.status.observed_generation is None
    victim = (await pod_names(api, "app=web"))[0]

    with pytest.raises(ApiException) as caught:
        await evict(api, victim)

    assert caught.value.status == 429
    assert headers(caught.value)["Retry-After"] == "10"
    body = status_body(caught.value)
    assert body["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert body["details"]["causes"][0]["message"] == (
        "The disruption budget web is still being processed by the server."
    )
    assert body["details"]["retryAfterSeconds"] == 10
    kube.compute_pdb(NS, "web")
    assert await evict(api, victim) == 201


@pytest.mark.parametrize("phase", ["Pending", "Succeeded", "Failed"])
async def test_a_pod_that_is_not_running_is_evicted_even_when_its_pdb_allows_nothing(
    kube: KubeApiServer, api: ApiClient, phase: str
) -> None:
    kube.add_standalone_pod(NS, "batch", {"app": "batch"}, phase=phase)
    kube.add_pdb(NS, "batch", {"app": "batch"}, min_available=1)
    assert kube.pdb(NS, "batch")["status"]["disruptionsAllowed"] == 0

    assert await evict(api, "batch") == 201

    assert not kube.has_pod(NS, "batch")


async def test_a_pending_deployment_pod_is_evicted_despite_its_pdb(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.kubelet = False
    kube.add_deployment(NS, "web", replicas=2)
    kube.add_pdb(NS, "web", {"app": "web"}, min_available=2)
    victim = (await pod_names(api, "app=web"))[0]

    assert await evict(api, victim) == 201

    async def replaced() -> bool:
        names = await pod_names(api, "app=web")
        return victim not in names and len(names) == 2

    await poll(replaced, "a replacement")


async def test_a_pod_covered_by_two_pdbs_is_not_evicted_and_the_answer_is_500(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_deployment(NS, "web", replicas=3)
    kube.add_pdb(NS, "web-a", {"app": "web"}, min_available=1)
    kube.add_pdb(NS, "web-b", {"app": "web"}, max_unavailable="50%")
    victim = (await pod_names(api, "app=web"))[0]

    with pytest.raises(ApiException) as caught:
        await evict(api, victim)

    assert caught.value.status == 500
    assert status_body(caught.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "This pod has more than one PodDisruptionBudget, which the eviction "
        "subresource does not support.",
        "code": 500,
    }
    assert kube.has_pod(NS, victim)


async def test_an_eviction_with_a_stale_uid_precondition_is_a_conflict(
    kube: KubeApiServer, api: ApiClient
) -> None:
    pod = kube.add_standalone_pod(NS, "worker", {"app": "worker"})
    stale = "4f1e3c9a-0000-4000-8000-000000000000"

    with pytest.raises(ApiException) as caught:
        await evict(api, "worker", stale)

    assert caught.value.status == 409
    body = status_body(caught.value)
    assert body["reason"] == "Conflict"
    assert body["message"] == (
        f'Operation cannot be fulfilled on Pod "worker": the UID in the precondition ({stale}) '
        f"does not match the UID in record ({pod['metadata']['uid']}). The object might have "
        "been deleted and then recreated"
    )
    assert body["details"] == {"name": "worker", "kind": "Pod"}
    assert kube.has_pod(NS, "worker")


async def test_deleting_a_pod_with_a_stale_uid_precondition_is_a_conflict(
    kube: KubeApiServer, api: ApiClient
) -> None:
    pod = kube.add_standalone_pod(NS, "worker", {"app": "worker"})
    core = client.CoreV1Api(api)
    stale = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="not-the-uid"))

    with pytest.raises(ApiException) as caught:
        await core.delete_namespaced_pod("worker", NS, body=stale)
    assert caught.value.status == 409
    assert "the UID in the precondition (not-the-uid)" in status_body(caught.value)["message"]
    assert kube.has_pod(NS, "worker")

    current = client.V1DeleteOptions(
        preconditions=client.V1Preconditions(uid=pod["metadata"]["uid"])
    )
    deleted = await core.delete_namespaced_pod("worker", NS, body=current)
    assert deleted.metadata.deletion_timestamp is not None
    assert deleted.metadata.deletion_grace_period_seconds == 30
    await pods_are(api, "app=worker", 0)  # the kubelet finished it


async def test_a_daemonset_pod_is_recreated_on_its_node_after_eviction(
    kube: KubeApiServer, api: ApiClient
) -> None:
    pod = kube.add_daemonset_pod(NS, "agent")
    ds = await client.AppsV1Api(api).read_namespaced_daemon_set("agent", NS)
    assert (ds.status.desired_number_scheduled, ds.status.number_ready) == (1, 1)

    assert await evict(api, pod["metadata"]["name"]) == 201

    async def recreated() -> bool:
        pods = (await client.CoreV1Api(api).list_namespaced_pod(NS)).items
        return [p.metadata.uid != pod["metadata"]["uid"] for p in pods] == [True]

    await poll(recreated, "the DaemonSet's new pod")
    (replacement,) = (await client.CoreV1Api(api).list_namespaced_pod(NS)).items
    assert replacement.metadata.uid != pod["metadata"]["uid"]
    assert replacement.spec.node_name == pod["spec"]["nodeName"]
    assert replacement.metadata.owner_references[0].kind == "DaemonSet"


async def test_pdb_status_follows_percentages_and_max_unavailable(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_deployment(NS, "web", replicas=4)
    kube.add_deployment(NS, "api", replicas=3)
    kube.add_pdb(NS, "web", {"app": "web"}, min_available="50%")
    kube.add_pdb(NS, "api", {"app": "api"}, max_unavailable="34%")
    policy = client.PolicyV1Api(api)

    budgets = {
        p.metadata.name: p.status
        for p in (await policy.list_namespaced_pod_disruption_budget(NS)).items
    }

    assert budgets["web"].desired_healthy == 2
    assert budgets["web"].disruptions_allowed == 2
    assert budgets["api"].desired_healthy == 1  # 3 - ceil(34% of 3)
    assert budgets["api"].disruptions_allowed == 2
    assert budgets["api"].conditions[0].reason == "SufficientPods"


# ---- fault injection and authentication -----------------------------------------------------


async def test_an_injected_503_fails_once_then_the_request_succeeds(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_deployment(NS, "web", replicas=2)
    fault = kube.inject_fault(r"/deployments/web/scale$", method="GET", status=503)
    apps = client.AppsV1Api(api)

    with pytest.raises(ApiException) as caught:
        await apps.read_namespaced_deployment_scale("web", NS)
    assert caught.value.status == 503
    assert status_body(caught.value)["reason"] == "ServiceUnavailable"

    scale = await apps.read_namespaced_deployment_scale("web", NS)
    assert scale.spec.replicas == 2
    assert fault.hits == 1
    assert [r.status for r in kube.requests_to(r"/scale$")] == [503, 200]


async def test_an_injected_429_carries_retry_after_in_the_api_exception_headers(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.inject_fault(r"/pods$", method="GET", status=429, retry_after=3)

    with pytest.raises(ApiException) as caught:
        await pod_names(api)

    assert caught.value.status == 429
    assert headers(caught.value)["Retry-After"] == "3"
    body: object = caught.value.body  # API Priority and Fairness answers in plain text
    assert body == "Too many requests, please try again later.\n"
    assert await pod_names(api) == []


async def test_a_dropped_connection_raises_an_aiohttp_client_error(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_standalone_pod(NS, "worker", {"app": "worker"})
    kube.inject_fault(r"/eviction$", drop=True)

    with pytest.raises(aiohttp.ClientError):
        await evict(api, "worker")
    assert kube.has_pod(NS, "worker")  # dropped before it was served

    kube.inject_fault(r"/eviction$", drop=True, served=True)
    with pytest.raises(aiohttp.ClientError):
        await evict(api, "worker")
    await pods_are(api, "app=worker", 0)  # served, only the answer was lost
    assert [r.status for r in kube.requests_to(r"/eviction$")] == [None, None]


async def test_injected_latency_delays_the_answer_and_client_timeouts_fire(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.inject_fault(r"/pods$", delay=0.3, times=2)
    core = client.CoreV1Api(api)

    started = time.monotonic()
    await core.list_namespaced_pod(NS)
    assert time.monotonic() - started >= 0.3

    with pytest.raises(TimeoutError):
        await core.list_namespaced_pod(NS, _request_timeout=0.05)


async def test_an_injected_403_reads_like_an_rbac_denial(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_standalone_pod(NS, "worker", {"app": "worker"})
    kube.inject_fault(r"/eviction$", method="POST", status=403, times=None)

    for _ in range(2):
        with pytest.raises(ApiException) as caught:
            await evict(api, "worker")
        assert caught.value.status == 403
        assert status_body(caught.value) == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f'pods "worker" is forbidden: User "{USER}" cannot create resource '
            '"pods/eviction" in API group "" in the namespace "shop"',
            "reason": "Forbidden",
            "details": {"name": "worker", "kind": "pods"},
            "code": 403,
        }

    kube.clear_faults()
    assert await evict(api, "worker") == 201


async def test_a_request_without_the_bearer_token_is_unauthorized(
    kube: KubeApiServer, tmp_path: Path
) -> None:
    unauthorized = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }
    no_token = client.Configuration(host=kube.url)
    wrong_token = client.Configuration()
    path = write_kubeconfig(tmp_path / "wrong", kube.url, "not-the-token", context="wrong")
    await config.load_kube_config(
        config_file=str(path), context="wrong", client_configuration=wrong_token
    )
    for configuration in (no_token, wrong_token):
        async with ApiClient(configuration=configuration) as api:
            with pytest.raises(ApiException) as caught:
                await client.CoreV1Api(api).list_namespaced_pod(NS)
        assert caught.value.status == 401
        assert status_body(caught.value) == unauthorized


async def test_with_anonymous_auth_a_request_without_credentials_is_forbidden() -> None:
    async with (
        KubeApiServer(anonymous_auth=True) as kube,
        ApiClient(configuration=client.Configuration(host=kube.url)) as api,
    ):
        with pytest.raises(ApiException) as caught:
            await client.CoreV1Api(api).list_namespaced_pod(NS)
    assert caught.value.status == 403
    assert status_body(caught.value)["message"] == (
        'pods is forbidden: User "system:anonymous" cannot list resource "pods" in API group "" '
        'in the namespace "shop"'
    )


# ---- other resources ------------------------------------------------------------------------


async def test_horizontal_pod_autoscalers_are_listed_per_namespace(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_deployment(NS, "web", replicas=3)
    kube.add_hpa(NS, "web", "web", min_replicas=2, max_replicas=10)
    kube.add_deployment("other", "api", replicas=1)
    kube.add_hpa("other", "api", "api", min_replicas=1, max_replicas=3)
    autoscaling = client.AutoscalingV2Api(api)

    hpas = (await autoscaling.list_namespaced_horizontal_pod_autoscaler(NS)).items

    assert [h.metadata.name for h in hpas] == ["web"]
    (hpa,) = hpas
    assert (hpa.spec.scale_target_ref.kind, hpa.spec.scale_target_ref.name) == ("Deployment", "web")
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (2, 10)
    assert hpa.status.current_replicas == 3
    one = await autoscaling.read_namespaced_horizontal_pod_autoscaler("web", NS)
    assert one.metadata.uid == hpa.metadata.uid
    everywhere = await autoscaling.list_horizontal_pod_autoscaler_for_all_namespaces()
    assert sorted(h.metadata.namespace for h in everywhere.items) == ["other", NS]


async def test_events_are_created_and_listed(kube: KubeApiServer, api: ApiClient) -> None:
    core = client.CoreV1Api(api)
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name="web."),
        involved_object=client.V1ObjectReference(
            kind="Deployment", namespace=NS, name="web", api_version="apps/v1"
        ),
        reason="RemediationStarted",
        message="scaling out",
        type="Normal",
        reporting_component="remediator",
        reporting_instance="remediator-0",
    )

    created = await core.create_namespaced_event(NS, event)

    assert created.metadata.name.startswith("web.")
    assert created.metadata.uid
    listed = (await core.list_namespaced_event(NS)).items
    assert [e.reason for e in listed] == ["RemediationStarted"]
    assert kube.events(NS)[0]["involvedObject"]["name"] == "web"
    with pytest.raises(ApiException) as caught:
        await core.create_namespaced_event("missing", event)
    assert status_body(caught.value)["message"] == 'namespaces "missing" not found'


async def test_namespaces_and_discovery_are_served(kube: KubeApiServer, api: ApiClient) -> None:
    core = client.CoreV1Api(api)
    names = [n.metadata.name for n in (await core.list_namespace()).items]
    assert NS in names and "default" in names
    assert (await core.read_namespace(NS)).status.phase == "Active"
    versions = await client.CoreApi(api).get_api_versions()
    assert versions.versions == ["v1"]
    resources = await client.AppsV1Api(api).get_api_resources()
    assert {"deployments", "deployments/scale", "replicasets"} <= {
        r.name for r in resources.resources
    }


# ---- RBAC -----------------------------------------------------------------------------------

RBAC = "rbac.authorization.k8s.io/v1"
SA_SUBJECT = {"kind": "ServiceAccount", "name": "remediator", "namespace": "remediator"}
RECYCLE_ROLE = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: recycle}
rules:
  - {apiGroups: [""], resources: [pods], verbs: [get, list]}
  - {apiGroups: [""], resources: [pods/eviction], verbs: [create]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: recycle, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: recycle}
subjects: [{kind: ServiceAccount, name: remediator, namespace: remediator}]
"""


async def forbidden(call: Any) -> str:
    """Await ``call``; it must be an RBAC 403. Return its message."""
    with pytest.raises(ApiException) as caught:
        await call
    assert caught.value.status == 403
    body = status_body(caught.value)
    assert (body["reason"], body["code"]) == ("Forbidden", 403)
    message: str = body["message"]
    return message


async def test_once_rbac_is_loaded_every_request_is_authorized_and_a_denial_is_403(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_deployment(NS, "web", replicas=3)
    kube.add_hpa(NS, "web", "web", min_replicas=3, max_replicas=6)
    kube.add_namespace("other")
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    victim = (await pod_names(api, "app=web"))[0]
    assert (await apps.read_namespaced_deployment_scale("web", NS)).spec.replicas == 3

    kube.load_rbac(RECYCLE_ROLE)

    assert len(await pod_names(api, "app=web")) == 3
    who = f'User "{USER}"'
    assert await forbidden(apps.read_namespaced_deployment_scale("web", NS)) == (
        f'deployments.apps "web" is forbidden: {who} cannot get resource "deployments/scale" '
        'in API group "apps" in the namespace "shop"'
    )
    assert await forbidden(
        client.AutoscalingV2Api(api).patch_namespaced_horizontal_pod_autoscaler(
            "web", NS, {"spec": {"minReplicas": 4}}
        )
    ) == (
        f'horizontalpodautoscalers.autoscaling "web" is forbidden: {who} cannot patch resource '
        '"horizontalpodautoscalers" in API group "autoscaling" in the namespace "shop"'
    )
    assert await forbidden(core.delete_namespaced_pod(victim, NS)) == (
        f'pods "{victim}" is forbidden: {who} cannot delete resource "pods" in API group "" '
        'in the namespace "shop"'
    )
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name="web."),
        involved_object=client.V1ObjectReference(kind="Deployment", namespace=NS, name="web"),
    )
    assert await forbidden(core.create_namespaced_event(NS, event)) == (
        f'events is forbidden: {who} cannot create resource "events" in API group "" in the '
        'namespace "shop"'
    )
    assert await forbidden(core.list_namespaced_pod("other")) == (
        f'pods is forbidden: {who} cannot list resource "pods" in API group "" in the namespace '
        '"other"'
    )
    assert await forbidden(core.list_pod_for_all_namespaces()) == (
        f'pods is forbidden: {who} cannot list resource "pods" in API group "" at the cluster scope'
    )
    assert (await client.VersionApi(api).get_code()).git_version == "v1.36.2"  # not a resource
    assert kube.has_pod(NS, victim)

    assert await evict(api, victim) == 201


async def test_rbac_follows_bindings_subjects_groups_wildcards_and_resource_names(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_standalone_pod(NS, "worker", {"app": "worker"})
    kube.add_standalone_pod(NS, "other", {"app": "other"})
    kube.add_deployment("elsewhere", "web", replicas=1)
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    kube.load_rbac(
        [
            {
                "apiVersion": RBAC,
                "kind": "Role",
                "metadata": {"name": "one-pod", "namespace": NS},
                "rules": [
                    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
                    {
                        "apiGroups": [""],
                        "resources": ["pods/eviction"],
                        "resourceNames": ["worker"],
                        "verbs": ["create"],
                    },
                ],
            },
            {
                "apiVersion": RBAC,
                "kind": "RoleBinding",
                "metadata": {"name": "one-pod", "namespace": NS},
                "roleRef": {"apiGroup": RBAC.split("/")[0], "kind": "Role", "name": "one-pod"},
                "subjects": [{"kind": "ServiceAccount", "name": "remediator"}],  # wrong ns
            },
            {
                "apiVersion": RBAC,
                "kind": "ClusterRole",
                "metadata": {"name": "read-apps"},
                "rules": [{"apiGroups": ["apps"], "resources": ["*"], "verbs": ["get", "list"]}],
            },
            {
                "apiVersion": RBAC,
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "read-apps"},
                "roleRef": {
                    "apiGroup": RBAC.split("/")[0],
                    "kind": "ClusterRole",
                    "name": "read-apps",
                },
                "subjects": [{"kind": "Group", "name": "system:serviceaccounts:remediator"}],
            },
        ]
    )

    # A ServiceAccount subject without a namespace is the binding's namespace's.
    await forbidden(core.read_namespaced_pod("worker", NS))
    kube.load_rbac(
        [
            {
                "apiVersion": RBAC,
                "kind": "RoleBinding",
                "metadata": {"name": "one-pod", "namespace": NS},
                "roleRef": {"apiGroup": RBAC.split("/")[0], "kind": "Role", "name": "one-pod"},
                "subjects": [SA_SUBJECT],
            }
        ]
    )
    assert (await core.read_namespaced_pod("worker", NS)).metadata.name == "worker"
    assert "cannot list resource" in await forbidden(core.list_namespaced_pod(NS))
    assert "cannot create resource" in await forbidden(evict(api, "other"))
    assert await evict(api, "worker") == 201
    # The ClusterRoleBinding reaches every namespace, and "*" every resource and subresource.
    assert (await apps.read_namespaced_deployment("web", "elsewhere")).spec.replicas == 1
    assert (await apps.read_namespaced_deployment_scale("web", "elsewhere")).spec.replicas == 1
    assert len((await apps.list_replica_set_for_all_namespaces()).items) == 1
    assert "cannot patch resource" in await forbidden(
        apps.patch_namespaced_deployment_scale("web", "elsewhere", {"spec": {"replicas": 2}})
    )


async def test_bind_rbac_of_grants_what_remediator_rbac_prints_for_the_rules_and_no_more(
    kube: KubeApiServer, api: ApiClient
) -> None:
    fleet = "llm-research"  # the namespace the fleet rules allow, and scale out in
    kube.add_deployment(fleet, "d0", replicas=1)
    kube.add_deployment(NS, "web", replicas=1)
    apps = client.AppsV1Api(api)

    printed = kube.bind_rbac_of(SCALE_FLEET_RULES)

    documents = list(yaml.safe_load_all(printed))
    assert {(d["kind"], d["metadata"].get("namespace")) for d in documents} == {
        ("Role", fleet),
        ("RoleBinding", fleet),
    }
    assert documents[1]["subjects"] == [SA_SUBJECT]
    scale = await apps.read_namespaced_deployment_scale("d0", fleet)
    await apps.patch_namespaced_deployment_scale(
        "d0", fleet, {"metadata": {"resourceVersion": scale.metadata.resource_version},
                      "spec": {"replicas": 2}}
    )  # fmt: skip
    assert kube.deployment(fleet, "d0")["spec"]["replicas"] == 2
    await forbidden(apps.read_namespaced_deployment_scale("web", NS))
    pod = kube.pods(fleet)[0]["metadata"]["name"]
    await forbidden(client.CoreV1Api(api).delete_namespaced_pod(pod, fleet))


# ---- lagging controllers --------------------------------------------------------------------


@pytest.fixture
async def lagging() -> AsyncIterator[KubeApiServer]:
    async with KubeApiServer(user=USER, seed=7, lags=REALISTIC) as server:
        server.add_namespace(NS)
        yield server
        assert server.internal_errors == []


async def lagging_api(kube: KubeApiServer, tmp_path: Path) -> ApiClient:
    assert kube.token is not None
    path = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token)
    return await config.new_client_from_config(config_file=str(path), context="test")


async def replacement_times(kube: KubeApiServer, api: ApiClient) -> tuple[float, float]:
    """Evict one ``web`` pod; return the seconds until its replacement exists and until the
    Deployment has all its replicas Ready again."""
    core = client.CoreV1Api(api)
    before = {p.metadata.uid for p in (await core.list_namespaced_pod(NS)).items}
    victim = sorted(kube.pods(NS), key=lambda p: p["metadata"]["name"])[0]
    started = time.monotonic()
    assert await evict(api, victim["metadata"]["name"], victim["metadata"]["uid"]) == 201

    assert await ready_replicas(api) == 2  # the replacement is not there yet
    pdb = await client.PolicyV1Api(api).read_namespaced_pod_disruption_budget("web", NS)
    assert pdb.status.disruptions_allowed == 0

    async def new_pods() -> list[client.V1Pod]:
        pods = (await core.list_namespaced_pod(NS, label_selector="app=web")).items
        return [p for p in pods if p.metadata.uid not in before]

    async def created() -> bool:
        return len(await new_pods()) == 1

    async def ready() -> bool:
        return await ready_replicas(api) == 3

    await poll(created, "the replacement pod")
    created_s = time.monotonic() - started
    (new,) = await new_pods()
    assert not is_ready(new) or await ready()
    await poll(ready, "the replacement to be Ready")
    return created_s, time.monotonic() - started


async def test_after_an_eviction_the_replacement_is_created_then_ready_within_the_facts_ranges(
    lagging: KubeApiServer, tmp_path: Path
) -> None:
    lagging.add_deployment(NS, "web", replicas=3)
    lagging.add_pdb(NS, "web", {"app": "web"}, min_available=2)
    async with await lagging_api(lagging, tmp_path) as api:
        times = [await replacement_times(lagging, api) for _ in range(6)]
    created_s = [c for c, _ in times]
    ready_s = [r for _, r in times]
    slack = 0.25  # polling and request time
    assert all(0.02 <= s <= 1.4 + slack for s in created_s), created_s
    assert all(0.4 <= s <= 2.0 + slack for s in ready_s), ready_s
    assert all(c <= r for c, r in times)


async def test_a_changed_hpa_min_replicas_applies_at_the_hpa_controllers_next_sync(
    tmp_path: Path,
) -> None:
    lags = Lags(hpa_sync_s=0.5)
    async with KubeApiServer(lags=lags, seed=7) as kube:
        kube.add_deployment(NS, "web", replicas=3)
        kube.add_hpa(NS, "web", "web", min_replicas=3, max_replicas=6)
        async with await lagging_api(kube, tmp_path) as api:
            started = time.monotonic()
            await client.AutoscalingV2Api(api).patch_namespaced_horizontal_pod_autoscaler(
                "web", NS, {"spec": {"minReplicas": 5}}
            )
            scale = await client.AppsV1Api(api).read_namespaced_deployment_scale("web", NS)
            assert scale.spec.replicas == 3

            async def raised() -> bool:
                return await ready_replicas(api) == 5

            await poll(raised, "the HPA to raise the replicas")
            assert time.monotonic() - started >= 0.5
        assert kube.internal_errors == []


async def test_the_deployment_controllers_status_writes_make_a_guarded_scale_write_409(
    tmp_path: Path,
) -> None:
    lags = Lags(status_writes=(3, 3), status_write_gap_s=(0.1, 0.1))
    async with KubeApiServer(lags=lags, seed=7) as kube:
        kube.add_deployment(NS, "web", replicas=3)
        async with await lagging_api(kube, tmp_path) as api:
            apps = client.AppsV1Api(api)
            await apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": 4}})
            read = await apps.read_namespaced_deployment_scale("web", NS)

            async def written() -> bool:  # no other client: the controller writes status
                rv = kube.deployment(NS, "web")["metadata"]["resourceVersion"]
                return bool(rv != read.metadata.resource_version)

            await poll(written, "a status write")
            guarded = {"metadata": {"resourceVersion": read.metadata.resource_version},
                       "spec": {"replicas": 3}}  # fmt: skip
            with pytest.raises(ApiException) as caught:
                await apps.patch_namespaced_deployment_scale("web", NS, guarded)
            assert caught.value.status == 409

            async def done() -> bool:
                return kube.status_writes == 3

            await poll(done, "the last status write")
            again = await apps.read_namespaced_deployment_scale("web", NS)
            guarded["metadata"] = {"resourceVersion": again.metadata.resource_version}
            assert (
                await apps.patch_namespaced_deployment_scale("web", NS, guarded)
            ).spec.replicas == 3
        assert kube.internal_errors == []


async def guarded_rewrites(api: ApiClient, replicas: int, for_s: float) -> int:
    """Read the scale and write the same replicas back, guarded by what was read, again and
    again for ``for_s``; return how many writes met 409."""
    apps = client.AppsV1Api(api)
    conflicts = 0
    deadline = time.monotonic() + for_s
    while time.monotonic() < deadline:
        read = await apps.read_namespaced_deployment_scale("web", NS)
        await asyncio.sleep(0.05)
        guarded = {"metadata": {"resourceVersion": read.metadata.resource_version},
                   "spec": {"replicas": replicas}}  # fmt: skip
        try:
            await apps.patch_namespaced_deployment_scale("web", NS, guarded)
        except ApiException as exc:
            assert exc.status == 409
            conflicts += 1
    return conflicts


async def test_after_a_replica_change_a_read_then_guarded_write_meets_409_with_no_other_client(
    lagging: KubeApiServer, tmp_path: Path
) -> None:
    lagging.add_deployment(NS, "web", replicas=3)
    async with await lagging_api(lagging, tmp_path) as api:
        apps = client.AppsV1Api(api)
        changes_with_conflicts = 0
        for target in (4, 3, 4, 3):
            await apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": target}})
            changes_with_conflicts += await guarded_rewrites(api, target, 1.0) > 0
        await asyncio.sleep(1.0)
        settled = await guarded_rewrites(api, 3, 0.3)
    assert changes_with_conflicts >= 3
    assert lagging.status_writes >= 8  # 2 to 4 after each of the 4 changes
    assert settled == 0  # once the controllers are done, nothing moves


async def test_while_status_writes_are_due_even_an_immediate_guarded_write_often_meets_409(
    lagging: KubeApiServer, tmp_path: Path
) -> None:
    lagging.add_deployment(NS, "web", replicas=3)
    conflicts = 0
    async with await lagging_api(lagging, tmp_path) as api:
        apps = client.AppsV1Api(api)
        for target in (4, 3) * 5:
            await apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": target}})
            await asyncio.sleep(0.2)  # the unguarded write above never conflicts
            read = await apps.read_namespaced_deployment_scale("web", NS)
            guarded = {"metadata": {"resourceVersion": read.metadata.resource_version},
                       "spec": {"replicas": target}}  # fmt: skip
            try:
                await apps.patch_namespaced_deployment_scale("web", NS, guarded)
            except ApiException as exc:
                assert exc.status == 409
                conflicts += 1
    assert 2 <= conflicts <= 8  # REALISTIC.busy_conflict is one in two


async def test_stopping_the_server_cancels_the_controllers_pending_work(tmp_path: Path) -> None:
    async with KubeApiServer(lags=REALISTIC, seed=7) as kube:
        kube.add_deployment(NS, "web", replicas=3)
        kube.add_hpa(NS, "web", "web", min_replicas=3, max_replicas=6)
        async with await lagging_api(kube, tmp_path) as api:
            await client.AutoscalingV2Api(api).patch_namespaced_horizontal_pod_autoscaler(
                "web", NS, {"spec": {"minReplicas": 5}}
            )
            assert await evict(api, kube.pods(NS)[0]["metadata"]["name"]) == 201
        started = time.monotonic()
    assert time.monotonic() - started < 1.0  # not the HPA's 10 s
    assert kube.deployment(NS, "web")["spec"]["replicas"] == 3


# ---- eviction in detail ---------------------------------------------------------------------

STALE_UID = "4f1e3c9a-0000-4000-8000-000000000000"


async def test_with_no_disruption_allowed_a_uid_mismatch_is_429_not_409(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_deployment(NS, "web", replicas=2)
    kube.add_pdb(NS, "web", {"app": "web"}, min_available=2)
    victim = (await pod_names(api, "app=web"))[0]

    with pytest.raises(ApiException) as caught:
        await evict(api, victim, STALE_UID)

    assert caught.value.status == 429
    assert kube.has_pod(NS, victim)


async def test_with_one_disruption_allowed_a_uid_mismatch_spends_it_then_answers_409(
    tmp_path: Path,
) -> None:
    async with KubeApiServer(seed=7, pdb_deletion_timeout_s=1.0) as kube:
        kube.add_deployment(NS, "web", replicas=3)
        kube.add_pdb(NS, "web", {"app": "web"}, min_available=2)
        async with await lagging_api(kube, tmp_path) as api:
            first, second, _ = await pod_names(api, "app=web")

            with pytest.raises(ApiException) as caught:
                await evict(api, first, STALE_UID)
            assert caught.value.status == 409
            assert "the UID in the precondition" in status_body(caught.value)["message"]
            assert kube.has_pod(NS, first)
            policy = client.PolicyV1Api(api)
            pdb = await policy.read_namespaced_pod_disruption_budget("web", NS)
            assert pdb.status.disruptions_allowed == 0
            assert list(pdb.status.disrupted_pods) == [first]
            with pytest.raises(ApiException) as caught:
                await evict(api, second)
            assert caught.value.status == 429

            async def restored() -> bool:
                pdb = await policy.read_namespaced_pod_disruption_budget("web", NS)
                return bool(pdb.status.disruptions_allowed == 1 and not pdb.status.disrupted_pods)

            waited = await poll(restored, "the spent disruption to expire")
            assert waited <= 1.5
            assert await evict(api, second) == 201
        assert kube.internal_errors == []


async def test_the_pdb_deletion_timeout_defaults_to_two_minutes(kube: KubeApiServer) -> None:
    assert kube.pdb_deletion_timeout_s == 120.0


async def test_a_never_scheduled_pod_is_gone_at_once_after_its_eviction(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.kubelet = False
    kube.add_deployment(NS, "web", replicas=1)
    kube.add_pdb(NS, "web", {"app": "web"}, min_available=1)
    (victim,) = await pod_names(api, "app=web")

    assert await evict(api, victim) == 201

    with pytest.raises(ApiException) as caught:
        await client.CoreV1Api(api).read_namespaced_pod(victim, NS)
    assert caught.value.status == 404


# ---- pod logs -------------------------------------------------------------------------------


async def read_log(api: ApiClient, name: str, **options: Any) -> str:
    text: str = await client.CoreV1Api(api).read_namespaced_pod_log(name, NS, **options)
    return text


async def log_refused(api: ApiClient, name: str, **options: Any) -> tuple[int, dict[str, Any]]:
    """Read a log that must be refused; return the status and the ``kind: Status`` body."""
    with pytest.raises(ApiException) as caught:
        await read_log(api, name, **options)
    body = status_body(caught.value)
    assert (body["kind"], body["status"], body["code"]) == (
        "Status",
        "Failure",
        caught.value.status,
    )
    return int(caught.value.status), body


async def raw_log(api: ApiClient, name: str, **options: Any) -> tuple[int, bytes]:
    """The status and the undecoded body (``_preload_content=False``)."""
    read: Any = client.CoreV1Api(api).read_namespaced_pod_log  # the stubs say it returns str
    response = await read(name, NS, _preload_content=False, **options)
    try:
        return int(response.status), bytes(await response.read())
    finally:
        response.release()


def go_time(moment: dt.datetime, fraction: str = "") -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


async def test_a_pod_log_is_plain_text_and_tail_lines_since_seconds_and_timestamps_select_lines(
    kube: KubeApiServer, api: ApiClient
) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=120000)
    old = now.replace(microsecond=0) - dt.timedelta(minutes=5)
    kube.add_standalone_pod(NS, "worker", {"app": "worker"})
    kube.write_log(NS, "worker", ["booting", "listening on :8080"], at=old)
    kube.write_log(NS, "worker", ["request 1", "request 2"], at=now)
    core = client.CoreV1Api(api)

    text, status, headers = await core.read_namespaced_pod_log_with_http_info("worker", NS)

    assert (status, headers["Content-Type"]) == (200, "text/plain")
    assert text == "booting\nlistening on :8080\nrequest 1\nrequest 2\n"
    assert await read_log(api, "worker", tail_lines=1) == "request 2\n"
    assert await read_log(api, "worker", tail_lines=0) == ""
    assert await read_log(api, "worker", tail_lines=2**63 - 1) == text
    assert await read_log(api, "worker", since_seconds=60) == "request 1\nrequest 2\n"
    # tailLines takes the last lines of the file first; sinceSeconds then drops older ones.
    assert await read_log(api, "worker", tail_lines=3, since_seconds=60) == "request 1\nrequest 2\n"
    assert await read_log(api, "worker", timestamps=True, tail_lines=3) == (
        f"{go_time(old)} listening on :8080\n"
        f"{go_time(now, '.12')} request 1\n{go_time(now, '.12')} request 2\n"
    )
    assert await read_log(api, "worker", follow=True, tail_lines=1) == "request 2\n"
    assert await read_log(api, "worker", container="app", limit_bytes=2**63 - 1) == text


async def test_a_huge_since_seconds_wraps_around_as_the_kubelets_int64_arithmetic_does(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_standalone_pod(NS, "worker", {"app": "worker"})
    kube.write_log(NS, "worker", ["from 1970"], at=dt.datetime(1970, 1, 1, tzinfo=dt.UTC))

    assert await read_log(api, "worker", since_seconds=9_223_372_036) == "from 1970\n"  # 292 y
    # One more second overflows time.Duration: "since" lands 292 years ahead.
    assert await read_log(api, "worker", since_seconds=9_223_372_037) == ""
    # (2**63 - 1) s is -1 s once wrapped: since is a second from now, after every line.
    assert await read_log(api, "worker", since_seconds=2**63 - 1) == ""


async def test_a_log_with_nothing_written_is_200_with_an_empty_body(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_standalone_pod(NS, "quiet", {"app": "quiet"})

    text, status, _ = await client.CoreV1Api(api).read_namespaced_pod_log_with_http_info(
        "quiet", NS
    )

    assert (text, status) == ("", 200)


async def test_unicode_lines_come_back_as_written(kube: KubeApiServer, api: ApiClient) -> None:
    lines = [
        "héllo wörld",
        "日本語のログ",
        "rocket 🚀 family 👨\u200d👩\u200d👧",
        "combining e\u0301 and zero\u200bwidth",
        "bidi \u202eevil\u202c",
        "nul \x00 and bell \x07",
        "tab\tand carriage return\r",
        "",
    ]
    kube.add_standalone_pod(NS, "intl", {"app": "intl"})
    kube.write_log(NS, "intl", lines)

    assert await read_log(api, "intl") == "".join(f"{line}\n" for line in lines)
    assert await read_log(api, "intl", tail_lines=2) == "tab\tand carriage return\r\n\n"


async def test_write_log_splits_embedded_newlines_and_drops_one_trailing_newline(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_standalone_pod(NS, "worker", {"app": "worker"})

    kube.write_log(NS, "worker", ["a\nb", "c\n", "d\n\n"])

    assert await read_log(api, "worker") == "a\nb\nc\nd\n\n"
    assert await read_log(api, "worker", tail_lines=2) == "d\n\n"


async def test_limit_bytes_cuts_the_bytes_mid_line_and_counts_the_timestamps(
    kube: KubeApiServer, api: ApiClient
) -> None:
    at = dt.datetime(2026, 3, 4, 5, 6, 7, 890, tzinfo=dt.UTC)
    kube.add_standalone_pod(NS, "worker", {"app": "worker"})
    kube.write_log(NS, "worker", ["first line", "second line"], at=at)

    assert await read_log(api, "worker", limit_bytes=7) == "first l"
    assert await read_log(api, "worker", limit_bytes=11) == "first line\n"
    stamp = "2026-03-04T05:06:07.00089Z"
    assert await read_log(api, "worker", timestamps=True, limit_bytes=len(stamp) + 3) == (
        f"{stamp} fi"
    )
    assert await read_log(api, "worker", tail_lines=1, limit_bytes=3) == "sec"


async def test_a_limit_bytes_cut_inside_a_character_makes_kubernetes_asyncio_raise(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_standalone_pod(NS, "intl", {"app": "intl"})
    kube.write_log(NS, "intl", ["€uro", "🚀"])

    # The server sends the bytes it was asked for; the generated client decodes the body
    # as strict UTF-8, so a cut character is an exception, not a replacement character.
    with pytest.raises(UnicodeDecodeError):
        await read_log(api, "intl", limit_bytes=2)
    assert await raw_log(api, "intl", limit_bytes=2) == (200, b"\xe2\x82")
    assert await raw_log(api, "intl", tail_lines=1, limit_bytes=3) == (200, "🚀".encode()[:3])
    assert await read_log(api, "intl", limit_bytes=3) == "€"


async def test_kubernetes_asyncio_reads_a_log_that_is_one_json_document_as_json(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_standalone_pod(NS, "worker", {"app": "worker"})
    kube.write_log(NS, "worker", ['{"level": "info"}', "42"])

    # The generated client tries json.loads on any "str" answer and returns str() of the
    # result: a body that is one JSON document comes back as a Python repr, newline lost.
    assert await read_log(api, "worker", tail_lines=1) == "42"
    assert await read_log(api, "worker", tail_lines=2) == '{"level": "info"}\n42\n'
    kube.write_log(NS, "worker", ['{"level": "warn"}'])
    assert await read_log(api, "worker", tail_lines=1) == "{'level': 'warn'}"
    assert await raw_log(api, "worker", tail_lines=1) == (200, b'{"level": "warn"}\n')


async def test_the_log_of_a_missing_pod_is_not_found(kube: KubeApiServer, api: ApiClient) -> None:
    status, body = await log_refused(api, "ghost")

    assert status == 404
    assert (body["reason"], body["message"]) == ("NotFound", 'pods "ghost" not found')
    assert body["details"] == {"name": "ghost", "kind": "pods"}


@pytest.mark.parametrize(
    ("options", "message", "causes"),
    [
        (
            {"tail_lines": -1},
            'PodLogOptions "ghost" is invalid: tailLines: Invalid value: -1: '
            "must be greater than or equal to 0",
            [("tailLines", "Invalid value: -1: must be greater than or equal to 0")],
        ),
        (
            {"limit_bytes": 0},
            'PodLogOptions "ghost" is invalid: limitBytes: Invalid value: 0: '
            "must be greater than 0",
            [("limitBytes", "Invalid value: 0: must be greater than 0")],
        ),
        (
            {"since_seconds": -(2**63)},
            f'PodLogOptions "ghost" is invalid: sinceSeconds: Invalid value: {-(2**63)}: '
            "must be greater than 0",
            [("sinceSeconds", f"Invalid value: {-(2**63)}: must be greater than 0")],
        ),
        (
            {"tail_lines": -5, "limit_bytes": -1, "since_seconds": 0},
            'PodLogOptions "ghost" is invalid: [tailLines: Invalid value: -5: must be greater '
            "than or equal to 0, limitBytes: Invalid value: -1: must be greater than 0, "
            "sinceSeconds: Invalid value: 0: must be greater than 0]",
            [
                ("tailLines", "Invalid value: -5: must be greater than or equal to 0"),
                ("limitBytes", "Invalid value: -1: must be greater than 0"),
                ("sinceSeconds", "Invalid value: 0: must be greater than 0"),
            ],
        ),
    ],
)
async def test_out_of_range_log_options_are_invalid_before_the_pod_is_looked_up(
    kube: KubeApiServer,
    api: ApiClient,
    options: dict[str, int],
    message: str,
    causes: list[tuple[str, str]],
) -> None:
    status, body = await log_refused(api, "ghost", **options)

    assert (status, body["reason"], body["message"]) == (422, "Invalid", message)
    assert body["details"] == {
        "name": "ghost",
        "kind": "PodLogOptions",
        "causes": [
            {"reason": "FieldValueInvalid", "message": why, "field": field} for field, why in causes
        ],
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tail_lines": "ten"}, 'strconv.ParseInt: parsing "ten": invalid syntax'),
        ({"tail_lines": ""}, 'strconv.ParseInt: parsing "": invalid syntax'),
        ({"tail_lines": " 5"}, 'strconv.ParseInt: parsing " 5": invalid syntax'),
        ({"tail_lines": "1_000"}, 'strconv.ParseInt: parsing "1_000": invalid syntax'),
        ({"tail_lines": "1.5"}, 'strconv.ParseInt: parsing "1.5": invalid syntax'),
        ({"limit_bytes": "٣"}, 'strconv.ParseInt: parsing "٣": invalid syntax'),
        ({"limit_bytes": 'x"\n'}, 'strconv.ParseInt: parsing "x\\"\\n": invalid syntax'),
        ({"limit_bytes": 2**63}, f'strconv.ParseInt: parsing "{2**63}": value out of range'),
        (
            {"tail_lines": -(2**63) - 1},
            f'strconv.ParseInt: parsing "{-(2**63) - 1}": value out of range',
        ),
        # Decoded in field order: sinceSeconds comes before tailLines.
        (
            {"tail_lines": "b", "since_seconds": "a"},
            'strconv.ParseInt: parsing "a": invalid syntax',
        ),
    ],
)
async def test_log_options_that_are_not_integers_are_a_bad_request(
    kube: KubeApiServer, api: ApiClient, options: dict[str, Any], message: str
) -> None:
    status, body = await log_refused(api, "ghost", **options)

    assert (status, body["reason"], body["message"]) == (400, "BadRequest", message)


async def test_booleans_are_false_only_for_0_and_false_as_the_api_server_decodes_them(
    kube: KubeApiServer, api: ApiClient
) -> None:
    at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    kube.add_standalone_pod(NS, "worker", {"app": "worker"})
    kube.write_log(NS, "worker", ["hello"], at=at)

    for value in (False, "0", "FALSE", "fAlSe"):
        assert await read_log(api, "worker", timestamps=value) == "hello\n"
    for value in (True, "1", "yes", "no", ""):
        assert await read_log(api, "worker", timestamps=value) == f"{go_time(at)} hello\n"


async def test_a_pod_with_several_containers_needs_one_named_and_each_has_its_own_log(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_standalone_pod(NS, "pair", {"app": "pair"}, containers=["app", "sidecar"])
    kube.add_standalone_pod(
        NS, "web", {"app": "web"}, containers=["app", "proxy"], init_containers=["migrate"]
    )
    kube.write_log(NS, "pair", ["from app"])
    kube.write_log(NS, "pair", ["from sidecar"], container="sidecar")
    kube.write_log(NS, "web", ["migrated 3 tables"], container="migrate")

    assert await log_refused(api, "pair") == (
        400,
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "a container name must be specified for pod pair, "
            "choose one of: [app sidecar]",
            "reason": "BadRequest",
            "code": 400,
        },
    )
    # The API server lists every container, init containers first (podutil.VisitContainers).
    _, body = await log_refused(api, "web")
    assert body["message"] == (
        "a container name must be specified for pod web, choose one of: [migrate app proxy]"
    )
    _, body = await log_refused(api, "pair", container="nope")
    assert (body["reason"], body["message"]) == (
        "BadRequest",
        "container nope is not valid for pod pair",
    )
    assert await read_log(api, "pair", container="app") == "from app\n"
    assert await read_log(api, "pair", container="sidecar") == "from sidecar\n"
    assert await read_log(api, "web", container="migrate") == "migrated 3 tables\n"
    assert await read_log(api, "web", container="proxy") == ""
    pod = kube.pod(NS, "web")
    (init,) = pod["status"]["initContainerStatuses"]
    assert init["state"]["terminated"]["reason"] == "Completed"


async def test_a_container_that_has_not_started_is_refused_as_the_kubelet_refuses_it(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_standalone_pod(NS, "starting", {"app": "starting"})
    kube.add_standalone_pod(NS, "init", {"app": "init"}, init_containers=["migrate"])
    kube.write_log(NS, "starting", ["written before the restart"])
    kube.set_pod_phase(NS, "starting", "Pending")  # scheduled, its container being created
    kube.set_pod_phase(NS, "init", "Pending")

    status, body = await log_refused(api, "starting")
    assert (status, body["reason"], body["message"]) == (
        400,
        "BadRequest",
        'container "app" in pod "starting" is waiting to start: ContainerCreating',
    )
    _, body = await log_refused(api, "init", container="migrate")
    assert (
        body["message"] == 'container "migrate" in pod "init" is waiting to start: PodInitializing'
    )
    _, body = await log_refused(api, "init")
    assert body["message"] == 'container "app" in pod "init" is waiting to start: PodInitializing'


async def test_a_pod_on_no_node_answers_204_and_kubernetes_asyncio_returns_none(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.kubelet = False
    kube.add_standalone_pod(NS, "unscheduled", {"app": "unscheduled"})
    kube.write_log(NS, "unscheduled", ["never served"])
    core = client.CoreV1Api(api)

    answer: Any = await core.read_namespaced_pod_log_with_http_info("unscheduled", NS)

    text, status, headers = answer
    assert (text, status) == (None, 204)
    assert "Content-Type" not in headers
    # The API server still checks the container before it sees there is no node.
    _, body = await log_refused(api, "unscheduled", container="nope")
    assert body["message"] == "container nope is not valid for pod unscheduled"


async def test_previous_without_an_earlier_run_is_refused(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_standalone_pod(NS, "worker", {"app": "worker"})
    kube.write_log(NS, "worker", ["current run"])

    status, body = await log_refused(api, "worker", previous=True)

    assert (status, body["reason"], body["message"]) == (
        400,
        "BadRequest",
        'previous terminated container "app" in pod "worker" not found',
    )
    assert await read_log(api, "worker", previous=False) == "current run\n"


async def test_a_finished_pod_still_serves_its_log(kube: KubeApiServer, api: ApiClient) -> None:
    kube.add_standalone_pod(NS, "batch", {"app": "batch"})
    kube.write_log(NS, "batch", ["done: 3 rows"])
    kube.set_pod_phase(NS, "batch", "Failed")

    assert await read_log(api, "batch") == "done: 3 rows\n"


async def test_a_log_belongs_to_the_pod_object_and_goes_with_it(
    kube: KubeApiServer, api: ApiClient
) -> None:
    first = kube.add_standalone_pod(NS, "worker", {"app": "worker"})
    kube.write_log(NS, "worker", ["first incarnation"])
    core = client.CoreV1Api(api)

    await core.delete_namespaced_pod("worker", NS)

    async def gone() -> bool:
        return not kube.has_pod(NS, "worker")

    await poll(gone, "the pod to be deleted")
    status, _ = await log_refused(api, "worker")
    assert status == 404
    with pytest.raises(KeyError):
        kube.write_log(NS, "worker", ["into the void"])
    second = kube.add_standalone_pod(NS, "worker", {"app": "worker"})
    assert second["metadata"]["uid"] != first["metadata"]["uid"]
    assert await read_log(api, "worker") == ""


async def test_write_log_refuses_what_no_container_could_have_written(kube: KubeApiServer) -> None:
    kube.add_standalone_pod(NS, "worker", {"app": "worker"})

    with pytest.raises(KeyError):
        kube.write_log(NS, "ghost", ["x"])
    with pytest.raises(ValueError, match="no container 'sidecar'"):
        kube.write_log(NS, "worker", ["x"], container="sidecar")
    with pytest.raises(ValueError, match="timezone-aware"):
        kube.write_log(NS, "worker", ["x"], at=dt.datetime(2026, 1, 1))
    with pytest.raises(TypeError):
        kube.write_log(NS, "worker", "one str")
    with pytest.raises(UnicodeEncodeError):
        kube.write_log(NS, "worker", ["lone surrogate \ud800"])
    with pytest.raises(ValueError, match="distinct names"):
        kube.add_standalone_pod(NS, "twins", {"app": "twins"}, containers=["app", "app"])
    with pytest.raises(ValueError, match="distinct names"):
        kube.add_standalone_pod(NS, "empty", {"app": "empty"}, containers=[])


async def test_rbac_needs_get_on_pods_log_not_just_on_pods(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_standalone_pod(NS, "worker", {"app": "worker"})
    kube.write_log(NS, "worker", ["secret-ish output"])
    binding = {
        "apiVersion": RBAC,
        "kind": "RoleBinding",
        "metadata": {"name": "reader", "namespace": NS},
        "roleRef": {"apiGroup": RBAC.split("/")[0], "kind": "Role", "name": "reader"},
        "subjects": [SA_SUBJECT],
    }
    role = {
        "apiVersion": RBAC,
        "kind": "Role",
        "metadata": {"name": "reader", "namespace": NS},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
    }
    kube.load_rbac([role, binding])

    assert (await client.CoreV1Api(api).read_namespaced_pod("worker", NS)).metadata.name == "worker"
    assert await forbidden(read_log(api, "worker")) == (
        f'pods "worker" is forbidden: User "{USER}" cannot get resource "pods/log" in API group '
        '"" in the namespace "shop"'
    )
    role["rules"] = [{"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]
    kube.load_rbac([role])
    assert await read_log(api, "worker") == "secret-ish output\n"
    assert 'cannot get resource "pods"' in await forbidden(
        client.CoreV1Api(api).read_namespaced_pod("worker", NS)
    )


async def test_the_log_subresource_is_discovered_and_answers_only_get(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_standalone_pod(NS, "worker", {"app": "worker"})
    resources = await client.CoreV1Api(api).get_api_resources()
    (log,) = [r for r in resources.resources if r.name == "pods/log"]
    assert (log.kind, log.verbs, log.namespaced) == ("Pod", ["get"], True)

    for method, path, status in [
        ("POST", f"/api/v1/namespaces/{NS}/pods/worker/log", 405),
        ("GET", f"/api/v1/namespaces/{NS}/pods/worker/logs", 404),
        ("GET", f"/api/v1/namespaces/{NS}/pods/worker/log/extra", 404),
    ]:
        with pytest.raises(ApiException) as caught:
            await api.call_api(path, method, auth_settings=["BearerToken"], response_types_map={})
        assert caught.value.status == status, (method, path)


# ---- managedFields, server-side apply and KEDA's CRD ---------------------------------------


def replicas_owners(deployment: Any) -> list[tuple[str, str, str]]:
    """(manager, operation, subresource) of the entries holding spec.replicas."""
    return [
        (e.manager, e.operation, e.subresource or "")
        for e in deployment.metadata.managed_fields or []
        if "f:replicas" in (e.fields_v1 or {}).get("f:spec", {})
    ]


async def test_every_write_records_who_set_which_fields(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_deployment(NS, "web", replicas=3, manager="kubectl-create")
    apps = client.AppsV1Api(api)
    created = await apps.read_namespaced_deployment("web", NS)
    [entry] = created.metadata.managed_fields
    assert (entry.manager, entry.operation, entry.api_version) == (
        "kubectl-create", "Update", "apps/v1"
    )  # fmt: skip
    assert entry.fields_v1["f:spec"]["f:replicas"] == {}
    assert entry.fields_v1["f:metadata"]["f:labels"]["f:app"] == {}
    assert "f:status" not in entry.fields_v1 and "f:name" not in entry.fields_v1["f:metadata"]
    # A patch by another manager takes what it changed, and only that.
    await apps.patch_namespaced_deployment(
        "web", NS, {"metadata": {"annotations": {"team": "a"}}}, field_manager="kubectl-annotate"
    )
    patched = await apps.read_namespaced_deployment("web", NS)
    by = {e.manager: e.fields_v1 for e in patched.metadata.managed_fields}
    assert by["kubectl-annotate"] == {"f:metadata": {"f:annotations": {"f:team": {}}}}
    assert replicas_owners(patched) == [("kubectl-create", "Update", "")]
    # Through the scale subresource, without a field manager: the User-Agent's name.
    await apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": 5}})
    scaled = await apps.read_namespaced_deployment("web", NS)
    assert replicas_owners(scaled) == [("OpenAPI-Generator", "Update", "scale")]
    assert (
        "f:template"
        in {e.manager: e.fields_v1 for e in scaled.metadata.managed_fields}["kubectl-create"][
            "f:spec"
        ]
    )


def applied(replicas: int | None = None, **annotations: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": "web"}}}
    if replicas is not None:
        spec["replicas"] = replicas
    meta: dict[str, Any] = {"name": "web", "namespace": NS}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}


async def apply_over_http(
    kube: KubeApiServer, body: Any, query: str, content_type: str = "application/apply-patch+yaml"
) -> tuple[int, Any]:
    url = f"{kube.url}/apis/apps/v1/namespaces/{NS}/deployments/web?{query}"
    headers = {"Authorization": f"Bearer {kube.token}", "Content-Type": content_type}
    data = body if isinstance(body, str) else json.dumps(body)
    async with (
        aiohttp.ClientSession() as session,
        session.patch(url, data=data, headers=headers) as answer,
    ):
        return answer.status, await answer.json(content_type=None)


async def test_server_side_apply_owns_what_it_applies_and_conflicts_with_other_owners(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.add_deployment(NS, "web", replicas=3)
    status, conflict = await apply_over_http(kube, applied(4), "fieldManager=argocd-controller")
    assert (status, conflict["reason"]) == (409, "Conflict")
    assert conflict["message"] == (
        'Apply failed with 1 conflict: conflict with "kubectl-create" using apps/v1: .spec.replicas'
    )
    assert conflict["details"]["causes"] == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "kubectl-create" using'
         " apps/v1", "field": ".spec.replicas"}
    ]  # fmt: skip
    # The same value is shared; force takes a different one over.
    status, _ = await apply_over_http(kube, applied(3), "fieldManager=argocd-controller")
    assert status == 200
    shared = await client.AppsV1Api(api).read_namespaced_deployment("web", NS)
    assert sorted(replicas_owners(shared)) == [
        ("argocd-controller", "Apply", ""), ("kubectl-create", "Update", "")
    ]  # fmt: skip
    status, _ = await apply_over_http(kube, applied(6), "fieldManager=flux&force=true")
    forced = await client.AppsV1Api(api).read_namespaced_deployment("web", NS)
    assert status == 200 and forced.spec.replicas == 6
    assert replicas_owners(forced) == [("flux", "Apply", "")]
    # A field the applier no longer applies, and nobody else owns, is removed.
    kube.apply("deployments", NS, "web", applied(6, note="x"), "flux")
    kube.apply("deployments", NS, "web", applied(6), "flux")
    released = await client.AppsV1Api(api).read_namespaced_deployment("web", NS)
    assert "note" not in (released.metadata.annotations or {})


APPLY_REFUSALS = {
    "no field manager": (applied(3), "", 422,
                         'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value:'
                         " is required for apply patch"),
    "not YAML": ("{: [", "fieldManager=x", 400, "error decoding YAML"),
    "another kind": ({**applied(3), "kind": "StatefulSet"}, "fieldManager=x", 400,
                     "do not match the request's (apps/v1, Deployment)"),
    "another name": ({**applied(3), "metadata": {"name": "api", "namespace": NS}},
                     "fieldManager=x", 400, ""),
}  # fmt: skip


@pytest.mark.parametrize("case", APPLY_REFUSALS.values(), ids=APPLY_REFUSALS.keys())
async def test_an_apply_the_api_server_refuses_changes_nothing(
    kube: KubeApiServer, case: tuple[Any, str, int, str]
) -> None:
    body, query, code, words = case
    before = kube.add_deployment(NS, "web", replicas=3)
    status, answer = await apply_over_http(kube, body, query)
    assert (status, answer["kind"]) == (code, "Status") and words in answer["message"]
    assert (
        kube.deployment(NS, "web")["metadata"]["resourceVersion"]
        == (before["metadata"]["resourceVersion"])
    )


async def test_an_apply_is_a_patch_for_rbac(kube: KubeApiServer) -> None:
    kube.add_deployment(NS, "web", replicas=3)
    kube.load_rbac(RECYCLE_ROLE)
    status, answer = await apply_over_http(kube, applied(3), "fieldManager=x")
    assert (status, answer["reason"]) == (403, "Forbidden")
    assert 'cannot patch resource "deployments"' in answer["message"]


async def test_keda_s_resource_is_served_once_installed_and_authorized_before_either(
    kube: KubeApiServer, api: ApiClient
) -> None:
    custom = client.CustomObjectsApi(api)
    kube.add_deployment(NS, "web", replicas=3)
    with pytest.raises(ApiException) as missing:
        await custom.list_namespaced_custom_object("keda.sh", "v1alpha1", NS, "scaledobjects")
    assert missing.value.status == 404
    kube.load_rbac(RECYCLE_ROLE)
    with pytest.raises(ApiException) as denied:  # authorization comes before the lookup
        await custom.list_namespaced_custom_object("keda.sh", "v1alpha1", NS, "scaledobjects")
    assert denied.value.status == 403
    assert (
        'cannot list resource "scaledobjects" in API group "keda.sh"'
        in status_body(denied.value)["message"]
    )


async def test_keda_makes_an_hpa_for_a_scaled_object_and_none_while_paused(
    kube: KubeApiServer, api: ApiClient
) -> None:
    kube.install_keda()
    kube.add_deployment(NS, "web", replicas=3)
    kube.add_deployment(NS, "api", replicas=3)
    kube.add_scaled_object(NS, "web-queue", "web", min_replicas=2, max_replicas=8)
    kube.add_scaled_object(
        NS, "api-queue", "api", annotations={"autoscaling.keda.sh/paused-replicas": "1"}
    )
    listed = await client.CustomObjectsApi(api).list_namespaced_custom_object(
        "keda.sh", "v1alpha1", NS, "scaledobjects"
    )
    assert sorted(i["metadata"]["name"] for i in listed["items"]) == ["api-queue", "web-queue"]
    hpas = await client.AutoscalingV2Api(api).list_namespaced_horizontal_pod_autoscaler(NS)
    [hpa] = hpas.items
    assert (hpa.metadata.name, hpa.spec.min_replicas, hpa.spec.max_replicas) == (
        "keda-hpa-web-queue", 2, 8
    )  # fmt: skip
    assert [(r.kind, r.name, r.controller) for r in hpa.metadata.owner_references] == [
        ("ScaledObject", "web-queue", True)
    ]
    held = await client.AppsV1Api(api).read_namespaced_deployment("api", NS)
    assert held.spec.replicas == 1
    assert replicas_owners(held) == [("keda-operator", "Update", "scale")]
