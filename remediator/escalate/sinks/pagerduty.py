"""PagerDuty Events API v2: ``trigger`` with a stable ``dedup_key`` per episode (a second
trigger updates the same incident), ``resolve`` when the episode resolves; SEV-1/2/3 map to
critical/error/warning. PagerDuty allows 120 events per minute per routing key; its 429
is honoured through the outbox's retry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from remediator.clients.http import HttpClient
from remediator.escalate.sinks.base import SEVERITY_WORDS, Event, Notification

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SUMMARY_CHARS = 1024


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
            "dedup_key": note.dedup_key,
        }
        if note.event is Event.TRIGGER:
            event["payload"] = {
                "summary": note.summary[:SUMMARY_CHARS],
                "source": "remediator",
                "severity": SEVERITY_WORDS.get(note.severity, "error"),
                "custom_details": dict(note.details),
            }
        return event

    async def send(self, http: HttpClient, note: Notification) -> None:
        await http.post("PagerDuty", self.url, json=self.body(note))
