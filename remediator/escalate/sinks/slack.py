"""Slack, in one of two forms. An incoming webhook (``webhook_url``): one message when the
incident opens, one per update, tier and resolve. The Web API with a bot token and a
channel (``bot_token``, ``channel``, through ``clients.slack``): the page opens a message and
``send`` returns its ``{"channel", "ts"}``; updates and later tiers are replies in its thread
(a later tier broadcast to the channel too), and the resolve is a reply plus an edit of the
page to show it resolved. Without a reference (the page went out another way) every
message is a new one. Slack allows about one message per second per channel or webhook.

Every value in the text goes through ``escape.slack`` (no mention, link or broadcast can
come from an alert), and the text is cut at Slack's 40 000 characters with the marker.
Link previews are off: a URL in a label must not make Slack fetch it.

With ``buttons`` a page also carries Block Kit ``blocks``: the text in mrkdwn sections of at
most 3 000 characters (split at line ends; a longer line is cut with the marker), an
Acknowledge button (``action_id`` ``remediator_ack``, ``value`` the dedup key, at most 2 000
characters), Approve and Deny (``remediator_approve``, ``remediator_deny``, ``value`` the
approval's id) when the page asks an approval, and a button per link; ``text`` stays as the
notification's fallback. Slack sends the click to ``escalate.acks``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from remediator.clients.http import HttpClient
from remediator.clients.slack import SlackApi
from remediator.core.errors import ConfigError
from remediator.escalate.sinks import content, escape, truncate
from remediator.escalate.sinks.base import (
    Event,
    Notification,
    Reference,
    alert_of,
    json_body,
    page_links,
)

#: Slack truncates a message's ``text`` past 40 000 characters.
TEXT_CHARS = 40_000
#: Block Kit's limits: a section's text, blocks in a message, a button's value, text and URL.
SECTION_CHARS = 3_000
BLOCKS = 50
BUTTON_VALUE_CHARS = 2_000
BUTTON_TEXT_CHARS = 75
BUTTON_URL_CHARS = 3_000

#: The ``action_id`` of the Acknowledge button, which ``escalate.acks`` looks for.
ACK_ACTION = "remediator_ack"
#: The Approve and Deny buttons of a page that asks an approval (``value``: its id).
APPROVE_ACTION = "remediator_approve"
DENY_ACTION = "remediator_deny"

#: An entity ``escape.slack`` wrote, cut short by a truncation.
_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,3}$")

#: What a URL keeps as itself in a button (as ``escape.slack_link``): the rest is encoded.
_URL_SAFE = "!#$%&'()*+,-./:;=?@[]^_`{}~"


def headline(note: Notification) -> str:
    """The summary without its leading ``[SEV-n]``: the message names the severity itself."""
    prefix = f"[{note.severity}] "
    return note.summary.removeprefix(prefix) if note.severity else note.summary


LINK_SEPARATOR = " · "
LINK_LABELS = {"runbook": "Runbook", "source": "Alert source", "silence": "Silence",
               "decisions": "What remediator decided", "evidence": "Evidence",
               "approval": "The approval"}  # fmt: skip


def _content(note: Notification) -> list[str]:
    """The lines under a page's first: the alert's summary and description, the target (for
    a group, one line per alert listed and how many more), and one line of links (runbook,
    source, silence, the episode), each only when known."""
    _, annotations, _ = alert_of(note)
    lines = [escape.slack(annotations[k]) for k in ("summary", "description")
             if isinstance(annotations.get(k), str) and annotations[k]]  # fmt: skip
    listed, more = content.group(note)
    target = note.details.get("target")
    if listed:
        lines.extend(f"• {escape.slack(line)}" for line in listed)
        lines.extend([content.more(more)] if more else [])
    elif isinstance(target, str) and target:
        lines.append(f"Target: {escape.slack(target)}")
    links = [escape.slack_link(url, LINK_LABELS[what]) for what, url in page_links(note)]
    if links:
        lines.append(LINK_SEPARATOR.join(links))
    return lines


def _what(note: Notification) -> str:
    return f"{escape.slack(headline(note))} ({escape.slack(note.dedup_key)})"


def _fit(text: str, limit: int = TEXT_CHARS) -> str:
    return truncate.fit(text, limit, partial=_PARTIAL_ENTITY)


def _page(note: Notification, head: str) -> str:
    return _fit(head + "".join(f"\n{line}" for line in _content(note)))


def text(note: Notification) -> str:
    """The message for ``note``: the page (a tier past the first names itself), an update
    ("Update on <headline> (<key>): <what happened>"), or the resolve."""
    if note.event is Event.RESOLVE:
        return _fit(f":white_check_mark: Resolved: {_what(note)}")
    if note.event is Event.UPDATE:
        return _fit(f"Update on {_what(note)}: {escape.slack(note.update)}")
    tier = f", escalation tier {note.tier + 1}" if note.tier else ""
    return _page(note, f":rotating_light: {escape.slack(note.severity)}{tier}: {_what(note)}")


def resolved_page(note: Notification) -> str:
    """The page as it reads once resolved: what the Web API form edits it to."""
    return _page(note, f":white_check_mark: Resolved: {_what(note)}")


# ---- Block Kit -----------------------------------------------------------------------------


def _lines(message: str) -> Iterator[str]:
    """``message``'s lines, each within ``SECTION_CHARS``: a longer one is split at its
    links' separators, a piece of text cut with the marker, a link too long left out (cut,
    it would be broken; the text fallback still has it). Only links start with ``<``:
    ``escape.slack`` leaves none in a value."""
    for line in message.split("\n"):
        if truncate.units(line) <= SECTION_CHARS:
            yield line
            continue
        for piece in line.split(LINK_SEPARATOR):
            if not piece.startswith("<"):
                yield _fit(piece, SECTION_CHARS)
            elif truncate.units(piece) <= SECTION_CHARS:
                yield piece


def _sections(message: str) -> list[dict[str, Any]]:
    """``message`` as mrkdwn sections of whole lines (``_lines``), each within
    ``SECTION_CHARS``. A ``TEXT_CHARS`` message needs at most 27: two neighbours always
    hold more than one section's worth."""
    chunks = [""]
    for line in _lines(message):
        joined = f"{chunks[-1]}\n{line}" if chunks[-1] else line
        if truncate.units(joined) <= SECTION_CHARS:
            chunks[-1] = joined
        else:
            chunks.append(line)
    return [{"type": "section", "text": {"type": "mrkdwn", "text": chunk}}
            for chunk in chunks[: BLOCKS - 1] if chunk]  # fmt: skip


