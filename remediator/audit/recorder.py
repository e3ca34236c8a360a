"""Audit: one record per decision, with the incident's identity and a sentence for humans.

Records are written to the store and counted in ``decisions{severity,outcome}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from remediator.core.clock import Clock
from remediator.core.metrics import Metrics
from remediator.core.model import AuditRecord, Incident, Outcome
from remediator.escalate import plan as escalate
from remediator.ruleset.rules import RuleSet
from remediator.store.contract import Store


def record(
    incident: Incident,
    ruleset_hash: str,
    now_step: tuple[Any, str],
    outcome: Outcome,
    sentence: str,
    details: Mapping[str, Any] | None = None,
) -> AuditRecord:
    """An audit record for ``incident``; ``now_step`` is ``(when, step name)``."""
    at, step = now_step
    reason = incident.stopped.reason.value if incident.stopped and incident.stopped.reason else ""
    return AuditRecord(
        at=at,
        step=step,
        outcome=outcome,
        sentence=sentence,
        journal_id=incident.journal_id,
        episode_id=incident.episode_id,
        fingerprint=incident.alert.fingerprint,
        alertname=incident.alert.name,
        rule=incident.rule,
        ruleset_hash=ruleset_hash,
        severity=incident.severity.value if incident.rule else "",
        reason=reason,
        target=incident.target.key if incident.target else "",
        action=incident.action,
        details=dict(details or {}),
    )


def escalation_of(cause: AuditRecord, policy: str, why: str, **details: Any) -> AuditRecord:
    """The ``escalated`` record that follows ``cause`` (a failed verification, a claim
    settled at start-up), for the same episode and target."""
    return replace(
        cause,
        step="escalated",
        outcome=Outcome.ESCALATED,
        sentence=f"Escalating to policy {policy!r}: {why}",
        details={"policy": policy, **details},
    )


class Auditor:
    def __init__(self, store: Store, metrics: Metrics, clock: Clock, ruleset: RuleSet) -> None:
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._ruleset = ruleset
        self.ruleset_hash = ruleset.hash

    def make(
        self,
        incident: Incident,
        step: str,
        outcome: Outcome,
        sentence: str,
        details: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        return record(
            incident, self.ruleset_hash, (self._clock.now(), step), outcome, sentence, details
        )

    async def write(
        self, records: Sequence[AuditRecord], decided_episodes: Sequence[int] = ()
    ) -> None:
        """Store ``records``, mark ``decided_episodes`` decided and queue the notifications
        the records call for, in one transaction."""
        outbox, resolved = escalate.plan(records, self._ruleset)
        await self._store.audit(records, decided_episodes, self._clock.now(), outbox, resolved)
        for r in records:
            if r.severity:
                self._metrics.decisions.labels(r.severity, r.outcome.value).inc()
