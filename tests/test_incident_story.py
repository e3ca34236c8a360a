"""One incident per story, end to end: the alerts of one notification page once, a rule
that pages before acting updates its incident as the action runs (PagerDuty on the same
dedup key, Slack in the page's thread), and an acknowledgement (a signed PagerDuty v3 webhook
or a signed Slack button click) stops the ladder, audited with who; a human resolve closes
the incident on every sink. Real HTTP to local stand-ins of PagerDuty, Slack's Web API and a
webhook; a fake clock climbs the ladder."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import pytest

from remediator.actions.base import ActionResult
from remediator.actions.log_only import LogOnly, Request
from remediator.actions.registry import default_registry
from remediator.clients.http import HttpClient
from remediator.escalate.sinks.base import Event, Notification
from remediator.escalate.sinks.jsm import JsmSink
from remediator.escalate.sinks.opsgenie import OpsgenieSink
from remediator.escalate.sinks.slack import ACK_ACTION, SlackSink
from remediator.ruleset.load import load_rules
from tests.support import waiting
from tests.support.clock import FakeClock
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.service import ServiceUnderTest, serve, settings_for
from tests.support.sinks import (
    JsmStub,
    OpsgenieStub,
    PagerDutyStub,
    SlackStub,
    WebhookStub,
    slack_signed_form,
)

ROUTING_KEY = "r" * 32
PD_WEBHOOK_SECRET = "pd-webhook-secret"
SLACK_TOKEN = "xoxb-1-2-abc"
SLACK_SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
CHANNEL = "C0123456789"
GRACE_S = 300

RULES = """
policy:
  namespaces: [shop]
defaults:
  escalation: {{SEV-1: ladder, SEV-2: pages, SEV-3: pages}}
escalations:
  ladder:
    tiers:
      - {{after_s: 0, notify: [pagerduty, slack]}}
      - {{after_s: 1800, notify: [hook]}}
      - {{after_s: 3600, notify: [hook]}}
      - {{after_s: 7200, notify: [hook]}}
  pages:
    tiers: [{{after_s: 0, notify: [pagerduty, hook]}}]
sinks:
  pagerduty: {{type: pagerduty, routing_key_file: {dir}/pd-key, url: "{pd}/v2/enqueue",
               webhook_secret_file: {dir}/pd-webhook}}
  slack: {{type: slack, bot_token_file: {dir}/slack-token, channel: {channel}, url: "{slack}",
           signing_secret_file: {dir}/slack-signing}}
  hook: {{type: webhook, url: "{hook}/remediator"}}
rules:
  - name: api-down
    matchers: ['alertname="APIUnavailable"']
    severity: SEV-1
  - name: bad-rollout
    matchers: ['alertname="BadRollout"']
    severity: SEV-1
    page: before_acting
    action: {{kind: log_only, params: {{note: restart the rollout}}}}
    target: {{kind: Deployment, namespace: "{{namespace}}", name: "{{deployment}}"}}
  - name: broken-rollout
    matchers: ['alertname="BrokenRollout"']
    severity: SEV-1
    page: before_acting
    action: {{kind: always_fails}}
    target: {{kind: Deployment, namespace: "{{namespace}}", name: "{{deployment}}"}}
  - name: disk
    matchers: ['alertname="DiskUsageHigh"']
    severity: SEV-3
  - name: default
    matchers: []
    severity: SEV-3
