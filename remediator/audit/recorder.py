"""The recorder: the one door every audit record goes through, whichever stage built it.

A write stores the records, marks the episodes decided and queues the notifications the
records call for, in one transaction (a claim writes the episode's decision with it; a
claim's settlement, its outcome and aftercare with its records); then each record written
is counted in ``decisions{severity,outcome}``. Each decision is logged as one ``decision``
line at info: the last record a write holds for an alert (its episode, journal entry and
fingerprint), which carries the step it ended at and the reason. The records on the way there
(``received``, ``classified``, a ``refused`` that an ``escalated`` follows) are logged at
debug: an alert storm would otherwise log four lines per alert.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from remediator.audit.records import Stamp
from remediator.core.clock import Clock
from remediator.core.metrics import Metrics
from remediator.core.model import AuditRecord
from remediator.core.vocab import Step
from remediator.guards.claim import ClaimRequest
from remediator.ruleset.active import ActiveRules
from remediator.ruleset.rules import RuleSet
from remediator.store.contract import (
    ApprovalAsked,
    ClaimedDecision,
    ClaimResult,
    PendingApproval,
    Planned,
    Settlement,
    Store,
    UnfinishedClaim,
    Vote,
    VoteAnswer,
    VoteResult,
)

log = logging.getLogger(__name__)
#: Records counted and logged at once after a batch is written (about 64 alerts' worth).
LOGGED_AT_ONCE = 256


Planner = Callable[[Sequence[AuditRecord], ActiveRules], Planned]
"""The notifications records call for, the episodes they resolve and the news of incidents
paged before (``escalate.plan``)."""


def log_fields(record: AuditRecord) -> dict[str, Any]:
    """What the ``decision`` log line says of ``record``: its identity and where it went,
    in plain strings (a formatter needs to know no enum)."""
    return {
        "episode": record.episode_id,
        "fingerprint": record.fingerprint,
        "alertname": record.alertname,
        "rule": record.rule,
        "severity": record.severity.value if record.severity else None,
        "step": record.step.value,
        "outcome": record.outcome.value,
        "reason": record.reason.value if record.reason else None,
        "target": record.target,
        "action": record.action,
        "journal_id": record.journal_id,
    }


class Recorder:
    """Writes audit records; stamps them with the time and the rule set they were made
    under (``stamp``, for the builders of ``records``)."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        clock: Clock,
        rules: ActiveRules | RuleSet,
        plan: Planner,
        resolve_after_s: float = 0.0,
    ) -> None:
        self._store = store
        self._resolve_after_s = resolve_after_s
        self._metrics = metrics
        self._clock = clock
        self._plan = plan
        self.rules = rules if isinstance(rules, ActiveRules) else ActiveRules(rules, clock.now())

    @property
    def ruleset(self) -> RuleSet:
        """The active rule set (a reload swaps it): for what is looked up after a decision."""
        return self.rules.current

    def stamp(self, ruleset: RuleSet | None = None) -> Stamp:
        """Now, and the hash of ``ruleset`` (a decision's snapshot) or of the active set."""
        return Stamp(self._clock.now(), (ruleset or self.rules.current).hash)

    async def write(
        self, records: Sequence[AuditRecord], decided_episodes: Sequence[int] = ()
    ) -> set[int]:
        """Store ``records``, mark ``decided_episodes`` decided and queue the notifications
        the records call for, in one transaction; then count and log each record written.
        The episodes another replica decided first: their records here were not written."""
        planned = self._plan(records, self.rules)
        now = self._clock.now()
        lost = await self._store.audit(
            records, decided_episodes, now, planned.outbox, planned.resolved,
            self._resolve_after_s, planned.updates,
        )  # fmt: skip
        written = [r for r in records if r.episode_id not in lost] if lost else records
        for i, piece in enumerate(_by_alerts(written, LOGGED_AT_ONCE)):
            if i:  # a chunk's records: the event loop answers acks between two pieces
                await asyncio.sleep(0)
            self._written(piece)
        return lost

    async def claim(
        self,
        request: ClaimRequest,
        records: Callable[[int], Sequence[AuditRecord]],
        job: Mapping[str, Any],
        approval: ApprovalAsked | None = None,
    ) -> ClaimResult:
        """Take a claim with the episode's decision (``records`` of its claim id) and its
        job (and the ``approval`` it is held for), in one transaction; the decision is
        counted and logged once it is written."""
        decision = ClaimedDecision(
            records, job, lambda made: self._plan(made, self.rules).outbox, approval
        )
        result = await self._store.claim(request, self._clock.now(), decision)
        self._written(result.records)
        return result

    async def settle(self, settlement: Settlement, records: Sequence[AuditRecord]) -> bool:
        """A claim's outcome, its aftercare, ``records`` and their notifications, in one
        transaction; False (nothing written) when the claim was settled already or is
        another replica's."""
        planned = self._plan(records, self.rules)
        now = self._clock.now()
        settled = await self._store.settle(
            settlement, now, records, planned.outbox, planned.updates
        )
        if settled:
            self._written(records)
        return settled

    async def vote(
        self,
        vote: Vote,
        records: Callable[[VoteAnswer, PendingApproval], Sequence[AuditRecord]],
    ) -> VoteResult:
        """Keep an approver's ``vote`` with the ``records`` of what it came to, and the
        notifications they call for, in one transaction (``store.approval_vote``)."""
        made: list[AuditRecord] = []

        def kept(answer: VoteAnswer, approval: PendingApproval) -> Sequence[AuditRecord]:
            made[:] = records(answer, approval)
            return made

        result = await self._store.approval_vote(vote, kept, self._planned)
        self._written(made)  # empty when the vote changed nothing
        return result

    async def close_approval(
        self,
        claim_id: int,
        state: str,
        by: str,
        records: Callable[[PendingApproval], Sequence[AuditRecord]],
    ) -> UnfinishedClaim | None:
        """Move a pending approval to ``state`` with ``records`` (``store.approval_close``);
        its claim, now this replica's, or None when it was decided elsewhere first."""
        made: list[AuditRecord] = []

        def kept(approval: PendingApproval) -> Sequence[AuditRecord]:
            made[:] = records(approval)
            return made

        now = self._clock.now()
        claim = await self._store.approval_close(claim_id, state, by, now, kept, self._planned)
        self._written(made)  # empty when it was not pending
        return claim

    def _planned(self, records: Sequence[AuditRecord]) -> Planned:
        return self._plan(records, self.rules)

    def _written(self, records: Sequence[AuditRecord]) -> None:
        counts: Counter[tuple[bool, str | None, str]] = Counter()
        for record in records:
            if record.step == Step.SHADOW:  # counted apart: a shadow rule decided nothing
                counts[True, None, record.outcome] += 1
            elif record.severity is not None:  # the series are per severity
                counts[False, record.severity, record.outcome] += 1
        for (shadow, severity, outcome), count in counts.items():
            if shadow:
                self._metrics.shadow_decisions.labels(outcome).inc(count)
            else:
                self._metrics.decisions.labels(severity, outcome).inc(count)
        _log(records)


def _by_alerts(records: Sequence[AuditRecord], size: int) -> Iterator[Sequence[AuditRecord]]:
    """``records`` in pieces of about ``size``, never splitting one alert's records (they
    come together, and ``_log`` gives each alert one info line, at its last record)."""
    start = 0
    for end in range(size, len(records), size):
        while end < len(records) and _alert_of(records[end]) == _alert_of(records[end - 1]):
            end += 1
        if end > start and end < len(records):
            yield records[start:end]
            start = end
    if start < len(records):
        yield records[start:]


def _log(records: Sequence[AuditRecord]) -> None:
    """One info line per alert's decision (its last record here), the rest at debug."""
    if not log.isEnabledFor(logging.INFO):
        return
    debug = log.isEnabledFor(logging.DEBUG)
    last = {_alert_of(r): i for i, r in enumerate(records)}
    for i, record in enumerate(records):
        if last[_alert_of(record)] == i:
            log.info("decision", extra={"fields": log_fields(record)})
        elif debug:
            log.debug("decision", extra={"fields": log_fields(record)})


def _alert_of(record: AuditRecord) -> tuple[int | None, int | None, str]:
    return record.episode_id, record.journal_id, record.fingerprint
