"""Act: run claimed actions off the request path, one at a time per target, a bounded
number at once overall; dry-run, precheck, run, outcome and verification, all audited.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from remediator.actions.base import (
    ActionRequest,
    ActionResult,
    Checked,
    Intend,
    IntentRefused,
    VerifyResult,
)
from remediator.audit import records as audit
from remediator.audit.recorder import Recorder
from remediator.core import failpoints
from remediator.core.clock import Clock
from remediator.core.errors import ApiError
from remediator.core.metrics import Metrics
from remediator.core.model import AuditRecord, Incident, StopReason, Verdict, refuse
from remediator.core.vocab import ClaimOutcome
from remediator.ruleset.rules import PlannedAction
from remediator.store.contract import Store

log = logging.getLogger(__name__)

Request = ActionRequest[Any, Any]
"""A request to whichever action the plan names; the plan paired it with its params."""


@dataclass(frozen=True, slots=True)
class ActionJob:
    incident: Incident
    plan: PlannedAction
    claim_id: int
    escalation: str
    verify_within_s: float = 300.0


class ActionRunner:
    def __init__(
        self,
        store: Store,
        recorder: Recorder,
        metrics: Metrics,
        clock: Clock,
        *,
        dry_run: bool,
        max_concurrent: int,
        require_opt_in: bool = True,
    ) -> None:
        self._require_opt_in = require_opt_in
        self._store = store
        self._recorder = recorder
        self._metrics = metrics
        self._clock = clock
        self.dry_run = dry_run
        self._slots = asyncio.Semaphore(max_concurrent)
        self._target_locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, job: ActionJob) -> None:
        task = asyncio.create_task(self._serially(job), name=f"action:{job.incident.episode_id}")
        self._tasks.add(task)
        self._metrics.queue_depth.set(len(self._tasks))
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._metrics.queue_depth.set(len(self._tasks))
        if not task.cancelled() and task.exception() is not None:
            log.error("action task failed", exc_info=task.exception())

    async def drain(self, timeout_s: float) -> None:
        """Let queued and running actions finish within ``timeout_s``, then cancel the rest."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _serially(self, job: ActionJob) -> None:
        assert job.incident.target is not None
        key = job.incident.target.key
        lock = self._target_locks.setdefault(key, asyncio.Lock())
        try:
            async with lock, self._slots:
                await self._run(job)
        finally:
            if not lock.locked() and not lock._waiters:
                self._target_locks.pop(key, None)

    async def _run(self, job: ActionJob) -> None:
        incident, plan = job.incident, job.plan
        assert incident.target is not None
        request: Request = ActionRequest(
            target=incident.target,
            params=plan.params,
            rule=incident.rule,
            episode_id=incident.episode_id,
            labels=incident.alert.labels,
            verify_within_s=job.verify_within_s,
            require_opt_in=self._require_opt_in,
            intend=self._intender(job.claim_id),
        )
        if not await self._store.episode_is_open(incident.episode_id):
            # The alert resolved while the action waited for its turn: nothing to fix.
            sentence = f"The alert resolved before {plan.kind} started; it was cancelled."
            stopped = incident.stop(refuse(StopReason.RESOLVED, sentence))
            record = audit.refused(self._recorder.stamp(), stopped)
            await self._finish(job, ClaimOutcome.REFUSED, [record])
            return
        if self.dry_run or not plan.action.available():
            await self._finish(job, ClaimOutcome.DRY_RUN, [self._dry_run_record(incident, plan)])
            return
        checked = await self._precheck(plan, request)
        if not checked.verdict.allowed:
            await self._refused(job, checked.verdict)
            return
        result = await self._attempt(plan, request, checked.facts)
        if isinstance(result, Verdict):
            await self._refused(job, result)
            return
        failpoints.hit("after_action")
        await self._after_run(job, request, result)

    def _intender(self, claim_id: int) -> Intend[BaseModel]:
        async def intend(intent: BaseModel, exclusive: str | None) -> None:
            stored = intent.model_dump(mode="json")
            answer = await self._store.claim_intent(claim_id, stored, exclusive)
            if answer == "busy":
                raise IntentRefused(
                    refuse(StopReason.BLAST_RADIUS, f"{exclusive} is being remediated already.")
                )
            if answer == "lost":
                raise IntentRefused(
                    refuse(
                        StopReason.TAKEN_OVER,
                        "Another replica took this claim over while remediator could not"
                        " renew its lease; nothing was sent.",
                    )
                )
            failpoints.hit("after_intent")

        return intend

    async def _refused(self, job: ActionJob, verdict: Verdict) -> None:
        assert verdict.reason is not None
        self._metrics.guard_refusals.labels(verdict.reason.value).inc()
        stopped = job.incident.stop(verdict)
        records = [audit.refused(self._recorder.stamp(), stopped)]
        if verdict.reason is not StopReason.TAKEN_OVER:  # the replica that took it pages
            records.append(self._escalation(stopped, job))
        await self._finish(job, ClaimOutcome.REFUSED, records)

    async def _precheck(self, plan: PlannedAction, request: Request) -> Checked[Any]:
        try:
            return await plan.action.precheck(request)
        except ApiError as exc:
            sentence = f"The API refused or failed while checking {request.target.key}: {exc}"
            return Checked(refuse(StopReason.API_ERROR, sentence))
        except Exception as exc:  # a broken precheck means doubt, and doubt means no action
            log.exception("precheck of %s failed", plan.kind)
            sentence = f"{plan.kind} precheck raised {type(exc).__name__}: {exc}"
            return Checked(refuse(StopReason.PRECHECK_FAILED, sentence))

    async def _attempt(
        self, plan: PlannedAction, request: Request, facts: Any
    ) -> ActionResult[Any] | Verdict:
        try:
            return await plan.action.run(request, facts)
        except IntentRefused as refused:
            return refused.verdict
        except Exception as exc:  # an action's failure must reach a human, not crash us
            log.exception("action %s failed", plan.kind)
            return ActionResult(False, f"{plan.kind} raised {type(exc).__name__}: {exc}")

    async def _after_run(self, job: ActionJob, request: Request, result: ActionResult[Any]) -> None:
        incident, plan = job.incident, job.plan
        records = [audit.acted(self._recorder.stamp(), incident, result)]
        if not result.succeeded:
            records.append(self._escalation(incident, job))
            await self._finish(job, ClaimOutcome.FAILED, records)
            return
        if result.undo is not None:
            state = result.undo.model_dump(mode="json")
            await self._store.undo_plan(
                job.claim_id, request.target.key, state, result.undo_after_s
            )
        verified = await plan.action.verify(request, result)
        records.append(audit.verified(self._recorder.stamp(), incident, plan, verified))
        if verified is VerifyResult.INEFFECTIVE:
            records.append(self._escalation(incident, job))
        elif verified is VerifyResult.VERIFIED:
            # The effect holds; the alert must also resolve within the rule's window.
            due = self._clock.now() + timedelta(seconds=job.verify_within_s)
            await self._store.followup_plan(job.claim_id, due)
        await self._finish(job, ClaimOutcome.SUCCEEDED, records)

    def _dry_run_record(self, incident: Incident, plan: PlannedAction) -> AuditRecord:
        stopped = incident.stop(refuse(StopReason.DRY_RUN, "dry-run"))
        self._metrics.guard_refusals.labels(StopReason.DRY_RUN.value).inc()
        return audit.dry_run(self._recorder.stamp(), stopped, plan, live=not self.dry_run)

    def _escalation(self, incident: Incident, job: ActionJob) -> AuditRecord:
        return audit.escalated_unfixed(self._recorder.stamp(), incident, job.escalation)

    async def _finish(
        self, job: ActionJob, result: ClaimOutcome, records: list[AuditRecord]
    ) -> None:
        self._metrics.actions.labels(job.plan.kind, result.value).inc()
        await self._recorder.write(records)
        await self._store.record_outcome(job.claim_id, result.value, self._clock.now())
        _log_result(job, result.value)
        failpoints.hit("after_outcome")


def _log_result(job: ActionJob, outcome: str) -> None:
    """One line per action result, once its outcome is durable."""
    target = job.incident.target.key if job.incident.target is not None else ""
    fields = {"action": job.plan.name, "kind": job.plan.kind, "target": target,
              "outcome": outcome, "episode": job.incident.episode_id, "claim": job.claim_id,
              "rule": job.incident.rule}  # fmt: skip
    level = logging.WARNING if outcome == "failed" else logging.INFO
    log.log(level, "action %s on %s: %s", job.plan.name, target, outcome, extra={"fields": fields})