"""


class AlwaysFails(LogOnly):
    """An action whose run fails: the story a page before acting must tell."""

    kind: ClassVar[str] = "always_fails"

    async def run(self, request: Request, facts: None) -> ActionResult[Any]:
        return ActionResult(False, f"always_fails could not fix {request.target.key}.")


@dataclass
class World:
    service: ServiceUnderTest
    clock: FakeClock
    pd: PagerDutyStub
    slack: SlackStub
    hook: WebhookStub

    async def post(self, *alerts: dict[str, Any]) -> None:
        assert (await self.service.post(webhook_payload(*alerts)))[0] == 200
        await self.service.settle()

    async def ack(self, kind: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, Any]:
        url = f"{self.service.url}/api/v1/acks/{kind}/{kind}"  # each sink is named as its kind
        async with self.service.session.post(url, data=body, headers=dict(headers)) as answer:
            return answer.status, await answer.json()


async def eventually(check: Any, what: str) -> None:
    await waiting.eventually(check, what, timeout_s=15.0, poll_s=0.02)


async def paced(world: World, check: Any, what: str) -> None:
    """``check`` comes true as each sink's pacing lets the next send go: the fake clock
    moves a second per look, for at most a minute (well within any tier or the grace)."""
    for _ in range(60):
        if check():
            return
        world.clock.advance(1)
        await asyncio.sleep(0.1)  # a few delivery polls
    await eventually(check, what)


def write_rules(tmp_path: Path, pd: PagerDutyStub, slack: SlackStub, hook: WebhookStub) -> Path:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "pd-key").write_text(ROUTING_KEY + "\n")
    (secrets / "pd-webhook").write_text("an-old-secret\n" + PD_WEBHOOK_SECRET + "\n")
    (secrets / "slack-token").write_text(SLACK_TOKEN + "\n")
    (secrets / "slack-signing").write_text(SLACK_SIGNING_SECRET + "\n")
    rules = tmp_path / "rules"
    rules.mkdir()
    text = RULES.format(dir=secrets, pd=pd.url, slack=slack.api_url, hook=hook.url, channel=CHANNEL)
    (rules / "rules.yaml").write_text(text)
    return rules


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    clock = FakeClock()
    async with AsyncExitStack() as stack:
        pd = await stack.enter_async_context(PagerDutyStub(clock=clock.monotonic))
        slack = await stack.enter_async_context(
            SlackStub(clock=clock.monotonic, tokens=[SLACK_TOKEN], rate_limit=1000)
        )
        hook = await stack.enter_async_context(WebhookStub(clock=clock.monotonic))
        rules = write_rules(tmp_path, pd, slack, hook)
        actions = {**default_registry(), "always_fails": AlwaysFails()}
        ruleset = load_rules(rules, actions)
        settings = settings_for(tmp_path, rules_dir=rules, delivery_poll_s=0.02)
        service = await stack.enter_async_context(serve(settings, ruleset=ruleset, clock=clock))
        yield World(service, clock, pd, slack, hook)


def alert(name: str, status: str = "firing", **labels: str) -> dict[str, Any]:
    return webhook_alert(status=status, labels={"alertname": name, **labels})


def rollout(name: str = "BadRollout", status: str = "firing") -> dict[str, Any]:
    return alert(name, status, namespace="shop", deployment="api")


# ----- signed acknowledgements, as PagerDuty and Slack send them


def pagerduty_event(event_type: str, incident_key: str, who: str = "Jane Doe") -> bytes:
    """A v3 webhook body of PagerDuty's documented shape (developer.pagerduty.com, "V3
    Webhooks": event, with event_type, occurred_at, agent and data, the incident)."""
    return json.dumps({
        "event": {
            "id": "01DEN6W8H1J5FXB1T0IZ0BBXMR",
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": "2026-11-28T09:46:00.000Z",
            "agent": {"html_url": "https://acme.pagerduty.com/users/PLH1HKV", "id": "PLH1HKV",
                      "self": "https://api.pagerduty.com/users/PLH1HKV", "summary": who,
                      "type": "user_reference"},
            "client": None,
            "data": {"id": "PGR0VU2", "type": "incident", "number": 2,
                     "html_url": "https://acme.pagerduty.com/incidents/PGR0VU2",
                     "incident_key": incident_key, "status": event_type.split(".")[1],
                     "title": "A little bump in the road"},
        }
    }).encode()  # fmt: skip


