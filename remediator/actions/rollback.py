"""``rollback``: put a Deployment back on its previous revision, as ``kubectl rollout undo``.

Acts only when every one of these holds, and refuses naming the first that does not
(besides the shared guards of ``pod_template``: opted in, not paused, no GitOps owner):

* the controller has made the ReplicaSet of the current template (else nothing is known);
* the current revision is not itself a restored one (``revision-history``): rolling back a
  rollback would restore the release that was rolled back from;
* the current revision began rolling out (its ReplicaSet's ``creationTimestamp``) at most
  ``max_age_s`` before the alert's ``startsAt``, and not after it: the alert started after
  the change, soon enough to blame it;
* there is a previous revision (the newest older ReplicaSet kept: ``revisionHistoryLimit``)
  and it is not failing too. Kubernetes keeps no record of a scaled-down ReplicaSet's past
  readiness; what it keeps is that the deployment controller only scales an old ReplicaSet
  down as the new one's pods become available. So a previous revision with no pods left was
  replaced while it served, and one that still has pods must have a Ready one.

The write is the previous ReplicaSet's pod template (without its ``pod-template-hash``
label) over the Deployment's, whole, guarded by the ``resourceVersion`` read. The audit
records the revision left and the one restored. Verified when the restored revision
serves every replica, Ready; the act stage then waits for the alert to resolve. No undo:
rolling forward again is a human's release.
"""

from __future__ import annotations

from datetime import datetime
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
from remediator.actions.pod_template import PodTemplateAction, Seen
from remediator.actions.revisions import Revision, Rollout
from remediator.core.model import ALLOW, StopReason, Verdict, refuse

MAX_AGE_S = 7 * 86_400
"""A release older than a week is not what broke a service that was fine until now."""


class RollbackParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    max_age_s: float = Field(default=1_800.0, ge=60, le=MAX_AGE_S)
    """How long before the alert's ``startsAt`` the current revision may have begun rolling
    out, seconds, 60 to 604 800; default 30 minutes."""
    gitops: Literal["refuse", "act"] = "refuse"
    """When Argo CD or Flux writes the pod template: refuse (its next sync would deploy the
    release again), or roll back anyway (with auto-sync off, an emergency)."""


