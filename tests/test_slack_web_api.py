"""The Slack sink's Web API form (a bot token and a channel, through slack_sdk) against the
stand-in Slack over real HTTP: the page is one ``chat.postMessage`` whose channel and ``ts``
come back as the incident's reference; updates and later tiers are replies in its thread (a
later tier broadcast to the channel); a resolve edits the page (its Acknowledge button gone)
and replies; without a reference every message is a new one. Each Slack answer becomes
``SinkUnavailable`` or ``SinkRejected`` as ``clients.slack`` documents; Block Kit's limits
hold with hostile labels; and the incoming-webhook form with buttons sends the blocks."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from remediator.clients.http import HttpClient
from remediator.core.errors import SinkError, SinkRejected, SinkUnavailable
from remediator.escalate.sinks import truncate
from remediator.escalate.sinks.base import Event, Notification, Reference
from remediator.escalate.sinks.slack import SlackSink, ack_value
from tests.support.sinks import SlackStub

TOKEN = "xoxb-1234-5678-abcdefghijklmnop"
CHANNEL = "C0123456789"
MARKER = truncate.MARKER
HOOK = "/services/T0/B0/buttons"

DETAILS: dict[str, Any] = {
    "target": "llm-research/Deployment/api",
    "decisions": "https://remediator.example.com/api/v1/decisions?episode=7",
    "alert": {
        "annotations": {"summary": "p95 > 5 s", "runbook_url": "https://runbooks.example/latency"},
        "generator_url": "http://prometheus:9090/graph?g0.expr=x",
    },
}
PAGE = (
    ":rotating_light: SEV-2: HighLatency on api: refused. (remediator-aa01-7)\n"
    "p95 &gt; 5 s\nTarget: llm-research/Deployment/api\n"
    "<https://runbooks.example/latency|Runbook> · "
    "<http://prometheus:9090/graph?g0.expr=x|Alert source> · "
    "<https://remediator.example.com/api/v1/decisions?episode=7|What remediator decided>"
)


def note(
    event: Event = Event.TRIGGER,
    *,
    tier: int = 0,
    update: str = "",
    reference: Reference | None = None,
    summary: str = "[SEV-2] HighLatency on api: refused.",
    key: str = "remediator-aa01-7",
    details: dict[str, Any] | None = None,
) -> Notification:
    return Notification(
        event, key, "SEV-2", summary, tier, "page", DETAILS if details is None else details,
        update=update, reference=reference or {},
    )  # fmt: skip


@pytest.fixture
async def slack() -> AsyncIterator[SlackStub]:
    async with SlackStub(rate_limit=1000, tokens=[TOKEN], outside=["C0OUTSIDE00"]) as stub:
        yield stub


def api_sink(slack: SlackStub, *, buttons: bool = False, channel: str = CHANNEL) -> SlackSink:
    return SlackSink("slack", bot_token=TOKEN, channel=channel, api_url=slack.api_url,
                     buttons=buttons)  # fmt: skip


@pytest.fixture
async def sink(slack: SlackStub) -> AsyncIterator[SlackSink]:
    made = api_sink(slack)
    yield made
    await made.close()


@pytest.fixture
async def button_sink(slack: SlackStub) -> AsyncIterator[SlackSink]:
    made = api_sink(slack, buttons=True)
    yield made
    await made.close()


def calls(slack: SlackStub) -> list[tuple[str, Any]]:
    return [(r.path, r.json) for r in slack.log]


# ---- the story in one thread ---------------------------------------------------------------


async def test_a_page_is_one_post_message_and_returns_where_it_landed(
    client: HttpClient, slack: SlackStub, sink: SlackSink
) -> None:
    reference = await sink.send(client, note())
    [request] = slack.log
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert (request.path, request.json) == (
        "/api/chat.postMessage",
        {"channel": CHANNEL, "text": PAGE, "unfurl_links": False, "unfurl_media": False},
    )
    assert reference == {"channel": CHANNEL, "ts": slack.posted[0]["ts"]}


async def test_an_update_is_a_reply_in_the_pages_thread(
    client: HttpClient, slack: SlackStub, sink: SlackSink
) -> None:
    reference = await sink.send(client, note())
    assert reference is not None
    done = "remediator scaled out llm-research/Deployment/api from 2 to 4 replicas."
    assert await sink.send(client, note(Event.UPDATE, update=done, reference=reference)) is None
    [reply] = slack.replies(CHANNEL, reference["ts"])
    assert reply["json"] == {
        "channel": CHANNEL, "thread_ts": reference["ts"], "unfurl_links": False,
        "unfurl_media": False,
        "text": f"Update on HighLatency on api: refused. (remediator-aa01-7): {done}",
    }  # fmt: skip


async def test_a_later_tier_replies_in_the_thread_and_is_broadcast_to_the_channel(
    client: HttpClient, slack: SlackStub, sink: SlackSink
) -> None:
    reference = await sink.send(client, note())
    assert reference is not None
    await sink.send(client, note(tier=2, reference=reference))
    [reply] = slack.replies(CHANNEL, reference["ts"])
    assert reply["json"]["reply_broadcast"] is True
    assert reply["text"] == PAGE.replace("SEV-2:", "SEV-2, escalation tier 3:")


async def test_a_resolve_edits_the_page_without_its_acknowledge_button_then_replies(
    client: HttpClient, slack: SlackStub, button_sink: SlackSink
) -> None:
    reference = await button_sink.send(client, note())
    assert reference is not None
    page = slack.message(CHANNEL, reference["ts"])
    assert "remediator_ack" in action_ids(page["blocks"])
    await button_sink.send(client, note(Event.RESOLVE, reference=reference))
    assert [path for path, _ in calls(slack)] == [
        "/api/chat.postMessage", "/api/chat.update", "/api/chat.postMessage",
    ]  # fmt: skip
    resolved = PAGE.replace(":rotating_light: SEV-2:", ":white_check_mark: Resolved:")
    [edit] = page["edits"]
    assert (edit["channel"], edit["ts"], edit["text"]) == (CHANNEL, reference["ts"], resolved)
    assert action_ids(edit["blocks"]) == [
        "remediator_link_runbook", "remediator_link_source", "remediator_link_decisions",
    ]  # fmt: skip
    [reply] = slack.replies(CHANNEL, reference["ts"])
    assert reply["text"] == ":white_check_mark: Resolved: HighLatency on api: refused. " \
        "(remediator-aa01-7)"  # fmt: skip
    assert "reply_broadcast" not in reply["json"]


async def test_a_resolve_without_buttons_edits_only_the_text(
    client: HttpClient, slack: SlackStub, sink: SlackSink
) -> None:
    reference = await sink.send(client, note())
    assert reference is not None
    await sink.send(client, note(Event.RESOLVE, reference=reference))
    [edit] = slack.message(CHANNEL, reference["ts"])["edits"]
    assert set(edit) == {"channel", "ts", "text"}
    assert edit["text"].startswith(":white_check_mark: Resolved: HighLatency on api")


@pytest.mark.parametrize("reference", [{}, {"channel": CHANNEL}, {"ts": 1.5, "channel": CHANNEL}])
@pytest.mark.parametrize(
    "later", [note(Event.UPDATE, update="Verified."), note(tier=1), note(Event.RESOLVE)]
)
async def test_without_a_usable_reference_every_message_is_a_new_one(
    client: HttpClient, slack: SlackStub, sink: SlackSink, reference: Reference,
    later: Notification,
) -> None:  # fmt: skip
    await sink.send(client, dataclasses.replace(later, reference=reference))
    assert [path for path, _ in calls(slack)] == ["/api/chat.postMessage"]
    [message] = slack.posted
    assert message["thread_ts"] is None and message["channel"] == CHANNEL


# ---- Slack's answers ------------------------------------------------------------------------


async def test_a_rate_limited_post_is_retried_after_what_slack_said(client: HttpClient) -> None:
    async with SlackStub(rate_limit=1, rate_window=30.0) as slack:
        sink = api_sink(slack)
        try:
            await sink.send(client, note())
            with pytest.raises(SinkUnavailable) as caught:
                await sink.send(client, note(key="another"))
        finally:
            await sink.close()
    assert str(caught.value) == "Slack chat.postMessage answered 429: ratelimited"
    assert caught.value.retry_after_s == 30.0
    assert slack.log[-1].status == 429 and slack.throttled == 1


@pytest.mark.parametrize(
    ("error", "status", "kind", "retry_after_s"),
    [
        ("ratelimited", 429, SinkUnavailable, 7.0),
        ("service_unavailable", 200, SinkUnavailable, None),
        ("fatal_error", 200, SinkUnavailable, None),
        ("internal_error", 200, SinkUnavailable, None),
        ("request_timeout", 200, SinkUnavailable, None),
        ("msg_too_long", 200, SinkRejected, None),
        ("invalid_blocks", 200, SinkRejected, None),
        ("is_archived", 200, SinkRejected, None),
        ("team_added_to_org", 503, SinkUnavailable, None),
    ],
)
async def test_each_slack_error_is_temporary_or_permanent_as_slack_documents(
    client: HttpClient, slack: SlackStub, sink: SlackSink, error: str, status: int,
    kind: type[SinkError], retry_after_s: float | None,
) -> None:  # fmt: skip
    slack.fail_api_next(error, status, retry_after=7 if status == 429 else None)
    with pytest.raises(SinkError) as caught:
        await sink.send(client, note())
    assert type(caught.value) is kind
    assert str(caught.value) == f"Slack chat.postMessage answered {status}: {error}"
    assert caught.value.retry_after_s == retry_after_s


async def test_a_token_slack_does_not_know_is_rejected(
    client: HttpClient, slack: SlackStub
) -> None:
    sink = SlackSink("slack", bot_token="xoxb-revoked", channel=CHANNEL, api_url=slack.api_url)
    try:
        with pytest.raises(
            SinkRejected, match=r"^Slack chat.postMessage answered 200: invalid_auth$"
        ):
            await sink.send(client, note())
    finally:
        await sink.close()


@pytest.mark.parametrize(
    ("channel", "error"), [("C0NOSUCH000", "channel_not_found"), ("C0OUTSIDE00", "not_in_channel")]
)
async def test_a_channel_the_bot_cannot_post_to_is_rejected(
    client: HttpClient, slack: SlackStub, channel: str, error: str
) -> None:
    sink = api_sink(slack, channel=channel)
    try:
        with pytest.raises(SinkRejected) as caught:
            await sink.send(client, note())
    finally:
        await sink.close()
    assert str(caught.value) == f"Slack chat.postMessage answered 200: {error}"
    assert slack.posted == []


async def test_a_slack_500_in_plain_text_is_temporary(
    client: HttpClient, slack: SlackStub, sink: SlackSink
) -> None:
    slack.fail_next(1, status=500)
    with pytest.raises(SinkUnavailable) as caught:
        await sink.send(client, note())
    assert str(caught.value) == "Slack chat.postMessage answered 500: no error code"
    assert caught.value.retry_after_s is None


async def test_a_failed_edit_names_chat_update(
    client: HttpClient, slack: SlackStub, sink: SlackSink
) -> None:
    gone = {"channel": CHANNEL, "ts": "1.000001"}
    with pytest.raises(SinkRejected, match=r"^Slack chat.update answered 200: message_not_found$"):
        await sink.send(client, note(Event.RESOLVE, reference=gone))
    assert slack.posted == []  # the reply waits for the edit


async def test_an_unreachable_slack_is_temporary(
    client: HttpClient, slack: SlackStub, sink: SlackSink
) -> None:
    await slack.down()
    with pytest.raises(SinkUnavailable, match=r"^Slack chat.postMessage: ClientConnectorError"):
        await sink.send(client, note())


async def test_an_api_url_that_answers_without_json_is_rejected(
    client: HttpClient, slack: SlackStub
) -> None:
    """The webhook's host answers ``200 ok`` in plain text: the URL, not Slack, is wrong."""
    sink = SlackSink("slack", bot_token=TOKEN, channel=CHANNEL, api_url=slack.url + "/services/")
    try:
        with pytest.raises(SinkRejected) as caught:
            await sink.send(client, note())
    finally:
        await sink.close()
    assert str(caught.value) == (
        "Slack chat.postMessage answered without JSON: is the API URL right?"
    )


