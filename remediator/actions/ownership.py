"""Who else writes a Deployment's ``spec.replicas``: the controllers ``scale_out`` must not
fight, read from what the API server shows of them.

Where it sits: ``scale_out``'s precheck reads the Deployment (its managedFields and
annotations), its HPAs and the KEDA ScaledObjects of its namespace, and asks ``decide``
here; a refusal is ``owned_elsewhere``, naming the owner. A scale another controller would
undo within a minute is no fix, and two controllers fighting over a count is an incident.

In order:

1. A KEDA ScaledObject whose ``scaleTargetRef`` is the Deployment: KEDA scales it (through
   the HPA it makes, ``keda-hpa-<name>``). Paused (``autoscaling.keda.sh/paused``, or held
   at a count by ``autoscaling.keda.sh/paused-replicas``), someone froze its count on
   purpose: refused all the same, and the sentence says who paused what.
2. A HorizontalPodAutoscaler whose ``scaleTargetRef`` is the Deployment: refused, unless the
   rule says ``hpa: raise_min`` (one HPA; its ``minReplicas`` is raised instead).
3. A GitOps controller that owns ``spec.replicas``: a managedFields entry of the main
   resource (not of ``scale``, which is where scalers write) by Argo CD's or Flux's field
   managers that holds ``f:spec`` → ``f:replicas``; or, for Argo CD's client-side apply, which
   leaves no entry of its own, its tracking annotation beside a last-applied configuration
   that sets ``spec.replicas``. Refused unless the rule says ``gitops: act``: a sync would
   put the count back (the same happens to any hand-run ``kubectl scale``).

``rollback`` and ``restart_rollout`` write the pod template instead: :func:`template_owner`
asks the same of ``spec.template``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Literal

from remediator.clients.k8s import Autoscaler, Deployment, ScaledObject
from remediator.core.model import ALLOW, StopReason, Verdict, refuse

KEDA_PAUSED = "autoscaling.keda.sh/paused"
KEDA_PAUSED_REPLICAS = "autoscaling.keda.sh/paused-replicas"
ARGO_TRACKING = "argocd.argoproj.io/tracking-id"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
#: Field managers of the GitOps controllers that re-apply a Deployment from git.
GITOPS_MANAGERS: Mapping[str, str] = {
    "argocd-controller": "Argo CD",
    "argocd-application-controller": "Argo CD",
    "kustomize-controller": "Flux",
    "helm-controller": "Flux",
}


def decide(
    deployment: Deployment,
    scaled_objects: Sequence[ScaledObject],
    autoscalers: Sequence[Autoscaler],
    *,
    hpa: Literal["refuse", "raise_min"],
    gitops: Literal["refuse", "act"],
) -> Verdict:
    key = f"{deployment.namespace}/Deployment/{deployment.name}"
    if scaled_objects:
        return _owned(key, "; ".join(_keda(s) for s in scaled_objects), "KEDA")
    if len(autoscalers) > 1 or (autoscalers and hpa == "refuse"):
        names = ", ".join(a.name for a in autoscalers)
        return _owned(key, f"HorizontalPodAutoscaler {names} scales it", "the autoscaler")
    owner = gitops_owner(deployment)
    if owner is not None and gitops == "refuse":
        return _owned(key, owner, "its next sync")
    return ALLOW


def _owned(key: str, who: str, undoer: str) -> Verdict:
    return refuse(
        StopReason.OWNED_ELSEWHERE,
        f"{who}; remediator does not fight another controller over the replicas of {key}"
        f" ({undoer} would put the count back).",
    )


def _keda(scaled: ScaledObject) -> str:
    name = f"KEDA ScaledObject {scaled.namespace}/{scaled.name}"
    held = scaled.annotations.get(KEDA_PAUSED_REPLICAS)
    if held is not None:
        return f"{name} holds it at {held!r} replicas ({KEDA_PAUSED_REPLICAS}: paused on purpose)"
    if scaled.annotations.get(KEDA_PAUSED, "").lower() == "true":
        return f"{name} scales it, paused on purpose ({KEDA_PAUSED})"
    return f"{name} scales it"


def gitops_owner(deployment: Deployment) -> str | None:
    """The GitOps controller that owns ``spec.replicas``, in words, or None."""
    for owner in deployment.replicas_owners:
        tool = GITOPS_MANAGERS.get(owner.manager)
        if tool is not None and owner.subresource == "":
            return f"{tool} owns spec.replicas (field manager {owner.manager!r}, {owner.operation})"
    tracking = deployment.annotations.get(ARGO_TRACKING)
    if tracking is not None and _applies_replicas(deployment.annotations.get(LAST_APPLIED)):
        return (
            f"Argo CD tracks it ({ARGO_TRACKING}: {tracking!r}) and its last applied"
            " configuration sets spec.replicas (or cannot be read)"
        )
    return None


def template_owner(deployment: Deployment) -> str | None:
    """The GitOps controller that writes the pod template, in words, or None: a rollback or
    a restart it would put back at its next sync. Argo CD's tracking annotation is enough:
    an application's templates always come from git."""
    for owner in deployment.template_owners:
        tool = GITOPS_MANAGERS.get(owner.manager)
        if tool is not None and owner.subresource == "":
            return f"{tool} owns spec.template (field manager {owner.manager!r}, {owner.operation})"
    tracking = deployment.annotations.get(ARGO_TRACKING)
    if tracking is not None:
        return f"Argo CD tracks it ({ARGO_TRACKING}: {tracking!r})"
    return None


def refuse_template_owner(deployment: Deployment, gitops: Literal["refuse", "act"]) -> Verdict:
    """``owned_elsewhere`` when a GitOps controller writes the pod template and the rule
    did not say ``gitops: act``."""
    owner = template_owner(deployment)
    if owner is None or gitops == "act":
        return ALLOW
    key = f"{deployment.namespace}/Deployment/{deployment.name}"
    return refuse(
        StopReason.OWNED_ELSEWHERE,
        f"{owner}; remediator does not change the pod template of {key} under it (its next"
        " sync would put the template back).",
    )


def _applies_replicas(text: str | None) -> bool:
    """Whether a last-applied configuration sets ``spec.replicas``; one that cannot be read
    (not what kubectl writes) may, and doubt means no action."""
    if not text:
        return False
    try:
        applied = json.loads(text)
    except ValueError:
        return True
    spec = applied.get("spec") if isinstance(applied, dict) else None
    return not isinstance(spec, dict) or "replicas" in spec