def pagerduty_signed(body: bytes, secret: str = PD_WEBHOOK_SECRET) -> dict[str, str]:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-PagerDuty-Signature": f"v1={signature}"}


def slack_click(key: str, now: float, user: str = "jane") -> tuple[bytes, dict[str, str]]:
    """A block_actions interaction on the page's Acknowledge button, form-encoded and
    signed as Slack signs requests (v0:<timestamp>:<body>, HMAC-SHA256)."""
    payload = {"type": "block_actions", "user": {"id": "U0123", "username": user, "name": user},
               "team": {"id": "T0123"}, "channel": {"id": CHANNEL},
               "actions": [{"type": "button", "action_id": ACK_ACTION, "value": key,
                            "block_id": "b1", "action_ts": f"{now:.6f}"}]}  # fmt: skip
    return slack_signed_form(payload, SLACK_SIGNING_SECRET, now)


# ----- one incident per story


async def test_forty_alerts_of_one_notification_page_once_and_resolve_when_the_last_does(
    world: World,
) -> None:
    disks = [alert("DiskUsageHigh", instance=f"node-{i:02}:9100") for i in range(40)]
    await world.post(*disks)
    await eventually(
        lambda: len(world.hook.received) == 1 and len(world.pd.events) == 1, "the page"
    )
    await world.service.settle()
    [page] = [json.loads(r.body) for r in world.hook.received]
    assert page["details"]["count"] == 40 and len(page["details"]["alerts"]) == 20
    assert "40 alerts (on node-00:9100, node-01:9100, node-02:9100 and 37 more)" in page["summary"]
    [trigger] = world.pd.events
    assert trigger["dedup_key"] == page["dedup_key"]
    assert trigger["payload"]["custom_details"]["count"] == 40
    resolved = [alert("DiskUsageHigh", "resolved", instance=f"node-{i:02}:9100") for i in range(39)]
    await world.post(*resolved)
    world.clock.advance(GRACE_S + 2)
    await world.service.settle()
    await asyncio.sleep(0.5)  # many delivery polls
    assert [e["event_action"] for e in world.pd.events] == ["trigger"]  # one alert still fires
    await world.post(alert("DiskUsageHigh", "resolved", instance="node-39:9100"))
    world.clock.advance(GRACE_S + 2)
    await eventually(lambda: len(world.pd.events) == 2, "the resolve of the last")
    last = world.pd.events[-1]
    assert (last["event_action"], last["dedup_key"]) == ("resolve", trigger["dedup_key"])


async def test_a_rule_that_pages_before_acting_updates_its_incident_as_the_action_runs(
    world: World,
) -> None:
    await world.post(rollout())
    await paced(world, lambda: len(world.pd.events) >= 3, "the page and two updates")
    page, *updates = world.pd.events
    assert page["payload"]["summary"].startswith("[SEV-1] BadRollout on shop/Deployment/api")
    assert {u["dedup_key"] for u in updates} == {page["dedup_key"]}
    assert [u["event_action"] for u in updates] == ["trigger", "trigger"]  # added to its log
    news = [u["payload"]["custom_details"]["update"] for u in updates]
    assert "log_only recorded the request for shop/Deployment/api" in news[0]
    assert "verif" in news[1].lower()
    await paced(world, lambda: len(world.slack.posted) == 3, "the Slack page and its thread")
    first = world.slack.posted[0]
    replies = world.slack.replies(CHANNEL, first["ts"])
    assert [r["thread_ts"] for r in replies] == [first["ts"], first["ts"]]
    assert "log_only recorded" in replies[0]["text"]


