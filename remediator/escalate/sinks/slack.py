"""Slack incoming webhook: one message when the incident opens, follow-ups as it grows and
when it resolves. Slack allows about one message per second per webhook."""

from __future__ import annotations

from dataclasses import dataclass

from remediator.clients.http import HttpClient
from remediator.escalate.sinks.base import Event, Notification


@dataclass
class SlackSink:
    name: str
    webhook_url: str
    kind: str = "slack"
    min_interval_s: float = 1.0

    def text(self, note: Notification) -> str:
        if note.event is Event.RESOLVE:
            return f":white_check_mark: Resolved: {note.summary} ({note.dedup_key})"
        tier = f", escalation tier {note.tier + 1}" if note.tier else ""
        return f":rotating_light: {note.severity}{tier}: {note.summary} ({note.dedup_key})"

    async def send(self, http: HttpClient, note: Notification) -> None:
        await http.post("Slack", self.webhook_url, json={"text": self.text(note)})
