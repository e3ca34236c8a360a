"""What an alert's own words can make a page say: a table of hostile label values through
each real sink and the real HTTP client, asserted on the exact body the stand-in servers
recorded (Slack cannot be made to ping, link or mention; PagerDuty and Opsgenie get plain
text; the webhook gets the value itself); each documented size limit, cut with the marker
and never inside a character or a grapheme cluster; and the service end to end, posting an
alert whose name is a channel ping with a link."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from remediator.clients.http import HttpClient
from remediator.escalate.sinks import escape, truncate
from remediator.escalate.sinks.base import Event, Notification
from remediator.escalate.sinks.opsgenie import OpsgenieSink
from remediator.escalate.sinks.pagerduty import PagerDutySink
from remediator.escalate.sinks.slack import SlackSink
from remediator.escalate.sinks.webhook import WebhookSink
from tests.support import waiting
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.service import serve, settings_for
from tests.support.sinks import OpsgenieStub, PagerDutyStub, SlackStub, WebhookStub

ROUTING_KEY = "r" * 32
GENIE_KEY = str(uuid.UUID(int=7))
HOOK = "/services/T0/B0/escaping"
MARKER = "… [truncated]"
FFFD = "\ufffd"
WJ = "\u2060"


# ---- the hostile values: (value, as Slack shows it, as one plain line, as plain lines) ------

HOSTILE: dict[str, tuple[str, ...]] = {
    "channel ping": ("<!channel>", "&lt;!channel&gt;", "<!channel>", "<!channel>"),
    "disguised link": (
        "<https://evil.example|click here>",
        "&lt;https://evil.example|click here&gt;",
        "<https://evil.example|click here>",
        "<https://evil.example|click here>",
    ),
    "user mention": ("<@U123>", "&lt;@U123&gt;", "<@U123>", "<@U123>"),
    "group mention": (
        "<!subteam^S1|@oncall>",
        "&lt;!subteam^S1|@oncall&gt;",
        "<!subteam^S1|@oncall>",
        "<!subteam^S1|@oncall>",
    ),
    "already escaped": (
        "&lt;!here&gt; &amp;", "&amp;lt;!here&amp;gt; &amp;amp;", *["&lt;!here&gt; &amp;"] * 2
    ),
    "broadcast words": (
        "@here @channel @Everyone me@herefordshire",
        f"@{WJ}here @{WJ}channel @{WJ}Everyone me@herefordshire",
        "@here @channel @Everyone me@herefordshire",
        "@here @channel @Everyone me@herefordshire",
    ),
    "right-to-left override": ("evil\u202etxt.exe", *[f"evil{FFFD}txt.exe"] * 3),
    "bidi isolates": ("a\u2066b\u2069c", *[f"a{FFFD}b{FFFD}c"] * 3),
    "zero-width characters": ("pro\u200bd\u200c\u200d\ufeff",) * 4,
    "C0 and C1 controls": (
        "a\x00b\x07c\x1b[31md\te\x7ff\x9bg",
        f"a{FFFD}b{FFFD}c{FFFD}[31md e{FFFD}f{FFFD}g",
        f"a{FFFD}b{FFFD}c{FFFD}[31md e{FFFD}f{FFFD}g",
        f"a{FFFD}b{FFFD}c{FFFD}[31md e{FFFD}f{FFFD}g",
    ),
    "line breaks": (
        "one\ntwo\r\nthree\rfour\u2028five\x85six",
        "one two three four five six",
        "one two three four five six",
        "one\ntwo\nthree\nfour\nfive\nsix",
    ),
    "lone surrogate": ("x\ud800y\udfffz", *[f"x{FFFD}y{FFFD}z"] * 3),
    "emoji and combining marks": (
        "👨‍👩‍👧 🇫🇷 e\u0301 👍🏽",
        "👨‍👩‍👧 🇫🇷 e\u0301 👍🏽",
        "👨‍👩‍👧 🇫🇷 e\u0301 👍🏽",
        "👨‍👩‍👧 🇫🇷 e\u0301 👍🏽",
    ),
}  # fmt: skip

#: What the webhook receives: the value itself, with only lone surrogates repaired.
AS_DATA = {name: escape.text(row[0]) for name, row in HOSTILE.items()}


def note(
    summary: str,
    details: dict[str, Any] | None = None,
    *,
    event: Event = Event.TRIGGER,
    dedup_key: str = "db-down",
    tier: int = 0,
) -> Notification:
    return Notification(event, dedup_key, "SEV-1", summary, tier, "sev1-ladder", details or {})


@pytest.fixture
async def pagerduty() -> AsyncIterator[PagerDutyStub]:
    async with PagerDutyStub() as stub:
        yield stub


@pytest.fixture
async def slack() -> AsyncIterator[SlackStub]:
    async with SlackStub(rate_limit=1000) as stub:
        yield stub


@pytest.fixture
async def opsgenie() -> AsyncIterator[OpsgenieStub]:
    async with OpsgenieStub() as stub:
        yield stub


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookStub]:
    async with WebhookStub() as stub:
        yield stub


def recorded(body: bytes) -> Any:
    """The body as the receiver reads it: strict UTF-8, then JSON."""
    return json.loads(body.decode("utf-8"))


# ---- the table, per sink -------------------------------------------------------------------


@pytest.mark.parametrize("case", HOSTILE)
async def test_slack_shows_a_hostile_value_as_typed_and_cannot_be_made_to_ping_or_link(
    client: HttpClient, slack: SlackStub, case: str
) -> None:
    value, shown, _, _ = HOSTILE[case]
    await SlackSink("slack", slack.webhook_url(HOOK)).send(client, note(f"[SEV-1] {value}"))
    [request] = slack.log
    assert recorded(request.body) == {
        "text": f":rotating_light: SEV-1: {shown} (db-down)",
        "unfurl_links": False,
        "unfurl_media": False,
    }
    text = slack.messages[0]["json"]["text"]
    assert "<" not in text and ">" not in text
    assert not re.search(r"@(channel|here|everyone)\b", text, re.IGNORECASE)


@pytest.mark.parametrize("case", HOSTILE)
async def test_pagerduty_gets_a_hostile_value_as_plain_text_with_no_control_character(
    client: HttpClient, pagerduty: PagerDutyStub, case: str
) -> None:
    value, _, line, lines = HOSTILE[case]
    sink = PagerDutySink("pd", ROUTING_KEY, f"{pagerduty.url}/v2/enqueue")
    await sink.send(client, note(f"[SEV-1] {value}", {"label": value}))
    [request] = pagerduty.log
    assert request.status == 202
    assert recorded(request.body) == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": "db-down",
        "payload": {
            "summary": f"[SEV-1] {line}",
            "source": "remediator",
            "severity": "critical",
            "custom_details": {"label": lines},
        },
    }


@pytest.mark.parametrize("case", HOSTILE)
async def test_opsgenie_gets_a_hostile_value_as_plain_text_with_no_control_character(
    client: HttpClient, opsgenie: OpsgenieStub, case: str
) -> None:
    value, _, line, lines = HOSTILE[case]
    await OpsgenieSink("og", GENIE_KEY, opsgenie.url).send(
        client, note(f"[SEV-1] {value}", {"label": value})
    )
    [request] = opsgenie.log
    assert request.status == 202
    assert recorded(request.body) == {
        "message": f"[SEV-1] {line}",
        "alias": "db-down",
        "description": f"[SEV-1] {lines}",
        "priority": "P1",
        "details": {"label": lines},
        "source": "remediator",
        "tags": ["SEV-1"],
    }


@pytest.mark.parametrize("case", HOSTILE)
async def test_the_webhook_gets_a_hostile_value_itself_as_ascii_json(
    client: HttpClient, webhook: WebhookStub, case: str
) -> None:
    value = HOSTILE[case][0]
    sink = WebhookSink("hook", f"{webhook.url}/remediator")
    await sink.send(client, note(f"[SEV-1] {value}", {"label": value}))
    [request] = webhook.received
    assert request.body.isascii()
    assert recorded(request.body) == {
        "event": "trigger",
        "dedup_key": "db-down",
        "severity": "SEV-1",
        "summary": f"[SEV-1] {AS_DATA[case]}",
        "tier": 0,
        "policy": "sev1-ladder",
        "details": {"label": AS_DATA[case]},
    }


async def test_slack_names_the_severity_once_and_the_tier_and_resolve_are_escaped_too(
    client: HttpClient, slack: SlackStub
) -> None:
    sink = SlackSink("slack", slack.webhook_url(HOOK))
    key = "remediator-ineffective-<!here>-scale_out"
    await sink.send(client, note("[SEV-1] APIUnavailable on api: down", dedup_key=key, tier=1))
    await sink.send(client, note("[SEV-1] <@U1>", event=Event.RESOLVE, dedup_key=key))
    assert [m["json"]["text"] for m in slack.messages] == [
        ":rotating_light: SEV-1, escalation tier 2: APIUnavailable on api: down"
        " (remediator-ineffective-&lt;!here&gt;-scale_out)",
        ":white_check_mark: Resolved: &lt;@U1&gt; (remediator-ineffective-&lt;!here&gt;-scale_out)",
    ]


def test_a_slack_link_ends_where_it_is_meant_to_and_its_text_is_escaped() -> None:
    link = escape.slack_link("https://x.example/a b?c=1&d=<2>|3", "<!here> the runbook")
    assert link == "<https://x.example/a%20b?c=1&amp;d=%3C2%3E%7C3|&lt;!here&gt; the runbook>"


# ---- size limits -------------------------------------------------------------------------------


async def test_pagerduty_cuts_the_summary_at_1024_characters_with_the_marker(
    client: HttpClient, pagerduty: PagerDutyStub
) -> None:
    sink = PagerDutySink("pd", ROUTING_KEY, f"{pagerduty.url}/v2/enqueue")
    await sink.send(client, note("[SEV-1] " + "x" * 10_000))
    summary = pagerduty.events[0]["payload"]["summary"]
    assert summary == "[SEV-1] " + "x" * (1024 - 8 - len(MARKER)) + MARKER
    assert len(summary) == 1024


async def test_pagerduty_shrinks_the_longest_details_until_the_event_fits_512_kb(
    client: HttpClient, pagerduty: PagerDutyStub
) -> None:
    details = {"small": "kept", "big": "é" * 400_000, "bigger": "x" * 600_000}
    sink = PagerDutySink("pd", ROUTING_KEY, f"{pagerduty.url}/v2/enqueue")
    await sink.send(client, note("[SEV-1] big", details))
    [request] = pagerduty.log
    assert request.status == 202  # the stand-in answers 413 past 512 KB
    assert len(request.body) <= 512 * 1024
    sent = pagerduty.events[0]["payload"]["custom_details"]
    assert sent["small"] == "kept"
    assert sent["bigger"] == MARKER  # the longest goes first, alone past the limit
    assert sent["big"].endswith(MARKER) and set(sent["big"][: -len(MARKER)]) == {"é"}
    assert len(sent["big"]) > 100_000  # cut by what was too much, not to nothing


async def test_a_dedup_key_past_255_characters_is_one_stable_pagerduty_incident(
    client: HttpClient, pagerduty: PagerDutyStub
) -> None:
    sink = PagerDutySink("pd", ROUTING_KEY, f"{pagerduty.url}/v2/enqueue")
    long_key = "remediator-ineffective-" + "t" * 300 + "-scale_out"
    other_key = long_key.replace("scale_out", "recycle_pod")
    await sink.send(client, note("[SEV-1] a", dedup_key=long_key))
    await sink.send(client, note("[SEV-1] b", dedup_key=other_key))
    await sink.send(client, note("", event=Event.RESOLVE, dedup_key=long_key))
    assert [r.status for r in pagerduty.log] == [202, 202, 202]
    first, second = (e["dedup_key"] for e in pagerduty.events[:2])
    assert len(first) == 255 and first.startswith("remediator-ineffective-ttt")
    assert first != second
    assert pagerduty.incidents[first].status == "resolved"
    assert pagerduty.incidents[second].status == "triggered"


async def test_slack_cuts_the_text_at_40000_characters_and_never_inside_an_entity(
    client: HttpClient, slack: SlackStub
) -> None:
    sink = SlackSink("slack", slack.webhook_url(HOOK))
    await sink.send(client, note("[SEV-1] " + "<" * 10_001))
    text = slack.messages[0]["json"]["text"]
    head = ":rotating_light: SEV-1: "
    assert text.startswith(head) and text.endswith(MARKER)
    assert re.fullmatch(r"(&lt;)+", text[len(head) : -len(MARKER)])
    assert 40_000 - 4 <= len(text) <= 40_000


async def test_opsgenie_cuts_message_description_and_details_at_their_limits(
    client: HttpClient, opsgenie: OpsgenieStub
) -> None:
    details = {"short": "kept", "label": "y" * 10_000}
    await OpsgenieSink("og", GENIE_KEY, opsgenie.url).send(
        client, note("[SEV-1] " + "x" * 20_000, details)
    )
    [request] = opsgenie.log
    assert request.status == 202
    body = recorded(request.body)
    assert body["message"] == "[SEV-1] " + "x" * (130 - 8 - len(MARKER)) + MARKER
    assert body["description"] == "[SEV-1] " + "x" * (15_000 - 8 - len(MARKER)) + MARKER
    assert body["details"]["short"] == "kept"
    size = sum(len(k) + len(v) for k, v in body["details"].items())
    assert 8_000 - 16 <= size <= 8_000 and body["details"]["label"].endswith(MARKER)


async def test_an_opsgenie_alias_past_512_characters_is_created_and_closed_as_one_alert(
    client: HttpClient, opsgenie: OpsgenieStub
) -> None:
    sink = OpsgenieSink("og", GENIE_KEY, opsgenie.url)
    key = "remediator-ineffective-" + "t" * 600
    await sink.send(client, note("[SEV-1] a", dedup_key=key))
    await sink.send(client, note("", event=Event.RESOLVE, dedup_key=key))
    [alert] = opsgenie.all_alerts
    assert len(alert["alias"]) == 512 and alert["alias"].startswith("remediator-ineffective-t")
    assert alert["status"] == "closed"


async def test_opsgenie_never_cuts_an_emoji_or_a_flag_at_its_130_characters(
    client: HttpClient, opsgenie: OpsgenieStub
) -> None:
    # 8 + 107 = 115 units before the family emoji: the cut (130 - 14 = 116) falls inside it.
    summary = "[SEV-1] " + "a" * 107 + "👨‍👩‍👧🇫🇷" + "b" * 20
    await OpsgenieSink("og", GENIE_KEY, opsgenie.url).send(client, note(summary))
    assert recorded(opsgenie.log[0].body)["message"] == "[SEV-1] " + "a" * 107 + MARKER


CLUSTERS: dict[str, list[str]] = {
    "family (ZWJ sequence)": ["👨‍👩‍👧"],
    "flags in a row": ["🇫🇷", "🇩🇪", "🇮🇹"],
    "combining accents": ["e\u0301\u0323"],
    "skin tone": ["👍🏽"],
    "keycap": ["1\ufe0f\u20e3"],
    "Hangul jamo": ["\u1100\u1161\u11a8"],
    "subdivision flag": ["🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"],
}


@pytest.mark.parametrize("clusters", CLUSTERS.values(), ids=CLUSTERS)
def test_a_cut_at_any_position_keeps_each_grapheme_cluster_whole_or_drops_it(
    clusters: list[str],
) -> None:
    middle = "".join(clusters)
    text = "a" * 20 + middle + "b" * 20
    whole = ["a" * n for n in range(21)]
    whole += ["a" * 20 + "".join(clusters[:k]) for k in range(1, len(clusters) + 1)]
    whole += ["a" * 20 + middle + "b" * n for n in range(21)]
    for limit in range(len(MARKER), truncate.units(text)):
        cut = truncate.fit(text, limit)
        assert truncate.units(cut) <= limit and cut.endswith(MARKER)
        assert cut[: -len(MARKER)] in whole, limit


# ---- end to end ----------------------------------------------------------------------------

RULES = """
policy:
  namespaces: [llm-research]