def test_a_sink_with_neither_form_is_a_config_error_and_hides_its_secrets() -> None:
    with pytest.raises(Exception, match=r"^sink s: give webhook_url, or bot_token and channel$"):
        SlackSink("s", bot_token=TOKEN)
    assert TOKEN not in repr(SlackSink("s", bot_token=TOKEN, channel=CHANNEL))
    assert "hooks" not in repr(SlackSink("s", "https://hooks.slack.com/services/T/B/secret"))


# ---- Block Kit -------------------------------------------------------------------------------


def action_ids(blocks: list[dict[str, Any]]) -> list[str]:
    return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


def sections(blocks: list[dict[str, Any]]) -> list[str]:
    return [b["text"]["text"] for b in blocks if b["type"] == "section"]


async def test_hostile_labels_keep_every_block_within_block_kits_limits(
    client: HttpClient, slack: SlackStub, button_sink: SlackSink
) -> None:
    long_key = "remediator-ineffective-" + "k" * 3_000
    details = {
        "alert": {
            "annotations": {"summary": "&" * 2_000, "description": "<!here> " * 300,
                            "runbook_url": "https://runbooks.example/" + "r" * 3_000},
            "generator_url": "http://prometheus:9090/graph",
        },
    }  # fmt: skip
    summary = "[SEV-2] " + "<" * 1_000
    await button_sink.send(client, note(summary=summary, key=long_key, details=details))
    [request] = slack.log
    assert request.status == 200 and slack.posted  # the stand-in checks Block Kit's limits
    shown = sections(request.json["blocks"])
    assert len(shown) == 4 and all(truncate.units(s) <= 3_000 for s in shown)
    first, amps, heres, links = shown
    assert re.fullmatch(r":rotating_light: SEV-2: (&lt;)+" + re.escape(MARKER), first)
    assert re.fullmatch(r"(&amp;)+" + re.escape(MARKER), amps)
    assert heres.endswith(MARKER) and ("&lt;!here&gt; " * 300).startswith(heres[: -len(MARKER)])
    assert not re.search(r"&[a-z]{0,3}$", heres[: -len(MARKER)])  # no entity cut in two
    assert links == "<http://prometheus:9090/graph|Alert source>"  # the runbook's is too long
    [actions] = [b for b in request.json["blocks"] if b["type"] == "actions"]
    ack, *buttons = actions["elements"]
    assert ack["value"] == ack_value(long_key) and len(ack["value"]) == 2_000
    assert ack["value"].startswith("remediator-ineffective-kkk")
    assert [b["action_id"] for b in buttons] == ["remediator_link_source"]
    assert all(len(b["text"]["text"]) <= 75 for b in actions["elements"])


