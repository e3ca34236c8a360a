"""Rows as both state backends store them: epoch-second timestamps, JSON details, and the
mapping between rows and our values. The SQL of each backend lives with the backend."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from remediator.core.model import AuditRecord, Outcome
from remediator.guards.claim import ClaimRequest, Limit
from remediator.store.contract import AuditQuery, OutboxItem, UnfinishedClaim

AUDIT_COLUMNS = (
    "at, step, outcome, sentence, journal_id, episode_id, fingerprint, alertname, rule,"
    " ruleset_hash, severity, reason, target, action, details"
)


def ts(value: datetime) -> float:
    return value.timestamp()


def dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def audit_row(r: AuditRecord) -> tuple[Any, ...]:
    return (
        ts(r.at),
        r.step,
        r.outcome.value,
        r.sentence,
        r.journal_id,
        r.episode_id,
        r.fingerprint,
        r.alertname,
        r.rule,
        r.ruleset_hash,
        r.severity,
        r.reason,
        r.target,
        r.action,
        json.dumps(dict(r.details), sort_keys=True, default=str),
    )


OUTBOX_COLUMNS = (
    "episode_id, dedup_key, sink, event, tier, severity, policy, summary, details, due_at,"
    " created_at"
)
OUTBOX_WIDTH = 11


def outbox_row(item: OutboxItem, now: float) -> tuple[Any, ...]:
    return (
        item.episode_id,
        item.dedup_key,
        item.sink,
        item.event,
        item.tier,
        item.severity,
        item.policy,
        item.summary,
        json.dumps(dict(item.details), sort_keys=True, default=str),
        ts(item.due_at),
        now,
    )


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
    )


def audit_record(row: tuple[Any, ...]) -> AuditRecord:
    (record_id, at, step, outcome, sentence, journal_id, episode_id, fingerprint) = row[:8]
    (alertname, rule, ruleset_hash, severity, reason, target, action, details) = row[8:]
    return AuditRecord(
        id=record_id,
        at=dt(at),
        step=step,
        outcome=Outcome(outcome),
        sentence=sentence,
        journal_id=journal_id,
        episode_id=episode_id,
        fingerprint=fingerprint,
        alertname=alertname,
        rule=rule,
        ruleset_hash=ruleset_hash,
        severity=severity,
        reason=reason,
        target=target,
        action=action,
        details=json.loads(details),
    )


def query_sql(q: AuditQuery) -> tuple[str, list[Any]]:
    """The audit query with ``?`` placeholders, and its arguments."""
    clauses: list[str] = ["id > ?"]
    args: list[Any] = [q.after_id]
    equals = {
        "episode_id": q.episode_id,
        "fingerprint": q.fingerprint,
        "rule": q.rule,
        "severity": q.severity,
        "outcome": q.outcome,
    }
    for column, value in equals.items():
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    if q.since is not None:
        clauses.append("at >= ?")
        args.append(ts(q.since))
    if q.until is not None:
        clauses.append("at < ?")
        args.append(ts(q.until))
    sql = f"SELECT id, {AUDIT_COLUMNS} FROM audit WHERE {' AND '.join(clauses)} ORDER BY id LIMIT ?"
    return sql, [*args, q.limit]


def claim_windows(r: ClaimRequest) -> list[tuple[str, str, tuple[Any, ...], Limit | None]]:
    """The claim windows every backend counts for ``r``: (``ClaimFacts`` field, a ``WHERE``
    condition on ``claims`` with ``?`` placeholders, its arguments, the limit)."""
    mode = int(r.dry_run)
    return [
        ("rule_claims", "dry_run = ? AND rule = ?", (mode, r.rule), r.rule_limit),
        ("kind_claims", "dry_run = ? AND action_kind = ?", (mode, r.action_kind), r.kind_limit),
        ("destructive_claims", "dry_run = ? AND destructive = 1", (mode,), r.global_budget),
        ("target_claims", "dry_run = ? AND target = ?", (mode, r.target), r.target_limit),
        (
            "same_fix_claims",
            "dry_run = ? AND target = ? AND action_kind = ?",
            (mode, r.target, r.action_kind),
            r.repeat_limit,
        ),
    ]


def unfinished_claim(row: Sequence[Any]) -> UnfinishedClaim:
    """(id, episode, fingerprint, alertname, rule, action, target, claimed_at, intent)."""
    intent = json.loads(row[8]) if row[8] is not None else None
    return UnfinishedClaim(
        int(row[0]), int(row[1]), row[2], row[3], row[4], row[5], row[6], dt(row[7]), intent
    )
