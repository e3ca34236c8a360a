"""The opt-in annotation: the live object names the actions remediator may take on it.

``remediator.io/allow: scale_out,recycle_pod`` on a Deployment. Alert labels are untrusted
(anyone who can reach Alertmanager's API can forge them), so the object itself must say
yes. The operator can turn the requirement off with ``policy.require_opt_in: false``.
"""

from __future__ import annotations

from collections.abc import Mapping

from remediator.core.model import ALLOW, StopReason, Verdict, refuse

ANNOTATION = "remediator.io/allow"


def allowed_actions(annotations: Mapping[str, str]) -> frozenset[str]:
    value = annotations.get(ANNOTATION, "")
    return frozenset(part.strip() for part in value.split(",") if part.strip())


def decide(annotations: Mapping[str, str], action_kind: str, what: str, required: bool) -> Verdict:
    if not required or action_kind in allowed_actions(annotations):
        return ALLOW
    return refuse(
        StopReason.NOT_OPTED_IN,
        f"{what} does not opt in to {action_kind}: its annotation {ANNOTATION} does not list it.",
    )
