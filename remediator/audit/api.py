"""Read side of the HTTP API: ``GET /api/v1/decisions`` (filtered, paginated audit),
``GET /api/v1/rules`` (the active rule set) and the health endpoints ``/healthz`` (the
process answers) and ``/readyz`` (it can take webhooks).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from multidict import MultiMapping

from remediator.core.errors import RequestRejected
from remediator.core.model import AuditRecord, Outcome, Severity, Step, StopReason
from remediator.ruleset.active import ActiveRules
from remediator.ruleset.rules import Rule
from remediator.store.contract import AuditQuery, PendingApproval

MAX_PAGE = 1000
DEFAULT_PAGE = 100
FILTERS = (
    "episode",
    "fingerprint",
    "rule",
    "severity",
    "outcome",
    "since",
    "until",
    "limit",
    "after",
    "step",
    "alertname",
    "reason",
    "order",
    "before",
)
ORDERS = ("oldest", "newest")


def _bad(name: str, sentence: str) -> RequestRejected:
    return RequestRejected(400, "invalid_query", f"Parameter {name}: {sentence}")


MAX_ID = 2**63 - 1
"""The largest id a store's 64-bit integer columns hold: a larger one is no id."""


def _int(params: MultiMapping[str], name: str, low: int, high: int = MAX_ID) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    # ASCII digits only: str.isdigit() also takes Arabic-Indic digits and superscripts,
    # which int() reads or refuses.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(MAX_ID)):
        raise _bad(name, "must be a whole number.")
    value = int(raw)
    if not low <= value <= high:
        raise _bad(name, f"must be between {low} and {high}.")
    return value


def _time(params: MultiMapping[str], name: str) -> datetime | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise _bad(name, "must be an ISO 8601 time such as 2026-11-28T09:00:00Z.") from None
    if value.tzinfo is None:
        raise _bad(name, "must carry a time zone, e.g. Z.")
    return value


def _choice(params: MultiMapping[str], name: str, allowed: set[str]) -> str | None:
    raw = params.get(name)
    if raw is not None and raw not in allowed:
        raise _bad(name, f"must be one of {', '.join(sorted(allowed))}.")
    return raw


def parse_query(params: MultiMapping[str]) -> AuditQuery:
    unknown = sorted(set(params) - set(FILTERS))
    if unknown:
        raise RequestRejected(
            400, "invalid_query", f"Unknown parameter; known ones are {', '.join(FILTERS)}."
        )
    return AuditQuery(
        episode_id=_int(params, "episode", 1),
        fingerprint=params.get("fingerprint"),
        rule=params.get("rule"),
        severity=_choice(params, "severity", {s.value for s in Severity}),
        outcome=_choice(params, "outcome", {o.value for o in Outcome}),
        since=_time(params, "since"),
        until=_time(params, "until"),
        after_id=_int(params, "after", 0) or 0,
        limit=_int(params, "limit", 1, MAX_PAGE) or DEFAULT_PAGE,
        step=_choice(params, "step", {s.value for s in Step}),
        alertname=params.get("alertname"),
        reason=_choice(params, "reason", {r.value for r in StopReason}),
        newest_first=_choice(params, "order", set(ORDERS)) == "newest",
        before_id=_int(params, "before", 1),
    )


def record_json(record: AuditRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "at": record.at.isoformat().replace("+00:00", "Z"),
        "step": record.step.value,
        "outcome": record.outcome.value,
        "reason": record.reason.value if record.reason else None,
        "sentence": record.sentence,
        "episode": record.episode_id,
        "fingerprint": record.fingerprint,
        "alertname": record.alertname,
        "rule": record.rule or None,
        "ruleset_hash": record.ruleset_hash,
        "severity": record.severity.value if record.severity else None,
        "target": record.target or None,
        "action": record.action or None,
        "journal_id": record.journal_id,
        "details": dict(record.details),
    }


def page_json(records: list[AuditRecord], query: AuditQuery) -> Mapping[str, Any]:
    """The page and where the next one starts: ``next_after`` oldest first, ``next_before``
    newest first (None on the last page)."""
    last = records[-1].id if len(records) == query.limit and records else None
    key = "next_before" if query.newest_first else "next_after"
    return {"decisions": [record_json(r) for r in records], key: last}


def rules_json(rules: ActiveRules) -> dict[str, Any]:
    """The active set as ``GET /api/v1/rules`` shows it: what decides now, and since when."""
    ruleset = rules.current
    return {
        "hash": ruleset.hash,
        "files": list(ruleset.files),
        "loaded_at": rules.loaded_at.isoformat(),
        "rules": [_rule_json(rule) for rule in ruleset.rules],
    }


def _rule_json(rule: Rule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "file": rule.file,
        "severity": rule.severity.value,
        "matchers": [str(m) for m in rule.matchers],
        "action": rule.plan.name if rule.plan else None,
        "kind": rule.plan.kind if rule.plan else None,
        "escalation": rule.escalation,
        "shadow": rule.shadow,
        "approval": rule.approval.said() if rule.approval else None,
        "digest": rule.digest,
    }


def _zulu(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat().replace("+00:00", "Z")


def approval_json(approval: PendingApproval) -> dict[str, Any]:
    """An approval as ``GET /api/v1/approvals`` shows it: the claim it holds, who may and
    who did answer, and where it stands."""
    return {
        "id": approval.claim_id,
        "state": approval.state,
        "episode": approval.episode_id,
        "fingerprint": approval.fingerprint,
        "alertname": approval.alertname,
        "rule": approval.rule,
        "action": approval.action,
        "target": approval.target,
        "requested_at": _zulu(approval.requested_at),
        "due_at": _zulu(approval.due_at),
        "approvals_needed": approval.needed,
        "approvers": list(approval.approvers),
        "initiator": approval.initiator,
        "on_timeout": approval.on_timeout,
        "decided_at": _zulu(approval.decided_at),
        "decided_by": approval.decided_by,
        "alert_firing": approval.episode_open,
        "votes": [
            {"by": v.by, "vote": v.vote, "source": v.source, "reason": v.reason, "at": _zulu(v.at)}
            for v in approval.votes
        ],
    }
