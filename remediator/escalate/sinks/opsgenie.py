"""Opsgenie Alert API: create with ``alias`` = the episode's dedup key (Opsgenie
de-duplicates on it), close by alias when the episode resolves.

Opsgenie shows plain text: values are cleaned of control characters (``escape.plain``; the
message is one line, the description and details keep their newlines) and bounded by the
documented limits, each cut with the marker: message 130 characters, description 15 000,
details 8 000 in all (keys and values; the longest values are cut first). An alias past 512
characters becomes a head of it and its SHA-256, the same for the create and the close."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from remediator.clients.http import HttpClient
from remediator.escalate.sinks import escape, truncate
from remediator.escalate.sinks.base import Event, Notification, json_body

API_URL = "https://api.opsgenie.com"
PRIORITIES = {"SEV-1": "P1", "SEV-2": "P2", "SEV-3": "P3"}
MESSAGE_CHARS = 130
DESCRIPTION_CHARS = 15_000
ALIAS_CHARS = 512
DETAILS_CHARS = 8_000


def details_size(details: dict[str, Any]) -> int:
    """What Opsgenie counts against its details limit: every key and value."""
    return sum(truncate.units(key) + truncate.units(value) for key, value in details.items())


@dataclass
class OpsgenieSink:
    name: str
    api_key: str
    url: str = API_URL
    kind: str = "opsgenie"
    min_interval_s: float = 0.1

    def alias(self, note: Notification) -> str:
        return truncate.bounded_key(escape.text(note.dedup_key), ALIAS_CHARS)

    def body(self, note: Notification) -> dict[str, Any]:
        details = {escape.plain(k): escape.plain(v, lines=True) for k, v in note.details.items()}
        if not truncate.fit_tree(details, details_size, DETAILS_CHARS):
            details = {"truncated": truncate.MARKER}
        return {
            "message": truncate.fit(escape.plain(note.summary), MESSAGE_CHARS),
            "alias": self.alias(note),
            "description": truncate.fit(escape.plain(note.summary, lines=True), DESCRIPTION_CHARS),
            "priority": PRIORITIES.get(note.severity, "P3"),
            "details": details,
            "source": "remediator",
        }

    async def send(self, http: HttpClient, note: Notification) -> None:
        headers = {"Authorization": f"GenieKey {self.api_key}", "Content-Type": "application/json"}
        if note.event is Event.RESOLVE:
            url = f"{self.url}/v2/alerts/{quote(self.alias(note), safe='')}/close"
            params = {"identifierType": "alias"}
            await http.post("Opsgenie", url, params=params, data=json_body({}), headers=headers)
        else:
            url = f"{self.url}/v2/alerts"
            await http.post("Opsgenie", url, data=json_body(self.body(note)), headers=headers)
