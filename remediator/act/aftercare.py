"""Aftercare, after an action: did the alert resolve within the rule's verification window
after the fix took effect (if not, the fix was ineffective: escalate)? And once an episode
has stayed resolved for the action's quiet period, put back what remediator changed (scale
back in after the peak), one bounded step at a time, auditing each step. An episode that
fires again disarms its undos until it closes again.

A loop polls the store for undos that fell due; they live in the store, so a restart
forgets none.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import timedelta

from remediator.actions.base import ActionRequest, ActionResult
from remediator.audit.recorder import escalation_of
from remediator.core.clock import Clock
from remediator.core.errors import ApiError, StoreUnavailable
from remediator.core.model import AuditRecord, Outcome, Target
from remediator.escalate import plan as escalate
from remediator.ruleset.rules import RuleSet
from remediator.store.contract import Store, Undo

log = logging.getLogger(__name__)


class Aftercare:
    def __init__(self, store: Store, ruleset: RuleSet, clock: Clock, poll_s: float) -> None:
        self._store = store
        self._ruleset = ruleset
        self._rules = {rule.name: rule for rule in ruleset.rules}
        self._hash = ruleset.hash
        self._clock = clock
        self._poll_s = poll_s

    async def run(self) -> None:
        while True:
            try:
                for followup in await self._store.followup_due(self._clock.now()):
                    await self._follow_up(followup)
                for undo in await self._store.undo_due(self._clock.now()):
                    await self._step(undo)
            except StoreUnavailable:
                log.exception("aftercare could not read the store; trying again")
            except Exception:  # one bad undo or follow-up must not end every later one
                log.exception("aftercare failed; trying again")
            await asyncio.sleep(self._poll_s)

    async def _follow_up(self, followup: Undo) -> None:
        rule = self._rules.get(followup.rule)
        resolved = not await self._store.episode_is_open(followup.episode_id)
        outcome = Outcome.SUCCEEDED if resolved else Outcome.FAILED
        verdict = "verified" if resolved else "ineffective"
        sentence = (
            f"The alert resolved after {followup.action} on {followup.target}."
            if resolved
            else f"{followup.action} on {followup.target} took effect, but the alert still"
            f" fires {rule.verify_within_s if rule else 0:.0f} s later: the fix was ineffective."
        )
        record = replace(
            self._record(followup, ActionResult(resolved, sentence, {"verification": verdict})),
            step="verified",
            outcome=outcome,
        )
        records = [record]
        if not resolved and rule is not None:
            why = "the fix did not resolve the alert."
            escalated = escalation_of(record, rule.escalation, why)
            records.append(replace(escalated, reason="ineffective"))
        outbox, _ = escalate.plan(records, self._ruleset)
        await self._store.audit(records, now=self._clock.now(), outbox=outbox)
        await self._store.followup_done(followup.id, self._clock.now())

    async def _step(self, undo: Undo) -> None:
        rule = self._rules.get(undo.rule)
        if rule is None or rule.plan is None or rule.plan.name != undo.action:
            result = ActionResult(
                False,
                f"Rule {undo.rule!r} no longer has action {undo.action!r};"
                f" {undo.target} is left as it is.",
            )
        else:
            request = ActionRequest(
                Target.from_key(undo.target), rule.plan.params, rule.name, undo.episode_id, {}
            )
            try:
                result = await rule.plan.action.undo(request, undo.state)
            except ApiError as exc:
                result = ActionResult(
                    False, f"Undoing {undo.action} on {undo.target} failed: {exc}"
                )
        due = self._clock.now() + timedelta(seconds=result.undo_after_s)
        await self._store.audit([self._record(undo, result)])
        await self._store.undo_next(undo.id, result.undo, due if result.undo else None)

    def _record(self, undo: Undo, result: ActionResult) -> AuditRecord:
        rule = self._rules.get(undo.rule)
        return AuditRecord(
            at=self._clock.now(),
            step="undone",
            outcome=Outcome.SUCCEEDED if result.succeeded else Outcome.FAILED,
            sentence=result.sentence,
            episode_id=undo.episode_id,
            fingerprint=undo.fingerprint,
            rule=undo.rule,
            ruleset_hash=self._hash,
            severity=rule.severity.value if rule else "",
            target=undo.target,
            action=undo.action,
            details=dict(result.details),
        )
