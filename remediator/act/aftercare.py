"""Aftercare, after an action: did the alert resolve within the rule's verification window
after the fix took effect (if not, the fix was ineffective: escalate)? And once an episode
has stayed resolved for the action's quiet period, put back what remediator changed (scale
back in after the peak), one bounded step at a time, auditing each step. An episode that
fires again disarms its undos until it closes again.

A supervised loop polls the store for follow-ups and undos that fell due (``run_due``);
they live in the store, so a restart forgets none. Every replica runs the loop: each item is
taken (``followup_take``, ``undo_take``) before it is worked on, so one replica checks an
episode and pages, or takes an undo step; one that dies with an item taken leaves it due
again ``TAKE_S`` later.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from remediator.actions.base import ActionRequest, ActionResult, MalformedState, read_stored
from remediator.audit import records as audit
from remediator.audit.recorder import Recorder
from remediator.core.clock import Clock
from remediator.core.errors import ApiError
from remediator.core.model import StopReason, Target
from remediator.store.contract import Store, Undo

log = logging.getLogger(__name__)

TAKE_S = 120.0
"""How long an item taken by a replica waits before another may take it: longer than a
step's API calls with their retries (15 s) and conflict waits take."""


class Aftercare:
    def __init__(self, store: Store, recorder: Recorder, clock: Clock, poll_s: float) -> None:
        self._store = store
        self._recorder = recorder
        self._clock = clock
        self.poll_s = poll_s

    async def run_due(self) -> None:
        """The follow-ups and undos due now; a supervised loop (``runtime/tasks.py``) runs
        this every ``poll_s``, and restarts it after an unexpected failure."""
        for followup in await self._store.followup_due(self._clock.now()):
            if await self._store.followup_take(followup, self._taken_until()):
                await self._follow_up(followup)
        for undo in await self._store.undo_due(self._clock.now()):
            if await self._store.undo_take(undo, self._taken_until()):
                await self._step(undo)

    def _taken_until(self) -> datetime:
        return self._clock.now() + timedelta(seconds=TAKE_S)

    async def _follow_up(self, followup: Undo) -> None:
        rule = self._recorder.ruleset.rule(followup.rule)
        still_firing = await self._store.episode_is_open(followup.episode_id)
        record = audit.followed_up(self._recorder.stamp(), followup, rule, still_firing)
        records = [record]
        if still_firing and rule is not None:
            why = "the fix did not resolve the alert."
            reason = StopReason.STILL_FIRING
            records.append(audit.escalation_of(record, rule.escalation, why, reason))
        await self._recorder.write(records)
        await self._store.followup_done(followup.id, self._clock.now())
        _log_result("verified", followup, "failed" if still_firing else "succeeded")

    async def _step(self, undo: Undo) -> None:
        rule = self._recorder.ruleset.rule(undo.rule)
        result: ActionResult[Any]
        if rule is None or rule.plan is None or rule.plan.name != undo.action:
            result = ActionResult(
                False,
                f"Rule {undo.rule!r} no longer has action {undo.action!r};"
                f" {undo.target} is left as it is.",
            )
        else:
            action = rule.plan.action
            request: ActionRequest[Any, Any] = ActionRequest(
                Target.from_key(undo.target), rule.plan.params, rule.name, undo.episode_id, {}
            )
            try:
                state = read_stored(action.undo_model, undo.state, "the undo state it stored")
                result = await action.undo(request, state)
            except (ApiError, MalformedState) as exc:  # audited as failed; no step is retried
                result = ActionResult(
                    False, f"Undoing {undo.action} on {undo.target} failed: {exc}"
                )
        due = self._clock.now() + timedelta(seconds=result.undo_after_s)
        severity = rule.severity if rule else None
        await self._recorder.write([audit.undone(self._recorder.stamp(), undo, severity, result)])
        more = None if result.undo is None else result.undo.model_dump(mode="json")
        await self._store.undo_next(undo.id, more, due if more is not None else None)
        _log_result("undone", undo, "succeeded" if result.succeeded else "failed")


def _log_result(step: str, undo: Undo, outcome: str) -> None:
    """One line per aftercare result: a follow-up's verdict, or one undo step."""
    fields = {"step": step, "action": undo.action, "target": undo.target, "outcome": outcome,
              "episode": undo.episode_id, "rule": undo.rule, "id": undo.id}  # fmt: skip
    level = logging.WARNING if outcome == "failed" else logging.INFO
    log.log(level, "%s %s on %s: %s", step, undo.action, undo.target, outcome,
            extra={"fields": fields})  # fmt: skip
