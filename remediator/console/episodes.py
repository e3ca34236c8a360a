"""The console's "Now": the episodes of the newest decisions, the newest episode first,
each with the state its latest record says (acting, verifying, escalated, waiting for
approval, refused and why, ...), and the filters an engineer narrows them with.

Where it sits: ``runtime.console`` reads the newest page of the audit from the store and
hands it here; nothing here reads or writes anything else. An episode whose decisions are
older than the page is not shown: the page is the horizon, and says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from remediator.core.model import AuditRecord, Outcome, Step, StopReason, Target

HORIZON = 2000
"""Decisions read for "Now": the newest this many (their episodes are shown)."""

#: The state an episode is in after its latest record, by (step, outcome); a step alone
#: where every outcome reads the same.
STATES: Mapping[tuple[Step, Outcome | None], str] = {
    (Step.RECEIVED, None): "deciding",
    (Step.CLASSIFIED, None): "deciding",
    (Step.CLAIMED, None): "acting",
    (Step.ACTED, Outcome.SUCCEEDED): "verifying",
    (Step.ACTED, Outcome.DRY_RUN): "dry-run",
    (Step.ACTED, None): "escalated",
    (Step.DRY_RUN, None): "dry-run",
    (Step.VERIFIED, Outcome.SUCCEEDED): "fixed",
    (Step.VERIFIED, None): "escalated",
    (Step.RECONCILED, Outcome.SUCCEEDED): "verifying",
    (Step.RECONCILED, None): "escalated",
    (Step.ESCALATED, None): "escalated",
    (Step.NOTIFIED, Outcome.NOTIFIED): "notified",
    (Step.NOTIFIED, None): "escalated",
    (Step.ACKNOWLEDGED, None): "acknowledged",
    (Step.APPROVAL, Outcome.PENDING_APPROVAL): "waiting for approval",
    (Step.APPROVAL, Outcome.APPROVED): "acting",
    (Step.APPROVAL, Outcome.DENIED): "escalated",
    (Step.RESOLVED, None): "resolved",
    (Step.UNDONE, None): "resolved",
    (Step.REOPENED, None): "deciding",
    (Step.SHADOW, None): "shadow",
}
STATE_NAMES = tuple(sorted({*STATES.values(), "refused"}))
QUIET = StopReason.ESCALATE_ONLY.value
"""The reason of a rule with no action: it escalates, and "escalated" says it all."""
#: States of the records an escalation follows without saying more.
PAGED_AFTER = frozenset({"escalated", "deciding"})
#: States in which the episode has nothing more coming: hidden unless asked for.
CLOSED = frozenset({"resolved"})


@dataclass(frozen=True, slots=True)
class EpisodeRow:
    episode_id: int
    alertname: str
    severity: str
    rule: str
    target: str
    namespace: str
    state: str
    reason: str
    """Why it stopped short of a fix, when it did (the stop's reason), else ''."""
    sentence: str
    """The latest record's sentence: what happened last."""
    first_at: datetime
    last_at: datetime
    generator_url: str = ""
    silence_url: str = ""


@dataclass(frozen=True, slots=True)
class Filters:
    """What "Now" is narrowed to; '' is any. ``show``: ``open`` (the default) or ``all``."""

    severity: str = ""
    namespace: str = ""
    rule: str = ""
    state: str = ""
    show: str = "open"

    def keeps(self, row: EpisodeRow) -> bool:
        return (
            (not self.severity or row.severity == self.severity)
            and (not self.namespace or row.namespace == self.namespace)
            and (not self.rule or row.rule == self.rule)
            and (not self.state or row.state == self.state)
            and (self.show == "all" or row.state not in CLOSED)
        )


def state_of(record: AuditRecord) -> str:
    if record.step is Step.REFUSED:
        if record.outcome is Outcome.RESOLVED:
            return "resolved"
        # A rule with no action stops here too: it escalates, nothing was refused.
        return "escalated" if record.reason is StopReason.ESCALATE_ONLY else "refused"
    return STATES.get((record.step, record.outcome)) or STATES.get((record.step, None), "")


def episodes(newest_first: Iterable[AuditRecord]) -> list[EpisodeRow]:
    """One row per episode of ``newest_first`` (the audit's newest page), newest first."""
    by_episode: dict[int, list[AuditRecord]] = {}
    for record in newest_first:
        if record.episode_id is not None:
            by_episode.setdefault(record.episode_id, []).append(record)
    newest = sorted(by_episode.items(), key=lambda item: item[0], reverse=True)
    return [_row(episode_id, records) for episode_id, records in newest]


def _row(episode_id: int, newest_first: Sequence[AuditRecord]) -> EpisodeRow:
    latest = newest_first[0]
    decisions = [r for r in newest_first if r.step is not Step.NOTIFIED] or [latest]
    deciding = decisions[0]
    if deciding.step is Step.ESCALATED:
        # A refusal and an approval asked both page a human: the record before says why.
        before = next((r for r in decisions[1:] if state_of(r) not in PAGED_AFTER), None)
        if before is not None and state_of(before) in ("refused", "waiting for approval"):
            deciding = before
    severity = next((r.severity.value for r in newest_first if r.severity), "")
    rule = next((r.rule for r in newest_first if r.rule), "")
    target = next((r.target for r in newest_first if r.target), "")
    labels: Mapping[str, Any] = next(
        (r.details["labels"] for r in newest_first if isinstance(r.details.get("labels"), dict)),
        {},
    )
    # An escalation's record holds what its page shows of the alert (``records.alert_content``).
    page: Mapping[str, Any] = next(
        (r.details["alert"] for r in newest_first if isinstance(r.details.get("alert"), dict)),
        {},
    )
    reason = next((r.reason.value for r in newest_first if r.reason), "")
    state = state_of(deciding)
    return EpisodeRow(
        episode_id=episode_id,
        alertname=next((r.alertname for r in newest_first if r.alertname), ""),
        severity=severity,
        rule=rule,
        target=target,
        namespace=_namespace(target, labels),
        state=state,
        reason=reason if state in ("refused", "escalated") and reason != QUIET else "",
        sentence=deciding.sentence,
        first_at=newest_first[-1].at,
        last_at=latest.at,
        generator_url=_http(page.get("generator_url")),
        silence_url=_http(page.get("silence_url")),
    )


def _namespace(target: str, labels: Mapping[str, Any]) -> str:
    """The target's namespace (its key, ``ns/Kind/name``), else the alert's ``namespace``
    label (a database target has none)."""
    if target.count("/") >= 2 and (namespace := Target.from_key(target).namespace):
        return namespace
    value = labels.get("namespace", "")
    return value if isinstance(value, str) else ""


def _http(url: object) -> str:
    """A link the page may show: http or https only (a ``javascript:`` URL in an alert's
    ``generatorURL`` is text, never a link)."""
    if isinstance(url, str) and url.lower().startswith(("http://", "https://")):
        return url
    return ""
