"""Opsgenie Alert API (https://docs.opsgenie.com/docs/alert-api): one alert per incident,
``alias`` = its dedup key; each later tier adds its own responders to the open alert
(``POST /v2/alerts/{alias}/responders?identifierType=alias``), updates are notes, the
resolve closes it. The bodies, their escaping and their limits are ``alert_api``'s.

Opsgenie ends support in April 2027; ``jsm`` is its successor's API."""

from __future__ import annotations

from dataclasses import dataclass, field

from remediator.clients.http import HttpClient
from remediator.escalate.sinks import alert_api
from remediator.escalate.sinks.base import Notification, json_body

API_URL = "https://api.opsgenie.com"
ALERTS_PATH = "/v2/alerts"


@dataclass
class OpsgenieSink:
    name: str
    api_key: str = field(repr=False)  # a secret: never in a log line
    url: str = API_URL
    kind: str = "opsgenie"
    min_interval_s: float = 0.1

    def body(self, note: Notification) -> dict[str, object]:
        """The create body this notification's first request would carry."""
        return alert_api.create_body(note)

    async def send(self, http: HttpClient, note: Notification) -> None:
        await post_calls(http, "Opsgenie", f"{self.url}{ALERTS_PATH}", self.api_key,
                         alert_api.calls(note, adds_responders=True))  # fmt: skip


async def post_calls(
    http: HttpClient, what: str, alerts_url: str, api_key: str, calls: list[alert_api.Call]
) -> None:
    """Post each request in order; the first failure raises (the outbox retries the whole
    notification: a second create is counted, a second add of a responder changes nothing)."""
    headers = {"Authorization": f"GenieKey {api_key}", "Content-Type": "application/json"}
    for call in calls:
        params = {"identifierType": "alias"} if call.by_alias else None
        url = f"{alerts_url}{call.path}"
        await http.post(what, url, params=params, data=json_body(call.body), headers=headers)
