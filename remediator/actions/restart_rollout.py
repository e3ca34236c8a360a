"""``restart_rollout``: replace every pod of a Deployment, as ``kubectl rollout restart``.

For when every pod is in a bad state at once (a leaked connection pool): the pod
template's ``kubectl.kubernetes.io/restartedAt`` annotation is set to the time now, so the
deployment controller rolls out a new ReplicaSet within the strategy's bounds. Refused
(besides the shared guards of ``pod_template``: opted in, not paused, no GitOps owner)
while a rollout is under way, and when the rollout could leave fewer Ready replicas than
``min_healthy``: the Ready replicas now, less what the strategy may take down at once
(``maxUnavailable``; every pod under ``Recreate``). Verified when the new ReplicaSet serves
every replica, Ready. No undo: the pods it replaced are gone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from remediator.actions.base import (
    Action,
    ActionRequest,
    ActionResult,
    Checked,
    Nothing,
    Reconciled,
    Stored,
    VerifyResult,
)
from remediator.actions.healthy import MinHealthy, required_ready
from remediator.actions.pod_template import PodTemplateAction, Seen
from remediator.actions.revisions import Rollout
from remediator.clients.k8s import Deployment
from remediator.core.model import ALLOW, StopReason, Verdict, refuse

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


class RestartRolloutParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    min_healthy: MinHealthy
    """Ready replicas the rollout must leave: a count (0 to 1 000) or a share of the
    desired, "0%" to "100%". Required: a restart takes pods down."""
    gitops: Literal["refuse", "act"] = "refuse"
    """When Argo CD or Flux writes the pod template: refuse (self-heal would put the
    annotation back, and roll the pods again), or restart anyway."""


class RestartRolloutFacts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    uid: str
    resource_version: str
    from_replicaset: str


class RestartRolloutIntent(Stored):
    """Deployment ``uid``'s template gets ``restartedAt: restarted_at``."""

    uid: str = Field(min_length=1)
    restarted_at: str = Field(min_length=1)
    from_replicaset: str = Field(min_length=1)


Request = ActionRequest[RestartRolloutParams, RestartRolloutIntent]
Result = ActionResult[Nothing]


def restarted_at(template: Any) -> str | None:
    """The ``restartedAt`` annotation of a pod template, if it has one."""
    annotations = ((template or {}).get("metadata") or {}).get("annotations") or {}
    value = annotations.get(RESTARTED_AT) if isinstance(annotations, dict) else None
    return value if isinstance(value, str) else None


def bounded(deployment: Deployment, rollout: Rollout, min_healthy: int | str) -> Verdict:
    """Not during a rollout, and never below ``min_healthy`` Ready replicas."""
    key = rollout.key
    if deployment.rolling_out:
        return refuse(StopReason.BLAST_RADIUS, f"{key} is rolling out; no restart now.")
    needed = required_ready(min_healthy, rollout.desired)
    down = rollout.unavailable_at_once()
    left = min(rollout.ready, rollout.desired) - down
    if left < needed:
        how = "Recreate takes every pod down" if rollout.recreate else f"maxUnavailable {down}"
        return refuse(
            StopReason.BLAST_RADIUS,
            f"Restarting {key} could leave {max(left, 0)} Ready replicas of {rollout.desired}"
            f" ({rollout.ready} Ready now, {how}), fewer than min_healthy {min_healthy}"
            f" ({needed}).",
        )
    return ALLOW


class RestartRollout(
    PodTemplateAction,
    Action[RestartRolloutParams, RestartRolloutFacts, RestartRolloutIntent, Nothing],
):
    kind: ClassVar[str] = "restart_rollout"
    params_model: ClassVar[type[RestartRolloutParams]] = RestartRolloutParams
    intent_model: ClassVar[type[RestartRolloutIntent]] = RestartRolloutIntent

    async def precheck(self, request: Request) -> Checked[RestartRolloutFacts]:
        guarded = await self.guarded(request.target, request.require_opt_in, request.params.gitops)
        if isinstance(guarded, Verdict):
            return Checked(guarded)
        deployment, rollout = guarded
        verdict = bounded(deployment, rollout, request.params.min_healthy)
        if not verdict.allowed:
            return Checked(verdict)
        current = rollout.current()
        if current is None:
            return Checked(
                refuse(
                    StopReason.BLAST_RADIUS,
                    f"{rollout.key} has no ReplicaSet for its current template yet; no restart"
                    " now.",
                )
            )
        facts = RestartRolloutFacts(
            uid=deployment.uid,
            resource_version=rollout.resource_version,
            from_replicaset=current.name,
        )
        return Checked(ALLOW, facts)

    async def run(self, request: Request, facts: RestartRolloutFacts) -> Result:
        target, kube = request.target, self._kube()
        moment = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        intent = RestartRolloutIntent(
            uid=facts.uid, restarted_at=moment, from_replicaset=facts.from_replicaset
        )
        await request.intend(intent, target.key)
        deployment = await kube.deployment(target.namespace, target.name)
        if deployment.uid != facts.uid:
            return ActionResult(False, f"{target.key} was replaced since precheck; not restarted.")

        def judge(rollout: Rollout) -> Seen:
            if restarted_at(rollout.template) == moment:
                return Seen.LANDED
            current = rollout.current()
            if current is not None and current.name == facts.from_replicaset:
                return Seen.UNCHANGED
            return Seen.CHANGED

        seen = await self.write(
            target, deployment, facts.resource_version,
            lambda rv: kube.set_template_annotation(
                target.namespace, target.name, RESTARTED_AT, moment, rv
            ),
            judge,
        )  # fmt: skip
        details = {**facts.model_dump(exclude={"resource_version"}), "restarted_at": moment}
        if seen is not Seen.LANDED:
            why = "changed under remediator" if seen is Seen.CHANGED else "kept changing"
            return ActionResult(
                False, f"{target.key} {why}; its pods were not restarted.",
                {**details, "changed": False},
            )  # fmt: skip
        await kube.record_event(
            target.namespace, "Deployment", target.name, facts.uid, "RemediatorRestarted",
            f"remediator restarted the rollout ({RESTARTED_AT} {moment}; rule {request.rule},"
            f" episode {request.episode_id}).",
        )  # fmt: skip
        return ActionResult(
            True,
            f"Restarted the pods of {target.key}: {RESTARTED_AT} is {moment}, replacing"
            f" {facts.from_replicaset}.",
            {**details, "changed": True},
        )

    async def verify(self, request: Request, result: Result) -> VerifyResult:
        moment, uid = result.details.get("restarted_at"), result.details.get("uid")
        if not result.details.get("changed") or not isinstance(moment, str):
            return VerifyResult.UNKNOWN
        return await self.serves_within(
            request.target, str(uid), request.verify_within_s,
            lambda revision: restarted_at(revision.template) == moment,
        )  # fmt: skip

    async def reconcile(
        self, request: Request, intent: RestartRolloutIntent
    ) -> Reconciled[Nothing]:
        """The template carries the intended ``restartedAt``: the restart landed."""
        seen = await self.observed(request.target, intent.uid)
        if isinstance(seen, str):
            return Reconciled(None, seen)
        written = restarted_at(seen[1].template)
        where = f"The pod template of {request.target.key} has {RESTARTED_AT} {written or 'unset'}"
        if written == intent.restarted_at:
            sentence = f"{where}: the restart took effect."
            details = {**intent.model_dump(mode="json"), "changed": True}
            return Reconciled(True, sentence, ActionResult(True, sentence, details))
        return Reconciled(False, f"{where}, not {intent.restarted_at}: it did not take effect.")
