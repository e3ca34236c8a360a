"""Act: run claimed actions off the request path, one at a time per target, a bounded
number at once overall; precheck, then dry-run or run, outcome and verification, all
audited. A dry-run claim runs the action's read-only precheck when its backend is there,
so "would run" is what a live run would do up to its write.

A claim queued twice in one process runs once. Every store call on the way is retried
until the store answers (the store logs the outage once, ``core/outage.py``), so no task dies
with the store away: the outcome, its records, its undo and its follow-up are one
settlement, written once however often it is retried. A job resumed after a restart or a
takeover (``jobs.resumed``) has its guards checked again before it runs. What goes wrong
after the claim (verification raising, a bug of ours) ends the claim with the outcome it
can prove, and pages once.

A stop has one deadline for its whole drain (``stop_by``), however many stages wait on the
runner: actions queued and running get until then. ``SETTLE_S`` before it, a verification
still waiting is interrupted and settled as such (the effect happened, whether it holds is
unknown: escalated), and no queued action starts any more; what still runs at the deadline
is cancelled, its claim left open for the next start or the replica that takes it over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel

from remediator.act import jobs
from remediator.act.jobs import ActionJob
from remediator.act.slots import Slots
from remediator.act.witness import Witness, noted, subject
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
from remediator.core.errors import ApiError, Forbidden, NotFound, StoreUnavailable
from remediator.core.metrics import Metrics
from remediator.core.model import (
    ALLOW,
    QUIET_STOPS,
    AuditRecord,
    Incident,
    StopReason,
    Target,
    Verdict,
    refuse,
)
from remediator.core.vocab import ClaimOutcome
from remediator.evidence.bundle import Phase
from remediator.evidence.capture import Capture
from remediator.guards import windows
from remediator.ruleset.rules import PlannedAction
from remediator.ruleset.schema import PolicySpec
from remediator.silences.watch import SilenceWatch
from remediator.store.contract import Settlement, Store

log = logging.getLogger(__name__)

T = TypeVar("T")
Request = ActionRequest[Any, Any]
"""A request to whichever action the plan names; the plan paired it with its params."""
#: Backoff of a store call retried while the store is away.
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0
MAX_PREVIEWS = 2
"""Shadow prechecks at once: reads only, apart from the live actions' slots."""
SETTLE_S = 5.0
"""Of a stop's grace, seconds kept at its end to settle the verifications it interrupts
(at most half the grace)."""