def _button(label: str, **fields: str) -> dict[str, Any]:
    shown = truncate.fit(label, BUTTON_TEXT_CHARS)
    return {"type": "button", "text": {"type": "plain_text", "text": shown}, **fields}


def _link_buttons(note: Notification) -> list[dict[str, Any]]:
    """A button per link whose URL fits a button (a cut URL would be a broken link: the
    section's text still carries it)."""
    urls = ((what, quote(escape.plain(url), safe=_URL_SAFE)) for what, url in page_links(note))
    return [_button(LINK_LABELS[what], action_id=f"remediator_link_{what}", url=url)
            for what, url in urls if truncate.units(url) <= BUTTON_URL_CHARS]  # fmt: skip


def ack_value(dedup_key: str) -> str:
    """The Acknowledge button's value for an incident: its dedup key, or past 2 000
    characters a head of it and its SHA-256 (stable, so the click still names it)."""
    return truncate.bounded_key(escape.text(dedup_key), BUTTON_VALUE_CHARS)


def approval_id(note: Notification) -> int | None:
    """The id of the approval the page asks, if it asks one."""
    approval = note.details.get("approval")
    held = approval.get("id") if isinstance(approval, dict) else None
    return held if isinstance(held, int) and not isinstance(held, bool) else None


def blocks(message: str, note: Notification, *, ack: bool) -> list[dict[str, Any]]:
    """The Block Kit form of ``message``: its sections, then the buttons (Acknowledge when
    ``ack``; Approve and Deny too when the page asks an approval; and the page's links)."""
    elements = _link_buttons(note)
    if ack:
        elements.insert(0, _button("Acknowledge", action_id=ACK_ACTION,
                                   value=ack_value(note.dedup_key), style="primary"))  # fmt: skip
    if ack and (held := approval_id(note)) is not None:
        elements[1:1] = [
            _button("Approve", action_id=APPROVE_ACTION, value=str(held), style="primary"),
            _button("Deny", action_id=DENY_ACTION, value=str(held), style="danger"),
        ]
    actions = [{"type": "actions", "elements": elements}] if elements else []
    return _sections(message) + actions