async def test_a_long_page_is_split_into_sections_at_line_ends(
    client: HttpClient, slack: SlackStub, button_sink: SlackSink
) -> None:
    lines = {"summary": "s" * 2_000, "description": "d" * 2_000}
    details = {"target": "t" * 1_500, "alert": {"annotations": lines}}
    await button_sink.send(client, note(details=details))
    [request] = slack.log
    shown = sections(request.json["blocks"])
    assert len(shown) == 3 and "\n".join(shown) == request.json["text"]
    head = ":rotating_light: SEV-2: HighLatency on api: refused. (remediator-aa01-7)"
    assert shown == [f"{head}\n{'s' * 2_000}", "d" * 2_000, "Target: " + "t" * 1_500]


async def test_the_webhook_form_with_buttons_sends_blocks_and_keeps_the_text(
    client: HttpClient, slack: SlackStub
) -> None:
    sink = SlackSink("slack", slack.webhook_url(HOOK), buttons=True)
    assert await sink.send(client, note()) is None
    await sink.send(client, note(Event.UPDATE, update="Verified: p95 is 800 ms."))
    page, update = (m["json"] for m in slack.messages_to(HOOK))
    button = {
        "type": "button",
        "text": {"type": "plain_text", "text": "Acknowledge"},
        "action_id": "remediator_ack",
        "value": "remediator-aa01-7",
        "style": "primary",
    }

    def link(what: str, label: str, url: str) -> dict[str, Any]:
        return {
            "type": "button",
            "text": {"type": "plain_text", "text": label},
            "action_id": f"remediator_link_{what}",
            "url": url,
        }

    assert page == {
        "text": PAGE, "unfurl_links": False, "unfurl_media": False,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": PAGE}},
            {"type": "actions", "elements": [
                button,
                link("runbook", "Runbook", "https://runbooks.example/latency"),
                link("source", "Alert source", "http://prometheus:9090/graph?g0.expr=x"),
                link("decisions", "What remediator decided",
                     "https://remediator.example.com/api/v1/decisions?episode=7"),
            ]},
        ],
    }  # fmt: skip
    assert update == {
        "text": "Update on HighLatency on api: refused. (remediator-aa01-7): "
        "Verified: p95 is 800 ms.",
        "unfurl_links": False, "unfurl_media": False,
    }  # fmt: skip
