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


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def alert_of(note: Notification) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The alert's labels, its annotations and the rest of its content, as ``plan`` puts
    them in a page's details (empty when the page carries none)."""
    alert = _mapping(note.details.get("alert"))
    return _mapping(alert.get("labels")), _mapping(alert.get("annotations")), alert


def page_links(note: Notification) -> list[tuple[str, str]]:
    """A page's links, in order, as (what, URL): ``runbook``, ``source`` (the alert's
    generatorURL), ``silence`` and ``decisions`` (the episode); only http(s) URLs."""
    _, annotations, alert = alert_of(note)
    urls = {
        "runbook": annotations.get("runbook_url"),
        "source": alert.get("generator_url"),
        "silence": alert.get("silence_url"),
        "decisions": note.details.get("decisions"),
    }
    return [(what, url) for what, url in urls.items()
            if isinstance(url, str) and url.startswith(("https://", "http://"))]  # fmt: skip