# ---- the sink ------------------------------------------------------------------------------


def _thread(reference: Reference) -> tuple[str, str] | None:
    """The page's channel and ``ts`` from what the Web API form returned for it, if any."""
    channel, ts = reference.get("channel"), reference.get("ts")
    if isinstance(channel, str) and channel and isinstance(ts, str) and ts:
        return channel, ts
    return None


@dataclass
class SlackSink:
    name: str
    webhook_url: str = field(default="", repr=False)
    bot_token: str = field(default="", repr=False)
    channel: str = ""
    api_url: str = "https://slack.com/api/"
    buttons: bool = False
    kind: str = field(default="slack", init=False)
    min_interval_s: float = field(default=1.0, init=False)
    _api: SlackApi | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.bot_token and self.channel:
            self._api = SlackApi(self.bot_token, self.api_url)
        elif not self.webhook_url:
            raise ConfigError(f"sink {self.name}: give webhook_url, or bot_token and channel")

    def text(self, note: Notification) -> str:
        return text(note)

    def body(self, note: Notification) -> dict[str, Any]:
        """The message's fields (the webhook's JSON body; the Web API's arguments)."""
        message = self.text(note)
        body: dict[str, Any] = {"text": message, "unfurl_links": False, "unfurl_media": False}
        if self.buttons and note.event is Event.TRIGGER:
            body["blocks"] = blocks(message, note, ack=True)
        return body

    async def send(self, http: HttpClient, note: Notification) -> Reference | None:
        if self._api is None:
            headers = {"Content-Type": "application/json"}
            data = json_body(self.body(note))
            await http.post("Slack", self.webhook_url, data=data, headers=headers)
            return None
        return await self._send_api(self._api, note)

    async def _send_api(self, api: SlackApi, note: Notification) -> Reference | None:
        thread = _thread(note.reference)
        if thread is None or (note.event is Event.TRIGGER and note.tier == 0):
            posted = await api.post_message(channel=self.channel, **self.body(note))
            opened = note.event is Event.TRIGGER and bool(posted.ts)
            return {"channel": posted.channel, "ts": posted.ts} if opened else None
        channel, ts = thread
        if note.event is Event.RESOLVE:  # the edit first: repeating it is harmless
            await api.update_message(channel=channel, ts=ts, **self._resolved(note))
        broadcast = {"reply_broadcast": True} if note.event is Event.TRIGGER else {}
        await api.post_message(channel=channel, thread_ts=ts, **self.body(note), **broadcast)
        return None

    def _resolved(self, note: Notification) -> dict[str, Any]:
        """``chat.update``'s fields for the resolved page: without buttons, the page had no
        blocks; with them, its blocks are replaced by ones without Acknowledge."""
        message = resolved_page(note)
        if not self.buttons:
            return {"text": message}
        return {"text": message, "blocks": blocks(message, note, ack=False)}

    async def close(self) -> None:
        """Close the Web API client's connections (the webhook form holds none)."""
        if self._api is not None:
            await self._api.close()
