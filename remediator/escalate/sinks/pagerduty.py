"""PagerDuty Events API v2: ``trigger`` with a stable ``dedup_key`` per episode (a second
trigger updates the same incident), ``resolve`` when the episode resolves; SEV-1/2/3 map to
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
from remediator.escalate.sinks.base import SEVERITY_WORDS, Event, Notification, json_body

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SUMMARY_CHARS = 1024
DEDUP_KEY_CHARS = 255
EVENT_BYTES = 512 * 1024


@dataclass
class PagerDutySink:
    name: str
    routing_key: str
    url: str = EVENTS_URL
    kind: str = "pagerduty"
    min_interval_s: float = 0.5

    def body(self, note: Notification) -> dict[str, Any]:
        event: dict[str, Any] = {
            "routing_key": self.routing_key,
            "event_action": note.event.value,
            "dedup_key": truncate.bounded_key(escape.text(note.dedup_key), DEDUP_KEY_CHARS),
        }
        if note.event is Event.TRIGGER:
            event["payload"] = {
                "summary": truncate.fit(escape.plain(note.summary), SUMMARY_CHARS),
                "source": "remediator",
                "severity": SEVERITY_WORDS.get(note.severity, "error"),
                "custom_details": escape.plain_tree(note.details),
            }
            _fit_event(event)
        return event

    async def send(self, http: HttpClient, note: Notification) -> None:
        headers = {"Content-Type": "application/json"}
        await http.post("PagerDuty", self.url, data=json_body(self.body(note)), headers=headers)


def _fit_event(event: dict[str, Any]) -> None:
    """Bound the event to ``EVENT_BYTES``: details first; none at all when even that fails."""
    payload = event["payload"]

    def size(_: dict[str, Any]) -> int:
        return len(json_body(event))

    if not truncate.fit_tree(payload["custom_details"], size, EVENT_BYTES):
        payload["custom_details"] = {"truncated": truncate.MARKER}
