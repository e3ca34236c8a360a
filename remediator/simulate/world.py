"""An in-memory Kubernetes for the offline engine: the ``world:`` facts of a test case.

Where it sits: ``cases`` applies each ``world`` input of a case to a ``World`` at its time;
the ``engine`` puts the world's ``client`` into the ``KubeHandle`` the rules' actions were
built on, so a dry-run claim's precheck (``act.runner``) reads these facts as it would read
the cluster. The client answers the reads the actions make with the real client's values
(``Deployment``, ``Scale``, ``Autoscaler``, ``Pod``, ``Owner``) and its errors (``NotFound``,
with the API server's message); every write raises ``OfflineWrite``: dry-run never reaches
a write, and the offline engine never makes one.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from itertools import count

from remediator.clients.k8s import Autoscaler, Deployment, KubeClient, Owner, Pod, Scale
from remediator.core.errors import NotFound
from remediator.simulate.testfile import DeploymentFact, HpaFact, PodFact, WorldSpec

Key = tuple[str, str]
"""(namespace, name)."""


class OfflineWrite(RuntimeError):
    """A write reached the in-memory cluster: a bug, since the offline engine runs dry."""


def uid_of(kind: str, namespace: str, name: str) -> str:
    """The UID an object gets when its fact names none: the same from run to run."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"remediator-world:{kind}/{namespace}/{name}"))


def replica_set_of(deployment: str) -> str:
    """The name of the ReplicaSet through which a Deployment's pods are its own."""
    return f"{deployment}-replicaset"


def _not_found(resource: str, name: str) -> NotFound:
    return NotFound(f'{resource} "{name}" not found', 404)  # the API server's own words


class World:
    """The objects a case's ``world`` inputs have put in the cluster so far."""

    def __init__(self) -> None:
        self.deployments: dict[Key, Deployment] = {}
        self.pods: dict[Key, Pod] = {}
        self.hpas: dict[Key, tuple[Autoscaler, str]] = {}
        """Each HPA, with the name of the Deployment it scales."""
        self.replica_sets: dict[Key, Owner] = {}
        """Each ReplicaSet the pods name, with the Deployment that owns it."""
        self._versions = count(1)
        self.client = WorldClient(self)

    def apply(self, spec: WorldSpec, at: datetime) -> None:
        """The facts of one ``world`` input, at ``at``: each replaces an object of its
        kind, namespace and name."""
        for deployment in spec.deployments:
            self.deployments[deployment.namespace, deployment.name] = self._deployment(deployment)
        for pod in spec.pods:
            self.pods[pod.namespace, pod.name] = self._pod(pod, at)
        for hpa in spec.hpas:
            self.hpas[hpa.namespace, hpa.name] = (self._hpa(hpa), hpa.deployment)

    def _version(self) -> str:
        return str(next(self._versions))

    def _deployment(self, fact: DeploymentFact) -> Deployment:
        generation = 2 if fact.rolling_out else 1
        return Deployment(
            namespace=fact.namespace, name=fact.name,
            uid=fact.uid or uid_of("Deployment", fact.namespace, fact.name),
            resource_version=self._version(), generation=generation, observed_generation=1,
            replicas=fact.replicas,
            ready_replicas=fact.replicas if fact.ready is None else fact.ready,
            updated_replicas=fact.replicas if fact.updated is None else fact.updated,
            annotations=dict(fact.annotations),
            selector=dict(fact.selector if fact.selector is not None else {"app": fact.name}),
        )  # fmt: skip

    def _owner(self, fact: PodFact) -> Owner | None:
        if fact.owner is not None:
            return Owner(fact.owner.kind, fact.owner.name,
                         uid_of(fact.owner.kind, fact.namespace, fact.owner.name))  # fmt: skip
        if fact.deployment is None:
            return None
        name = replica_set_of(fact.deployment)
        self.replica_sets[fact.namespace, name] = Owner(
            "Deployment", fact.deployment, uid_of("Deployment", fact.namespace, fact.deployment)
        )
        return Owner("ReplicaSet", name, uid_of("ReplicaSet", fact.namespace, name))

    def _pod(self, fact: PodFact, at: datetime) -> Pod:
        labels = fact.labels
        if labels is None:
            labels = {"app": fact.deployment} if fact.deployment is not None else {}
        return Pod(
            namespace=fact.namespace, name=fact.name,
            uid=fact.uid or uid_of("Pod", fact.namespace, fact.name), phase=fact.phase,
            ready=fact.ready, restarts=fact.restarts, created=at - timedelta(seconds=fact.age),
            owner=self._owner(fact), labels=dict(labels), terminating=fact.terminating,
        )  # fmt: skip

    def _hpa(self, fact: HpaFact) -> Autoscaler:
        return Autoscaler(
            namespace=fact.namespace, name=fact.name, min_replicas=fact.min_replicas,
            max_replicas=fact.max_replicas, resource_version=self._version(),
            uid=uid_of("HorizontalPodAutoscaler", fact.namespace, fact.name),
        )  # fmt: skip


class WorldClient(KubeClient):
    """``KubeClient``'s reads, answered from a ``World``; its writes refused.

    A subclass, so the actions (typed against ``KubeClient``) take it as they are; it
    never calls ``KubeClient.__init__``, which would open an API client.
    """

    def __init__(self, world: World) -> None:  # no ApiClient: nothing is connected
        self._world = world

    async def close(self) -> None:
        pass

    async def deployment(self, namespace: str, name: str) -> Deployment:
        found = self._world.deployments.get((namespace, name))
        if found is None:
            raise _not_found("deployments.apps", name)
        return found

    async def scale(self, namespace: str, name: str) -> Scale:
        found = await self.deployment(namespace, name)
        return Scale(found.replicas, found.resource_version)

    async def hpas_for(self, namespace: str, deployment: str) -> list[Autoscaler]:
        return [
            hpa
            for (where, _), (hpa, scaled) in self._world.hpas.items()
            if where == namespace and scaled == deployment
        ]

    async def pod(self, namespace: str, name: str) -> Pod:
        found = self._world.pods.get((namespace, name))
        if found is None:
            raise _not_found("pods", name)
        return found

    async def pods(self, namespace: str, selector: Mapping[str, str]) -> list[Pod]:
        return [
            pod
            for (where, _), pod in self._world.pods.items()
            if where == namespace and selector.items() <= pod.labels.items()
        ]

    async def owner_of_replicaset(self, namespace: str, name: str) -> Owner | None:
        found = self._world.replica_sets.get((namespace, name))
        if found is None:
            raise _not_found("replicasets.apps", name)
        return found

    async def set_replicas(
        self, namespace: str, name: str, replicas: int, resource_version: str
    ) -> Scale:
        raise _write(f"scale {namespace}/{name} to {replicas}")

    async def set_hpa_min(self, hpa: Autoscaler, min_replicas: int) -> None:
        raise _write(f"set minReplicas of {hpa.namespace}/{hpa.name}")

    async def evict(self, namespace: str, name: str, uid: str) -> None:
        raise _write(f"evict pod {namespace}/{name}")

    async def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        raise _write(f"delete pod {namespace}/{name}")

    async def record_event(
        self, namespace: str, kind: str, name: str, uid: str, reason: str, message: str
    ) -> None:
        raise _write(f"record an event on {namespace}/{name}")


def _write(what: str) -> OfflineWrite:
    return OfflineWrite(f"The offline engine never writes to a cluster ({what}).")
