"""Jobs: what a claimed action needs to run, kept with its claim so that it survives the
process that claimed it.

``decide`` builds the job and the claim request of an incident; the claim stores the job
(``stored``) in the transaction that takes the claim. A claim a crash left before its intent
is read back (``resumed``) by its owner after a restart or by the replica that took it over,
and runs only under the rule it was claimed under (the rule's ``digest``): a rule since
changed or removed refuses it, with the reason, and pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from remediator.core.model import Alert, AlertStatus, Incident, Severity, Target, Verdict, refuse
from remediator.core.vocab import StopReason
from remediator.guards.claim import ClaimRequest, Limit
from remediator.ruleset.rules import PlannedAction, Rule, RuleSet
from remediator.ruleset.schema import PolicySpec
from remediator.store.contract import UnfinishedClaim

#: The version of the stored job's shape; a job of another is not run (it pages).
JOB_VERSION = 1


@dataclass(frozen=True, slots=True)
class ActionJob:
    incident: Incident
    plan: PlannedAction
    claim_id: int
    escalation: str
    verify_within_s: float = 300.0
    resumed: bool = False
    """Run after a restart or a takeover: its guards are checked again before it runs."""
    approved_at: datetime | None = None
    """When its approval let it run (approved, or timed out with ``on_timeout: act``): the
    wait for a human is not the staleness of the claim; from then on it is."""


@dataclass(frozen=True, slots=True)
class ShadowJob:
    """A shadow rule's decision that the guards let through: its action's read-only
    precheck is all that runs, then one ``shadow`` record says what a live run would do."""

    incident: Incident
    plan: PlannedAction
    live_rule: str
    escalation: str
    ruleset: RuleSet


def claim_request(
    incident: Incident, rule: Rule, policy: PolicySpec, dry_run: bool
) -> ClaimRequest:
    """The claim ``incident`` asks for under ``rule`` and ``policy``: when it is taken, and
    again when a resumed claim is about to run."""
    assert rule.plan is not None and incident.target is not None
    kind_limit = policy.action_limits.get(rule.plan.kind)
    budget = policy.global_budget
    return ClaimRequest(
        episode_id=incident.episode_id,
        rule=rule.name,
        action=rule.plan.name,
        action_kind=rule.plan.kind,
        target=incident.target.key,
        destructive=rule.plan.action.destructive,
        dry_run=dry_run,
        cooldown_s=rule.cooldown_s,
        rule_limit=rule.rate_limit,
        target_limit=rule.target_rate_limit,
        repeat_limit=rule.ineffective_after,
        kind_limit=None
        if kind_limit is None
        else Limit(kind_limit.max_actions, kind_limit.window_s),
        global_budget=Limit(budget.max_actions, budget.window_s),
    )


def stored(incident: Incident, rule: Rule) -> dict[str, Any]:
    """The job of ``incident`` as its claim keeps it: plain JSON values."""
    alert = incident.alert
    return {
        "version": JOB_VERSION,
        "alert": {
            "fingerprint": alert.fingerprint,
            "labels": dict(alert.labels),
            "annotations": dict(alert.annotations),
            "starts_at": alert.starts_at.isoformat(),
            "ends_at": alert.ends_at.isoformat() if alert.ends_at else None,
            "generator_url": alert.generator_url,
        },
        "journal_id": incident.journal_id,
        "received_at": incident.received_at.isoformat(),
        "truncated_alerts": incident.truncated_alerts,
        "alertmanager_url": incident.alertmanager_url,
        "severity": rule.severity.value,
        "rule_digest": rule.digest,
        "params": None if rule.plan is None else rule.plan.params.model_dump(mode="json"),
    }


def resumed(claim: UnfinishedClaim, ruleset: RuleSet) -> ActionJob | Verdict:
    """The job of a claim that sent nothing, ready to run again; or why it may not run."""
    rule = ruleset.rule(claim.rule)
    job = claim.job or {}
    if rule is None or rule.plan is None or rule.plan.name != claim.action:
        return refuse(
            StopReason.RULE_CHANGED,
            f"Rule {claim.rule!r} no longer has action {claim.action!r}; the claim made"
            " under it was not run.",
        )
    if job.get("version") != JOB_VERSION or job.get("rule_digest") != rule.digest:
        return refuse(
            StopReason.RULE_CHANGED,
            f"Rule {claim.rule!r} changed after the claim was made; the claim was not run"
            " under rules it was not made by.",
        )
    try:
        incident = _incident(claim, job, rule)
    except (KeyError, TypeError, ValueError) as exc:
        return refuse(
            StopReason.UNPROCESSABLE,
            f"The job stored with claim {claim.claim_id} could not be read"
            f" ({type(exc).__name__}: {exc}); it was not run.",
        )
    return ActionJob(incident, rule.plan, claim.claim_id, rule.escalation, rule.verify_within_s,
                     resumed=True, approved_at=claim.approval_at)  # fmt: skip


def unrunnable(claim: UnfinishedClaim, rule: Rule) -> Incident:
    """An incident for the records of a claim that cannot run: what the claim says of it."""
    job = claim.job or {}
    try:
        return _incident(claim, job, rule)
    except (KeyError, TypeError, ValueError):  # a job of another shape: what the claim says
        alert = Alert(claim.fingerprint, AlertStatus.FIRING, {"alertname": claim.alertname}, {},
                      claim.claimed_at, None)  # fmt: skip
        return Incident(alert, claim.episode_id, 0, claim.claimed_at, rule=claim.rule,
                        severity=rule.severity, action=claim.action,
                        target=Target.from_key(claim.target),
                        details={"claim_id": claim.claim_id})  # fmt: skip


def _incident(claim: UnfinishedClaim, job: Mapping[str, Any], rule: Rule) -> Incident:
    raw = job["alert"]
    alert = Alert(
        fingerprint=str(raw["fingerprint"]),
        status=AlertStatus.FIRING,
        labels={str(k): str(v) for k, v in raw["labels"].items()},
        annotations={str(k): str(v) for k, v in raw["annotations"].items()},
        starts_at=datetime.fromisoformat(raw["starts_at"]),
        ends_at=datetime.fromisoformat(raw["ends_at"]) if raw["ends_at"] else None,
        generator_url=str(raw["generator_url"]),
    )
    return Incident(
        alert=alert,
        episode_id=claim.episode_id,
        journal_id=int(job["journal_id"]),
        received_at=datetime.fromisoformat(job["received_at"]),
        truncated_alerts=int(job["truncated_alerts"]),
        alertmanager_url=str(job.get("alertmanager_url", "")),  # jobs stored before it: none
        rule=rule.name,
        severity=Severity(job["severity"]),
        action=claim.action,
        target=Target.from_key(claim.target),
        details={"claim_id": claim.claim_id},
    )
