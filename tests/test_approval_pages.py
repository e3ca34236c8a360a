"""What a page that asks an approval carries: on Slack, Approve and Deny beside Acknowledge
(only with a signing secret, only on the page, gone from the resolved edit); on every sink,
the approval's id in its details and, with ``--external-url``, a link to it; the Slack click
read strictly (``escalate.acks.slack_ack``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from remediator.escalate import acks
from remediator.escalate.delivery import _notification
from remediator.escalate.sinks.base import Notification
from remediator.escalate.sinks.pagerduty import PagerDutySink
from remediator.escalate.sinks.slack import APPROVE_ACTION, DENY_ACTION, SlackSink
from remediator.store.contract import OutboxItem
from tests.support.sinks import slack_signed_form

NOW = datetime(2026, 12, 3, 11, 0, tzinfo=UTC)
APPROVAL = {"id": 42, "approvals": 1, "approvers": ["sre"], "due_at": "2026-12-03T11:10:00Z"}


def item(event: str = "trigger", approval: dict[str, Any] | None = APPROVAL) -> OutboxItem:
    details: dict[str, Any] = {"rule": "cpu", "target": "shop/Deployment/api", "episode": 7,
                               "alert": {"labels": {"alertname": "HighCPUUsage"}}}  # fmt: skip
    if approval is not None:
        details["approval"] = approval
    summary = "[SEV-2] HighCPUUsage on shop/Deployment/api: waits"
    return OutboxItem(7, "episode:fp:7", "slack", event, 0, "SEV-2", "ops", summary, details, NOW)


def note(event: str = "trigger", approval: dict[str, Any] | None = APPROVAL,
         external_url: str = "https://remediator.example") -> Notification:  # fmt: skip
    return _notification(item(event, approval), external_url, {}, NOW)


def buttons(body: dict[str, Any]) -> dict[str, str | None]:
    elements = body["blocks"][-1]["elements"] if "blocks" in body else []
    return {e.get("action_id", ""): e.get("value") for e in elements}


def test_a_slack_page_that_asks_carries_approve_and_deny_with_the_approval_s_id() -> None:
    sink = SlackSink("slack", webhook_url="https://hooks.slack.example/x", buttons=True)
    shown = buttons(sink.body(note()))
    assert shown["remediator_approve"] == shown["remediator_deny"] == "42"
    assert list(shown)[:3] == ["remediator_ack", "remediator_approve", "remediator_deny"]
    assert shown["remediator_link_approval"] is None  # a link button: its url, no value
    assert "remediator_approve" not in buttons(sink.body(note(approval=None)))
    assert "remediator_approve" not in buttons(sink.body(note("update")))  # the page only
    assert "blocks" not in SlackSink("s", webhook_url="https://h.example/x").body(note())
    edited = sink._resolved(note("resolve"))
    assert "remediator_approve" not in buttons(edited)
    for odd in ({"id": "42"}, {"id": True}, {"id": None}, "42"):
        assert "remediator_approve" not in buttons(sink.body(note(approval=odd)))  # type: ignore[arg-type]


def test_every_sink_links_the_approval_when_the_service_knows_its_url() -> None:
    linked = PagerDutySink("pd", "r" * 32).body(note())
    assert {"href": "https://remediator.example/api/v1/approvals/42",
            "text": "remediator: approve or deny"} in linked["links"]  # fmt: skip
    assert linked["payload"]["custom_details"]["approval"]["id"] == 42
    unlinked = PagerDutySink("pd", "r" * 32).body(note(external_url=""))
    assert all("approvals" not in link["href"] for link in unlinked.get("links", []))


SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def click(payload: Any, now: float = NOW.timestamp()) -> tuple[dict[str, str], bytes]:
    body, headers = slack_signed_form(payload, SECRET, now)
    return headers, body


def voted(action_id: str = APPROVE_ACTION, value: Any = "42", user: Any = None) -> Any:
    payload = {"type": "block_actions", "user": user if user is not None else {"id": "U0A1"},
               "actions": [{"action_id": action_id, "value": value}]}  # fmt: skip
    headers, body = click(payload)
    return acks.slack_ack(headers, body, SECRET, NOW.timestamp())


def test_a_click_on_approve_or_deny_is_a_vote_of_the_user_id_it_names() -> None:
    vote = voted()
    assert isinstance(vote, acks.SlackVote)
    assert (vote.claim_id, vote.vote, vote.user_id, vote.at) == (42, "approve", "U0A1", NOW)
    denied = voted(DENY_ACTION)
    assert isinstance(denied, acks.SlackVote) and denied.vote == "deny"


@pytest.mark.parametrize(
    ("value", "user", "sentence"),
    [
        ("0", None, acks.SLACK_NO_APPROVAL),
        ("042", None, acks.SLACK_NO_APPROVAL),
        ("-1", None, acks.SLACK_NO_APPROVAL),
        ("4 2", None, acks.SLACK_NO_APPROVAL),
        ("٤٢", None, acks.SLACK_NO_APPROVAL),  # Arabic-Indic digits: int() would take them
        ("9" * 19, None, acks.SLACK_NO_APPROVAL),
        (42, None, acks.SLACK_NO_APPROVAL),
        (None, None, acks.SLACK_NO_APPROVAL),
        ("42", {"id": ""}, acks.SLACK_NO_USER),
        ("42", {"id": "u0a1"}, acks.SLACK_NO_USER),
        ("42", {"name": "alice"}, acks.SLACK_NO_USER),
        ("42", {"id": ["U0A1"]}, acks.SLACK_NO_USER),
        ("42", "U0A1", acks.SLACK_NO_USER),
    ],
)
def test_a_vote_click_that_cannot_be_read_is_refused_with_a_sentence(
    value: Any, user: Any, sentence: str
) -> None:
    with pytest.raises(acks.AckRefused) as refused:
        voted(value=value, user=user)
    assert str(refused.value) == sentence


def test_a_click_signed_with_another_secret_is_no_vote() -> None:
    payload = {"type": "block_actions", "user": {"id": "U0A1"},
               "actions": [{"action_id": APPROVE_ACTION, "value": "42"}]}  # fmt: skip
    headers, body = click(payload)
    with pytest.raises(acks.AckUnsigned):
        acks.slack_ack(headers, body, "another-secret-0123456789abcdef", NOW.timestamp())