class RollbackFacts(BaseModel):
    """What precheck saw: the write to make and the revisions it moves between."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uid: str
    resource_version: str
    from_revision: int
    from_replicaset: str
    to_revision: int
    to_replicaset: str
    template: dict[str, Any]

    def details(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"template", "resource_version"})


class RollbackIntent(Stored):
    """Deployment ``uid`` goes from ReplicaSet ``from_replicaset`` to ``to_replicaset``."""

    uid: str = Field(min_length=1)
    from_revision: int = Field(ge=1)
    from_replicaset: str = Field(min_length=1)
    to_revision: int = Field(ge=1)
    to_replicaset: str = Field(min_length=1)


Request = ActionRequest[RollbackParams, RollbackIntent]
Result = ActionResult[Nothing]


def blame(current: Revision, started_at: datetime | None, max_age_s: float, key: str) -> Verdict:
    """Whether the alert started after ``current`` began rolling out, within ``max_age_s``."""
    began = f"revision {current.number} of {key} began rolling out at {current.created:%FT%TZ}"
    if started_at is None:
        return refuse(StopReason.PRECHECK_FAILED, f"No alert start to compare: {began}.")
    age_s = (started_at - current.created).total_seconds()
    if age_s < 0:
        return refuse(
            StopReason.PRECHECK_FAILED,
            f"The alert started at {started_at:%FT%TZ}, before {began}: the release did not"
            " cause it; no rollback.",
        )
    if age_s > max_age_s:
        return refuse(
            StopReason.PRECHECK_FAILED,
            f"{began[0].upper()}{began[1:]}, {age_s:.0f} s before the alert started, more than"
            f" max_age_s {max_age_s:g}: too old to blame; no rollback.",
        )
    return ALLOW


def restorable(rollout: Rollout, current: Revision) -> Revision | Verdict:
    """The revision a rollback restores, or why there is none to restore."""
    if current.restored:
        return refuse(
            StopReason.PRECHECK_FAILED,
            f"{rollout.key} runs {current.key}, itself restored by a rollback: rolling back"
            " again would restore the release it replaced; no rollback.",
        )
    previous = rollout.previous(current)
    if previous is None:
        return refuse(
            StopReason.PRECHECK_FAILED,
            f"{rollout.key} has no revision older than {current.number} kept"
            " (revisionHistoryLimit); nothing to roll back to.",
        )
    if previous.pods and not previous.ready:
        return refuse(
            StopReason.PRECHECK_FAILED,
            f"The previous revision of {rollout.key}, {previous.key}, has {previous.pods} pods"
            " and none is Ready: it fails too; no rollback.",
        )
    return previous


class Rollback(PodTemplateAction, Action[RollbackParams, RollbackFacts, RollbackIntent, Nothing]):
    kind: ClassVar[str] = "rollback"
    params_model: ClassVar[type[RollbackParams]] = RollbackParams
    intent_model: ClassVar[type[RollbackIntent]] = RollbackIntent

    async def precheck(self, request: Request) -> Checked[RollbackFacts]:
        target = request.target
        guarded = await self.guarded(target, request.require_opt_in, request.params.gitops)
        if isinstance(guarded, Verdict):
            return Checked(guarded)
        deployment, rollout = guarded
        current = rollout.current()
        if current is None:
            return Checked(
                refuse(
                    StopReason.PRECHECK_FAILED,
                    f"The deployment controller has no ReplicaSet for the current template of"
                    f" {target.key} yet: its revision is unknown; no rollback.",
                )
            )
        verdict = blame(current, request.alert_started_at, request.params.max_age_s, target.key)
        if not verdict.allowed:
            return Checked(verdict)
        previous = restorable(rollout, current)
        if isinstance(previous, Verdict):
            return Checked(previous)
        facts = RollbackFacts(
            uid=deployment.uid, resource_version=rollout.resource_version,
            from_revision=current.number, from_replicaset=current.name,
            to_revision=previous.number, to_replicaset=previous.name,
            template=dict(previous.template),
        )  # fmt: skip
        return Checked(ALLOW, facts)

    async def run(self, request: Request, facts: RollbackFacts) -> Result:
        target, kube = request.target, self._kube()
        intent = RollbackIntent(
            uid=facts.uid, from_revision=facts.from_revision,
            from_replicaset=facts.from_replicaset, to_revision=facts.to_revision,
            to_replicaset=facts.to_replicaset,
        )  # fmt: skip
        await request.intend(intent, target.key)
        deployment = await kube.deployment(target.namespace, target.name)
        if deployment.uid != facts.uid:
            return ActionResult(
                False, f"{target.key} was replaced since precheck; not rolled back."
            )

        def judge(rollout: Rollout) -> Seen:
            current = rollout.current()
            if current is not None and current.name == facts.to_replicaset:
                return Seen.LANDED
            if current is not None and current.name == facts.from_replicaset:
                return Seen.UNCHANGED
            return Seen.CHANGED

        seen = await self.write(
            target, deployment, facts.resource_version,
            lambda rv: kube.set_pod_template(target.namespace, target.name, facts.template, rv),
            judge,
        )  # fmt: skip
        moved = f"from revision {facts.from_revision} ({facts.from_replicaset}) to revision" \
            f" {facts.to_revision} ({facts.to_replicaset})"  # fmt: skip
        if seen is Seen.CHANGED:
            return ActionResult(
                False,
                f"The pod template of {target.key} changed under remediator; it was not rolled"
                f" back {moved}.",
                {**facts.details(), "changed": False},
            )
        if seen is Seen.UNCHANGED:
            return ActionResult(
                False,
                f"{target.key} kept changing while remediator rolled it back; not rolled back.",
                {**facts.details(), "changed": False},
            )
        await kube.record_event(
            target.namespace, "Deployment", target.name, facts.uid, "RemediatorRolledBack",
            f"remediator rolled back {moved} (rule {request.rule}, episode"
            f" {request.episode_id}).",
        )  # fmt: skip
        return ActionResult(
            True, f"Rolled {target.key} back {moved}.", {**facts.details(), "changed": True}
        )

    async def verify(self, request: Request, result: Result) -> VerifyResult:
        restored, uid = result.details.get("to_replicaset"), result.details.get("uid")
        if not result.details.get("changed") or not isinstance(restored, str):
            return VerifyResult.UNKNOWN
        return await self.serves_within(
            request.target, str(uid), request.verify_within_s, lambda r: r.name == restored
        )

    async def reconcile(self, request: Request, intent: RollbackIntent) -> Reconciled[Nothing]:
        """The current template is the restored revision's: the rollback landed; still the
        one it left: it did not; anything else, someone else changed it."""
        seen = await self.observed(request.target, intent.uid)
        if isinstance(seen, str):
            return Reconciled(None, seen)
        current = seen[1].current()
        runs = current.key if current else "a template no ReplicaSet has yet"
        where = f"{request.target.key} runs {runs} (intended {intent.from_replicaset} →" \
            f" {intent.to_replicaset})"  # fmt: skip
        if current is not None and current.name == intent.to_replicaset:
            sentence = f"{where}: the rollback took effect."
            details = {**intent.model_dump(mode="json"), "changed": True}
            return Reconciled(True, sentence, ActionResult(True, sentence, details))
        if current is not None and current.name == intent.from_replicaset:
            return Reconciled(False, f"{where}: the rollback did not take effect.")
        return Reconciled(None, f"{where}: someone else changed it.")
