"""Plan: the decisions that need a human become notifications in the outbox.

Planning happens in the same transaction as the audit record that says "escalated", so a
crash cannot lose a page. Every tier of the rule's escalation policy is queued at once,
due ``after_s`` later; a tier is sent only while the episode is still open. One incident
per episode and sink: the dedup key is stable, and each (episode, sink, event, tier) is
queued once. ``delivery`` sends them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from remediator.core import dedup_keys
from remediator.core.model import AuditRecord
from remediator.core.vocab import Event, Step, StopReason
from remediator.ruleset.active import ActiveRules
from remediator.store.contract import OutboxItem

log = logging.getLogger(__name__)


#: The outbox's episode for a page about no episode (an unreadable journal entry): the
#: first tier is sent, later tiers are dropped, since no resolve can ever stop them.
NO_EPISODE = 0


def dedup_key(record: AuditRecord) -> str:
    """One incident per episode; during a storm, one incident for the storm (per policy and
    hour), so a fleet-wide alert pages once, not once per target."""
    if record.reason == "storm":
        return dedup_keys.storm(str(record.details.get("policy", "")), record.at)
    if record.reason == "ineffective_remediation":
        return dedup_keys.ineffective(record.target, record.action)
    if record.episode_id is None:  # a journal entry that could not be read: no episode
        return dedup_keys.unprocessable(record.journal_id)
    return dedup_keys.episode(record.fingerprint, record.episode_id)


def _summary(record: AuditRecord, why: str) -> str:
    if record.reason == StopReason.STORM:
        return (
            f"[{record.severity}] Alert storm: remediator escalates instead of acting. First:"
            f" {record.alertname or record.rule} on {record.target or 'its target'}."
            f" Every alert of the storm is in the decisions API (reason=storm)."
        )
    what = record.alertname or record.rule or "alert"
    where = f" on {record.target}" if record.target else ""
    return f"[{record.severity}] {what}{where}: {why or record.sentence}"


def plan(records: Sequence[AuditRecord], rules: ActiveRules) -> tuple[list[OutboxItem], list[int]]:
    """The notifications ``records`` call for, and the episodes they resolve. Each record's
    escalation policy is the one of the rule set it was decided under (its hash)."""
    if not rules.current.sinks:
        return [], []
    queued: list[OutboxItem] = []
    resolved: list[int] = []
    previous: AuditRecord | None = None
    for record in records:
        if record.episode_id is None and record.reason != StopReason.UNPROCESSABLE:
            continue
        if record.step == Step.RESOLVED and record.episode_id is not None:
            resolved.append(record.episode_id)
        elif record.step == Step.ESCALATED:
            # The record before says why: the refusal, the failed action, the verification.
            same = previous is not None and previous.episode_id == record.episode_id
            queued.extend(_tiers(record, rules, previous.sentence if same and previous else ""))
        previous = record
    return queued, resolved


def _tiers(record: AuditRecord, rules: ActiveRules, why: str) -> list[OutboxItem]:
    name = str(record.details.get("policy", ""))
    policy = rules.escalation(name, record.ruleset_hash)
    if policy is None:
        log.error("escalation policy %r is not defined; nothing queued", name)
        return []
    details = {
        "rule": record.rule,
        "reason": str(record.reason or ""),
        "target": record.target,
        "action": record.action,
        "episode": record.episode_id,
        "fingerprint": record.fingerprint,
        "alertname": record.alertname,
        "alert": record.details.get("alert") or {},
    }
    return [
        OutboxItem(
            episode_id=record.episode_id or NO_EPISODE,
            dedup_key=dedup_key(record),
            sink=sink,
            event=Event.TRIGGER.value,
            tier=index,
            severity=str(record.severity or ""),
            policy=name,
            summary=_summary(record, why),
            details=details,
            due_at=record.at + timedelta(seconds=tier.after_s),
        )
        for index, tier in enumerate(policy.tiers)
        for sink in tier.notify
    ]
