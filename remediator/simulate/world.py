"""An in-memory Kubernetes, PostgreSQL and set of sinks for the offline engine: the
``world:`` facts of a test case.

Where it sits: ``cases`` applies each ``world`` input of a case to a ``World`` at its time;
the ``engine`` connects the world to the handles the rules' actions were built on
(``Handles``: the ``KubeHandle`` gets the world's ``client``, the ``DatabaseHandle`` its
``databases``), so a dry-run claim's precheck (``act.runner``) reads these facts as it
would read the cluster or the database, and gives its ``sinks`` to the recording sinks.
The client answers the reads the actions make with the real client's values
(``Deployment``, ``Scale``, ``Autoscaler``, ``ScaledObject``, ``Pod``, ``Owner``) and its
errors (``NotFound``, with the API server's message); a ``WorldTarget`` answers as
``PostgresTarget`` does (``Session`` rows with its exclusions, privilege problems). Every
write raises ``OfflineWrite``: dry-run never reaches a write, and the offline engine never
makes one.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from itertools import count
from typing import Any, Literal

from remediator.clients.k8s import (
    Autoscaler,
    Certificate,
    Deployment,
    FieldOwner,
    KubeClient,
    KubeHandle,
    Owner,
    Pod,
    Scale,
    ScaledObject,
)
from remediator.clients.postgres import (
    QUERY_TEXT_CHARS,
    DatabaseHandle,
    PostgresTarget,
    Session,
    Signalled,
)
from remediator.core.clock import Clock
from remediator.core.errors import NotFound
from remediator.simulate.clock import EPOCH
from remediator.simulate.testfile import (
    DatabaseFact,
    DeploymentFact,
    HpaFact,
    PodFact,
    SessionFact,
    SinkFact,
    WorldSpec,
)

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
        self.scaled_objects: dict[Key, tuple[ScaledObject, str]] = {}
        """Each KEDA ScaledObject, with the name of the Deployment it scales."""
        self.replica_sets: dict[Key, Owner] = {}
        """Each ReplicaSet the pods name, with the Deployment that owns it."""
        self.databases: dict[str, PostgresTarget] = {}
        """Each database target (a ``WorldTarget``), by name: ``DatabaseHandle.targets``
        while the world is connected."""
        self.sinks: dict[str, SinkFact] = {}
        """How each sink named so far answers; a sink not named answers ok."""
        self.clock: Clock | None = None
        """The engine's clock while it runs the world: how old a session is now."""
        self._applied_at = EPOCH
        self._versions = count(1)
        self.client = WorldClient(self)

    def now(self) -> datetime:
        """The engine's time; the last input's, when no engine runs the world."""
        return self.clock.now() if self.clock is not None else self._applied_at

    def apply(self, spec: WorldSpec, at: datetime) -> None:
        """The facts of one ``world`` input, at ``at``: each replaces an object of its
        kind, namespace and name, a database's sessions, or a sink's answer."""
        self._applied_at = at
        for deployment in spec.deployments:
            self.deployments[deployment.namespace, deployment.name] = self._deployment(deployment)
        for pod in spec.pods:
            self.pods[pod.namespace, pod.name] = self._pod(pod, at)
        for hpa in spec.hpas:
            self.hpas[hpa.namespace, hpa.name] = (self._hpa(hpa), hpa.deployment)
        for scaled in spec.scaled_objects:
            found = ScaledObject(scaled.namespace, scaled.name, dict(scaled.annotations))
            self.scaled_objects[scaled.namespace, scaled.name] = (found, scaled.deployment)
        for name, database in spec.databases.items():
            self.databases[name] = WorldTarget(name, database, at, self.now)
        self.sinks.update(spec.sinks)

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
            replicas_owners=tuple(
                FieldOwner(m.manager, m.operation, m.subresource) for m in fact.replicas_managers
            ),
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

    async def scaled_objects_for(self, namespace: str, deployment: str) -> list[ScaledObject]:
        return [
            scaled
            for (where, _), (scaled, target) in self._world.scaled_objects.items()
            if where == namespace and target == deployment
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

    async def certificate(self, namespace: str, name: str) -> Certificate:
        # A world holds no Certificates (no fact names one yet): the API server's answer.
        raise _not_found("certificates.cert-manager.io", name)

    async def set_certificate_status(
        self, certificate: Certificate, status: Mapping[str, Any]
    ) -> Certificate:
        raise _write(f"patch the status of certificate {certificate.namespace}/{certificate.name}")

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


def _write(what: str, to: str = "a cluster") -> OfflineWrite:
    return OfflineWrite(f"The offline engine never writes to {to} ({what}).")


@dataclasses.dataclass(frozen=True, slots=True)
class _Row:
    session: Session
    """As of the input's time: ``age_s`` is set when it is read."""
    since: datetime
    """When its query started or, idle in a transaction, when it went idle."""
    superuser: bool


def _row(fact: SessionFact, at: datetime) -> _Row:
    since = at - timedelta(seconds=fact.duration_s)
    session = Session(
        pid=fact.pid, user=fact.user, database=fact.database, application=fact.application,
        state=fact.state, backend_start=since, query_start=since, query=fact.query,
        age_s=fact.duration_s, state_change=since,
    )  # fmt: skip
    return _Row(session, since, fact.superuser)


class WorldTarget(PostgresTarget):
    """``PostgresTarget``'s reads, answered from a database's facts; its signals refused.

    A subclass, so ``kill_query`` (typed against ``PostgresTarget``) takes it as it is; it
    never calls ``PostgresTarget.__init__``, whose pool would connect. Its sessions are those
    ``CANDIDATES_SQL`` returns: never a superuser's, older than ``min_duration_s`` and in one
    of ``states``, oldest first, their age counted on the engine's clock.
    """

    def __init__(
        self, name: str, fact: DatabaseFact, at: datetime, now: Callable[[], datetime]
    ) -> None:  # no pool: nothing is connected
        self.name = name
        self._rows = [_row(session, at) for session in fact.sessions]
        self._problems = list(fact.problems)
        self._now = now

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        raise RuntimeError(f"the offline engine has no database to query ({self.name!r})")

    async def close(self) -> None:
        pass

    async def privilege_problems(self) -> list[str]:
        return list(self._problems)

    async def sessions(
        self, min_duration_s: float, states: list[str], max_query_chars: int = QUERY_TEXT_CHARS
    ) -> list[Session]:
        now = self._now()
        chosen = sorted(
            (row for row in self._rows if not row.superuser and row.session.state in states
             and (now - row.since).total_seconds() > min_duration_s),
            key=lambda row: row.since,
        )  # fmt: skip
        return [
            dataclasses.replace(row.session, query=row.session.query[:max_query_chars],
                                age_s=(now - row.since).total_seconds())
            for row in chosen
        ]  # fmt: skip

    async def still_running(self, session: Session) -> bool:
        return any(
            row.session.identity() == session.identity() and row.session.state != "idle"
            for row in self._rows
        )

    async def moved_on(self, sessions: Sequence[Session]) -> dict[int, datetime]:
        return {}  # nothing was signalled, so nothing moved on after a signal

    async def send(self, session: Session, how: Literal["cancel", "terminate"]) -> Signalled | None:
        raise _write(f"{how} pid {session.pid} on {self.name!r}", "a database")


@dataclasses.dataclass(frozen=True, slots=True)
class Handles:
    """The handles a rule set's actions were built on; ``None``: the case's world does not
    describe that backend, and the actions find it unconnected."""

    kube: KubeHandle | None
    databases: DatabaseHandle | None

    def connect(self, world: World, clock: Clock) -> Callable[[], None]:
        """Connect ``world`` (on ``clock``) to these handles; what disconnects it."""
        assert self.kube is None or self.kube.client is None, "a KubeHandle serves one world"
        assert self.databases is None or not self.databases.targets, "so does a DatabaseHandle"
        world.clock = clock
        if self.kube is not None:
            self.kube.client = world.client
        if self.databases is not None:
            self.databases.targets = world.databases

        def disconnect() -> None:
            world.clock = None
            if self.kube is not None:
                self.kube.client = None
            if self.databases is not None:
                self.databases.targets = {}

        return disconnect
