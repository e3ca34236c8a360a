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

Reference = Mapping[str, Any]
"""What a sink answered when an incident opened on it and must name again to update or
resolve it (Slack's channel and message ``ts``): kept with the delivered trigger."""


@dataclass(frozen=True, slots=True)
class Notification:
    """One page, an update of it, or its resolution, for one incident. ``dedup_key`` is
    stable per incident: an episode, the alerts of one notification escalated together, or
    a storm.

    ``details`` holds the page's facts (``plan``): ``alert`` (the first alert's content),
    ``alerts`` and ``count`` when the incident groups several (``alerts_of``),
    ``responders`` (the tier's, for Opsgenie and JSM), ``decisions`` (the episode's link),
    ``evidence`` (the claim's evidence bundles' keys, by phase), ``evidence_url`` (a signed
    link to the last of them, when links are signed), and ``approval`` (the approval a held
    claim waits for: its ``id``, ``needed``, ``approvers``, ``due_at``) with ``approval_url``."""

    event: Event
    dedup_key: str
    severity: str
    summary: str
    tier: int
    policy: str
    details: Mapping[str, Any] = field(default_factory=dict)
    update: str = ""
    """For an ``update``: what happened since the page, one sentence (what remediator did,
    how it verified, who acknowledged)."""
    reference: Reference = field(default_factory=dict)
    """For an ``update`` or a ``resolve``: what ``send`` returned for the incident's first
    trigger on this sink (empty when it returned nothing)."""
    acknowledged: bool = False
    """For an ``update``: a human acknowledged the incident on another sink (a sink with an
    acknowledgement of its own, PagerDuty's, takes it as one)."""


class Sink(Protocol):
    name: str
    kind: str
    min_interval_s: float
    """Least time between two sends, seconds: the integration's documented rate limit."""

    async def send(self, http: HttpClient, note: Notification) -> Reference | None:
        """Deliver ``note`` (a trigger, an update or a resolve); raises ``SinkUnavailable``
        or ``SinkRejected`` when it fails. A trigger returns what this sink needs to name
        the incident again (``Reference``), or None when its dedup key is enough."""
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


def alerts_of(note: Notification) -> list[dict[str, Any]]:
    """Every alert the incident groups, in order, each as ``alert_of`` gives the first
    (labels, annotations, ...) plus its ``target`` and ``episode``; ``count`` in the details
    may be larger than the list (it is cut at ``plan.GROUP_LISTED``)."""
    listed = note.details.get("alerts")
    if isinstance(listed, list) and listed:
        return [a for a in listed if isinstance(a, dict)]
    _, _, alert = alert_of(note)
    if not alert:
        return []
    return [{**alert, "target": note.details.get("target"), "episode": note.details.get("episode")}]


def alert_count(note: Notification) -> int:
    """How many alerts the incident groups (at least one)."""
    count = note.details.get("count")
    return count if isinstance(count, int) and count > 0 else max(1, len(alerts_of(note)))


def page_links(note: Notification) -> list[tuple[str, str]]:
    """A page's links, in order, as (what, URL): ``runbook``, ``source`` (the alert's
    generatorURL), ``silence``, ``decisions`` (the episode), ``evidence`` (a signed link
    to the claim's last evidence bundle) and ``approval`` (the approval a held claim waits
    for); only http(s) URLs."""
    _, annotations, alert = alert_of(note)
    urls = {
        "runbook": annotations.get("runbook_url"),
        "source": alert.get("generator_url"),
        "silence": alert.get("silence_url"),
        "decisions": note.details.get("decisions"),
        "evidence": note.details.get("evidence_url"),
        "approval": note.details.get("approval_url"),
    }
    return [(what, url) for what, url in urls.items()
            if isinstance(url, str) and url.startswith(("https://", "http://"))]  # fmt: skip
