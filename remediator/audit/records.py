"""Records: every audit record remediator writes is built here, one named builder per kind.

The decision of one alert (``decide``) writes ``received``, ``classified`` and then
``refused`` or ``claimed``, with ``escalated`` after a refusal that is not quiet; the run of a
claim (``act``) writes ``dry_run``, ``refused``, ``acted`` and ``verified`` (or
``verify_failed``); aftercare writes the follow-up ``verified`` and ``undone``; reconcile
writes ``reconciled``; delivery writes ``notified``; an episode that closes writes
``resolved``. Builders are pure: the time and the rule set's hash come in a ``Stamp``.
``recorder`` writes what they build.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import quote

from remediator.actions.base import ActionResult, Reconciled, VerifyResult
from remediator.core.model import QUIET_STOPS, AuditRecord, Incident
from remediator.core.vocab import Event, Outcome, Severity, Step, StopReason
from remediator.ruleset.rules import Approval, PlannedAction, Rule
from remediator.ruleset.schema import EscalationPolicySpec
from remediator.store.contract import (
    HumanAck,
    OutboxItem,
    PendingApproval,
    Undo,
    UnfinishedClaim,
    Vote,
    VoteAnswer,
)


@dataclass(frozen=True, slots=True)
class Stamp:
    """What every record carries besides its decision: when, and under which rule set."""

    at: datetime
    ruleset_hash: str


def _of(
    stamp: Stamp,
    incident: Incident,
    step: Step,
    outcome: Outcome,
    sentence: str,
    details: Mapping[str, Any] | None = None,
) -> AuditRecord:
    """A record of ``incident``: its identity, its rule (if classified) and its stop reason."""
    return AuditRecord(
        at=stamp.at,
        step=step,
        outcome=outcome,
        sentence=sentence,
        journal_id=incident.journal_id,
        episode_id=incident.episode_id,
        fingerprint=incident.alert.fingerprint,
        alertname=incident.alert.name,
        rule=incident.rule,
        ruleset_hash=stamp.ruleset_hash,
        severity=incident.severity if incident.rule else None,
        reason=incident.stopped.reason if incident.stopped else None,
        target=incident.target.key if incident.target else "",
        action=incident.action,
        details=dict(details or {}),
    )


def received(stamp: Stamp, incident: Incident) -> AuditRecord:
    alert = incident.alert
    details: dict[str, Any] = {"labels": dict(alert.labels)}
    if alert.sent_fingerprint:
        details["sent_fingerprint"] = alert.sent_fingerprint
    sentence = (
        f"{alert.status.value.capitalize()} alert {alert.name or '(no alertname)'}"
        f" opened episode {incident.episode_id}."
    )
    return _of(stamp, incident, Step.RECEIVED, Outcome.RECEIVED, sentence, details)


def classified(stamp: Stamp, incident: Incident, rule: Rule) -> AuditRecord:
    sentence = f"Rule {rule.name!r} ({rule.file}) classified it {rule.severity.value}."
    return _of(stamp, incident, Step.CLASSIFIED, Outcome.CLASSIFIED, sentence)


def refused(stamp: Stamp, incident: Incident) -> AuditRecord:
    """The stop of a stopped incident, in its verdict's sentence; a resolved alert's stop
    comes to ``resolved``, any other to ``refused``."""
    assert incident.stopped is not None
    resolved = incident.stopped.reason is StopReason.RESOLVED
    outcome = Outcome.RESOLVED if resolved else Outcome.REFUSED
    return _of(stamp, incident, Step.REFUSED, outcome, incident.stopped.sentence)


def claimed(stamp: Stamp, incident: Incident) -> AuditRecord:
    assert incident.target is not None
    sentence = (
        f"Claimed {incident.action} on {incident.target.key} for episode {incident.episode_id}."
    )
    return _of(stamp, incident, Step.CLAIMED, Outcome.CLAIMED, sentence, incident.details)


def alert_content(incident: Incident) -> dict[str, Any]:
    """What a page shows of the alert itself: its labels and annotations, where it came
    from (``generatorURL``), and a link that silences it in the Alertmanager that sent it
    (none when the payload named no ``externalURL``)."""
    alert = incident.alert
    silence = ""
    if incident.alertmanager_url:
        matchers = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(alert.labels.items()))
        query = quote("{" + matchers + "}", safe="")
        silence = f"{incident.alertmanager_url.rstrip('/')}/#/silences/new?filter={query}"
    return {
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "generator_url": alert.generator_url,
        "starts_at": alert.starts_at.isoformat().replace("+00:00", "Z"),
        "silence_url": silence,
    }


def escalated(
    stamp: Stamp, incident: Incident, rule: Rule, policy: EscalationPolicySpec
) -> AuditRecord:
    """A decision that needs a human: ``rule``'s escalation ``policy`` takes it, with the
    alert's own content for the page."""
    first = policy.tiers[0]
    sentence = (
        f"Escalating {rule.severity.value} to policy {rule.escalation!r}"
        f" (first tier after {first.after_s:.0f} s: {', '.join(first.notify)})."
    )
    details = {"policy": rule.escalation, "tiers": [t.model_dump() for t in policy.tiers],
               "alert": alert_content(incident)}  # fmt: skip
    return _of(stamp, incident, Step.ESCALATED, Outcome.ESCALATED, sentence, details)


