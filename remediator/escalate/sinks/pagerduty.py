"""PagerDuty Events API v2: ``trigger`` with a stable ``dedup_key`` per incident, ``resolve``
when it resolves; an update is a ``trigger`` on the same key, which PagerDuty adds to the
open incident's alert log (never sent once a resolve reached it: on a resolved incident's
key, a trigger would open a new one), and an acknowledgement made on another sink is
PagerDuty's ``acknowledge``, which stops its own escalation policy too; SEV-1/2/3 map to
critical/error/warning. PagerDuty allows 120 events per minute per routing key; its 429
is honoured through the outbox's retry.

PagerDuty shows text as plain text: values are cleaned of control characters
(``escape.plain``; the summary is one line, details keep their newlines) and bounded by the
documented limits: summary 1024 characters, ``dedup_key`` 255, the whole event 512 KB
(the longest details are cut first, each with the marker)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from remediator.clients.http import HttpClient
from remediator.escalate.sinks import escape, truncate
from remediator.escalate.sinks.base import (
    SEVERITY_WORDS,
    Event,
    Notification,
    alert_of,
    json_body,
    page_links,
)

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SUMMARY_CHARS = 1024
DEDUP_KEY_CHARS = 255
FIELD_CHARS = 255
"""``source``, ``component``, ``group`` and ``class``: kept to a line's worth (PagerDuty
shows them as short fields)."""
EVENT_BYTES = 512 * 1024


@dataclass
class PagerDutySink:
    name: str
    routing_key: str
    url: str = EVENTS_URL
    kind: str = "pagerduty"
    min_interval_s: float = 0.5

    def body(self, note: Notification) -> dict[str, Any]:
        resolve = note.event is Event.RESOLVE
        # A human has it elsewhere: PagerDuty's own acknowledge stops its escalation too.
        acknowledge = note.event is Event.UPDATE and note.acknowledged
        action = "resolve" if resolve else "acknowledge" if acknowledge else "trigger"
        event: dict[str, Any] = {
            "routing_key": self.routing_key,
            "event_action": action,
            "dedup_key": truncate.bounded_key(escape.text(note.dedup_key), DEDUP_KEY_CHARS),
        }
        if action == "trigger":
            details = dict(note.details)
            if note.event is Event.UPDATE:  # the same key: added to the incident's alert log
                details = {"update": note.update, **details}
            event["payload"] = {
                "summary": truncate.fit(escape.plain(_summary(note)), SUMMARY_CHARS),
                "source": truncate.fit(escape.plain(_source(note)), FIELD_CHARS),
                "severity": SEVERITY_WORDS.get(note.severity, "error"),
                **_where(note),
                "custom_details": escape.plain_tree(details),
            }
            event.update(_links(note))
            _fit_event(event)
        return event

    async def send(self, http: HttpClient, note: Notification) -> None:
        """PagerDuty names the incident by its dedup key: nothing to keep."""
        headers = {"Content-Type": "application/json"}
        await http.post("PagerDuty", self.url, data=json_body(self.body(note)), headers=headers)


LINK_TEXTS = {
    "runbook": "Runbook",
    "source": "Alert source",
    "silence": "Silence in Alertmanager",
    "decisions": "remediator: what was decided",
    "evidence": "remediator: evidence",
    "approval": "remediator: approve or deny",
}


def _summary(note: Notification) -> str:
    """The page's summary; an update's says what happened, after the incident's."""
    if note.event is Event.UPDATE and note.update:
        return f"Update: {note.update} | {note.summary}"
    return note.summary


def _source(note: Notification) -> str:
    """PagerDuty's "unique location of the affected system": the target remediator would
    act on, else the alert's instance, else its alertname; "remediator" when none is known."""
    labels, _, _ = alert_of(note)
    for candidate in (note.details.get("target"), labels.get("instance"),
                      labels.get("alertname"), note.details.get("alertname")):  # fmt: skip
        if isinstance(candidate, str) and candidate:
            return candidate
    return "remediator"


def _where(note: Notification) -> dict[str, str]:
    """``component`` (the workload or the job), ``group`` (the namespace or the cluster) and
    ``class`` (the alertname), from the alert's labels; each only when known."""
    labels, _, _ = alert_of(note)
    picks = {
        "component": ("deployment", "pod", "service", "job"),
        "group": ("namespace", "cluster"),
        "class": ("alertname",),
    }
    found = {}
    for field, names in picks.items():
        value = next((labels[n] for n in names if isinstance(labels.get(n), str) and labels[n]), "")
        if value:
            found[field] = truncate.fit(escape.plain(value), FIELD_CHARS)
    return found


def _links(note: Notification) -> dict[str, Any]:
    """Top-level ``links`` (runbook, the alert's source, its silence, the episode) and
    ``client``/``client_url`` (remediator's view of the episode, when it has a URL)."""
    urls = page_links(note)
    links = [{"href": escape.text(url), "text": LINK_TEXTS[what]} for what, url in urls]
    found: dict[str, Any] = {"links": links} if links else {}
    decisions = dict(urls).get("decisions")
    if decisions:
        found.update(client="remediator", client_url=escape.text(decisions))
    return found


def _fit_event(event: dict[str, Any]) -> None:
    """Bound the event to ``EVENT_BYTES``: details first; none at all when even that fails."""
    payload = event["payload"]

    def size(_: dict[str, Any]) -> int:
        return len(json_body(event))

    if not truncate.fit_tree(payload["custom_details"], size, EVENT_BYTES):
        payload["custom_details"] = {"truncated": truncate.MARKER}
