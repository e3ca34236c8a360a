"""Slack incoming webhook: one message when the incident opens, follow-ups as it grows and
when it resolves. Slack allows about one message per second per webhook.

Every value in the text goes through ``escape.slack`` (no mention, link or broadcast can
come from an alert), and the text is cut at Slack's 40 000 characters with the marker.
Link previews are off: a URL in a label must not make Slack fetch it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from remediator.clients.http import HttpClient
from remediator.escalate.sinks import escape, truncate
from remediator.escalate.sinks.base import Event, Notification, alert_of, json_body, page_links

#: Slack truncates a message's ``text`` past 40 000 characters.
TEXT_CHARS = 40_000

#: An entity ``escape.slack`` wrote, cut short by a truncation.
_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,3}$")


def headline(note: Notification) -> str:
    """The summary without its leading ``[SEV-n]``: the message names the severity itself."""
    prefix = f"[{note.severity}] "
    return note.summary.removeprefix(prefix) if note.severity else note.summary


LINK_LABELS = {"runbook": "Runbook", "source": "Alert source", "silence": "Silence",
               "decisions": "What remediator decided"}  # fmt: skip


def _content(note: Notification) -> list[str]:
    """The lines under a page's first: the alert's summary and description, the target, and
    one line of links (runbook, source, silence, the episode), each only when known."""
    _, annotations, _ = alert_of(note)
    lines = [escape.slack(annotations[k]) for k in ("summary", "description")
             if isinstance(annotations.get(k), str) and annotations[k]]  # fmt: skip
    target = note.details.get("target")
    if isinstance(target, str) and target:
        lines.append(f"Target: {escape.slack(target)}")
    links = [escape.slack_link(url, LINK_LABELS[what]) for what, url in page_links(note)]
    if links:
        lines.append(" · ".join(links))
    return lines


@dataclass
class SlackSink:
    name: str
    webhook_url: str
    kind: str = "slack"
    min_interval_s: float = 1.0

    def text(self, note: Notification) -> str:
        what = f"{escape.slack(headline(note))} ({escape.slack(note.dedup_key)})"
        if note.event is Event.RESOLVE:
            text = f":white_check_mark: Resolved: {what}"
        else:
            tier = f", escalation tier {note.tier + 1}" if note.tier else ""
            text = f":rotating_light: {escape.slack(note.severity)}{tier}: {what}"
            text += "".join(f"\n{line}" for line in _content(note))
        return truncate.fit(text, TEXT_CHARS, partial=_PARTIAL_ENTITY)

    def body(self, note: Notification) -> dict[str, Any]:
        return {"text": self.text(note), "unfurl_links": False, "unfurl_media": False}

    async def send(self, http: HttpClient, note: Notification) -> None:
        headers = {"Content-Type": "application/json"}
        await http.post("Slack", self.webhook_url, data=json_body(self.body(note)), headers=headers)