def escalated_unfixed(stamp: Stamp, incident: Incident, policy: str) -> AuditRecord:
    """A claimed remediation that ended in no fix (refused, failed, ineffective)."""
    sentence = f"Escalating to policy {policy!r}: the remediation did not end in a fix."
    details = {"policy": policy, "alert": alert_content(incident)}
    return _of(stamp, incident, Step.ESCALATED, Outcome.ESCALATED, sentence, details)


def escalation_of(
    cause: AuditRecord,
    policy: str,
    why: str,
    reason: StopReason | None = None,
    **details: Any,
) -> AuditRecord:
    """The ``escalated`` record that follows ``cause`` (a failed verification, a claim
    settled at start-up), for the same episode and target; with ``cause``'s reason
    unless ``reason`` says why better."""
    return replace(
        cause,
        step=Step.ESCALATED,
        outcome=Outcome.ESCALATED,
        sentence=f"Escalating to policy {policy!r}: {why}",
        reason=reason or cause.reason,
        details={"policy": policy, **details},
    )


def dry_run(
    stamp: Stamp, incident: Incident, plan: PlannedAction, live: bool, prechecked: bool = False
) -> AuditRecord:
    """A claim not run: dry-run mode, or (``live``) no backend configured for its kind; in
    dry-run, whether the action's precheck passed or could not be run (no backend)."""
    assert incident.target is not None
    why = f" (no backend is configured for {plan.kind})" if live else ""
    sentence = f"Dry-run{why}: would run {plan.kind} on {incident.target.key}"
    if not live:
        sentence += (
            "; its precheck passed"
            if prechecked
            else f" (not prechecked: no backend is configured for {plan.kind})"
        )
    details = {"params": plan.params.model_dump(mode="json"), "prechecked": prechecked}
    return _of(stamp, incident, Step.DRY_RUN, Outcome.DRY_RUN, sentence + ".", details)


def shadow(
    stamp: Stamp,
    incident: Incident,
    plan: PlannedAction | None,
    live_rule: str,
    escalation: str,
    prechecked: bool = False,
) -> AuditRecord:
    """What shadow rule ``incident.rule`` would have done, live: run its action (outcome
    ``dry_run``; ``prechecked`` when its precheck passed, else there was no backend to read),
    or stop where a guard or the precheck stops it (``refused``, with the reason, and the
    rule's ``escalation`` policy when a live stop for that reason would page). It did
    neither."""
    decided = f"(the live rule {live_rule!r} decided)"
    stop = incident.stopped
    pages = escalation if stop is not None and stop.reason not in QUIET_STOPS else ""
    if incident.stopped is None:
        assert plan is not None and incident.target is not None
        checked = "its precheck passed" if prechecked else "not prechecked: no backend"
        sentence = (
            f"Shadow rule {incident.rule!r} would run {plan.kind} on {incident.target.key}"
            f"; {checked} {decided}."
        )
        outcome = Outcome.DRY_RUN
    else:
        paged = f", and page {pages!r}" if pages else ""
        said = incident.stopped.sentence.removesuffix(".")
        sentence = f"Shadow rule {incident.rule!r} would be refused: {said}{paged} {decided}."
        outcome = Outcome.REFUSED
    details = {"shadow": True, "live_rule": live_rule, "would_page": pages or None,
               "prechecked": prechecked}  # fmt: skip
    return _of(stamp, incident, Step.SHADOW, outcome, sentence, details)


