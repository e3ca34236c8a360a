"""Audit records → one decision per alert of each input: what ``test`` compares and
``replay`` summarises.

Where it sits: after the ``engine`` has decided an input, its records (``received``,
``classified``, then ``refused``/``claimed``, the runner's ``dry_run``, an ``escalated``)
are grouped by journal entry and alert. A decision's step, outcome and reason are those of
its last record but the escalation; ``escalated`` names the policy that took it, if any.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from remediator.core.model import AuditRecord
from remediator.core.vocab import Step

#: What a decision says, by the names a test file uses.
FIELDS = ("rule", "severity", "step", "outcome", "reason", "action", "target", "escalated")


@dataclass(frozen=True, slots=True)
class Decision:
    journal_id: int
    fingerprint: str
    alertname: str
    at: datetime
    rule: str = ""
    severity: str = ""
    step: str = "none"
    """``none``: no record, the alert needed no decision (a resend of an open episode)."""
    outcome: str = ""
    reason: str = ""
    action: str = ""
    target: str = ""
    escalated: str = ""
    """The escalation policy that took the decision; empty when none did."""
    params: Mapping[str, Any] = field(default_factory=dict)
    """The planned action's parameters (the dry-run record's)."""
    sentence: str = ""

    def value(self, name: str) -> str:
        return str(getattr(self, name))


def _key(record: AuditRecord) -> tuple[int, str]:
    return record.journal_id or 0, record.fingerprint


def _decision(records: list[AuditRecord]) -> Decision:
    first = records[0]
    # A shadow rule's record, written beside the live decision, is not the alert's decision.
    ended = [r for r in records if r.step not in (Step.ESCALATED, Step.SHADOW)] or records
    last = ended[-1]
    escalations = [r for r in records if r.step is Step.ESCALATED]
    params = next((r.details.get("params") for r in records if r.step is Step.DRY_RUN), None)
    return Decision(
        journal_id=first.journal_id or 0, fingerprint=first.fingerprint,
        alertname=first.alertname, at=last.at, rule=last.rule or first.rule,
        severity=str(last.severity or ""), step=last.step.value, outcome=last.outcome.value,
        reason=str(last.reason or ""), action=last.action, target=last.target,
        escalated=str(escalations[-1].details.get("policy", "")) if escalations else "",
        params=params if isinstance(params, dict) else {}, sentence=last.sentence,
    )  # fmt: skip


def by_alert(records: Iterable[AuditRecord]) -> dict[tuple[int, str], Decision]:
    """The decision of each (journal entry, fingerprint), in the order first written;
    notifications, and records of no journal entry (aftercare), are not decisions."""
    grouped: dict[tuple[int, str], list[AuditRecord]] = {}
    for record in records:
        if record.step is Step.NOTIFIED or record.journal_id is None:
            continue
        grouped.setdefault(_key(record), []).append(record)
    return {key: _decision(group) for key, group in grouped.items()}
