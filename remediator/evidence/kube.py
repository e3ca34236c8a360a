"""What a reviewer of a Kubernetes action looks at, read as the API server answers it:
``kubectl get -o json`` of the target, ``kubectl describe``'s Events, and before a recycle
``kubectl logs --tail``.

* a Deployment: the Deployment (spec and status), its ReplicaSets, its Events, and the
  HorizontalPodAutoscalers that scale it;
* a Pod: the Pod, its Events and, before it is recycled, the last ``log_lines`` lines of
  each of its containers (``pods/log``);
* a cert-manager Certificate: the Certificate (spec and status) and its Events.

Each read is one named part of the bundle (``capture`` runs them at once, bounded in time):
one that fails is an error of its own, and the others are kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from remediator.clients.k8s import KubeClient, KubeHandle
from remediator.core.errors import ApiError
from remediator.core.model import Target
from remediator.evidence.bundle import Phase

Read = Callable[[], Awaitable[Any]]
LOG_BYTES_PER_LINE = 512
"""A container's log is read to at most this many bytes a line on average."""


class KubeEvidence:
    def __init__(self, handle: KubeHandle, log_lines: int) -> None:
        self._handle = handle
        self._log_lines = log_lines

    def reads(self, target: Target, phase: Phase) -> dict[str, Read]:
        """The reads of ``target``'s evidence, by part name; none without a cluster."""
        kube = self._handle.client
        if kube is None:
            return {}
        ns, name = target.namespace, target.name
        if target.kind == "Deployment":
            deployment = _once(lambda: kube.deployment_document(ns, name))
            return {
                "deployment": deployment,
                "replicasets": lambda: _replicasets(kube, ns, deployment),
                "events": lambda: _items(kube.events_document(ns, "Deployment", name)),
                "autoscalers": lambda: _autoscalers(kube, ns, name),
            }
        if target.kind == "Pod":
            pod = _once(lambda: kube.pod_document(ns, name))
            reads: dict[str, Read] = {
                f"pod {name}": pod,
                f"events of pod {name}": lambda: _items(kube.events_document(ns, "Pod", name)),
            }
            if phase is Phase.BEFORE and self._log_lines:
                reads[f"logs of pod {name}"] = lambda: _logs(kube, ns, name, pod, self._log_lines)
            return reads
        if target.kind == "Certificate":
            return {
                "certificate": lambda: kube.certificate_document(ns, name),
                "events": lambda: _items(kube.events_document(ns, "Certificate", name)),
            }
        return {}


def _once(read: Read) -> Read:
    """``read`` made once for every part that needs its answer (the Deployment for its
    ReplicaSets' selector, the pod for its containers): one request, not one a part."""
    started: asyncio.Future[Any] | None = None

    async def shared() -> Any:
        nonlocal started
        if started is None:
            started = asyncio.ensure_future(read())
        # Not shielded: it is cancelled only when every part awaiting it is (the capture's
        # timeout), so no request outlives the capture.
        return await started

    return shared


async def _items(listed: Awaitable[Any]) -> list[Any]:
    found = await listed
    items = found.get("items") if isinstance(found, Mapping) else None
    return list(items) if isinstance(items, list) else []


def _uid(document: Any) -> str:
    meta = document.get("metadata") if isinstance(document, Mapping) else None
    return str(meta.get("uid", "")) if isinstance(meta, Mapping) else ""


def _owned_by(item: Any, uid: str) -> bool:
    meta = item.get("metadata") if isinstance(item, Mapping) else None
    owners = meta.get("ownerReferences") if isinstance(meta, Mapping) else None
    return isinstance(owners, list) and any(
        isinstance(o, Mapping) and o.get("uid") == uid for o in owners
    )


async def _replicasets(kube: KubeClient, namespace: str, read_deployment: Read) -> list[Any]:
    """The ReplicaSets the Deployment owns (its revisions), as ``kubectl rollout history``
    reads them: selected by its selector, kept by owner."""
    deployment = await read_deployment()
    selector = (deployment.get("spec") or {}).get("selector") or {}
    labels = selector.get("matchLabels") or {}
    found = await _items(kube.replicasets_document(namespace, labels))
    return [item for item in found if _owned_by(item, _uid(deployment))]


async def _autoscalers(kube: KubeClient, namespace: str, name: str) -> list[Any]:
    def scales(item: Any) -> bool:
        ref = (item.get("spec") or {}).get("scaleTargetRef") or {}
        return bool(ref.get("kind") == "Deployment" and ref.get("name") == name)

    return [item for item in await _items(kube.hpas_document(namespace)) if scales(item)]


async def _logs(
    kube: KubeClient, namespace: str, name: str, read_pod: Read, lines: int
) -> dict[str, Any]:
    """Each container's last ``lines`` lines, by container; a container whose log cannot be
    read (not started yet) says why in its place."""
    pod = await read_pod()
    containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    logs: dict[str, Any] = {}
    for container in (c for c in containers if isinstance(c, str)):
        try:
            text = await kube.pod_log(namespace, name, container, lines, lines * LOG_BYTES_PER_LINE)
        except ApiError as exc:  # one container's log must not lose the others'
            logs[container] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            continue
        logs[container] = {"lines": text.splitlines()}
    return logs