def reopened(stamp: Stamp, incident: Incident, grace_s: float) -> AuditRecord:
    """A decided episode's alert firing again within ``grace_s`` of its resolve."""
    sentence = (
        f"The alert fired again within {grace_s:g} s of resolving: episode"
        f" {incident.episode_id} goes on, its incident stays open and no new decision is taken."
    )
    return _of(stamp, incident, Step.REOPENED, Outcome.RECEIVED, sentence)


def acted(stamp: Stamp, incident: Incident, result: ActionResult[Any]) -> AuditRecord:
    outcome = Outcome.SUCCEEDED if result.succeeded else Outcome.FAILED
    return _of(stamp, incident, Step.ACTED, outcome, result.sentence, result.details)


def verified(
    stamp: Stamp, incident: Incident, plan: PlannedAction, verdict: VerifyResult
) -> AuditRecord:
    """Whether the effect of an action that succeeded holds."""
    sentence = f"Verification of {plan.kind}: {verdict.value}."
    details = {"verification": verdict.value}
    return _of(stamp, incident, Step.VERIFIED, Outcome.SUCCEEDED, sentence, details)


def verify_failed(stamp: Stamp, incident: Incident) -> AuditRecord:
    """Checking the effect of an action that ran raised: whether it holds is unknown. The
    incident is stopped with the reason and the error's sentence."""
    assert incident.stopped is not None
    details = {"verification": Outcome.UNKNOWN.value}
    return _of(stamp, incident, Step.VERIFIED, Outcome.UNKNOWN, incident.stopped.sentence, details)


def resolved(stamp: Stamp, incident: Incident) -> AuditRecord:
    sentence = (
        f"Alert {incident.alert.name or '(no alertname)'} resolved; episode"
        f" {incident.episode_id} closed."
    )
    return _of(stamp, incident, Step.RESOLVED, Outcome.RESOLVED, sentence)


def reconciled(
    stamp: Stamp, claim: UnfinishedClaim, seen: Reconciled[Any], severity: Severity
) -> AuditRecord:
    """A claim a crash left without an outcome, settled by what ``seen`` observed."""
    when = claim.claimed_at.isoformat(timespec="seconds")
    stopped = (
        f"remediator stopped after claiming {claim.action} on {claim.target} at {when}"
        " and before recording its outcome"
    )
    outcome: Outcome = Outcome.FAILED
    reason: StopReason | None = StopReason.OUTCOME_UNKNOWN
    sentence = f"{stopped}; whether it took effect is unknown ({seen.sentence})."
    if seen.applied:
        outcome, reason = Outcome.SUCCEEDED, None
        sentence = f"{stopped}; observed since: {seen.sentence}"
    elif seen.applied is False:
        reason = StopReason.NOT_APPLIED
        sentence = f"{stopped}; {seen.sentence}. It is not run again."
    details = dict(seen.result.details) if seen.result else {}
    return AuditRecord(
        at=stamp.at,
        step=Step.RECONCILED,
        outcome=outcome,
        sentence=sentence,
        episode_id=claim.episode_id,
        fingerprint=claim.fingerprint,
        alertname=claim.alertname,
        rule=claim.rule,
        ruleset_hash=stamp.ruleset_hash,
        severity=severity,
        reason=reason,
        target=claim.target,
        action=claim.action,
        details={**details, "claim_id": claim.claim_id, "intent": claim.intent},
    )


