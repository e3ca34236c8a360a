"""Grafana IRM (formerly Grafana OnCall) through its "Formatted Webhook" integration: one JSON
object per notification, with the fields that integration recognises
(https://grafana.com/docs/oncall/latest/configure/integrations/references/webhook/, whose
example payload is ``alert_uid``, ``title``, ``image_url``, ``state``,
``link_to_upstream_details``, ``message``); ``image_url`` is left out.

The integration groups alerts into one alert group by ``alert_uid`` (its grouping template
is ``{{ payload.get("alert_uid", "") }}``) and resolves the group when ``state`` is ``ok``.
So ``alert_uid`` is the incident's dedup key: a later tier and an update are new alerts in
the same group (``state`` ``alerting``, the message saying which), and the resolve closes
it. IRM's own escalation chain pages its people: a later tier cannot reach someone new
there, it says "escalation tier N" in the group.

IRM shows the title and message in Slack, its web UI, Telegram, SMS and phone calls: values
go through ``escape.oncall`` (no mention, link or HTML), then are cut with the marker. The
integration documents no size limit: the title is kept to 1 024 characters, the message to
10 000 (more than any of those shows), and the labels to what keeps the body in 256 KB."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from remediator.clients.http import HttpClient
from remediator.escalate.sinks import content, escape, truncate
from remediator.escalate.sinks.base import Event, Notification, alert_count, json_body, page_links

TITLE_CHARS = 1024
MESSAGE_CHARS = 10_000
BODY_BYTES = 256 * 1024

#: An entity ``escape.oncall`` wrote, cut short by a truncation.
_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,3}$")

#: The upstream link, best first: remediator's story of the episode, then the alert's source.
_UPSTREAM = ("decisions", "source")


@dataclass
class GrafanaIrmSink:
    name: str
    url: str = field(repr=False)  # a secret: never in a log line
    kind: str = "grafana_irm"
    min_interval_s: float = 0.1

    def body(self, note: Notification) -> dict[str, Any]:
        body: dict[str, Any] = {
            "alert_uid": escape.text(note.dedup_key),
            "title": _fit(escape.oncall(_title(note)), TITLE_CHARS),
            "state": "ok" if note.event is Event.RESOLVE else "alerting",
            "message": _fit(_message(note), MESSAGE_CHARS),
        }
        link = _upstream(note)
        if link:
            body["link_to_upstream_details"] = link
        body.update(_facts(note))
        if not truncate.fit_tree(body["labels"], lambda _: len(json_body(body)), BODY_BYTES):
            body["labels"] = {"truncated": truncate.MARKER}
        return body

    async def send(self, http: HttpClient, note: Notification) -> None:
        headers = {"Content-Type": "application/json"}
        await http.post("Grafana IRM", self.url, data=json_body(self.body(note)), headers=headers)


def _fit(text: str, limit: int) -> str:
    return truncate.fit(text, limit, partial=_PARTIAL_ENTITY)


def _title(note: Notification) -> str:
    if note.event is Event.RESOLVE:
        return f"Resolved: {note.summary}"
    return note.summary


def _message(note: Notification) -> str:
    """Why this alert joined the group (an update, a later tier), the alert's own words,
    remediator's, the target, the links, the other alerts of a group, the labels."""
    lines = []
    if note.event is Event.UPDATE:
        lines.append(f"Update: {escape.oncall(note.update or note.summary, lines=True)}")
    elif note.event is Event.TRIGGER and note.tier:
        lines.append(f"Escalation: {content.tier_words(note)}.")
    lines += [escape.oncall(text, lines=True) for text in content.alert_words(note)]
    lines.append(escape.oncall(note.summary, lines=True))
    if content.target(note):
        lines.append(f"Target: {escape.oncall(content.target(note))}")
    lines += [f"{content.LINK_LABELS[what]}: {_href(url)}" for what, url in page_links(note)]
    listed, more = content.group(note)
    lines += [f"• {escape.oncall(line)}" for line in listed]
    lines += [content.more(more)] if more else []
    return "\n".join(lines)


def _upstream(note: Notification) -> str:
    links = dict(page_links(note))
    return next((_href(links[what]) for what in _UPSTREAM if what in links), "")


def _href(url: str) -> str:
    """``url`` with ``<``, ``>``, ``|``, spaces and controls percent-encoded: IRM puts it in
    a Slack link (``<url|source>``), which it must not be able to end early."""
    return quote(escape.plain(url), safe="!#$%&'()*+,-./:;=?@[]^_`{}~")


def _facts(note: Notification) -> dict[str, Any]:
    """Fields IRM does not interpret but its routing and grouping templates can read."""
    return {
        "severity": escape.text(note.severity),
        "event": note.event.value,
        "tier": note.tier,
        "count": alert_count(note),
        "labels": {escape.text(k): escape.text(v) for k, v in content.labels(note)},
    }
