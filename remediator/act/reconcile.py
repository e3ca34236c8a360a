"""Claims left without an outcome by a crash: at start-up for this replica's own claims,
and for the claims of a replica whose lease ran out once this one takes them over.

An action records its intent (the count it will write, the pod UID it will evict, the
queries it will cancel) before its side effect. No intent: nothing was sent, so the claim
is run now, from the job stored with it (``jobs``), once the guards that may have changed
are checked again; a claim whose rule changed since is refused and paged. A claim held for
an approval is not among them until its approval is decided; then it runs (approved, or
timed out where the rule acts then) or is refused (denied, timed out, withdrawn). An
intent: the action is never run again; its ``reconcile`` looks at the scale, the pod, the
backend, and says whether the effect is in place. In place, the claim succeeded: its undo
and its follow-up are armed as if the answer had arrived. Not in place, or not knowable:
the claim is closed and a human is paged with what was claimed, where and when.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any, Literal

from remediator.act import jobs
from remediator.act.runner import ActionRunner
from remediator.actions.base import ActionRequest, MalformedState, Reconciled, read_stored
from remediator.audit import records as audit
from remediator.audit.recorder import Recorder
from remediator.core.clock import Clock
from remediator.core.model import QUIET_STOPS, AuditRecord, Target, Verdict, refuse
from remediator.core.vocab import ApprovalState, ClaimOutcome, StopReason
from remediator.ruleset.rules import Rule
from remediator.store.contract import Settlement, Store, UnfinishedClaim

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


def _settlement(
    claim: UnfinishedClaim, seen: Reconciled[Any], rule: Rule | None, clock: Clock
) -> Settlement:
    """The outcome observed, and when the effect is in place, its undo and follow-up as if
    the action's answer had arrived."""
    settlement = Settlement(claim.claim_id, _claim_outcome(claim, seen).value)
    if not seen.applied or seen.result is None or rule is None:
        return settlement
    followup_at = clock.now() + timedelta(seconds=rule.verify_within_s)
    settlement = replace(settlement, followup_at=followup_at)
    undo = seen.result.undo
    if undo is None:
        return settlement
    state = undo.model_dump(mode="json")
    return replace(settlement, undo_target=claim.target, undo_state=state,
                   undo_after_s=seen.result.undo_after_s)  # fmt: skip


async def _refuse(
    claim: UnfinishedClaim, verdict: Verdict, rule: Rule | None, recorder: Recorder
) -> bool:
    """A claim that sent nothing and may not run (its rule changed, its approval was denied
    or timed out): refused, and paged unless the stop is quiet (a denial: the page asking
    for the approval is told)."""
    fallback = rule or recorder.ruleset.rules[-1]  # a rule since removed: the catch-all
    stopped = jobs.unrunnable(claim, fallback).stop(verdict)
    stamp = recorder.stamp()
    records = [audit.refused(stamp, stopped)]
    if verdict.reason not in QUIET_STOPS:
        records.append(audit.escalated_unfixed(stamp, stopped, fallback.escalation))
    return await recorder.settle(Settlement(claim.claim_id, ClaimOutcome.REFUSED.value), records)


def approval_verdict(claim: UnfinishedClaim) -> Verdict | None:
    """Why a claim whose approval was decided may not run; None when it may (it asked
    none, it was approved, or it timed out under ``on_timeout: act``)."""
    state, what = claim.approval, f"{claim.action} on {claim.target}"
    if state is None or state == ApprovalState.APPROVED:
        return None
    if state == ApprovalState.TIMED_OUT and claim.approval_on_timeout == "act":
        return None
    if state == ApprovalState.DENIED:
        return refuse(StopReason.APPROVAL_DENIED,
                      f"Denied by {claim.approval_by}: {what} was not run.")  # fmt: skip
    if state == ApprovalState.WITHDRAWN:
        sentence = f"The alert resolved before {what} was approved; it was not run."
        return refuse(StopReason.RESOLVED, sentence)
    return refuse(
        StopReason.APPROVAL_TIMEOUT,
        f"No approval of {what} came in time (on_timeout: escalate); it was not run, and a"
        " human must decide.",
    )


async def reconcile_claim(
    claim: UnfinishedClaim, recorder: Recorder, clock: Clock, runner: ActionRunner
) -> Literal["resumed", "settled", "gone"]:
    """Resume ``claim`` if it sent nothing (and may run), else settle it by observing;
    ``gone`` when someone else settled it meanwhile."""
    rule = recorder.ruleset.rule(claim.rule)
    if claim.intent is None and (verdict := approval_verdict(claim)) is not None:
        return "settled" if await _refuse(claim, verdict, rule, recorder) else "gone"
    if claim.intent is None and claim.job is not None:
        job = jobs.resumed(claim, recorder.ruleset)
        if isinstance(job, jobs.ActionJob):
            runner.resume(job)
            return "resumed"
        return "settled" if await _refuse(claim, job, rule, recorder) else "gone"
    seen = await _observe(claim, rule)
    settlement = _settlement(claim, seen, rule, clock)
    settled = await recorder.settle(settlement, _records(claim, seen, rule, recorder))
    return "settled" if settled else "gone"


async def reconcile_claims(
    claims: Sequence[UnfinishedClaim], recorder: Recorder, clock: Clock, runner: ActionRunner
) -> Counter[str]:
    """Resume or settle each claim; how many went each way."""
    counts: Counter[str] = Counter()
    for claim in claims:
        counts[await reconcile_claim(claim, recorder, clock, runner)] += 1
    return counts


async def reconcile_unfinished_claims(
    store: Store, recorder: Recorder, clock: Clock, runner: ActionRunner
) -> Counter[str]:
    """At start-up: this replica's own claims that a crash left open."""
    return await reconcile_claims(await store.unfinished_claims(), recorder, clock, runner)
