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
from typing import Any

from remediator.actions.base import ActionRequest, MalformedState, Reconciled, read_stored
from remediator.audit import records as audit
from remediator.audit.recorder import Recorder
from remediator.core.clock import Clock
from remediator.core.model import AuditRecord, Target
from remediator.core.vocab import ClaimOutcome
from remediator.ruleset.rules import Rule
from remediator.store.contract import Store, UnfinishedClaim

log = logging.getLogger(__name__)


async def _observe(claim: UnfinishedClaim, rule: Rule | None) -> Reconciled[Any]:
    if claim.intent is None:
        return Reconciled(False, "it had sent nothing yet")
    if rule is None or rule.plan is None or rule.plan.name != claim.action:
        return Reconciled(None, f"rule {claim.rule!r} no longer has action {claim.action!r}")
    action = rule.plan.action
    try:
        intent = read_stored(action.intent_model, claim.intent, "the intent it stored")
    except MalformedState as exc:  # nothing to observe by: doubt, and doubt pages a human
        return Reconciled(None, str(exc))
    if not action.available():
        return Reconciled(None, f"no backend is configured to observe {rule.plan.kind}")
    request: ActionRequest[Any, Any] = ActionRequest(
        Target.from_key(claim.target),
        rule.plan.params,
        rule.name,
        claim.episode_id,
        {},
        verify_within_s=rule.verify_within_s,
    )
    try:
        return await action.reconcile(request, intent)
    except Exception as exc:  # cannot observe: doubt, and doubt pages a human
        log.exception("reconcile of claim %s failed", claim.claim_id)
        return Reconciled(None, f"observing failed: {type(exc).__name__}: {exc}")


def _claim_outcome(claim: UnfinishedClaim, seen: Reconciled[Any]) -> ClaimOutcome:
    if seen.applied:
        return ClaimOutcome.SUCCEEDED
    if seen.applied is False:
        return ClaimOutcome.NOT_RUN if claim.intent is None else ClaimOutcome.NOT_APPLIED
    return ClaimOutcome.UNKNOWN


def _records(
    claim: UnfinishedClaim, seen: Reconciled[Any], rule: Rule | None, recorder: Recorder
) -> list[AuditRecord]:
    """``reconciled``, and when the effect is not known to be in place, ``escalated``."""
    fallback = rule or recorder.ruleset.rules[-1]  # a rule since removed: the catch-all
    reconciled = audit.reconciled(recorder.stamp(), claim, seen, fallback.severity)
    if seen.applied:
        return [reconciled]
    why = (
        f"a human must check {claim.target}; {claim.action} was claimed and did not run to"
        " a recorded end."
    )
    escalated = audit.escalation_of(reconciled, fallback.escalation, why, claim_id=claim.claim_id)
    return [reconciled, escalated]


async def reconcile_claims(
    claims: Sequence[UnfinishedClaim], store: Store, recorder: Recorder, clock: Clock
) -> int:
    """Settle each claim; how many were settled here (not by someone else meanwhile)."""
    rules = {rule.name: rule for rule in recorder.ruleset.rules}
    settled = 0
    for claim in claims:
        rule = rules.get(claim.rule)
        seen = await _observe(claim, rule)
        await recorder.write(_records(claim, seen, rule, recorder))
        if seen.applied and seen.result is not None and rule is not None:
            if seen.result.undo is not None:
                state = seen.result.undo.model_dump(mode="json")
                await store.undo_plan(claim.claim_id, claim.target, state, seen.result.undo_after_s)
            due = clock.now() + timedelta(seconds=rule.verify_within_s)
            await store.followup_plan(claim.claim_id, due)
        outcome = _claim_outcome(claim, seen)
        settled += await store.record_outcome(claim.claim_id, outcome.value, clock.now())
    return settled


async def reconcile_unfinished_claims(store: Store, recorder: Recorder, clock: Clock) -> int:
    """At start-up: this replica's own claims that a crash left open."""
    return await reconcile_claims(await store.unfinished_claims(), store, recorder, clock)