def _of_undo(
    stamp: Stamp,
    undo: Undo,
    severity: Severity | None,
    step_outcome: tuple[Step, Outcome],
    sentence: str,
    details: Mapping[str, Any],
) -> AuditRecord:
    """A record of what aftercare did about ``undo`` (a follow-up or an undo step)."""
    step, outcome = step_outcome
    return AuditRecord(
        at=stamp.at,
        step=step,
        outcome=outcome,
        sentence=sentence,
        episode_id=undo.episode_id,
        fingerprint=undo.fingerprint,
        rule=undo.rule,
        ruleset_hash=stamp.ruleset_hash,
        severity=severity,
        target=undo.target,
        action=undo.action,
        details=dict(details),
    )


def followed_up(stamp: Stamp, followup: Undo, rule: Rule | None, still_firing: bool) -> AuditRecord:
    """Whether the alert resolved within the rule's verification window after the fix."""
    severity = rule.severity if rule else None
    if still_firing:
        window_s = rule.verify_within_s if rule else 0
        sentence = (
            f"{followup.action} on {followup.target} took effect, but the alert still"
            f" fires {window_s:.0f} s later: the fix was ineffective."
        )
        verdict, outcome = VerifyResult.INEFFECTIVE, Outcome.FAILED
    else:
        sentence = f"The alert resolved after {followup.action} on {followup.target}."
        verdict, outcome = VerifyResult.VERIFIED, Outcome.SUCCEEDED
    details = {"verification": verdict.value}
    return _of_undo(stamp, followup, severity, (Step.VERIFIED, outcome), sentence, details)


def undone(
    stamp: Stamp, undo: Undo, severity: Severity | None, result: ActionResult[Any]
) -> AuditRecord:
    """One step of putting back what an action changed."""
    outcome = Outcome.SUCCEEDED if result.succeeded else Outcome.FAILED
    step_outcome = (Step.UNDONE, outcome)
    return _of_undo(stamp, undo, severity, step_outcome, result.sentence, result.details)


def acknowledged(stamp: Stamp, paged: AuditRecord, ack: HumanAck, others: int) -> AuditRecord:
    """A human acknowledged (later tiers are not sent) or resolved (every other sink is
    told) the incident ``paged`` (the episode's ``escalated`` record) opened."""
    effect = (
        "the later tiers are not sent."
        if ack.kind == "acknowledged"
        else "the incident is closed on every sink it reached."
    )
    sentence = f"{ack.kind.capitalize()} by {ack.by} on {ack.source}: {effect}"
    if others > 1:
        sentence += f" The incident pages for {others} alerts."
    outcome = Outcome.ACKNOWLEDGED if ack.kind == "acknowledged" else Outcome.RESOLVED
    details = {"dedup_key": ack.dedup_key, "by": ack.by, "sink": ack.source, "url": ack.url}
    return replace(paged, id=None, at=stamp.at, step=Step.ACKNOWLEDGED, outcome=outcome,
                   sentence=sentence, ruleset_hash=stamp.ruleset_hash, details=details)  # fmt: skip


def notified(stamp: Stamp, item: OutboxItem, failure: str | None = None) -> AuditRecord:
    """A notification sent (a page: ``escalated``; an update or a resolve: ``notified``),
    or given up on with ``failure`` (``failed``)."""
    if failure is not None:
        outcome, sentence = Outcome.FAILED, f"Notifying {item.sink} failed: {failure}"
    else:
        page = item.event == Event.TRIGGER
        outcome = Outcome.ESCALATED if page else Outcome.NOTIFIED
        sentence = f"{item.sink} was notified ({item.event})."
    return AuditRecord(
        at=stamp.at,
        step=Step.NOTIFIED,
        outcome=outcome,
        sentence=sentence,
        episode_id=item.episode_id,
        fingerprint=str(item.details.get("fingerprint", "")),
        rule=str(item.details.get("rule", "")),
        ruleset_hash=stamp.ruleset_hash,
        severity=Severity(item.severity) if item.severity else None,
        target=str(item.details.get("target", "")),
        details={"sink": item.sink, "event": item.event, "tier": item.tier,
                 "dedup_key": item.dedup_key},
    )  # fmt: skip


