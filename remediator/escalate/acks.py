"""A human's answer to a page: a PagerDuty v3 webhook (``incident.acknowledged``,
``incident.resolved``) or a click on a Slack page's Acknowledge button, verified and read
into an ``Ack`` that names the incident by its dedup key. The acknowledgement routes read
the raw body and call these; what they return stops the ladder (and a resolve closes the
incident on every sink). Pure functions: the clock is passed in, nothing is stored.

Every request is hostile until its signature holds: nothing is parsed before. A request
that cannot be ours raises ``AckRefused`` with one exact sentence (never echoing the
request); a genuine one about something else (another PagerDuty event, another Slack
interaction) returns None, and is answered 200 so the sender does not retry it.

The bodies are read strictly: UTF-8, JSON without repeated keys (two parsers could read
different values from one signed body), without ``NaN``/``Infinity``, and no deeper or
longer than Python's parser takes (its integer-digit and recursion limits).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qsl

from remediator.clients.slack import signature_valid
from remediator.core.errors import RemediatorError
from remediator.escalate.sinks import escape, truncate
from remediator.escalate.sinks.slack import ACK_ACTION, APPROVE_ACTION, DENY_ACTION

#: How far a Slack request's timestamp may be from now, seconds (Slack's own advice).
SLACK_WINDOW_S = 300
#: The longest ``by`` kept: a name, not a document.
BY_CHARS = 200

AckKind = Literal["acknowledged", "resolved"]
PAGERDUTY_EVENTS: Mapping[str, AckKind] = {
    "incident.acknowledged": "acknowledged",
    "incident.resolved": "resolved",
}

_HEX_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_SLACK_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
_SECONDS = re.compile(r"[0-9]{1,12}")


class AckRefused(RemediatorError):
    """An acknowledgement request that is not genuine or not readable: the message is one
    sentence of ours, for a 400 (body), or, as ``AckUnsigned``, a 401."""


class AckUnsigned(AckRefused):
    """A request whose signature or timestamp does not show it comes from the sender."""


NO_PAGERDUTY_SIGNATURE = "The request has no X-PagerDuty-Signature header."
PAGERDUTY_MISMATCH = "No X-PagerDuty-Signature matches the body with the webhook secret."
NO_SLACK_SIGNATURE = "The request has no X-Slack-Signature or X-Slack-Request-Timestamp header."
SLACK_TIMESTAMP_FORMAT = "The X-Slack-Request-Timestamp header is not a whole number of seconds."
SLACK_TIMESTAMP_WINDOW = "The X-Slack-Request-Timestamp is more than 300 seconds from now."
SLACK_MISMATCH = "The X-Slack-Signature does not match the body with the signing secret."
NOT_UTF8 = "The request body is not UTF-8."
NOT_JSON = "The request body is not JSON."
REPEATED_KEY = "The request body repeats a key."
NOT_A_FORM = "The request body is not a form."
NOT_PAGERDUTY = "The request body is not a PagerDuty v3 webhook event."
NOT_SLACK = "The Slack payload is not an interaction object."
PAGERDUTY_NO_KEY = "The PagerDuty incident has no incident_key."
PAGERDUTY_BAD_TIME = "The PagerDuty event's occurred_at is not an ISO 8601 time."
SLACK_NO_KEY = "The Acknowledge action carries no dedup key."
SLACK_NO_APPROVAL = "The Approve or Deny action carries no approval id."
SLACK_NO_USER = "The interaction names no Slack user ID."
SLACK_VOTES: Mapping[str, Literal["approve", "deny"]] = {
    APPROVE_ACTION: "approve",
    DENY_ACTION: "deny",
}
_APPROVAL_ID = re.compile(r"[1-9][0-9]{0,17}")
_SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")


@dataclass(frozen=True, slots=True)
class Ack:
    """Someone acknowledged or resolved the incident ``dedup_key`` (as the sink sent it)."""

    kind: AckKind
    dedup_key: str
    by: str
    """Who, as a person reads it: the PagerDuty user's name, the Slack user's handle."""
    source: Literal["pagerduty", "slack"]
    at: datetime
    """When, UTC: PagerDuty's ``occurred_at``; Slack's signed request timestamp."""
    url: str = ""
    """The incident's page on the source, when it gave one."""


@dataclass(frozen=True, slots=True)
class SlackVote:
    """Someone clicked Approve or Deny on a page that asks approval ``claim_id``; who they
    are as an approver is the approvers file's say (``user_id``), not the click's."""

    claim_id: int
    vote: Literal["approve", "deny"]
    user_id: str
    by: str
    at: datetime