async def test_an_update_that_must_be_retried_keeps_the_later_ones_behind_it(
    world: World,
) -> None:
    """Slack answers the first update 503: it is retried after a backoff, and the
    verification's update, queued after it and due sooner, waits behind it; the thread
    tells the story in order."""
    await world.post(rollout())
    await paced(world, lambda: len(world.slack.posted) >= 1, "the Slack page")
    world.slack.fail_api_next("service_unavailable", status=503)
    await paced(world, lambda: len(world.slack.posted) == 3, "the thread, after the retry")
    first = world.slack.posted[0]
    replies = world.slack.replies(CHANNEL, first["ts"])
    assert "log_only recorded" in replies[0]["text"]
    assert "erif" in replies[1]["text"]


async def test_a_failed_action_after_the_page_is_news_on_the_same_incident_not_a_new_page(
    world: World,
) -> None:
    await world.post(rollout("BrokenRollout"))
    await paced(world, lambda: len(world.pd.events) >= 3, "the page and the failure")
    keys = {e["dedup_key"] for e in world.pd.events}
    assert len(keys) == 1, "one incident"
    news = " ".join(e["payload"]["custom_details"].get("update", "") for e in world.pd.events)
    assert "always_fails could not fix shop/Deployment/api" in news
    assert "did not end in a fix" in news
    decisions = await world.service.decisions()
    assert [d["step"] for d in decisions].count("escalated") == 2  # paged once, said twice


# ----- acknowledgements stop the ladder


async def page_and_deliver(world: World) -> str:
    await world.post(alert("APIUnavailable"))
    await eventually(lambda: bool(world.pd.events and world.slack.posted), "the first tier")
    return str(world.pd.events[0]["dedup_key"])


async def test_a_signed_pagerduty_acknowledgement_stops_tiers_two_to_four_and_is_audited(
    world: World,
) -> None:
    key = await page_and_deliver(world)
    body = pagerduty_event("incident.acknowledged", key)
    assert await world.ack("pagerduty", body, pagerduty_signed(body)) == (
        200, {"status": "acknowledged", "episodes": 1})  # fmt: skip
    for _ in range(3):
        world.clock.advance(3600)
        await world.service.settle()
    await paced(world, lambda: len(world.slack.posted) == 2, "Slack told of the acknowledgement")
    assert "Acknowledged by Jane Doe on pagerduty" in world.slack.posted[1]["text"]
    assert world.hook.received == []  # the lead, the EM and the VP were not paged
    decisions = await world.service.decisions()
    [acked] = [d for d in decisions if d["step"] == "acknowledged"]
    assert acked["details"]["by"] == "Jane Doe" and acked["outcome"] == "acknowledged"
    again = await world.ack("pagerduty", body, pagerduty_signed(body))
    assert again[1]["status"] == "already"  # PagerDuty retries: nothing twice


async def test_a_signed_slack_click_acknowledges_and_a_human_resolve_closes_every_sink(
    world: World,
) -> None:
    key = await page_and_deliver(world)
    body, headers = slack_click(key, world.clock.now().timestamp())
    assert (await world.ack("slack", body, headers))[1]["status"] == "acknowledged"
    world.clock.advance(1800)
    await world.service.settle()
    await paced(world, lambda: len(world.pd.events) == 2, "PagerDuty told of the acknowledgement")
    acknowledged = world.pd.events[1]  # PagerDuty's own acknowledge: its escalation stops too
    assert (acknowledged["event_action"], acknowledged["dedup_key"]) == ("acknowledge", key)
    assert world.pd.incidents[key].status == "acknowledged"
    resolved = pagerduty_event("incident.resolved", key)
    assert (await world.ack("pagerduty", resolved, pagerduty_signed(resolved)))[0] == 200
    page = world.slack.posted[0]
    await paced(world, lambda: bool(world.slack.message(CHANNEL, page["ts"])["edits"]),
                "the Slack page marked resolved")  # fmt: skip
    assert world.hook.received == []


