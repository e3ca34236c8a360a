"""Claims left without an outcome by a crash, settled by observing the world, never by
running the action again: at start-up for this replica's own claims, and for the claims of
a replica whose lease ran out once this one takes them over.

An action records its intent (the count it will write, the pod UID it will evict, the
queries it will cancel) before its side effect. No intent: nothing was sent. An intent:
the action's ``reconcile`` looks at the scale, the pod, the backend, and says whether the
effect is in place. In place, the claim succeeded: its undo and its follow-up are armed as
if the answer had arrived. Not in place, or not knowable: the claim is closed and a human
is paged with what was claimed, where and when.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from remediator.actions.base import ActionRequest, Reconciled
from remediator.audit.recorder import escalation_of
from remediator.core.clock import Clock
from remediator.core.model import AuditRecord, Outcome, StopReason, Target
from remediator.escalate import plan as escalate
from remediator.ruleset.rules import Rule, RuleSet
from remediator.store.contract import Store, UnfinishedClaim

log = logging.getLogger(__name__)

#: Claim outcomes a reconcile writes, besides ``succeeded``.
NOT_RUN = "not_run"
NOT_APPLIED = "not_applied"
UNKNOWN = "unknown"


async def _observe(claim: UnfinishedClaim, rule: Rule | None) -> Reconciled:
    if claim.intent is None:
        return Reconciled(False, "it had sent nothing yet")
    if rule is None or rule.plan is None or rule.plan.name != claim.action:
        return Reconciled(None, f"rule {claim.rule!r} no longer has action {claim.action!r}")
    action = rule.plan.action
    if not action.available():
        return Reconciled(None, f"no backend is configured to observe {rule.plan.kind}")
    request = ActionRequest(
        Target.from_key(claim.target),
        rule.plan.params,
        rule.name,
        claim.episode_id,
        {},
        verify_within_s=rule.verify_within_s,
    )
    try:
        return await action.reconcile(request, claim.intent)
    except Exception as exc:  # cannot observe: doubt, and doubt pages a human
        log.exception("reconcile of claim %s failed", claim.claim_id)
        return Reconciled(None, f"observing failed: {type(exc).__name__}: {exc}")


def _records(
    claim: UnfinishedClaim, seen: Reconciled, rule: Rule | None, ruleset: RuleSet, clock: Clock
) -> tuple[str, list[AuditRecord]]:
    when = claim.claimed_at.isoformat(timespec="seconds")
    stopped = (
        f"remediator stopped after claiming {claim.action} on {claim.target} at {when}"
        " and before recording its outcome"
    )
    if seen.applied:
        outcome, result, reason = "succeeded", Outcome.SUCCEEDED, ""
        sentence = f"{stopped}; observed since: {seen.sentence}"
    elif seen.applied is False:
        outcome = NOT_RUN if claim.intent is None else NOT_APPLIED
        result, reason = Outcome.FAILED, StopReason.NOT_APPLIED.value
        sentence = f"{stopped}; {seen.sentence}. It is not run again."
    else:
        outcome, result, reason = UNKNOWN, Outcome.FAILED, StopReason.OUTCOME_UNKNOWN.value
        sentence = f"{stopped}; whether it took effect is unknown ({seen.sentence})."
    details = dict(seen.result.details) if seen.result else {}
    reconciled = AuditRecord(
        at=clock.now(),
        step="reconciled",
        outcome=result,
        sentence=sentence,
        episode_id=claim.episode_id,
        fingerprint=claim.fingerprint,
        alertname=claim.alertname,
        rule=claim.rule,
        ruleset_hash=ruleset.hash,
        severity=(rule or ruleset.rules[-1]).severity.value,
        reason=reason,
        target=claim.target,
        action=claim.action,
        details={**details, "claim_id": claim.claim_id, "intent": claim.intent},
    )
    if seen.applied:
        return outcome, [reconciled]
    why = (
        f"a human must check {claim.target}; {claim.action} was claimed and did not run to"
        " a recorded end."
    )
    policy = (rule or ruleset.rules[-1]).escalation
    return outcome, [reconciled, escalation_of(reconciled, policy, why, claim_id=claim.claim_id)]


async def reconcile_claims(
    claims: Sequence[UnfinishedClaim], store: Store, ruleset: RuleSet, clock: Clock
) -> int:
    """Settle each claim; how many were settled here (not by someone else meanwhile)."""
    rules = {rule.name: rule for rule in ruleset.rules}
    settled = 0
    for claim in claims:
        rule = rules.get(claim.rule)
        seen = await _observe(claim, rule)
        outcome, records = _records(claim, seen, rule, ruleset, clock)
        outbox, _ = escalate.plan(records, ruleset)
        await store.audit(records, now=clock.now(), outbox=outbox)
        if seen.applied and seen.result is not None and rule is not None:
            if seen.result.undo is not None:
                await store.undo_plan(
                    claim.claim_id, claim.target, seen.result.undo, seen.result.undo_after_s
                )
            due = clock.now() + timedelta(seconds=rule.verify_within_s)
            await store.followup_plan(claim.claim_id, due)
        settled += await store.record_outcome(claim.claim_id, outcome, clock.now())
    return settled


async def reconcile_unfinished_claims(store: Store, ruleset: RuleSet, clock: Clock) -> int:
    """At start-up: this replica's own claims that a crash left open."""
    return await reconcile_claims(await store.unfinished_claims(), store, ruleset, clock)