# ---- reading -------------------------------------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """The first ``name`` header, whatever its case."""
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise AckRefused(NOT_UTF8) from None


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise AckRefused(REPEATED_KEY)
    return document


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def _json(text: str) -> Any:
    """``text`` as strict JSON (see the module's docstring)."""
    try:
        return json.loads(text, object_pairs_hook=_unique, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # a JSONDecodeError, digits past the limit, NaN
        raise AckRefused(NOT_JSON) from None


def _object(value: Any, sentence: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise AckRefused(sentence)
    return value


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _name(value: Any) -> str:
    """A name as a page can show it: no control character, at most ``BY_CHARS``."""
    return truncate.fit(escape.plain(value), BY_CHARS)


# ---- PagerDuty -----------------------------------------------------------------------------


def _pagerduty_signed(headers: Mapping[str, str], body: bytes, secrets: Sequence[str]) -> None:
    """Any ``v1=`` signature in the header is the body's HMAC-SHA256 with any secret (two
    of each during a rotation); compared in constant time."""
    header = _header(headers, "X-PagerDuty-Signature")
    if header is None:
        raise AckUnsigned(NO_PAGERDUTY_SIGNATURE)
    given = [s.strip()[3:].lower() for s in header.split(",") if s.strip().startswith("v1=")]
    given = [s for s in given if _HEX_SIGNATURE.fullmatch(s)]
    for secret in secrets:
        expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
        if any(hmac.compare_digest(expected.encode(), s.encode()) for s in given):
            return
    raise AckUnsigned(PAGERDUTY_MISMATCH)


def _occurred(value: Any) -> datetime:
    try:
        at = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        at = None
    if at is None:
        raise AckRefused(PAGERDUTY_BAD_TIME)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _url(value: Any) -> str:
    return value if isinstance(value, str) and value.startswith("https://") else ""


def pagerduty_ack(headers: Mapping[str, str], body: bytes, secrets: Sequence[str]) -> Ack | None:
    """The acknowledgement or resolve a signed PagerDuty v3 webhook reports; None for any
    other event. The dedup key is the incident's ``incident_key``: for an incident opened
    through the Events API, the ``dedup_key`` the PagerDuty sink sent."""
    _pagerduty_signed(headers, body, secrets)
    event = _object(_object(_json(_text(body)), NOT_PAGERDUTY).get("event"), NOT_PAGERDUTY)
    kind = PAGERDUTY_EVENTS.get(str(event.get("event_type")))
    if kind is None:
        return None
    incident = _object(event.get("data"), NOT_PAGERDUTY)
    key = incident.get("incident_key")
    if not isinstance(key, str) or not key:
        raise AckRefused(PAGERDUTY_NO_KEY)
    agent = _mapping(event.get("agent"))
    by = agent.get("summary") or agent.get("id") or "PagerDuty"
    at = _occurred(event.get("occurred_at"))
    return Ack(kind, key, _name(by), "pagerduty", at, _url(incident.get("html_url")))


# ---- Slack ---------------------------------------------------------------------------------


def _slack_signed(headers: Mapping[str, str], body: bytes, secret: str, now: float) -> int:
    """The request's timestamp, once it is within ``SLACK_WINDOW_S`` of ``now`` and the
    signature (``v0=``, over ``v0:<timestamp>:<body>``) is the signing secret's."""
    signature = _header(headers, "X-Slack-Signature")
    timestamp = _header(headers, "X-Slack-Request-Timestamp")
    if signature is None or timestamp is None:
        raise AckUnsigned(NO_SLACK_SIGNATURE)
    if not _SECONDS.fullmatch(timestamp):
        raise AckUnsigned(SLACK_TIMESTAMP_FORMAT)
    if abs(now - int(timestamp)) > SLACK_WINDOW_S:
        raise AckUnsigned(SLACK_TIMESTAMP_WINDOW)
    _text(body)  # slack_sdk reads the body as UTF-8
    if not (secret and _SLACK_SIGNATURE.fullmatch(signature)):
        raise AckUnsigned(SLACK_MISMATCH)
    if not signature_valid(secret, body, timestamp, signature, now):
        raise AckUnsigned(SLACK_MISMATCH)
    return int(timestamp)


def _form(text: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except ValueError:
        raise AckRefused(NOT_A_FORM) from None
    return _unique(pairs)


def _clicked(payload: dict[str, Any], *wanted: str) -> dict[str, Any] | None:
    """The first action of a ``block_actions`` payload whose ``action_id`` is one of
    ``wanted``, if it holds one."""
    actions = payload.get("actions")
    if payload.get("type") != "block_actions" or not isinstance(actions, list):
        return None
    return next((a for a in actions
                 if isinstance(a, dict) and a.get("action_id") in wanted), None)  # fmt: skip


def _vote(payload: dict[str, Any], sent: int) -> SlackVote | None:
    """The Approve or Deny click of a ``block_actions`` payload, if it holds one."""
    action = _clicked(payload, *SLACK_VOTES)
    if action is None:
        return None
    value = action.get("value")
    if not isinstance(value, str) or not _APPROVAL_ID.fullmatch(value):
        raise AckRefused(SLACK_NO_APPROVAL)
    user_id = _mapping(payload.get("user")).get("id")
    if not isinstance(user_id, str) or not _SLACK_USER_ID.fullmatch(user_id):
        raise AckRefused(SLACK_NO_USER)
    at = datetime.fromtimestamp(sent, UTC)
    vote = SLACK_VOTES[str(action["action_id"])]
    return SlackVote(int(value), vote, user_id, _slack_user(payload), at)


def _slack_user(payload: dict[str, Any]) -> str:
    user = _mapping(payload.get("user"))
    for field in ("username", "name", "id"):
        if isinstance(user.get(field), str) and user[field]:
            return _name(user[field])
    return "a Slack user"


def slack_ack(
    headers: Mapping[str, str], body: bytes, signing_secret: str, now: float
) -> Ack | SlackVote | None:
    """The acknowledgement a signed Slack interaction (a form whose ``payload`` is JSON)
    reports when it is a click on the Acknowledge button, or the vote of a click on Approve
    or Deny; None for any other interaction. ``now`` is the Unix time the request is checked
    against."""
    sent = _slack_signed(headers, body, signing_secret, now)
    form = _form(_text(body))
    if "payload" not in form:
        return None  # signed by Slack, but not an interaction (a slash command, say)
    payload = _object(_json(form["payload"]), NOT_SLACK)
    vote = _vote(payload, sent)
    if vote is not None:
        return vote
    action = _clicked(payload, ACK_ACTION)
    if action is None:
        return None
    key = action.get("value")
    if not isinstance(key, str) or not key:
        raise AckRefused(SLACK_NO_KEY)
    at = datetime.fromtimestamp(sent, UTC)
    return Ack("acknowledged", key, _slack_user(payload), "slack", at)