@pytest.mark.parametrize(
    ("kind", "make", "status", "detail"),
    [
        ("pagerduty", lambda key, now: (b := pagerduty_event("incident.acknowledged", key),
                                        pagerduty_signed(b, "wrong")),
         401, "No X-PagerDuty-Signature matches the body with the webhook secret."),
        ("pagerduty", lambda key, now: (pagerduty_event("incident.acknowledged", key), {}),
         401, "The request has no X-PagerDuty-Signature header."),
        ("slack", lambda key, now: slack_click(key, now - 301),
         401, "The X-Slack-Request-Timestamp is more than 300 seconds from now."),
        ("slack", lambda key, now: (slack_click(key, now)[0] + b"x", slack_click(key, now)[1]),
         401, "The X-Slack-Signature does not match the body with the signing secret."),
    ],
    ids=["pagerduty-wrong-secret", "pagerduty-unsigned", "slack-old", "slack-tampered"],
)  # fmt: skip
async def test_an_unsigned_or_stale_acknowledgement_is_refused_and_the_ladder_goes_on(
    world: World, kind: str, make: Any, status: int, detail: str
) -> None:
    key = await page_and_deliver(world)
    body, headers = make(key, world.clock.now().timestamp())
    answer = await world.ack(kind, body, headers)
    assert answer == (status, {"error": "unsigned", "detail": detail})
    world.clock.advance(1800)
    await eventually(lambda: len(world.hook.received) == 1, "tier two, as if nothing came")


async def test_an_acknowledgement_for_another_key_or_sink_changes_nothing(world: World) -> None:
    await page_and_deliver(world)
    body = pagerduty_event("incident.acknowledged", "someone-elses-incident")
    assert (await world.ack("pagerduty", body, pagerduty_signed(body)))[1]["status"] == "ignored"
    url = f"{world.service.url}/api/v1/acks/pagerduty/hook"
    async with world.service.session.post(url, data=body, headers=pagerduty_signed(body)) as r:
        assert (r.status, (await r.json())["error"]) == (404, "unknown_sink")
    world.clock.advance(1800)
    await eventually(lambda: len(world.hook.received) == 1, "tier two")


def test_a_slack_page_of_a_group_lists_where_each_alert_fired_and_how_many_more() -> None:
    alerts = [{"labels": {"instance": f"node-{i}"}, "annotations": {"summary": "disk <90%"},
               "target": "", "episode": i} for i in range(20)]  # fmt: skip
    details = {"alert": alerts[0], "alerts": alerts, "count": 40, "target": ""}
    note = Notification(Event.TRIGGER, "remediator-group-1-disk-escalate_only", "SEV-3",
                        "[SEV-3] DiskUsageHigh: 40 alerts", 0, "pages", details)  # fmt: skip
    text = SlackSink("slack", webhook_url="https://hooks.example/x").text(note)
    lines = text.splitlines()
    assert lines[2:4] == ["• node-0 — disk &lt;90%", "• node-1 — disk &lt;90%"]
    assert lines[22] == "and 20 more" and "Target:" not in text


@pytest.mark.parametrize("stub", [OpsgenieStub, JsmStub])
async def test_an_acknowledgement_made_elsewhere_acknowledges_the_opsgenie_and_jsm_alert(
    client: HttpClient, stub: type[OpsgenieStub]
) -> None:
    key = str(uuid.UUID(int=7))
    async with stub(api_keys=[key]) as server:
        sink: OpsgenieSink | JsmSink = (
            OpsgenieSink("og", key, server.url)
            if stub is OpsgenieStub
            else JsmSink("jsm", key, server.url)
        )
        page = Notification(Event.TRIGGER, "inc-1", "SEV-1", "[SEV-1] down", 0, "ladder")
        await sink.send(client, page)
        said = "Acknowledged by Jane Doe on pagerduty."
        await sink.send(client, replace(page, event=Event.UPDATE, update=said, acknowledged=True))
        assert server.alerts["inc-1"]["acknowledged"] is True
        assert server.log[-1].path.endswith("/inc-1/acknowledge")
        assert server.log[-1].json["note"] == said
