"""Approvals: an approver's answer kept and acted on, and the loop that ends what waits.

Where it sits: ``runtime`` authenticates the approver (a token, a signed Slack click) and
calls ``answer``; every replica runs ``sweep``. What is decided is decided once, in the
store (``store.approval_vote``, ``store.approval_close``): of two replicas given the last
approval, or both seeing a timeout, one moves the approval out of ``pending`` and takes the
claim; it then runs the claim as a claim resumed after a restart is run (``act.reconcile``):
its guards checked again (resolved, stale since the approval, cooldowns, limits, budgets,
the time intervals, the silences, the precheck's opt-in and ownership) before anything is
written; or refuses it (denied, timed out under ``on_timeout: escalate``, withdrawn). A
crash between the two leaves the claim unfinished with its approval decided, and the next
start or takeover does the same.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Literal

from remediator.act.reconcile import reconcile_claim
from remediator.act.runner import ActionRunner
from remediator.approve.approvers import Approver, refusal
from remediator.audit import records as audit
from remediator.audit.recorder import Recorder
from remediator.core import failpoints
from remediator.core.clock import Clock
from remediator.core.errors import RequestRejected, StoreUnavailable
from remediator.core.metrics import Metrics
from remediator.core.model import AuditRecord, Severity
from remediator.core.vocab import ApprovalState
from remediator.store.contract import PendingApproval, Store, UnfinishedClaim, Vote, VoteAnswer

log = logging.getLogger(__name__)
#: Pending approvals one sweep looks at; more wait for the next (a storm of approvals is
#: refused by the storm brake long before).
SWEPT = 500
#: The longest reason kept with a vote: a sentence, not a document.
REASON_CHARS = 500
#: Backoff of the run or settlement of a decided claim while the store is away.
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0
DRAIN_S = 5.0


@dataclass(frozen=True, slots=True)
class Answered:
    """What an answer came to, and the approval after it."""

    answer: VoteAnswer
    approval: PendingApproval


class Approvals:
    def __init__(
        self,
        store: Store,
        recorder: Recorder,
        runner: ActionRunner,
        clock: Clock,
        metrics: Metrics,
    ) -> None:
        self._store = store
        self._recorder = recorder
        self._runner = runner
        self._clock = clock
        self._metrics = metrics
        self._tasks: set[asyncio.Task[None]] = set()

    async def answer(
        self,
        approver: Approver,
        claim_id: int,
        vote: Literal["approve", "deny"],
        source: str,
        reason: str = "",
    ) -> Answered:
        """Keep ``approver``'s ``vote`` on approval ``claim_id``, and run or refuse the claim
        when it decides it. ``RequestRejected`` with one sentence: no such approval (404),
        not theirs to answer (403), decided already or answered by them before (409)."""
        approval = await self._store.approval(claim_id)
        if approval is None:
            raise RequestRejected(404, "unknown_approval", f"No approval has id {claim_id}.")
        refused = refusal(approver, approval)
        if refused is not None:
            raise RequestRejected(403, *refused)
        if approval.state == ApprovalState.PENDING and not approval.episode_open:
            await self._close(approval, ApprovalState.WITHDRAWN, "the resolve")
            approval = await self._store.approval(claim_id) or approval
        if approval.state != ApprovalState.PENDING:
            raise RequestRejected(409, "not_pending", _closed(approval))
        cast = Vote(claim_id, approver.name, vote, source, self._clock.now(),
                    reason[:REASON_CHARS])  # fmt: skip
        severity = self._severity(approval.rule)

        def records(answer: VoteAnswer, after: PendingApproval) -> list[AuditRecord]:
            return [audit.approval_voted(self._recorder.stamp(), after, cast, answer, severity)]

        result = await self._recorder.vote(cast, records)
        if result.answer == "unknown" or result.approval is None:
            raise RequestRejected(404, "unknown_approval", f"No approval has id {claim_id}.")
        if result.answer == "closed":
            raise RequestRejected(409, "not_pending", _closed(result.approval))
        if result.answer == "voted_already":
            detail = f"{approver.name} answered approval {claim_id} before."
            raise RequestRejected(409, "answered_already", detail)
        fields = {"claim": claim_id, "by": approver.name, "vote": vote, "answer": result.answer}
        log.info("approval %d: %s by %s (%s): %s", claim_id, vote, approver.name, source,
                 result.answer, extra={"fields": fields})  # fmt: skip
        if result.answer in ("approved", "denied"):
            self._metrics.approvals.labels(result.answer).inc()
        if result.claim is not None:
            failpoints.hit("after_approval")
            self._decided(result.claim)
        return Answered(result.answer, result.approval)

    async def sweep(self) -> None:
        """One pass of the loop: each pending approval whose alert resolved is withdrawn,
        each past its time ends as its rule says; the pending count is exported."""
        pending = await self._store.approvals(ApprovalState.PENDING, SWEPT)
        self._metrics.approvals_pending.set(len(pending))
        for approval in pending:
            if not approval.episode_open:
                await self._close(approval, ApprovalState.WITHDRAWN, "the resolve")
            elif approval.due_at <= self._clock.now():
                await self._close(approval, ApprovalState.TIMED_OUT, "the timeout")

    async def _close(self, approval: PendingApproval, state: str, by: str) -> None:
        """End ``approval`` as ``state``. A claim that runs on its timeout says so in an
        ``approval`` record; one that is refused says why in its refusal (``act.reconcile``),
        written once this replica has the claim."""
        severity = self._severity(approval.rule)
        acted = state == ApprovalState.TIMED_OUT and approval.on_timeout == "act"

        def records(after: PendingApproval) -> list[AuditRecord]:
            return (
                [audit.acting_on_timeout(self._recorder.stamp(), after, severity)] if acted else []
            )

        claim = await self._recorder.close_approval(approval.claim_id, state, by, records)
        if claim is None:  # another replica, or a vote, decided it first
            return
        self._metrics.approvals.labels("acted_on_timeout" if acted else state).inc()
        failpoints.hit("after_approval")
        self._decided(claim)

    def _decided(self, claim: UnfinishedClaim) -> None:
        """Run the claim whose approval let it, or settle it refused, as at a restart; in
        the background, retried while the store is away (the answer is kept already)."""
        task = asyncio.create_task(self._durably(claim), name=f"approval:{claim.claim_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _durably(self, claim: UnfinishedClaim) -> None:
        delay_s = RETRY_FIRST_S
        while True:
            try:
                await reconcile_claim(claim, self._recorder, self._clock, self._runner)
                return
            except StoreUnavailable:  # the store tells the outage (``core/outage.py``)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, RETRY_MAX_S)
            except Exception:  # a bug of ours: the claim waits, decided, for the next start
                log.exception("claim %d, decided by its approval, could not be run or"
                              " settled; the next start does", claim.claim_id)  # fmt: skip
                return

    async def idle(self) -> None:
        """Until every decided claim handed on so far is run or settled (the offline
        engine waits for them before its clock moves)."""
        while self._tasks:
            await asyncio.gather(*set(self._tasks))

    async def drain(self, timeout_s: float = DRAIN_S) -> None:
        """At a stop: let the claims being run or settled get that far, then cancel the
        rest (their approvals are kept: the next start runs or settles them)."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def _severity(self, rule_name: str) -> Severity | None:
        rule = self._recorder.ruleset.rule(rule_name)
        return rule.severity if rule is not None else None


def _closed(approval: PendingApproval) -> str:
    by = f" by {approval.decided_by}" if approval.decided_by else ""
    return f"Approval {approval.claim_id} is {approval.state.replace('_', ' ')}{by} already."
