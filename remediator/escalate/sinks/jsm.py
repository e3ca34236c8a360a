"""Jira Service Management operations, the Opsgenie successor: an API integration's alert
API (``POST {url}/jsm/ops/integration/v2/alerts``, ``Authorization: GenieKey <key>``), whose
bodies and limits are Opsgenie's (``alert_api``): create by ``alias``, notes on
``…/{alias}/notes``, close on ``…/{alias}/close``, each with ``identifierType=alias``.

That API offers create, acknowledge, close and add note only (JSM operations API, Postman
collection, "Integration events": https://developer.atlassian.com/cloud/jira/service-desk-ops/
jira-service-desk-ops.1.postman.json). Adding a responder needs the REST API, an Atlassian
API token and the alert's id: so a later tier's create carries its responders (they are
paged when that create opens the alert) and a note names them on an open one, and JSM's
own escalation policy of the integration's team is what reaches someone new there."""

from __future__ import annotations

from dataclasses import dataclass, field

from remediator.clients.http import HttpClient
from remediator.escalate.sinks import alert_api
from remediator.escalate.sinks.base import Notification
from remediator.escalate.sinks.opsgenie import post_calls

API_URL = "https://api.atlassian.com"
ALERTS_PATH = "/jsm/ops/integration/v2/alerts"


@dataclass
class JsmSink:
    name: str
    api_key: str = field(repr=False)  # a secret: never in a log line
    url: str = API_URL
    kind: str = "jsm"
    min_interval_s: float = 0.1

    def body(self, note: Notification) -> dict[str, object]:
        return alert_api.create_body(note)

    async def send(self, http: HttpClient, note: Notification) -> None:
        calls = alert_api.calls(note, adds_responders=False)
        await post_calls(http, "Jira Service Management", f"{self.url}{ALERTS_PATH}",
                         self.api_key, calls)  # fmt: skip
