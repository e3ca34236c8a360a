"""Microsoft Teams through a Workflows flow ("post to a channel when a webhook request is
received"): one message per notification holding an Adaptive Card 1.4, in the shape
Microsoft documents for webhooks (https://learn.microsoft.com/en-us/microsoftteams/platform/
webhooks-and-connectors/how-to/connectors-using#send-adaptive-cards-using-an-incoming-webhook):
``{"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
"contentUrl": null, "content": <the card>}]}``. The flow answers 202 Accepted.

The card: the headline (severity, tier, what remediator did and why), a FactSet (severity,
target, alertname, how many alerts), the alert's summary and description, the listed
alerts of a group with "and N more", the labels, and an ``Action.OpenUrl`` button per link
(runbook, source, silence, the episode). A flow cannot update a message it posted, so an
update and a resolve are cards of their own.

Teams renders Markdown in a TextBlock and a fact: every value goes through
``escape.markdown`` (no link, emphasis or list can come from an alert). A message may hold
28 KB: the longest texts are cut, with the marker, until the UTF-8 body fits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from remediator.clients.http import HttpClient
from remediator.escalate.sinks import content, escape, truncate
from remediator.escalate.sinks.base import Event, Notification, alert_count, json_body, page_links

MESSAGE_BYTES = 28 * 1024
CARD_VERSION = "1.4"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_TYPE = "application/vnd.microsoft.card.adaptive"


@dataclass
class TeamsSink:
    name: str
    url: str = field(repr=False)  # a secret: never in a log line
    kind: str = "teams"
    min_interval_s: float = 1.0
    """One card a second: a burst of pages stays readable in the channel."""

    def body(self, note: Notification) -> dict[str, Any]:
        card: dict[str, Any] = {"$schema": CARD_SCHEMA, "type": "AdaptiveCard",
                                "version": CARD_VERSION, "body": _blocks(note),
                                "msteams": {"width": "Full"}}  # fmt: skip
        actions = _buttons(note)
        if actions:
            card["actions"] = actions
        message = {"type": "message", "attachments": [
            {"contentType": CARD_TYPE, "contentUrl": None, "content": card}]}  # fmt: skip
        _fit(message, card)
        return message

    async def send(self, http: HttpClient, note: Notification) -> None:
        headers = {"Content-Type": "application/json; charset=utf-8"}
        await http.post("Teams", self.url, data=json_body(self.body(note)), headers=headers)


def _text(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def _headline(note: Notification) -> dict[str, Any]:
    what = escape.markdown(content.headline(note))
    if note.event is Event.RESOLVE:
        return _text(f"Resolved: {what}", weight="Bolder", size="Medium", color="Good")
    if note.event is Event.UPDATE:
        return _text(f"Update: {what}", weight="Bolder", size="Medium")
    tier = f", {content.tier_words(note)}" if note.tier else ""
    line = f"{escape.markdown(note.severity)}{tier}: {what}"
    return _text(line, weight="Bolder", size="Medium", color="Attention")


def _blocks(note: Notification) -> list[dict[str, Any]]:
    blocks = [_headline(note)]
    if note.event is Event.UPDATE and note.update:
        blocks.append(_text(escape.markdown(note.update, lines=True)))
    blocks.append({"type": "FactSet", "facts": _facts(note)})
    blocks += [_text(escape.markdown(t, lines=True)) for t in content.alert_words(note)]
    listed, more = content.group(note)
    if listed:
        items = [f"- {escape.markdown(line)}" for line in listed]
        blocks.append(_text("\n".join(items + ([content.more(more)] if more else []))))
    if content.labels(note):
        pairs = ", ".join(escape.markdown(f"{k}={v}") for k, v in content.labels(note))
        blocks.append(_text(f"Labels: {pairs}", isSubtle=True, size="Small"))
    return blocks


def _facts(note: Notification) -> list[dict[str, str]]:
    facts = {"Severity": note.severity, "Target": content.target(note),
             "Alert": content.alertname(note), "Incident": note.dedup_key}  # fmt: skip
    if alert_count(note) > 1:
        facts["Alerts"] = str(alert_count(note))
    return [{"title": k, "value": escape.markdown(v)} for k, v in facts.items() if v]


def _buttons(note: Notification) -> list[dict[str, str]]:
    return [{"type": "Action.OpenUrl", "title": content.LINK_LABELS[what], "url": escape.text(url)}
            for what, url in page_links(note)]  # fmt: skip


def _fit(message: dict[str, Any], card: dict[str, Any]) -> None:
    """Cut the longest of the card's texts (never its buttons' URLs) until the message's
    UTF-8 fits; when even that fails (URLs too long), the headline alone, cut, and no
    buttons."""
    while (excess := len(json_body(message)) - MESSAGE_BYTES) > 0:
        texts = [b for b in card["body"] if b.get("type") == "TextBlock"]
        longest = max(texts, key=lambda block: len(block["text"].encode()))
        size = len(longest["text"].encode())
        if size <= len(truncate.MARKER.encode()):
            card.pop("actions", None)
            card["body"] = [_text(truncate.fit(card["body"][0]["text"], 1000))]
            return
        longest["text"] = _cut_bytes(longest["text"], size - excess - len(truncate.MARKER.encode()))


def _cut_bytes(text: str, budget: int) -> str:
    """``text`` cut (``truncate.fit``, with the marker) to a head of at most ``budget``
    UTF-8 bytes: the card's limit is in bytes, ``truncate``'s in UTF-16 units."""
    used = 0
    for index, char in enumerate(text):
        used += len(char.encode("utf-8", "surrogatepass"))
        if used > budget:
            return truncate.fit(
                text, truncate.units(text[:index]) + truncate.units(truncate.MARKER)
            )
    return text
