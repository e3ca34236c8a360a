"""What a sink receives and how it is called. Every sink speaks HTTP through the app's one
``clients.http.HttpClient``, which raises ``SinkUnavailable`` (retrying may help, and when)
or ``SinkRejected`` (it cannot)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from remediator.clients.http import HttpClient
from remediator.core.vocab import Event as Event  # re-exported: sinks name it here


@dataclass(frozen=True, slots=True)
class Notification:
    """One page, or its resolution, for one episode. ``dedup_key`` is stable per episode."""

    event: Event
    dedup_key: str
    severity: str
    summary: str
    tier: int
    policy: str
    details: Mapping[str, Any] = field(default_factory=dict)


class Sink(Protocol):
    name: str
    kind: str
    min_interval_s: float
    """Least time between two sends, seconds: the integration's documented rate limit."""

    async def send(self, http: HttpClient, note: Notification) -> None:
        """Deliver ``note``; raises ``SinkUnavailable`` or ``SinkRejected`` when it fails."""
        ...


SEVERITY_WORDS = {"SEV-1": "critical", "SEV-2": "error", "SEV-3": "warning"}


def json_body(document: Any) -> bytes:
    """The exact bytes a sink sends: UTF-8 JSON, non-ASCII as itself, so a size limit in
    bytes is measured on what goes out. Strings must hold no lone surrogate (``escape``)."""
    return json.dumps(document, ensure_ascii=False, allow_nan=False).encode("utf-8")
