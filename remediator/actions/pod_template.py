"""What ``rollback`` and ``restart_rollout`` share: both write a Deployment's pod template.

Where it sits: each action's precheck asks :meth:`PodTemplateAction.guarded` for the
Deployment and its rollout, or for the refusal that stops it, in this order: the Deployment
exists; it opts in to the action; it is not paused (a paused rollout is someone's on
purpose, and ``kubectl rollout undo`` refuses one); no GitOps controller writes its template
(``ownership.template_owner``) unless the rule says ``gitops: act``. ``run`` then writes
through :meth:`PodTemplateAction.write`: guarded by the ``resourceVersion`` read, and after a
409 the rollout is read again and judged (the write landed though its answer was lost;
someone else changed the template; or only the controller's status writes came between).
A write holds the Deployment as the intent's exclusive key, so two template writes (or a
recycle) on one Deployment never run at once, across replicas.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from enum import Enum
from typing import Any, ClassVar, Literal

from remediator.actions import opt_in, ownership
from remediator.actions.base import (
    ActionRequest,
    ActionResult,
    Nothing,
    Permission,
    VerifyResult,
    verified_within,
)
from remediator.actions.revisions import Revision, Rollout, read_rollout
from remediator.clients.k8s import Deployment, KubeClient, KubeHandle, conflict_attempts
from remediator.core.errors import Conflict, NotFound
from remediator.core.model import StopReason, Target, Verdict, refuse


class Seen(Enum):
    """A rollout read again after a 409, judged against the write."""

    LANDED = "landed"
    """The template is the one written: the write landed though its answer was lost."""
    CHANGED = "changed"
    """Someone else changed the template: nothing is written over it."""
    UNCHANGED = "unchanged"
    """The template is as it was: write again, with the new ``resourceVersion``."""


class PodTemplateAction:
    """The handle, the shared guards and the guarded write of the two template actions."""

    kind: ClassVar[str]
    undo_model: ClassVar[type[Nothing]] = Nothing
    target_kinds: ClassVar[frozenset[str]] = frozenset({"Deployment"})
    destructive: ClassVar[bool] = True

    def __init__(self, handle: KubeHandle) -> None:
        self._handle = handle

    def available(self) -> bool:
        return self._handle.client is not None

    def _kube(self) -> KubeClient:
        assert self._handle.client is not None, f"{self.kind} run without a cluster"
        return self._handle.client

    def permissions(self, params: object) -> Sequence[Permission]:
        """The same for both, whatever the params: the template and the revisions."""
        return (
            Permission("apps", ("deployments",), ("get", "patch")),
            Permission("apps", ("replicasets",), ("list",)),
            Permission("", ("events",), ("create",)),
        )

    async def guarded(
        self, target: Target, require_opt_in: bool, gitops: Literal["refuse", "act"]
    ) -> tuple[Deployment, Rollout] | Verdict:
        kube = self._kube()
        try:
            deployment = await kube.deployment(target.namespace, target.name)
        except NotFound:
            return refuse(StopReason.TARGET_GONE, f"{target.key} does not exist.")
        verdict = opt_in.decide(deployment.annotations, self.kind, target.key, require_opt_in)
        if not verdict.allowed:
            return verdict
        if deployment.paused:
            return refuse(
                StopReason.PRECHECK_FAILED,
                f"{target.key} is paused (spec.paused): its rollout is held on purpose;"
                f" no {self.kind} until someone resumes it.",
            )
        verdict = ownership.refuse_template_owner(deployment, gitops)
        if not verdict.allowed:
            return verdict
        return deployment, await self.rollout(target, deployment)

    async def observed(self, target: Target, uid: str) -> tuple[Deployment, Rollout] | str:
        """The Deployment an intent or a result was about, and its rollout now; or, when it
        is gone or another object holds its name, the sentence that says so."""
        try:
            deployment = await self._kube().deployment(target.namespace, target.name)
        except NotFound:
            return f"{target.key} no longer exists."
        if deployment.uid != uid:
            return f"{target.key} was replaced (its UID is not {uid})."
        return deployment, await self.rollout(target, deployment)

    async def serves_within(
        self, target: Target, uid: str, within_s: float, written: Callable[[Revision], bool]
    ) -> VerifyResult:
        """``VERIFIED`` once the current revision is the one ``written`` says the action
        made and it serves every replica, Ready."""

        async def serves() -> bool:
            seen = await self.observed(target, uid)
            if isinstance(seen, str):
                return False
            rollout = seen[1]
            current = rollout.current()
            return current is not None and written(current) and rollout.serves(current)

        return await verified_within(within_s, serves)

    async def undo(self, request: ActionRequest[Any, Any], state: Nothing) -> ActionResult[Nothing]:
        return ActionResult(True, f"{self.kind} leaves nothing to undo.")

    async def rollout(self, target: Target, deployment: Deployment) -> Rollout:
        kube = self._kube()
        document = await kube.deployment_document(target.namespace, target.name)
        replicasets = await kube.replicasets_document(target.namespace, deployment.selector)
        return read_rollout(document, replicasets)

    async def write(
        self,
        target: Target,
        deployment: Deployment,
        resource_version: str,
        send: Callable[[str], Awaitable[object]],
        judge: Callable[[Rollout], Seen],
    ) -> Seen:
        """``send(resource_version)`` until it lands (``LANDED``) or the rollout read after
        a 409 is ``judge``d to have the write already (``LANDED``) or another template
        (``CHANGED``, as when the Deployment was replaced); ``UNCHANGED`` when it kept
        meeting 409."""
        async for attempt in conflict_attempts():
            if attempt:
                try:
                    rollout = await self.rollout(target, deployment)
                except NotFound:
                    return Seen.CHANGED
                if rollout.uid != deployment.uid:
                    return Seen.CHANGED
                seen = judge(rollout)
                if seen is not Seen.UNCHANGED:
                    return seen
                resource_version = rollout.resource_version
            try:
                await send(resource_version)
            except Conflict:
                continue
            return Seen.LANDED
        return Seen.UNCHANGED