# ---- approvals -----------------------------------------------------------------------------


def _zulu(at: datetime) -> str:
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def approval_of(
    claim_id: int, approval: Approval, due_at: datetime, initiator: str
) -> dict[str, Any]:
    """What the records and the page of a held claim say of its approval."""
    return {"id": claim_id, **approval.said(), "due_at": _zulu(due_at), "initiator": initiator}


def approval_asked(
    stamp: Stamp, incident: Incident, approval: Approval, due_at: datetime, initiator: str
) -> AuditRecord:
    """The claim is held until ``approval`` is given, denied, or ``due_at`` passes."""
    assert incident.target is not None
    claim_id = int(incident.details["claim_id"])
    whom = ", ".join(approval.approvers) or "any approver"
    needed = "one approval" if approval.needed == 1 else f"{approval.needed} approvals"
    then = "it is escalated" if approval.on_timeout == "escalate" else "it runs anyway"
    sentence = (
        f"{incident.action} on {incident.target.key} waits for {needed} ({whom}) as"
        f" {approval.source} asks, until {_zulu(due_at)}; without them by then {then}"
        f" (approval {claim_id})."
    )
    details = {"claim_id": claim_id, "approval": approval_of(claim_id, approval, due_at, initiator)}
    return _of(stamp, incident, Step.APPROVAL, Outcome.PENDING_APPROVAL, sentence, details)


def _of_approval(
    stamp: Stamp,
    approval: PendingApproval,
    severity: Severity | None,
    outcome: Outcome,
    sentence: str,
) -> AuditRecord:
    votes = [{"by": v.by, "vote": v.vote, "source": v.source, "reason": v.reason,
              "at": _zulu(v.at)} for v in approval.votes]  # fmt: skip
    return AuditRecord(
        at=stamp.at,
        step=Step.APPROVAL,
        outcome=outcome,
        sentence=sentence,
        episode_id=approval.episode_id,
        fingerprint=approval.fingerprint,
        alertname=approval.alertname,
        rule=approval.rule,
        ruleset_hash=stamp.ruleset_hash,
        severity=severity,
        target=approval.target,
        action=approval.action,
        details={"claim_id": approval.claim_id, "state": approval.state, "votes": votes},
    )


def approval_voted(
    stamp: Stamp,
    approval: PendingApproval,
    vote: Vote,
    answer: VoteAnswer,
    severity: Severity | None,
) -> AuditRecord:
    """What ``vote`` came to: counted (more are needed), approved, or denied."""
    said = f" ({vote.reason!r})" if vote.reason else ""
    if answer == "denied":
        sentence = f"Denied by {vote.by} ({vote.source}){said}: remediator does not act."
        return _of_approval(stamp, approval, severity, Outcome.DENIED, sentence)
    if answer == "approved":
        sentence = (
            f"Approved by {approval.decided_by} ({vote.source}){said}: {approval.action} on"
            f" {approval.target} runs once its guards hold again."
        )
        return _of_approval(stamp, approval, severity, Outcome.APPROVED, sentence)
    sentence = (
        f"Approved by {vote.by} ({vote.source}){said}: {approval.approvals} of the"
        f" {approval.needed} approvals needed; another approver must approve too."
    )
    return _of_approval(stamp, approval, severity, Outcome.PENDING_APPROVAL, sentence)


def acting_on_timeout(
    stamp: Stamp, approval: PendingApproval, severity: Severity | None
) -> AuditRecord:
    """No answer came in time and the rule acts then (``on_timeout: act``)."""
    waited_s = (approval.due_at - approval.requested_at).total_seconds()
    sentence = (
        f"No answer came within {waited_s:.0f} s and the rule acts then (on_timeout: act):"
        f" {approval.action} on {approval.target} runs once its guards hold again."
    )
    return _of_approval(stamp, approval, severity, Outcome.APPROVED, sentence)
