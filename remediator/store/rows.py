"""Rows as both state backends store them: epoch-second timestamps, JSON details, and the
mapping between rows (named parameters going in, tuples coming out) and our values."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from remediator.core.model import AuditRecord, Outcome, Severity, Step, StopReason
from remediator.guards.claim import ClaimRequest, Limit
from remediator.store.contract import (
    AuditQuery,
    OutboxItem,
    PendingApproval,
    RecentClaim,
    UnfinishedClaim,
    Vote,
)
from remediator.store.sql import AUDIT_EQUALS


def ts(value: datetime) -> float:
    return value.timestamp()


def dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def audit_row(r: AuditRecord) -> dict[str, Any]:
    return {
        "at": ts(r.at),
        "step": str(r.step),
        "outcome": r.outcome.value,
        "sentence": r.sentence,
        "journal_id": r.journal_id,
        "episode_id": r.episode_id,
        "fingerprint": r.fingerprint,
        "alertname": r.alertname,
        "rule": r.rule,
        "ruleset_hash": r.ruleset_hash,
        "severity": str(r.severity or ""),
        "reason": str(r.reason or ""),
        "target": r.target,
        "action": r.action,
        "details": json.dumps(dict(r.details), sort_keys=True, default=str),
    }


def outbox_row(item: OutboxItem, now: float) -> dict[str, Any]:
    return {
        "episode_id": item.episode_id,
        "dedup_key": item.dedup_key,
        "sink": item.sink,
        "event": item.event,
        "tier": item.tier,
        "severity": item.severity,
        "policy": item.policy,
        "summary": item.summary,
        "details": json.dumps(dict(item.details), sort_keys=True, default=str),
        "due_at": ts(item.due_at),
        "created_at": now,
        "topic": item.topic,
        "note": item.note,
    }


def outbox_item(row: tuple[Any, ...]) -> OutboxItem:
    item_id, attempts, created_at = row[:3]
    (episode_id, dedup_key, sink, event, tier, severity, policy, summary, details) = row[3:12]
    return OutboxItem(
        episode_id=episode_id,
        dedup_key=dedup_key,
        sink=sink,
        event=event,
        tier=tier,
        severity=severity,
        policy=policy,
        summary=summary,
        details=json.loads(details),
        due_at=dt(row[12]),
        id=item_id,
        attempts=attempts,
        created_at=dt(created_at),
        topic=row[14],
        note=row[15],
    )


def audit_record(row: tuple[Any, ...]) -> AuditRecord:
    (record_id, at, step, outcome, sentence, journal_id, episode_id, fingerprint) = row[:8]
    (alertname, rule, ruleset_hash, severity, reason, target, action, details) = row[8:]
    return AuditRecord(
        id=record_id,
        at=dt(at),
        step=Step(step),
        outcome=Outcome(outcome),
        sentence=sentence,
        journal_id=journal_id,
        episode_id=episode_id,
        fingerprint=fingerprint,
        alertname=alertname,
        rule=rule,
        ruleset_hash=ruleset_hash,
        severity=Severity(severity) if severity else None,
        reason=StopReason(reason) if reason else None,
        target=target,
        action=action,
        details=json.loads(details),
    )


def audit_conditions(q: AuditQuery) -> tuple[list[str], dict[str, Any]]:
    """The conditions (named parameters) of an audit query beyond ``id > :after_id``, and
    every parameter of it."""
    params: dict[str, Any] = {"after_id": q.after_id, "limit": q.limit}
    conditions = []
    for column in AUDIT_EQUALS:
        value = getattr(q, column)
        if value is not None:
            conditions.append(f"{column} = :{column}")
            params[column] = value
    if q.since is not None:
        conditions.append("at >= :since")
        params["since"] = ts(q.since)
    if q.until is not None:
        conditions.append("at < :until")
        params["until"] = ts(q.until)
    if q.before_id is not None:
        conditions.append("id < :before_id")
        params["before_id"] = q.before_id
    return conditions, params


def claim_windows(r: ClaimRequest) -> list[tuple[str, str, dict[str, Any], Limit | None]]:
    """The claim windows every backend counts for ``r``: (``ClaimFacts`` field, a ``WHERE``
    condition on ``claims`` with named parameters, its parameters, the limit)."""
    mode = int(r.dry_run)
    kind, target = r.action_kind, r.target
    return [
        ("rule_claims", "dry_run = :mode AND rule = :rule", {"mode": mode, "rule": r.rule},
         r.rule_limit),
        ("kind_claims", "dry_run = :mode AND action_kind = :kind", {"mode": mode, "kind": kind},
         r.kind_limit),
        ("destructive_claims", "dry_run = :mode AND destructive = 1", {"mode": mode},
         r.global_budget),
        ("target_claims", "dry_run = :mode AND target = :target",
         {"mode": mode, "target": target}, r.target_limit),
        ("same_fix_claims", "dry_run = :mode AND target = :target AND action_kind = :kind",
         {"mode": mode, "target": target, "kind": kind}, r.repeat_limit),
    ]  # fmt: skip


def unfinished_claim(row: Sequence[Any]) -> UnfinishedClaim:
    """(id, episode, fingerprint, alertname, rule, action, target, claimed_at, intent, job,
    and its approval's state, on_timeout, decided_at, decided_by: ``sql.CLAIM_SELECT``)."""
    intent = json.loads(row[8]) if row[8] is not None else None
    job = json.loads(row[9]) if row[9] is not None else None
    return UnfinishedClaim(
        int(row[0]),
        int(row[1]),
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        dt(row[7]),
        intent,
        job,
        approval=row[10],
        approval_on_timeout=row[11] or "",
        approval_at=None if row[12] is None else dt(row[12]),
        approval_by=row[13] or "",
    )


def vote(row: Sequence[Any]) -> Vote:
    """(claim_id, by_whom, vote, source, at, reason)."""
    return Vote(int(row[0]), row[1], row[2], row[3], dt(row[4]), row[5])


def pending_approval(row: Sequence[Any], votes: Sequence[Vote]) -> PendingApproval:
    """A row of ``sql.APPROVAL_SELECT`` and its votes."""
    return PendingApproval(
        claim_id=int(row[0]), episode_id=int(row[1]), fingerprint=row[2], alertname=row[3],
        rule=row[4], action=row[5], target=row[6], requested_at=dt(row[7]), due_at=dt(row[8]),
        needed=int(row[9]), approvers=tuple(json.loads(row[10])), initiator=row[11],
        on_timeout=row[12], state=row[13], decided_at=None if row[14] is None else dt(row[14]),
        decided_by=row[15], episode_open=bool(row[16]), votes=tuple(votes),
    )  # fmt: skip


def recent_claim(row: Sequence[Any]) -> RecentClaim:
    """(episode_id, rule, action_kind, target, destructive, claimed_at, outcome:
    ``sql.RECENT_CLAIMS``)."""
    return RecentClaim(int(row[0]), row[1], row[2], row[3], bool(row[4]), dt(float(row[5])), row[6])
