"""Plan: the decisions that need a human become notifications in the outbox.

Planning happens in the same transaction as the audit record that says "escalated", so a
crash cannot lose a page. Every tier of the rule's escalation policy is queued at once,
due ``after_s`` later; a tier is sent only while the incident is open and no human has
acknowledged it. One incident per story: an episode; the alerts of one Alertmanager
notification that escalate by one rule for one reason (one page listing them); a storm. The
dedup key is stable, each (incident, sink, event, tier) is queued once, and every episode
paged for is a member of its incident. What happens to an episode after its page (an
action, its verification, a reopen) is news: an update for every sink the page reached.
``delivery`` sends them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from remediator.core import dedup_keys
from remediator.core.model import AuditRecord
from remediator.core.vocab import Event, Step, StopReason
from remediator.ruleset.active import ActiveRules
from remediator.store.contract import IncidentUpdate, OutboxItem, Planned

log = logging.getLogger(__name__)


#: The outbox's episode for a page about no episode (an unreadable journal entry): the
#: first tier is sent, later tiers are dropped, since no resolve can ever stop them.
NO_EPISODE = 0


#: How many alerts of a group a page lists; ``count`` says how many there are.
GROUP_LISTED = 20

#: Records that are news for an incident already paged: it is updated with their sentence.
NEWS = frozenset({Step.ACTED, Step.VERIFIED, Step.REFUSED, Step.ESCALATED, Step.UNDONE,
                  Step.REOPENED, Step.RECONCILED, Step.APPROVAL})  # fmt: skip


def dedup_key(record: AuditRecord) -> str:
    """One incident per episode; during a storm, one incident for the storm (per policy,
    while it goes on: ``dedup_keys.STORM_QUIET_S``), so a fleet-wide alert pages once."""
    if record.reason == "storm":
        return dedup_keys.storm(str(record.details.get("policy", "")), record.at)
    if record.reason == "ineffective_remediation":
        return dedup_keys.ineffective(record.target, record.action)
    if record.episode_id is None:  # a journal entry that could not be read: no episode
        return dedup_keys.unprocessable(record.journal_id)
    return dedup_keys.episode(record.fingerprint, record.episode_id)


def _summary(record: AuditRecord, why: str, group: Sequence[AuditRecord] = ()) -> str:
    if record.reason == StopReason.STORM:
        return (
            f"[{record.severity}] Alert storm: remediator escalates instead of acting. First:"
            f" {record.alertname or record.rule} on {record.target or 'its target'}."
            f" Every alert of the storm is in the decisions API (reason=storm)."
        )
    what = record.alertname or record.rule or "alert"
    if len(group) > 1:
        where = _where(group)
        return (
            f"[{record.severity}] {what}: {len(group)} alerts ({where}): {why or record.sentence}"
        )
    where = f" on {record.target}" if record.target else ""
    return f"[{record.severity}] {what}{where}: {why or record.sentence}"


def _where(group: Sequence[AuditRecord]) -> str:
    """The first few targets (or instances) of a group, and how many more."""
    names = [r.target or _label(r, "instance") or r.fingerprint for r in group]
    shown = ", ".join(names[:3])
    return f"on {shown} and {len(names) - 3} more" if len(names) > 3 else f"on {shown}"


def _label(record: AuditRecord, name: str) -> str:
    labels = (record.details.get("alert") or {}).get("labels") or {}
    value = labels.get(name) if isinstance(labels, dict) else None
    return value if isinstance(value, str) else ""


def plan(records: Sequence[AuditRecord], rules: ActiveRules) -> Planned:
    """The notifications ``records`` call for, the episodes they resolve and the news of
    incidents paged before. Each record's escalation policy is the one of the rule set it
    was decided under (its hash). The escalations of one notification (journal entry) by
    one rule for one reason page once, as a group."""
    planned = Planned()
    if not rules.current.sinks:
        return planned
    escalations: list[tuple[AuditRecord, str]] = []
    previous: AuditRecord | None = None
    for record in records:
        if record.episode_id is None and record.reason != StopReason.UNPROCESSABLE:
            continue
        if record.step == Step.RESOLVED and record.episode_id is not None:
            planned.resolved.append(record.episode_id)
        if record.step in NEWS and record.episode_id is not None:
            planned.updates.append(_news(record))
        if record.step == Step.ESCALATED:
            # The record before says why: the refusal, the failed action, the verification.
            same = previous is not None and previous.episode_id == record.episode_id
            escalations.append((record, previous.sentence if same and previous else ""))
        previous = record
    for group in _groups(escalations):
        planned.outbox.extend(_tiers(group, rules))
    return planned


def _news(record: AuditRecord) -> IncidentUpdate:
    assert record.episode_id is not None
    return IncidentUpdate(record.episode_id, f"{record.step}@{record.at.isoformat()}",
                          record.sentence)  # fmt: skip


def _groups(
    escalations: Sequence[tuple[AuditRecord, str]],
) -> list[list[tuple[AuditRecord, str]]]:
    """Escalations by (journal entry, rule, reason, policy), in order; those with an
    incident of their own (a storm, an ineffective fix, no episode) or from no journal
    entry stand alone."""
    groups: dict[tuple[object, ...], list[tuple[AuditRecord, str]]] = {}
    for index, (record, why) in enumerate(escalations):
        # No journal entry (a claim settled at start-up): no notification to group by.
        alone = (
            record.episode_id is None
            or record.journal_id is None
            or dedup_key(record) != dedup_keys.episode(record.fingerprint, record.episode_id)
        )
        key = (
            ("alone", index)
            if alone
            else (
                record.journal_id,
                record.rule,
                str(record.reason or ""),
                record.details.get("policy"),
            )
        )
        groups.setdefault(key, []).append((record, why))
    return list(groups.values())


def _tiers(group: Sequence[tuple[AuditRecord, str]], rules: ActiveRules) -> list[OutboxItem]:
    record, why = group[0]
    name = str(record.details.get("policy", ""))
    policy = rules.escalation(name, record.ruleset_hash)
    if policy is None:
        log.error("escalation policy %r is not defined; nothing queued", name)
        return []
    members = [r for r, _ in group]
    key = (
        dedup_key(record)
        if len(group) == 1
        else dedup_keys.group(record.journal_id, record.rule, str(record.reason or ""))
    )
    details = _details(record, members)
    summary = _summary(record, why, members)
    return [
        OutboxItem(
            episode_id=member.episode_id or NO_EPISODE,
            dedup_key=key,
            sink=sink,
            event=Event.TRIGGER.value,
            tier=index,
            severity=str(record.severity or ""),
            policy=name,
            summary=summary,
            details={**details, "responders": [r.api() for r in tier.responders]},
            due_at=record.at + timedelta(seconds=tier.after_s),
        )
        for member in members
        for index, tier in enumerate(policy.tiers)
        for sink in tier.notify
    ]


def _details(record: AuditRecord, members: Sequence[AuditRecord]) -> dict[str, Any]:
    details: dict[str, Any] = {
        "rule": record.rule,
        "reason": str(record.reason or ""),
        "target": record.target,
        "action": record.action,
        "episode": record.episode_id,
        "fingerprint": record.fingerprint,
        "alertname": record.alertname,
        "alert": record.details.get("alert") or {},
    }
    if isinstance(approval := record.details.get("approval"), dict):
        details["approval"] = approval
    if isinstance(evidence := record.details.get("evidence"), dict):
        details["evidence"] = {phase: note.get("key") for phase, note in evidence.items()
                               if isinstance(note, dict) and note.get("key")}  # fmt: skip
    if len(members) > 1:
        details["count"] = len(members)
        details["alerts"] = [
            {**(m.details.get("alert") or {}), "target": m.target, "episode": m.episode_id}
            for m in members[:GROUP_LISTED]
        ]
    return details