@dataclass(slots=True)
class _Progress:
    """How far a job got: whether its intent is durable (a write may have been sent), and
    whether the action raised rather than answered."""

    intended: bool = False
    raised: bool = False
    touches: tuple[Target, ...] = ()
    """What precheck said the action writes besides its target (``Checked.touches``)."""


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
        stale_after_s: float = 900.0,
        evidence: Capture | None = None,
        silences: SilenceWatch | None = None,
    ) -> None:
        self._silences = silences
        self._evidence = evidence
        self.witness = Witness(evidence)
        """The evidence of refusals decided before a claim (the pipeline's)."""
        self._notes: dict[int, dict[str, Any]] = {}
        self._require_opt_in = require_opt_in
        self._store = store
        self._recorder = recorder
        self._metrics = metrics
        self._clock = clock
        self.dry_run = dry_run
        self._stale_after_s = stale_after_s
        self._slots = Slots(max_concurrent)
        self._target_locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._queued: set[int] = set()
        self._previews: set[asyncio.Task[None]] = set()
        self._preview_slots = asyncio.Semaphore(MAX_PREVIEWS)
        self._stop_at: float | None = None
        self._interrupted = asyncio.Event()

    def apply(self, policy: PolicySpec) -> None:
        """A reloaded policy's bounds, for the actions that start from now on."""
        self._require_opt_in = policy.require_opt_in
        self._slots.resize(policy.max_concurrent_actions)

    def submit(self, job: ActionJob) -> None:
        """Queue ``job``; a claim already queued or running here is not queued again."""
        if job.claim_id in self._queued:
            return
        self._queued.add(job.claim_id)
        task = asyncio.create_task(self._serially(job), name=f"action:{job.claim_id}")
        self._tasks.add(task)
        self._metrics.queue_depth.set(len(self._tasks))
        task.add_done_callback(self._finished)

    def resume(self, job: ActionJob) -> None:
        """Queue a claim that a crash left before it sent anything (``reconcile``)."""
        self._metrics.claims_resumed.inc()
        self.submit(job)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._metrics.queue_depth.set(len(self._tasks))
        if not task.cancelled() and task.exception() is not None:
            log.error("action task failed", exc_info=task.exception())

    def preview(self, job: jobs.ShadowJob) -> None:
        """A shadow decision's precheck, then its record, in the background: it holds no
        slot and no target lock (it writes nothing but the record), and at most
        ``MAX_PREVIEWS`` run at once."""
        task = asyncio.create_task(self._preview(job), name=f"shadow:{job.incident.episode_id}")
        self._previews.add(task)
        task.add_done_callback(self._preview_finished)

    def _preview_finished(self, task: asyncio.Task[None]) -> None:
        self._previews.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("shadow precheck failed", exc_info=task.exception())

    async def _preview(self, job: jobs.ShadowJob) -> None:
        incident, plan = job.incident, job.plan
        assert incident.target is not None
        request: Request = ActionRequest(
            target=incident.target, params=plan.params, rule=incident.rule,
            episode_id=incident.episode_id, labels=incident.alert.labels,
            require_opt_in=self._require_opt_in, alert_started_at=incident.alert.starts_at,
        )  # fmt: skip
        async with self._preview_slots:
            checked = await self._precheck(plan, request)
        if not checked.verdict.allowed:
            incident = incident.stop(checked.verdict)
        stamp = self._recorder.stamp(job.ruleset)
        record = audit.shadow(stamp, incident, plan, job.live_rule, job.escalation, prechecked=True)
        await self._durably(lambda: self._recorder.write([record]))

    @property
    def active(self) -> int:
        """Actions queued or running here."""
        return len(self._tasks)

    def stop_by(self, grace_s: float) -> float:
        """The service stops: the deadline (loop time) of its whole drain, ``grace_s`` after
        the first call; later calls return it unchanged, so no stage of the stop extends it.
        ``SETTLE_S`` before it, waiting verifications are interrupted (``_verify``)."""
        loop = asyncio.get_running_loop()
        if self._stop_at is None:
            self._stop_at = loop.time() + grace_s
            loop.call_at(self._stop_at - min(SETTLE_S, grace_s / 2), self._interrupted.set)
        return self._stop_at

    async def drain(self, timeout_s: float) -> None:
        """Let queued and running actions (and shadow prechecks, and refusals' evidence)
        finish within ``timeout_s``, and never past a stop's deadline (``stop_by``), then
        cancel the rest (their claims stay open: resumed or observed at the next start or
        takeover)."""
        running = self._tasks | self._previews | self.witness.tasks
        if not running:
            return
        if self._stop_at is not None:
            left_s = self._stop_at - asyncio.get_running_loop().time()
            timeout_s = max(0.0, min(timeout_s, left_s))
        _, pending = await asyncio.wait(running, timeout=timeout_s)
        if pending:
            log.warning("%d actions did not finish within %.1f s and were cancelled; their"
                        " claims run or are observed at the next start or by the replica"
                        " that takes them over", len(pending), timeout_s)  # fmt: skip
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _serially(self, job: ActionJob) -> None:
        assert job.incident.target is not None
        key = job.incident.target.key
        lock = self._target_locks.setdefault(key, asyncio.Lock())
        try:
            async with lock, self._slots:
                if self._interrupted.is_set():  # stopping: the claim waits in the store
                    log.info("claim %d was not started: remediator is stopping", job.claim_id)
                    return
                await self._guarded(job)
        finally:
            self._queued.discard(job.claim_id)
            self._notes.pop(job.claim_id, None)  # a cancelled job's, never settled here
            if not lock.locked() and not lock._waiters:
                self._target_locks.pop(key, None)

    async def _guarded(self, job: ActionJob) -> None:
        progress = _Progress()
        try:
            await self._run(job, progress)
        except Exception as exc:  # a bug of ours: the claim still ends, and a human hears
            log.exception("action %s of claim %d failed", job.plan.kind, job.claim_id)
            await self._settle_broken(job, progress, exc)

    async def _durably(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call`` until the store answers it; every call here is safe to repeat."""
        delay_s = RETRY_FIRST_S
        while True:
            try:
                return await call()
            except StoreUnavailable:  # the store tells the outage (``core/outage.py``)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, RETRY_MAX_S)

    async def _run(self, job: ActionJob, progress: _Progress) -> None:
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
            intend=self._intender(job.claim_id, progress),
            alert_started_at=incident.alert.starts_at,
        )
        if job.resumed:
            verdict = await self._recheck(job)
            if verdict is None:
                log.info("claim %d is no longer this replica's to run", job.claim_id)
                return
            if not verdict.allowed:
                await self._refused(job, verdict)
                return
        if not await self._durably(lambda: self._store.episode_is_open(incident.episode_id)):
            # The alert resolved while the action waited for its turn: nothing to fix.
            sentence = f"The alert resolved before {plan.kind} started; it was cancelled."
            stopped = incident.stop(refuse(StopReason.RESOLVED, sentence))
            record = audit.refused(self._recorder.stamp(), stopped)
            await self._finish(job, ClaimOutcome.REFUSED, [record])
            return
        held = self._held_back(job)
        if not held.allowed:  # a window or a silence began since it was claimed
            await self._refused(job, held)
            return
        if not plan.action.available():  # nothing to read it from: planned, not prechecked
            await self._finish(job, ClaimOutcome.DRY_RUN, [self._dry_run_record(incident, plan)])
            return
        checked = await self._precheck(plan, request)
        progress.touches = checked.touches
        if not checked.verdict.allowed:
            await self._refused(job, checked.verdict, progress)
            return
        if self.dry_run:  # "would run" means what a live run would do, up to its write
            record = self._dry_run_record(incident, plan, prechecked=True)
            await self._finish(job, ClaimOutcome.DRY_RUN, [record])
            return
        await self._capture(job, Phase.BEFORE, progress)
        result = await self._attempt(plan, request, checked.facts, progress)
        if isinstance(result, Verdict):
            await self._refused(job, result, progress)
            return
        failpoints.hit("after_action")
        await self._after_run(job, request, result, progress)

    def _held_back(self, job: ActionJob) -> Verdict:
        """The time intervals and the silences, looked at again just before the precheck: a
        mute window that began, or a silence made, since the claim (a queued or resumed
        claim) holds the action back."""
        rule = self._recorder.ruleset.rule(job.incident.rule)
        if rule is not None:
            now = self._clock.now()
            verdict = windows.decide(rule.mute_time_intervals, rule.active_time_intervals, now)
            if not verdict.allowed:
                return verdict
        if self._silences is None:
            return ALLOW
        on_error = rule.on_silence_check_error if rule is not None else "refuse"
        return self._silences.verdict(job.incident.alert.labels, on_error)

    async def _recheck(self, job: ActionJob) -> Verdict | None:
        """The guards of a resumed claim, as if it were claimed now: too old, or the
        cooldowns, limits and budgets that others' claims used up meanwhile."""
        incident = job.incident
        since = job.approved_at or incident.received_at
        waited_s = (self._clock.now() - since).total_seconds()
        if waited_s > self._stale_after_s:
            after = " after its approval" if job.approved_at else ""
            return refuse(
                StopReason.STALE,
                f"The claim waited {waited_s:.0f} s{after} to run (remediator restarted or"
                f" another replica took it over), more than the {self._stale_after_s:.0f} s"
                " after which the world may have changed.",
            )
        ruleset = self._recorder.ruleset
        rule = ruleset.rule(incident.rule)
        assert rule is not None, "a resumed job names a rule of this rule set (jobs.resumed)"
        request = jobs.claim_request(incident, rule, ruleset.policy, self.dry_run)
        now = self._clock.now()
        return await self._durably(lambda: self._store.claim_recheck(job.claim_id, request, now))

    def _intender(self, claim_id: int, progress: _Progress) -> Intend[BaseModel]:
        async def intend(intent: BaseModel, exclusive: str | None) -> None:
            stored = intent.model_dump(mode="json")
            answer = await self._durably(
                lambda: self._store.claim_intent(claim_id, stored, exclusive)
            )
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
            progress.intended = True
            failpoints.hit("after_intent")

        return intend

    async def _capture(
        self,
        job: ActionJob,
        phase: Phase,
        progress: _Progress,
        outcome: dict[str, Any] | None = None,
    ) -> None:
        """The claim's ``phase`` bundle, when evidence is kept; noted for its records.
        Bounded in time by the capture, and nothing it meets stops the action."""
        if self._evidence is None:
            return
        incident = job.incident
        assert incident.target is not None
        about = subject(incident, job.claim_id, job.plan.name, job.plan.kind)
        targets = (incident.target, *progress.touches)
        try:
            captured = await self._evidence.take(about, phase, targets, outcome)
        except Exception as exc:  # a bug of ours in the capture: the action goes on
            log.exception("evidence %s of claim %d failed", phase.value, job.claim_id)
            note: dict[str, Any] = {"lost": f"{type(exc).__name__}: {exc}"[:500]}
        else:
            note = captured.note()
        self._notes.setdefault(job.claim_id, {})[phase.value] = note

    async def _refused(
        self, job: ActionJob, verdict: Verdict, progress: _Progress | None = None
    ) -> None:
        assert verdict.reason is not None
        if verdict.reason is StopReason.TAKEN_OVER:  # the replica that took it settles it
            log.warning("claim %d was taken over by another replica; nothing was sent",
                        job.claim_id)  # fmt: skip
            return
        quiet = verdict.reason in QUIET_STOPS  # silenced: refused, audited, not paged
        if not quiet:
            outcome = {"reason": verdict.reason.value, "sentence": verdict.sentence}
            await self._capture(job, Phase.REFUSED, progress or _Progress(), outcome)
        self._metrics.guard_refusals.labels(verdict.reason.value).inc()
        stopped = job.incident.stop(verdict)
        records = [audit.refused(self._recorder.stamp(), stopped)]
        if not quiet:
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
        self, plan: PlannedAction, request: Request, facts: Any, progress: _Progress
    ) -> ActionResult[Any] | Verdict:
        try:
            return await plan.action.run(request, facts)
        except IntentRefused as refused:
            return refused.verdict
        except (Forbidden, NotFound) as exc:  # the API said no: nothing it refused was done
            return refuse(
                StopReason.TARGET_GONE if isinstance(exc, NotFound) else StopReason.API_ERROR,
                f"The API refused {plan.kind} on {request.target.key}: {exc}",
            )
        except Exception as exc:  # an action's failure must reach a human, not crash us
            unexpected = not isinstance(exc, ApiError)  # an API's failure needs no traceback
            log.warning("action %s on %s raised %s: %s", plan.kind, request.target.key,
                        type(exc).__name__, exc, exc_info=unexpected)  # fmt: skip
            progress.raised = True
            sentence = f"{plan.kind} raised {type(exc).__name__}: {exc}"
            if progress.intended:
                sentence += "; it had announced its write, so whether it took effect is unknown"
            return ActionResult(False, sentence)

    async def _after_run(
        self, job: ActionJob, request: Request, result: ActionResult[Any], progress: _Progress
    ) -> None:
        incident, plan = job.incident, job.plan
        records = [audit.acted(self._recorder.stamp(), incident, result)]
        if not result.succeeded:
            await self._capture(job, Phase.AFTER, progress, _outcome(result))
            records.append(self._escalation(incident, job))
            raised_after_intent = progress.raised and progress.intended
            outcome = ClaimOutcome.UNKNOWN if raised_after_intent else ClaimOutcome.FAILED
            await self._finish(job, outcome, records)
            return
        undo = _undo(job, request, result)
        started = self._clock.monotonic()
        try:
            verified = await self._verify(plan, request, result)
        except Exception as exc:  # the effect happened; whether it holds is not known
            log.warning("verification of %s on %s raised %s: %s", plan.kind, request.target.key,
                        type(exc).__name__, exc)  # fmt: skip
            await self._capture(job, Phase.AFTER, progress, _outcome(result, "unknown"))
            sentence = (
                f"Verifying {plan.kind} on {request.target.key} raised {type(exc).__name__}:"
                f" {exc}; whether the fix holds is unknown."
            )
            await self._unverified(job, records, undo, StopReason.VERIFY_FAILED, sentence)
            return
        judged = "interrupted" if verified is None else verified.value
        if verified is not None:  # a stop's settling has no time for reads
            await self._capture(job, Phase.AFTER, progress, _outcome(result, judged))
        if verified is None:
            waited_s = self._clock.monotonic() - started
            sentence = (
                f"Verifying {plan.kind} on {request.target.key} was interrupted by shutdown"
                f" after {waited_s:.0f} s of its {job.verify_within_s:.0f} s; whether the fix"
                " holds is unknown."
            )
            await self._unverified(job, records, undo, StopReason.SHUTTING_DOWN, sentence)
            return
        records.append(audit.verified(self._recorder.stamp(), incident, plan, verified))
        followup_at = None
        if verified is VerifyResult.INEFFECTIVE:
            records.append(self._escalation(incident, job))
        elif verified is VerifyResult.VERIFIED:
            # The effect holds; the alert must also resolve within the rule's window.
            followup_at = self._clock.now() + timedelta(seconds=job.verify_within_s)
        await self._finish(job, ClaimOutcome.SUCCEEDED, records, undo, followup_at)

    async def _verify(
        self, plan: PlannedAction, request: Request, result: ActionResult[Any]
    ) -> VerifyResult | None:
        """The action's verification, or None when a stop interrupted it (``stop_by``)."""
        check = asyncio.ensure_future(plan.action.verify(request, result))
        interrupted = asyncio.ensure_future(self._interrupted.wait())
        try:
            await asyncio.wait((check, interrupted), return_when=asyncio.FIRST_COMPLETED)
        finally:
            check.cancel()  # a no-op once it answered
            interrupted.cancel()
            await asyncio.wait((check, interrupted))
        return None if check.cancelled() else check.result()

    async def _unverified(
        self,
        job: ActionJob,
        records: list[AuditRecord],
        undo: Settlement | None,
        reason: StopReason,
        sentence: str,
    ) -> None:
        """The effect happened, whether it holds is unknown: audited with ``reason`` and
        ``sentence``, escalated, and the claim ends ``unknown`` with its undo planned."""
        stopped = job.incident.stop(refuse(reason, sentence))
        stamp = self._recorder.stamp()
        records = [*records, audit.verify_failed(stamp, stopped), self._escalation(stopped, job)]
        await self._finish(job, ClaimOutcome.UNKNOWN, records, undo)

    async def _settle_broken(self, job: ActionJob, progress: _Progress, exc: Exception) -> None:
        """End a claim whose run raised where nothing should: with what can be proved."""
        sent = (
            "whether its write took effect is unknown" if progress.intended else "it sent nothing"
        )
        result: ActionResult[Any] = ActionResult(
            False,
            f"{job.plan.kind} stopped on an error in remediator ({type(exc).__name__}: {exc});"
            f" {sent}.",
        )
        records = [audit.acted(self._recorder.stamp(), job.incident, result)]
        records.append(self._escalation(job.incident, job))
        outcome = ClaimOutcome.UNKNOWN if progress.intended else ClaimOutcome.FAILED
        try:
            await self._finish(job, outcome, records)
        except Exception:
            log.critical("claim %d could not be settled; the next start or takeover settles"
                         " it", job.claim_id, exc_info=True)  # fmt: skip

    def _dry_run_record(
        self, incident: Incident, plan: PlannedAction, prechecked: bool = False
    ) -> AuditRecord:
        stopped = incident.stop(refuse(StopReason.DRY_RUN, "dry-run"))
        self._metrics.guard_refusals.labels(StopReason.DRY_RUN.value).inc()
        stamp = self._recorder.stamp()
        return audit.dry_run(stamp, stopped, plan, live=not self.dry_run, prechecked=prechecked)

    def _escalation(self, incident: Incident, job: ActionJob) -> AuditRecord:
        return audit.escalated_unfixed(self._recorder.stamp(), incident, job.escalation)

    async def _finish(
        self,
        job: ActionJob,
        outcome: ClaimOutcome,
        records: list[AuditRecord],
        undo: Settlement | None = None,
        followup_at: datetime | None = None,
    ) -> None:
        """Settle the claim with ``outcome``, ``records``, the undo that ``undo`` plans and
        a follow-up at ``followup_at``; retried until the store takes it."""
        records = noted(records, self._notes.pop(job.claim_id, {}))
        settlement = Settlement(job.claim_id, outcome.value, followup_at=followup_at)
        if undo is not None:
            settlement = replace(undo, outcome=outcome.value, followup_at=followup_at)
        settled = await self._durably(lambda: self._recorder.settle(settlement, records))
        if not settled:
            log.warning("claim %d was settled by another replica first; its outcome here"
                        " (%s) was not written", job.claim_id, outcome.value)  # fmt: skip
            return
        self._metrics.actions.labels(job.plan.kind, outcome.value).inc()
        _log_result(job, outcome.value)
        failpoints.hit("after_outcome")


def _outcome(result: ActionResult[Any], verification: str = "") -> dict[str, Any]:
    """What an ``after`` bundle says of the action: its result, and how it verified."""
    said = {"succeeded": result.succeeded, "sentence": result.sentence,
            "details": dict(result.details)}  # fmt: skip
    return {**said, "verification": verification} if verification else said


def _undo(job: ActionJob, request: Request, result: ActionResult[Any]) -> Settlement | None:
    """What the claim's settlement plans to put back, if the action said so."""
    if result.undo is None:
        return None
    state = result.undo.model_dump(mode="json")
    return Settlement(job.claim_id, "", request.target.key, state, result.undo_after_s)


def _log_result(job: ActionJob, outcome: str) -> None:
    """One line per action result, once its outcome is durable."""
    target = job.incident.target.key if job.incident.target is not None else ""
    fields = {"action": job.plan.name, "kind": job.plan.kind, "target": target,
              "outcome": outcome, "episode": job.incident.episode_id, "claim": job.claim_id,
              "rule": job.incident.rule, "resumed": job.resumed}  # fmt: skip
    level = logging.WARNING if outcome in ("failed", "unknown") else logging.INFO
    log.log(level, "action %s on %s: %s", job.plan.name, target, outcome, extra={"fields": fields})
