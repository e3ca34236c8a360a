"""The alert API Opsgenie and Jira Service Management share: the requests one notification
becomes, with their bodies. ``opsgenie`` and ``jsm`` post them under their own paths.

* a trigger of tier 0 creates the alert, ``alias`` = the incident's dedup key (the API
  de-duplicates on it), with the tier's ``responders`` and ``tags``;
* a trigger of a later tier creates it again (a no-op on the open alert, which only counts
  it, and the page itself when this sink did not see the first tier), then adds each of the
  tier's responders to it (``POST …/{alias}/responders``) where the API offers that; when
  it does not, or the tier names none, it adds a note "Escalation tier N: …";
* an update adds a note (``POST …/{alias}/notes``); a resolve closes the alert.

The API shows plain text: values are cleaned of control characters (``escape.plain``; the
message is one line, the description, notes and details keep their newlines) and bounded
by the documented limits (https://docs.opsgenie.com/docs/alert-api), each cut with the
marker: message 130 characters, alias 512 (past it, a head and its SHA-256), description
15 000, note 25 000, entity 512, details 8 000 in all (keys and values; the longest values
are cut first), tags 20 of 50 characters, responders 50."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from remediator.escalate.sinks import content, escape, truncate
from remediator.escalate.sinks.base import Event, Notification, page_links

PRIORITIES = {"SEV-1": "P1", "SEV-2": "P2", "SEV-3": "P3"}
MESSAGE_CHARS = 130
ALIAS_CHARS = 512
DESCRIPTION_CHARS = 15_000
NOTE_CHARS = 25_000
ENTITY_CHARS = 512
DETAILS_CHARS = 8_000
TAGS = 20
TAG_CHARS = 50
RESPONDERS = 50
RESPONDER_TYPES = ("team", "user", "escalation", "schedule")


@dataclass(frozen=True, slots=True)
class Call:
    """One request: ``path`` under the API's alerts URL, and its JSON body."""

    path: str
    body: dict[str, Any]
    by_alias: bool = True
    """The path names the alert by its alias (``identifierType=alias``)."""


def calls(note: Notification, *, adds_responders: bool) -> list[Call]:
    """The requests ``note`` becomes, in order; ``adds_responders`` when the API can add a
    responder to an open alert."""
    where = "/" + quote(alias(note), safe="")
    if note.event is Event.RESOLVE:
        return [Call(f"{where}/close", {})]
    if note.event is Event.UPDATE and note.acknowledged:  # its escalation stops too
        return [Call(f"{where}/acknowledge", note_body(note.update or note.summary))]
    if note.event is Event.UPDATE:
        return [Call(f"{where}/notes", note_body(note.update or note.summary))]
    create = Call("", create_body(note), by_alias=False)
    if note.tier == 0:
        return [create]
    tier = _capital(content.tier_words(note))
    found = responders(note)
    if adds_responders and found:
        said = f"{tier}: {content.headline(note)}"
        adds = [Call(f"{where}/responders", {"responder": r, **note_body(said)}) for r in found]
        return [create, *adds]
    named = ", ".join(_named(r) for r in found)
    tier += f", for {named}" if named else ""
    return [create, Call(f"{where}/notes", note_body(f"{tier}: {content.headline(note)}"))]


def alias(note: Notification) -> str:
    return truncate.bounded_key(escape.text(note.dedup_key), ALIAS_CHARS)


def note_body(text: str) -> dict[str, Any]:
    return {"note": truncate.fit(escape.plain(text, lines=True), NOTE_CHARS)}


def create_body(note: Notification) -> dict[str, Any]:
    body: dict[str, Any] = {
        "message": truncate.fit(escape.plain(note.summary), MESSAGE_CHARS),
        "alias": alias(note),
        "description": truncate.fit(description(note), DESCRIPTION_CHARS),
        "priority": PRIORITIES.get(note.severity, "P3"),
        "details": details(note),
        "source": "remediator",
    }
    optional = {"responders": responders(note), "tags": tags(note), "entity": _entity(note)}
    body.update({k: v for k, v in optional.items() if v})
    return body


def description(note: Notification) -> str:
    """The alert's own words first, then remediator's, where it fired, the links, the other
    alerts of a group and the labels: a cut (from the end) loses the least needed."""
    lines = [*content.alert_words(note), note.summary]
    if content.target(note):
        lines.append(f"Target: {content.target(note)}")
    lines += [f"{content.LINK_LABELS[what]}: {url}" for what, url in page_links(note)]
    listed, more = content.group(note)
    if listed:
        lines += ["", "Alerts:", *(f"- {line}" for line in listed)]
        lines += [content.more(more)] if more else []
    if content.labels(note):
        lines += ["", "Labels:", *(f"  {k}={v}" for k, v in content.labels(note))]
    return "\n".join(escape.plain(line, lines=True) for line in lines)


def details(note: Notification) -> dict[str, str]:
    """The page's facts (each a string) and the first alert's labels, as custom properties."""
    found = {k: v for k, v in note.details.items() if _scalar(v)}
    found.update({k: v for k, v in content.labels(note) if k not in found})
    cleaned = {escape.plain(k): escape.plain(v, lines=True) for k, v in found.items()}
    if not truncate.fit_tree(cleaned, details_size, DETAILS_CHARS):
        return {"truncated": truncate.MARKER}
    return cleaned


def details_size(details: dict[str, Any]) -> int:
    """What the API counts against its details limit: every key and value."""
    return sum(truncate.units(key) + truncate.units(value) for key, value in details.items())


def tags(note: Notification) -> list[str]:
    """Severity, alertname and namespace, those known, each within the tag limit."""
    wanted = (note.severity, content.alertname(note), content.label(note, "namespace"))
    cleaned = [truncate.fit(escape.plain(tag).strip(), TAG_CHARS) for tag in wanted]
    return list(dict.fromkeys(tag for tag in cleaned if tag))[:TAGS]


def responders(note: Notification) -> list[dict[str, str]]:
    """The tier's responders as the API takes them (``ResponderSpec.api``): a type and one
    of id, username or name; anything else in the details is left out."""
    listed = note.details.get("responders")
    if not isinstance(listed, list):
        return []
    return [_responder(r) for r in listed if _valid(r)][:RESPONDERS]


def _valid(value: object) -> bool:
    if not isinstance(value, Mapping) or value.get("type") not in RESPONDER_TYPES:
        return False
    return any(isinstance(value.get(k), str) and value[k] for k in ("id", "username", "name"))


def _responder(value: Mapping[str, Any]) -> dict[str, str]:
    key = next(k for k in ("id", "username", "name") if isinstance(value.get(k), str) and value[k])
    return {"type": str(value["type"]), key: escape.text(value[key])}


def _named(responder: Mapping[str, str]) -> str:
    identity = next(v for k, v in responder.items() if k != "type")
    return escape.plain(f"{responder['type']} {identity}")


def _entity(note: Notification) -> str:
    return truncate.fit(escape.plain(content.target(note)), ENTITY_CHARS)


def _scalar(value: object) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool) and value != ""


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