defaults:
  escalation: {{SEV-1: page, SEV-2: page, SEV-3: page}}
escalations:
  page:
    tiers: [{{after_s: 0, notify: [slack]}}]
sinks:
  slack: {{type: slack, webhook_url_file: {secret}}}
rules:
  - name: default
    matchers: []
    severity: SEV-1
"""


async def test_an_alert_named_as_a_channel_ping_with_a_link_reaches_slack_as_plain_words(
    tmp_path: Path, slack: SlackStub
) -> None:
    secret = tmp_path / "slack-url"
    secret.write_text(slack.webhook_url(HOOK) + "\n")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "rules.yaml").write_text(RULES.format(secret=secret))
    name = "<!channel> <https://evil.example|click here> @here"
    async with serve(settings_for(tmp_path, rules_dir=rules, delivery_poll_s=0.02)) as service:
        alert = webhook_alert(labels={"alertname": name})
        assert (await service.post(webhook_payload(alert)))[0] == 200
        await service.settle()
        await waiting.eventually(lambda: bool(slack.messages), "the page", 15.0, 0.02)
    text = slack.messages[0]["json"]["text"]
    assert text.startswith(
        ":rotating_light: SEV-1: &lt;!channel&gt; &lt;https://evil.example|click here&gt;"
        f" @{WJ}here"
    )
    # The only Slack markup left is the page's own links, whose addresses are encoded.
    links = re.findall(r"<([^<>|]*)\|([^<>]*)>", text)
    assert [label for _, label in links] == ["Silence"]
    assert all(" " not in href and "!" not in href.split("?")[0] for href, _ in links)
    bare = re.sub(r"<[^<>|]*\|[^<>]*>", "", text)
    assert "<" not in bare and ">" not in bare and "[SEV-1]" not in text
