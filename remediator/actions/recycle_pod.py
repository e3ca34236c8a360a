"""``recycle_pod``: evict one pod so its Deployment's ReplicaSet replaces it.

Through the Eviction API, so PodDisruptionBudgets apply, with the UID observed at
precheck as a precondition, so a pod replaced meanwhile is never hit. Refused: pods
without a controller, DaemonSet pods (unless allowed), other controllers, a Deployment
rolling out, a recycle that would leave fewer than ``min_healthy`` ready replicas, and a
second recycle in the same workload while one runs (the workload is an exclusive key of
the intent, held in the store, so replicas see each other's). A PDB's 429 is retried within a short
bounded window, then the recycle fails and is escalated; DELETE is used instead only when
the rule sets ``allow_delete_fallback``. Verified when a replacement pod is Ready.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from remediator.actions import opt_in
from remediator.actions.base import (
    Action,
    ActionRequest,
    ActionResult,
    Checked,
    Nothing,
    Permission,
    Reconciled,
    Stored,
    VerifyResult,
    verified_within,
)
from remediator.actions.healthy import MinHealthy, required_ready
from remediator.clients.k8s import Deployment, KubeClient, KubeHandle, Pod
from remediator.core.errors import Conflict, DisruptionBlocked, NotFound
from remediator.core.model import ALLOW, StopReason, Target, Verdict, refuse

PDB_BACKOFF_S = 2.0


class RecyclePodParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    min_healthy: MinHealthy
    """Ready replicas that must remain: a count (0 to 1 000) or a share of the desired,
    "0%" to "100%" ("66%")."""
    pick: Literal["most_restarts", "oldest", "not_ready"] = "most_restarts"
    """Which pod, when the target is a Deployment rather than a pod the alert names."""
    uid_label: str = "uid"
    """Alert label holding the pod UID (kube-state-metrics sets it); a mismatch means the
    pod the alert is about is already gone."""
    pdb_retry_s: float = Field(default=30.0, ge=0, le=300)
    """How long to retry an eviction a PodDisruptionBudget refuses, seconds."""
    allow_daemonset: bool = False
    allow_delete_fallback: bool = False
    """DELETE the pod when a PDB keeps refusing. Off: PDBs exist for a reason."""


class RecyclePodFacts(BaseModel):
    """What precheck saw: the pod, and for a Deployment's pod the workload (the exclusive
    key of the intent) and its selector (to see the replacement come up)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pod: str
    uid: str
    restarts: int
    workload: str | None = None
    """``namespace/Deployment/name``; None for an allowed DaemonSet pod."""
    selector: dict[str, str] | None = None

    def details(self) -> dict[str, Any]:
        """For the audit, as before: a DaemonSet pod's facts have no workload or selector."""
        return self.model_dump(mode="json", exclude_none=True)


class RecyclePodIntent(Stored):
    """Pod ``pod`` with UID ``uid`` is about to be evicted."""

    pod: str = Field(min_length=1)
    uid: str = Field(min_length=1)
    selector: dict[str, str] | None
    """Its Deployment's selector; None for a DaemonSet pod."""


Request = ActionRequest[RecyclePodParams, RecyclePodIntent]
Result = ActionResult[Nothing]


def choose(pods: Sequence[Pod], pick: str) -> Pod | None:
    live = [p for p in pods if p.phase not in ("Succeeded", "Failed")]
    if not live:
        return None
    if pick == "oldest":
        return min(live, key=lambda p: p.created)
    if pick == "not_ready":
        return next((p for p in live if not p.ready), None)
    return max(live, key=lambda p: (p.restarts, not p.ready))


