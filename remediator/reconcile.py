"""At start-up, before any new work: claims left without an outcome by a crash.

The action may or may not have happened, and running it again blindly could act twice.
So the claim is closed as ``unknown`` and a human is paged with what was claimed, where
and when. (Observing the world to settle it belongs to each action's own reconcile.)
"""

from __future__ import annotations

from dataclasses import replace

from remediator import escalate
from remediator.clock import Clock
from remediator.model import AuditRecord, Outcome, StopReason
from remediator.ruleset.rules import RuleSet
from remediator.store.base import Store, UnfinishedClaim

UNKNOWN = "unknown"


def _records(claim: UnfinishedClaim, ruleset: RuleSet, clock: Clock) -> list[AuditRecord]:
    rules = {rule.name: rule for rule in ruleset.rules}
    rule = rules.get(claim.rule, ruleset.rules[-1])
    when = claim.claimed_at.isoformat(timespec="seconds")
    reconciled = AuditRecord(
        at=clock.now(),
        step="reconciled",
        outcome=Outcome.FAILED,
        sentence=f"remediator stopped after claiming {claim.action} on {claim.target} at"
        f" {when} and before recording its outcome; it is not run again.",
        episode_id=claim.episode_id,
        fingerprint=claim.fingerprint,
        alertname=claim.alertname,
        rule=claim.rule,
        ruleset_hash=ruleset.hash,
        severity=rule.severity.value,
        reason=StopReason.OUTCOME_UNKNOWN.value,
        target=claim.target,
        action=claim.action,
    )
    escalated = replace(
        reconciled,
        step="escalated",
        outcome=Outcome.ESCALATED,
        sentence=f"Escalating to policy {rule.escalation!r}: a human must check whether"
        f" {claim.action} took effect on {claim.target}.",
        details={"policy": rule.escalation, "claim_id": claim.claim_id},
    )
    return [reconciled, escalated]


async def reconcile_unfinished_claims(store: Store, ruleset: RuleSet, clock: Clock) -> int:
    claims = await store.unfinished_claims()
    for claim in claims:
        records = _records(claim, ruleset, clock)
        outbox, _ = escalate.plan(records, ruleset)
        await store.audit(records, now=clock.now(), outbox=outbox)
        await store.record_outcome(claim.claim_id, UNKNOWN, clock.now())
    return len(claims)
