"""Opsgenie Alert API: create with ``alias`` = the episode's dedup key (Opsgenie
de-duplicates on it), close by alias when the episode resolves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from remediator.clients.http import HttpClient
from remediator.escalate.sinks.base import Event, Notification

API_URL = "https://api.opsgenie.com"
PRIORITIES = {"SEV-1": "P1", "SEV-2": "P2", "SEV-3": "P3"}


@dataclass
class OpsgenieSink:
    name: str
    api_key: str
    url: str = API_URL
    kind: str = "opsgenie"
    min_interval_s: float = 0.1

    def body(self, note: Notification) -> dict[str, Any]:
        return {
            "message": note.summary[:130],
            "alias": note.dedup_key,
            "description": note.summary,
            "priority": PRIORITIES.get(note.severity, "P3"),
            "details": {k: str(v) for k, v in note.details.items()},
            "source": "remediator",
        }

    async def send(self, http: HttpClient, note: Notification) -> None:
        headers = {"Authorization": f"GenieKey {self.api_key}"}
        if note.event is Event.RESOLVE:
            url = f"{self.url}/v2/alerts/{quote(note.dedup_key, safe='')}/close"
            params = {"identifierType": "alias"}
            await http.post("Opsgenie", url, params=params, json={}, headers=headers)
        else:
            url = f"{self.url}/v2/alerts"
            await http.post("Opsgenie", url, json=self.body(note), headers=headers)