class RecyclePod(Action[RecyclePodParams, RecyclePodFacts, RecyclePodIntent, Nothing]):
    kind: ClassVar[str] = "recycle_pod"
    params_model: ClassVar[type[RecyclePodParams]] = RecyclePodParams
    intent_model: ClassVar[type[RecyclePodIntent]] = RecyclePodIntent
    undo_model: ClassVar[type[Nothing]] = Nothing
    target_kinds: ClassVar[frozenset[str]] = frozenset({"Pod", "Deployment"})
    destructive: ClassVar[bool] = True

    def __init__(self, handle: KubeHandle) -> None:
        self._handle = handle

    def available(self) -> bool:
        return self._handle.client is not None

    def permissions(self, params: RecyclePodParams) -> Sequence[Permission]:
        """A plain ``delete`` bypasses PodDisruptionBudgets: granted only where a rule sets
        ``allow_delete_fallback``; otherwise pods leave through the eviction API alone."""
        delete = (Permission("", ("pods",), ("delete",)),) if params.allow_delete_fallback else ()
        return (
            Permission("", ("pods",), ("get", "list")),
            Permission("", ("pods/eviction",), ("create",)),
            *delete,
            Permission("apps", ("replicasets", "deployments"), ("get",)),
            Permission("", ("events",), ("create",)),
        )

    def _kube(self) -> KubeClient:
        assert self._handle.client is not None, "recycle_pod run without a cluster"
        return self._handle.client

    async def _pod(self, request: Request) -> Pod | Verdict:
        target, kube = request.target, self._kube()
        if target.kind == "Deployment":
            deployment = await kube.deployment(target.namespace, target.name)
            chosen = choose(
                await kube.pods(target.namespace, deployment.selector), request.params.pick
            )
            if chosen is None:
                return refuse(
                    StopReason.TARGET_GONE, f"No pod of {target.key} matches {request.params.pick}."
                )
            return chosen
        pod = await kube.pod(target.namespace, target.name)
        alerted_uid = request.labels.get(request.params.uid_label)
        if alerted_uid and alerted_uid != pod.uid:
            return refuse(
                StopReason.TARGET_GONE,
                f"{target.key} was replaced since the alert fired (UID {alerted_uid} is gone).",
            )
        return pod

    async def _workload(self, pod: Pod, request: Request) -> Deployment | Verdict | None:
        """The Deployment behind ``pod``; a refusal; or None for an allowed DaemonSet pod."""
        where = f"{pod.namespace}/Pod/{pod.name}"
        owner = pod.owner
        if owner is None:
            return refuse(StopReason.PRECHECK_FAILED, f"{where} has no controller to replace it.")
        if owner.kind == "DaemonSet":
            if request.params.allow_daemonset:
                return None
            return refuse(StopReason.PRECHECK_FAILED, f"{where} belongs to DaemonSet {owner.name}.")
        if owner.kind == "ReplicaSet":
            parent = await self._kube().owner_of_replicaset(pod.namespace, owner.name)
            if parent is not None and parent.kind == "Deployment":
                return await self._kube().deployment(pod.namespace, parent.name)
        return refuse(
            StopReason.PRECHECK_FAILED,
            f"{where} is controlled by {owner.kind} {owner.name}; recycle_pod handles pods of"
            " Deployments.",
        )

    def _blast_radius(self, pod: Pod, deployment: Deployment, request: Request) -> Verdict:
        """Opted in first (a workload that did not opt in is refused as such, whatever its
        state), then not rolling out, then ``min_healthy`` ready replicas left."""
        key = f"{deployment.namespace}/Deployment/{deployment.name}"
        opted = opt_in.decide(deployment.annotations, self.kind, key, request.require_opt_in)
        if not opted.allowed:
            return opted
        if deployment.rolling_out:
            return refuse(StopReason.BLAST_RADIUS, f"{key} is rolling out; no recycle now.")
        needed = required_ready(request.params.min_healthy, deployment.replicas)
        left = deployment.ready_replicas - (1 if pod.ready else 0)
        if left < needed:
            return refuse(
                StopReason.BLAST_RADIUS,
                f"Recycling {pod.name} would leave {left} ready replicas of {key}, fewer than"
                f" min_healthy {request.params.min_healthy} ({needed}).",
            )
        return ALLOW

    async def precheck(self, request: Request) -> Checked[RecyclePodFacts]:
        try:
            pod = await self._pod(request)
        except NotFound:
            return Checked(refuse(StopReason.TARGET_GONE, f"{request.target.key} does not exist."))
        if isinstance(pod, Verdict):
            return Checked(pod)
        touches: tuple[Target, ...] = (Target("Pod", request.target.namespace, pod.name),)
        workload = await self._workload(pod, request)
        if isinstance(workload, Verdict):
            return Checked(workload, touches=touches)
        if workload is None:
            facts = RecyclePodFacts(pod=pod.name, uid=pod.uid, restarts=pod.restarts)
            return Checked(ALLOW, facts, touches)
        facts = RecyclePodFacts(
            pod=pod.name,
            uid=pod.uid,
            restarts=pod.restarts,
            workload=f"{workload.namespace}/Deployment/{workload.name}",
            selector=dict(workload.selector),
        )
        touches += (Target("Deployment", workload.namespace, workload.name),)  # its evidence
        return Checked(self._blast_radius(pod, workload, request), facts, touches)

    async def run(self, request: Request, facts: RecyclePodFacts) -> Result:
        """Evict the pod prechecked. One recycle per workload at a time, across replicas:
        the workload is held in the store from the intent until the outcome."""
        kube, namespace = self._kube(), request.target.namespace
        name, uid = facts.pod, facts.uid
        where = f"{namespace}/Pod/{name}"
        details = facts.details()
        if facts.selector is not None:
            details["pods_before"] = [p.uid for p in await kube.pods(namespace, facts.selector)]
        intent = RecyclePodIntent(pod=name, uid=uid, selector=facts.selector)
        await request.intend(intent, facts.workload)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + request.params.pdb_retry_s
        while True:
            try:
                await kube.evict(namespace, name, uid)
                break
            except Conflict:
                return ActionResult(True, f"{where} was replaced before eviction; nothing evicted.",
                                    {**details, "evicted": False})  # fmt: skip
            except NotFound:
                return ActionResult(True, f"{where} is already gone; nothing evicted.",
                                    {**details, "evicted": False})  # fmt: skip
            except DisruptionBlocked as exc:
                wait_s = exc.retry_after_s or PDB_BACKOFF_S  # the server's Retry-After first
                if loop.time() + wait_s <= deadline:
                    await asyncio.sleep(wait_s)
                    continue
                if not request.params.allow_delete_fallback:
                    return ActionResult(
                        False,
                        f"The PodDisruptionBudget kept refusing to evict {where} for"
                        f" {request.params.pdb_retry_s:g} s: {exc}",
                        {**details, "evicted": False},
                    )
                await kube.delete_pod(namespace, name, uid)
                break
        await kube.record_event(
            namespace, "Pod", name, uid, "RemediatorRecycled",
            f"remediator evicted this pod (rule {request.rule}, episode {request.episode_id}).",
        )  # fmt: skip
        return ActionResult(True, f"Evicted {where} (UID {uid}).", {**details, "evicted": True})

    async def verify(self, request: Request, result: Result) -> VerifyResult:
        if not result.details.get("evicted"):
            return VerifyResult.UNKNOWN
        selector = result.details.get("selector")
        if not isinstance(selector, dict):
            return VerifyResult.UNKNOWN
        kube, namespace = self._kube(), request.target.namespace
        old_uid = result.details.get("uid")
        before = set(result.details.get("pods_before") or ()) | {old_uid}

        async def replaced() -> bool:
            pods = await kube.pods(namespace, selector)
            # A replacement: a Ready pod that did not exist before the eviction. The other
            # pods that were Ready all along prove nothing (the controller lags the eviction).
            new_ready = any(p.ready and p.uid not in before for p in pods)
            return new_ready and all(p.uid != old_uid or not p.ready for p in pods)

        return await verified_within(request.verify_within_s, replaced)

    async def undo(self, request: Request, state: Nothing) -> Result:
        return ActionResult(True, f"{self.kind} leaves nothing to undo.")

    async def reconcile(self, request: Request, intent: RecyclePodIntent) -> Reconciled[Nothing]:
        """The pod with the intended UID gone, or going: the eviction took effect."""
        namespace, name, uid = request.target.namespace, intent.pod, intent.uid
        where = f"{namespace}/Pod/{name}"
        try:
            pod = await self._kube().pod(namespace, name)
        except NotFound:
            pod = None
        if pod is None or pod.uid != uid or pod.terminating:
            sentence = f"{where} with UID {uid} is gone or terminating: the eviction took effect."
            details = {**intent.model_dump(mode="json"), "evicted": True}
            return Reconciled(True, sentence, ActionResult(True, sentence, details))
        return Reconciled(False, f"{where} with UID {uid} still runs: it was not evicted.")
