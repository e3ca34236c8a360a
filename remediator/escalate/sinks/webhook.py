"""A generic webhook: the notification as JSON, signed with HMAC-SHA256 when a secret is
configured (``X-Remediator-Signature: sha256=<hex>`` over the exact body bytes). Two bodies:

* ``remediator`` (the default): the notification itself (``event``, ``dedup_key``,
  ``severity``, ``summary``, ``tier``, ``policy``, ``details``);
* ``alertmanager``: Alertmanager's webhook payload, version 4 (``alertmanager_format``), so
  a receiver written for Alertmanager takes it as it is.

The receiver reads JSON as data, so nothing is escaped or cut: ``json.dumps`` escapes
quotes, backslashes and control characters, and writes ASCII only. The one change: a lone
UTF-16 surrogate (JSON can spell one, Unicode text cannot hold it, strict parsers refuse it)
is sent as U+FFFD."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any, Literal

from remediator.clients.http import HttpClient
from remediator.escalate.sinks import alertmanager_format, escape
from remediator.escalate.sinks.base import Event, Notification

SIGNATURE_HEADER = "X-Remediator-Signature"

Format = Literal["remediator", "alertmanager"]


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


@dataclass
class WebhookSink:
    name: str
    url: str
    secret: bytes | None = None
    format: Format = "remediator"
    kind: str = "webhook"
    min_interval_s: float = 0.0

    def document(self, note: Notification) -> dict[str, Any]:
        if self.format == "alertmanager":
            return alertmanager_format.payload(self.name, note)
        return escape.text_tree(
            {
                "event": note.event.value,
                "dedup_key": note.dedup_key,
                "severity": note.severity,
                "summary": note.summary,
                "tier": note.tier,
                "policy": note.policy,
                "details": note.details,
                **({"update": note.update} if note.event is Event.UPDATE else {}),
            }
        )

    def body(self, note: Notification) -> bytes:
        return json.dumps(self.document(note), sort_keys=True, default=str).encode()

    async def send(self, http: HttpClient, note: Notification) -> None:
        body = self.body(note)
        headers = {"Content-Type": "application/json"}
        if self.secret:
            headers[SIGNATURE_HEADER] = signature(self.secret, body)
        await http.post(f"webhook {self.name}", self.url, data=body, headers=headers)
