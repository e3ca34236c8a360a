"""Reading acknowledgements (``escalate.acks``): a PagerDuty v3 webhook, signed with the
subscription secret, whose body is PagerDuty's documented payload; a Slack Acknowledge
click, signed with the app's signing secret, and Slack's own published signing example.
Then a table of hostile requests for each: every one is refused with its exact sentence or
read as "not ours" (None), and nothing else ever escapes."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest

from remediator.escalate import acks
from remediator.escalate.acks import Ack, AckRefused, pagerduty_ack, slack_ack

# ---- PagerDuty -------------------------------------------------------------------------------

SECRET = "whsec-0123456789abcdef0123456789abcdef"
ROTATED = "whsec-fedcba9876543210fedcba9876543210"

#: PagerDuty's documented v3 webhook payload (developer docs, "Webhook Payload"), as sent.
DOCUMENTED = """{
  "event": {
    "id": "5ac64822-4adc-4fda-ade0-410becf0de4f",
    "event_type": "incident.priority_updated",
    "resource_type": "incident",
    "occurred_at": "2020-10-02T18:45:22.169Z",
    "agent": {
      "html_url": "https://acme.pagerduty.com/users/PLH1HKV",
      "id": "PLH1HKV",
      "self": "https://api.pagerduty.com/users/PLH1HKV",
      "summary": "Tenex Engineer",
      "type": "user_reference"
    },
    "client": {
      "name": "PagerDuty"
    },
    "data": {
      "id": "PGR0VU2",
      "type": "incident",
      "self": "https://api.pagerduty.com/incidents/PGR0VU2",
      "html_url": "https://acme.pagerduty.com/incidents/PGR0VU2",
      "number": 2,
      "status": "triggered",
      "incident_key": "d3640fbd41094207a1c11e58e46b1662",
      "created_at": "2020-04-09T15:16:27Z",
      "title": "A little bump in the road",
      "service": {
        "html_url": "https://acme.pagerduty.com/services/PF9KMXH",
        "id": "PF9KMXH",
        "self": "https://api.pagerduty.com/services/PF9KMXH",
        "summary": "API Service",
        "type": "service_reference"
      },
      "urgency": "high",
      "resolve_reason": null
    }
  }
}"""
ACKNOWLEDGED = DOCUMENTED.replace("incident.priority_updated", "incident.acknowledged").replace(
    '"status": "triggered"', '"status": "acknowledged"'
)
RESOLVED = DOCUMENTED.replace("incident.priority_updated", "incident.resolved")
AT = datetime(2020, 10, 2, 18, 45, 22, 169000, tzinfo=UTC)


def pd_signature(body: bytes, secret: str = SECRET) -> str:
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def pd_headers(body: bytes, signature: str | None = None) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "PagerDuty-Webhook/V3.0",
        "X-PagerDuty-Signature": pd_signature(body) if signature is None else signature,
    }


@pytest.mark.parametrize(("body", "kind"), [(ACKNOWLEDGED, "acknowledged"), (RESOLVED, "resolved")])
def test_a_signed_pagerduty_acknowledgement_or_resolve_names_the_incident_and_who(
    body: str, kind: str
) -> None:
    raw = body.encode()
    assert pagerduty_ack(pd_headers(raw), raw, [SECRET]) == Ack(
        kind,  # type: ignore[arg-type]
        "d3640fbd41094207a1c11e58e46b1662",
        "Tenex Engineer",
        "pagerduty",
        AT,
        "https://acme.pagerduty.com/incidents/PGR0VU2",
    )


def test_another_pagerduty_event_is_genuine_but_not_an_acknowledgement() -> None:
    raw = DOCUMENTED.encode()
    assert pagerduty_ack(pd_headers(raw), raw, [SECRET]) is None


def test_during_a_secret_rotation_either_signature_and_either_secret_is_enough() -> None:
    raw = ACKNOWLEDGED.encode()
    both = f"{pd_signature(raw, ROTATED)},{pd_signature(raw)}"
    assert pagerduty_ack(pd_headers(raw, both), raw, [SECRET]) is not None
    assert pagerduty_ack(pd_headers(raw, both), raw, ["old-secret", ROTATED]) is not None
    lower = {k.lower(): v for k, v in pd_headers(raw).items()}  # headers are case-insensitive
    assert pagerduty_ack(lower, raw, [SECRET]) is not None


def signed_pd(body: bytes | str) -> tuple[dict[str, str], bytes]:
    raw = body.encode() if isinstance(body, str) else body
    return pd_headers(raw), raw


def pd_event(**event: Any) -> str:
    return json.dumps({"event": {"event_type": "incident.acknowledged", **event}})


GOOD = ACKNOWLEDGED.encode()
PD_HOSTILE: dict[str, tuple[dict[str, str], bytes, str | None]] = {
    "no signature header": ({"Content-Type": "application/json"}, GOOD,
                            acks.NO_PAGERDUTY_SIGNATURE),
    "the wrong secret": (pd_headers(GOOD, pd_signature(GOOD, "guess")), GOOD,
                         acks.PAGERDUTY_MISMATCH),
    "another body's signature": (pd_headers(GOOD, pd_signature(RESOLVED.encode())), GOOD,
                                 acks.PAGERDUTY_MISMATCH),
    "a body changed after signing": (pd_headers(GOOD), GOOD + b" ", acks.PAGERDUTY_MISMATCH),
    "an empty header": (pd_headers(GOOD, ""), GOOD, acks.PAGERDUTY_MISMATCH),
    "another signature version": (pd_headers(GOOD, pd_signature(GOOD).replace("v1=", "v2=")),
                                  GOOD, acks.PAGERDUTY_MISMATCH),
    "a signature in capitals is the same hex": (
        pd_headers(GOOD, "v1=" + pd_signature(GOOD)[3:].upper()), GOOD, "acknowledged"),
    "non-ASCII in the header": (pd_headers(GOOD, "v1=é" + "0" * 63), GOOD,
                                acks.PAGERDUTY_MISMATCH),
    "a NUL in the header": (pd_headers(GOOD, pd_signature(GOOD) + "\x00"), GOOD,
                            acks.PAGERDUTY_MISMATCH),
    "not UTF-8": (*signed_pd(b'{"event": "\xff"}'), acks.NOT_UTF8),
    "not JSON": (*signed_pd("event=incident.acknowledged"), acks.NOT_JSON),
    "a raw NUL in the JSON": (*signed_pd('{"event": "\x00"}'), acks.NOT_JSON),
    "NaN": (*signed_pd('{"event": NaN}'), acks.NOT_JSON),
    "a number past the parser's digits": (*signed_pd('{"n": ' + "9" * 5000 + "}"),
                                          acks.NOT_JSON),
    "nesting past the parser's depth": (*signed_pd("[" * 100_000), acks.NOT_JSON),
    "a repeated key": (*signed_pd('{"event": {}, "event": {}}'), acks.REPEATED_KEY),
    "a JSON array": (*signed_pd("[]"), acks.NOT_PAGERDUTY),
    "no event": (*signed_pd("{}"), acks.NOT_PAGERDUTY),
    "an event that is a string": (*signed_pd('{"event": "x"}'), acks.NOT_PAGERDUTY),
    "a ping": (*signed_pd('{"event": {"event_type": "pagey.ping"}}'), None),
    "an event type that is a list": (*signed_pd('{"event": {"event_type": []}}'), None),
    "no data": (*signed_pd(pd_event()), acks.NOT_PAGERDUTY),
    "no incident key": (*signed_pd(pd_event(data={"incident_key": None})),
                        acks.PAGERDUTY_NO_KEY),
    "an incident key that is a number": (*signed_pd(pd_event(data={"incident_key": 7})),
                                         acks.PAGERDUTY_NO_KEY),
    "no time": (*signed_pd(pd_event(data={"incident_key": "k"})), acks.PAGERDUTY_BAD_TIME),
    "a time that is not one": (
        *signed_pd(pd_event(data={"incident_key": "k"}, occurred_at="yesterday")),
        acks.PAGERDUTY_BAD_TIME),
}  # fmt: skip


@pytest.mark.parametrize("case", PD_HOSTILE)
def test_a_hostile_pagerduty_request_is_refused_with_its_sentence_or_ignored(case: str) -> None:
    headers, body, expected = PD_HOSTILE[case]
    try:
        got = pagerduty_ack(headers, body, [SECRET])
    except AckRefused as refused:
        assert str(refused) == expected
        return
    if expected is None:
        assert got is None
    else:
        assert got is not None and got.kind == expected


def test_without_a_secret_no_pagerduty_request_is_genuine() -> None:
    with pytest.raises(AckRefused, match=f"^{acks.PAGERDUTY_MISMATCH}$"):
        pagerduty_ack(pd_headers(GOOD), GOOD, [])


def test_who_acknowledged_is_shown_as_text_whatever_the_name_holds() -> None:
    event = {
        "agent": {"summary": "Zoë 山田\x00<!channel>\u202e" + "x" * 500},
        "occurred_at": "2024-02-29T23:59:59+01:00",
        "data": {"incident_key": "remediator-aa01-7", "html_url": "javascript:alert(1)"},
    }
    ack = pagerduty_ack(*signed_pd(pd_event(**event)), [SECRET])
    assert ack is not None
    assert ack.by.startswith("Zoë 山田\ufffd<!channel>\ufffdxxx") and len(ack.by) == 200
    assert ack.by.endswith("… [truncated]")
    assert ack.at == datetime(2024, 2, 29, 22, 59, 59, tzinfo=UTC)
    assert ack.url == ""  # only an https link is kept


def test_a_pagerduty_event_with_no_agent_was_acknowledged_by_pagerduty() -> None:
    event = {"agent": None, "occurred_at": "2024-01-01T00:00:00Z", "data": {"incident_key": "k"}}
    ack = pagerduty_ack(*signed_pd(pd_event(**event)), [SECRET])
    assert ack is not None and ack.by == "PagerDuty"


# ---- Slack -----------------------------------------------------------------------------------

#: Slack's published example ("Verifying requests from Slack"): a slash command.
SLACK_DOC_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_DOC_TIMESTAMP = "1531420618"
SLACK_DOC_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id="
    b"G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook"
    b"-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F3977"
    b"00885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d1"
    b"0d2c447fce8b6703c"
)
SLACK_DOC_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"

SIGNING = "e3b0c44298fc1c149afbf4c8996fb924"
NOW = 1_760_000_000.0


def interaction(**overrides: Any) -> dict[str, Any]:
    """A ``block_actions`` payload as Slack documents it, for a click on Acknowledge."""
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": "U0123ABCD", "username": "ada", "name": "ada", "team_id": "T0123ABCD"},
        "api_app_id": "A0123ABCD",
        "token": "Shh_its_a_seekrit",
        "container": {"type": "message", "message_ts": "1760000000.000100",
                      "channel_id": "C0123456789", "is_ephemeral": False},
        "trigger_id": "12466734323.1395872398.4ad2d8f9c3ed9d0e8f4e2f8f5d6b9e2c",
        "team": {"id": "T0123ABCD", "domain": "acme"},
        "channel": {"id": "C0123456789", "name": "incidents"},
        "response_url": "https://hooks.slack.com/actions/T0123ABCD/1234/abcd",
        "actions": [{"action_id": "remediator_ack", "block_id": "b1",
                     "text": {"type": "plain_text", "text": "Acknowledge", "emoji": True},
                     "value": "remediator-aa01-7", "style": "primary", "type": "button",
                     "action_ts": "1760000001.123456"}],
    }  # fmt: skip
    payload.update(overrides)
    return payload


def form(payload: Any) -> bytes:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return b"payload=" + quote(text, safe="").encode()


def slack_signed(body: bytes, timestamp: str = str(int(NOW)), secret: str = SIGNING) -> str:
    base = f"v0:{timestamp}:".encode() + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def slack_headers(
    body: bytes, timestamp: str = str(int(NOW)), signature: str | None = None
) -> dict[str, str]:
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": slack_signed(body, timestamp) if signature is None else signature,
    }


def test_a_signed_click_on_acknowledge_names_the_incident_and_who() -> None:
    body = form(interaction())
    assert slack_ack(slack_headers(body), body, SIGNING, NOW + 4) == Ack(
        "acknowledged", "remediator-aa01-7", "ada", "slack", datetime.fromtimestamp(NOW, UTC)
    )


def test_slacks_published_signing_example_verifies_and_is_not_an_interaction() -> None:
    headers = {
        "X-Slack-Request-Timestamp": SLACK_DOC_TIMESTAMP,
        "X-Slack-Signature": SLACK_DOC_SIGNATURE,
    }
    now = float(SLACK_DOC_TIMESTAMP) + 60
    assert slack_ack(headers, SLACK_DOC_BODY, SLACK_DOC_SECRET, now) is None
    with pytest.raises(AckRefused, match=f"^{acks.SLACK_MISMATCH}$"):
        slack_ack(headers, SLACK_DOC_BODY + b"&x=1", SLACK_DOC_SECRET, now)


def signed_slack(body: bytes) -> tuple[dict[str, str], bytes]:
    return slack_headers(body), body


CLICK = form(interaction())
TS = str(int(NOW))
SLACK_HOSTILE: dict[str, tuple[dict[str, str], bytes, str | None]] = {
    "no signature header": ({"X-Slack-Request-Timestamp": TS}, CLICK, acks.NO_SLACK_SIGNATURE),
    "no timestamp header": ({"X-Slack-Signature": slack_signed(CLICK)}, CLICK,
                            acks.NO_SLACK_SIGNATURE),
    "the wrong secret": (slack_headers(CLICK, signature=slack_signed(CLICK, secret="guess")),
                         CLICK, acks.SLACK_MISMATCH),
    "another body's signature": (slack_headers(CLICK, signature=slack_signed(b"payload=%7B%7D")),
                                 CLICK, acks.SLACK_MISMATCH),
    "another timestamp's signature": (
        slack_headers(CLICK, signature=slack_signed(CLICK, str(int(NOW) - 1))), CLICK,
        acks.SLACK_MISMATCH),
    "a signature that is not v0 hex": (slack_headers(CLICK, signature="v0=zz"), CLICK,
                                       acks.SLACK_MISMATCH),
    "non-ASCII in the signature": (slack_headers(CLICK, signature="v0=é" + "0" * 63), CLICK,
                                   acks.SLACK_MISMATCH),
    "a timestamp six minutes old": (slack_headers(CLICK, str(int(NOW) - 301)), CLICK,
                                    acks.SLACK_TIMESTAMP_WINDOW),
    "a timestamp six minutes ahead": (slack_headers(CLICK, str(int(NOW) + 301)), CLICK,
                                      acks.SLACK_TIMESTAMP_WINDOW),
    "a timestamp five minutes old is fine": (slack_headers(CLICK, str(int(NOW) - 300)), CLICK,
                                             "acknowledged"),
    "a timestamp that is not a number": (slack_headers(CLICK, "soon"), CLICK,
                                         acks.SLACK_TIMESTAMP_FORMAT),
    "a timestamp with a fraction": (slack_headers(CLICK, f"{TS}.5"), CLICK,
                                    acks.SLACK_TIMESTAMP_FORMAT),
    "a timestamp in Arabic-Indic digits": (slack_headers(CLICK, "١٧٦٠٠٠٠٠٠٠"), CLICK,
                                           acks.SLACK_TIMESTAMP_FORMAT),
    "a negative timestamp": (slack_headers(CLICK, "-" + TS), CLICK, acks.SLACK_TIMESTAMP_FORMAT),
    "a huge timestamp": (slack_headers(CLICK, "9" * 400), CLICK, acks.SLACK_TIMESTAMP_FORMAT),
    "not UTF-8": (*signed_slack(b"payload=\xff"), acks.NOT_UTF8),
    "JSON, not a form": (*signed_slack(b'{"type": "block_actions"}'), acks.NOT_A_FORM),
    "a form without a payload": (*signed_slack(b"command=%2Fack&text=x"), None),
    "an empty body": (*signed_slack(b""), None),
    "a repeated payload": (*signed_slack(CLICK + b"&" + CLICK), acks.REPEATED_KEY),
    "a payload that is not JSON": (*signed_slack(b"payload=ack"), acks.NOT_JSON),
    "a payload that is a JSON array": (*signed_slack(form("[]")), acks.NOT_SLACK),
    "a payload with a repeated key": (
        *signed_slack(form('{"type": "block_actions", "type": "x"}')), acks.REPEATED_KEY),
    "a NUL in the payload": (*signed_slack(form('{"type": "\x00"}')), acks.NOT_JSON),
    "another interaction": (*signed_slack(form(interaction(type="view_submission"))), None),
    "another button": (
        *signed_slack(form(interaction(actions=[{"action_id": "remediator_link_runbook"}]))),
        None),
    "actions that are not a list": (*signed_slack(form(interaction(actions={}))), None),
    "no dedup key": (
        *signed_slack(form(interaction(actions=[{"action_id": "remediator_ack"}]))),
        acks.SLACK_NO_KEY),
    "a dedup key that is a number": (
        *signed_slack(form(interaction(actions=[{"action_id": "remediator_ack", "value": 7}]))),
        acks.SLACK_NO_KEY),
}  # fmt: skip


@pytest.mark.parametrize("case", SLACK_HOSTILE)
def test_a_hostile_slack_request_is_refused_with_its_sentence_or_ignored(case: str) -> None:
    headers, body, expected = SLACK_HOSTILE[case]
    try:
        got = slack_ack(headers, body, SIGNING, NOW)
    except AckRefused as refused:
        assert str(refused) == expected
        return
    if expected is None:
        assert got is None
    else:
        assert got is not None and got.kind == expected


@pytest.mark.parametrize(
    ("user", "by"),
    [
        ({"id": "U1", "username": "ada", "name": "Ada L."}, "ada"),
        ({"id": "U1", "name": "Ada L."}, "Ada L."),
        ({"id": "U1"}, "U1"),
        ({}, "a Slack user"),
        ("U1", "a Slack user"),
        ({"username": "ǅemal\u202e\x00 山田 🇫🇷"}, "ǅemal\ufffd\ufffd 山田 🇫🇷"),
    ],
)
def test_who_clicked_is_their_handle_shown_as_text(user: Any, by: str) -> None:
    body = form(interaction(user=user))
    ack = slack_ack(slack_headers(body), body, SIGNING, NOW)
    assert ack is not None and ack.by == by


def test_an_empty_signing_secret_verifies_nothing() -> None:
    with pytest.raises(AckRefused, match=f"^{acks.SLACK_MISMATCH}$"):
        slack_ack(slack_headers(CLICK), CLICK, "", NOW)
