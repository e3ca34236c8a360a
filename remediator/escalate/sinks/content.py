"""What a page says, before any sink's markup: the pieces Opsgenie, Jira Service Management,
Grafana IRM and Teams lay out each in their own way. Every value here is raw (an alert's own
words): the sink escapes each piece for its markup, then bounds the result (``truncate``).

The order is the one an engineer reads at 3 a.m.: the alert's ``summary`` and
``description`` annotations, then what remediator did and why (the page's summary), the
target, the labels, the links, and for a group, one line per listed alert and "and N more"
past what the page lists."""

from __future__ import annotations

from typing import Any

from remediator.escalate.sinks.base import Notification, alert_count, alert_of, alerts_of

#: How each of ``base.page_links`` reads on a page.
LINK_LABELS = {
    "runbook": "Runbook",
    "source": "Alert source",
    "silence": "Silence",
    "decisions": "What remediator decided",
    "evidence": "Evidence",
    "approval": "Approve or deny",
}

#: The labels that name where an alert fired, best first: a group's line names it by these.
_WHERE = ("instance", "pod", "deployment", "service", "job", "node", "namespace")


def headline(note: Notification) -> str:
    """The page's summary without its leading ``[SEV-n]`` (the sink names the severity)."""
    return note.summary.removeprefix(f"[{note.severity}] ") if note.severity else note.summary


def tier_words(note: Notification) -> str:
    """ "escalation tier N" as a person counts tiers (the first is 1), for a later tier."""
    return f"escalation tier {note.tier + 1}"


def alert_words(note: Notification) -> list[str]:
    """The first alert's ``summary`` and ``description`` annotations, those it has."""
    _, notes, _ = alert_of(note)
    return [notes[k] for k in ("summary", "description") if _text(notes.get(k))]


def target(note: Notification) -> str:
    """The target remediator would act on, or ``""``."""
    value = note.details.get("target")
    return value if isinstance(value, str) else ""


def alertname(note: Notification) -> str:
    """The alertname of the page (the first alert's), or ``""``."""
    labels, _, _ = alert_of(note)
    for value in (note.details.get("alertname"), labels.get("alertname")):
        if isinstance(value, str) and value:
            return value
    return ""


def labels(note: Notification) -> list[tuple[str, str]]:
    """The first alert's labels, ``alertname`` first, then by name."""
    found, _, _ = alert_of(note)
    pairs = sorted((str(k), str(v)) for k, v in found.items())
    return sorted(pairs, key=lambda pair: pair[0] != "alertname")


def label(note: Notification, name: str) -> str:
    """One label of the first alert, or ``""``."""
    found, _, _ = alert_of(note)
    value = found.get(name)
    return value if isinstance(value, str) else ""


def group(note: Notification) -> tuple[list[str], int]:
    """For an incident of several alerts: one line per listed alert (where it fired and its
    summary) and how many more there are than listed; ``([], 0)`` for a single alert."""
    listed = alerts_of(note)
    count = alert_count(note)
    if count < 2:
        return [], 0
    return [_line(alert) for alert in listed], max(0, count - len(listed))


def more(count: int) -> str:
    return f"and {count} more"


def _line(alert: dict[str, Any]) -> str:
    labels = _mapping(alert.get("labels"))
    summary = _mapping(alert.get("annotations")).get("summary")
    where = alert.get("target") if _text(alert.get("target")) else ""
    where = where or next((str(labels[n]) for n in _WHERE if labels.get(n)), "")
    return " — ".join(str(part) for part in (where or "an alert", summary) if _text(part))


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> bool:
    return isinstance(value, str) and bool(value)
