"""Escalation end to end: decisions that need a human reach PagerDuty, Slack, Opsgenie and
a webhook (local stand-ins that follow each service's documented semantics), through the
outbox, once per episode; a fake clock climbs the ladder."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from remediator.clients.http import MAX_RETRY_AFTER_S, retry_after
from remediator.config import Settings
from remediator.escalate.sinks.base import Event, Notification
from remediator.escalate.sinks.pagerduty import PagerDutySink
from remediator.escalate.sinks.slack import SlackSink
from tests.support import waiting
from tests.support.clock import FakeClock
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.service import ServiceUnderTest, serve, settings_for
from tests.support.sinks import OpsgenieStub, PagerDutyStub, SlackStub, WebhookStub

ROUTING_KEY = "r" * 32
GENIE_KEY = str(uuid.UUID(int=7))
HOOK_SECRET = "hook-secret"

RULES = """
policy:
  namespaces: [llm-research]
defaults:
  escalation: {{SEV-1: sev1-ladder, SEV-2: sev3-hook, SEV-3: sev3-hook}}
escalations:
  sev1-ladder:
    tiers:
      - {{after_s: 0, notify: [pagerduty]}}
      - {{after_s: 1800, notify: [slack]}}
      - {{after_s: 3600, notify: [opsgenie]}}
  sev3-hook:
    tiers: [{{after_s: 0, notify: [hook]}}]
sinks:
  pagerduty: {{type: pagerduty, routing_key_file: {dir}/pd-key, url: "{pd}/v2/enqueue"}}
  slack: {{type: slack, webhook_url_file: {dir}/slack-url}}
  opsgenie: {{type: opsgenie, api_key_file: {dir}/genie-key, url: "{og}"}}
  hook: {{type: webhook, url: "{hook}/remediator", secret_file: {dir}/hook-secret}}
rules:
  - name: api-down
    match: ['alertname="APIUnavailable"']
    severity: SEV-1
  - name: cpu
    match: ['alertname="HighCPUUsage"']
    severity: SEV-3
    action: {{kind: log_only}}
    target: {{kind: Deployment, namespace: "{{namespace}}", name: "{{deployment}}"}}
    cooldown_s: 0
  - name: default
    match: []
    severity: SEV-3
"""


@dataclass
class World:
    service: ServiceUnderTest
    clock: FakeClock
    pd: PagerDutyStub
    slack: SlackStub
    genie: OpsgenieStub
    hook: WebhookStub

    async def post(self, *alerts: dict[str, Any], **fields: Any) -> None:
        assert (await self.service.post(webhook_payload(*alerts, **fields)))[0] == 200
        await self.service.settle()


async def eventually(check: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    """Within 15 s, looking every 20 ms: deliveries are paced in tens of milliseconds."""
    await waiting.eventually(check, what, timeout_s=15.0, poll_s=0.02)


def write_rules(tmp_path: Path, pd: str, slack: str, og: str, hook: str) -> Path:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "pd-key").write_text(ROUTING_KEY + "\n")
    (secrets / "slack-url").write_text(slack + "\n")
    (secrets / "genie-key").write_text(GENIE_KEY + "\n")
    (secrets / "hook-secret").write_text(HOOK_SECRET + "\n")
    rules = tmp_path / "rules"
    rules.mkdir()
    text = RULES.format(dir=secrets, pd=pd, og=og, hook=hook)
    (rules / "rules.yaml").write_text(text)
    return rules


@pytest.fixture
async def stubs() -> AsyncIterator[
    tuple[FakeClock, PagerDutyStub, SlackStub, OpsgenieStub, WebhookStub]
]:
    clock = FakeClock()
    async with AsyncExitStack() as stack:
        pd = await stack.enter_async_context(PagerDutyStub(clock=clock.monotonic))
        slack = await stack.enter_async_context(SlackStub(clock=clock.monotonic))
        genie = await stack.enter_async_context(OpsgenieStub(clock=clock.monotonic))
        hook = await stack.enter_async_context(WebhookStub(clock=clock.monotonic))
        yield clock, pd, slack, genie, hook


def world_settings(tmp_path: Path, stubs: Any) -> Settings:
    _, pd, slack, genie, hook = stubs
    rules = write_rules(tmp_path, pd.url, slack.webhook_url(), genie.url, hook.url)
    return settings_for(tmp_path, rules_dir=rules, delivery_poll_s=0.02)


@pytest.fixture
async def world(tmp_path: Path, stubs: Any) -> AsyncIterator[World]:
    clock = stubs[0]
    async with serve(world_settings(tmp_path, stubs), clock=clock) as service:
        yield World(service, clock, *stubs[1:])


def down(status: str = "firing") -> dict[str, Any]:
    return webhook_alert(status=status, labels={"alertname": "APIUnavailable"})


def cpu(
    namespace: str = "llm-research", deployment: str = "api", status: str = "firing", **extra: str
) -> dict[str, Any]:
    labels = {"alertname": "HighCPUUsage", "namespace": namespace, "deployment": deployment}
    return webhook_alert(status=status, labels={**labels, **extra})


async def test_a_sev1_pages_at_once_climbs_the_ladder_while_open_and_resolves_everywhere(
    world: World,
) -> None:
    await world.post(down())
    await eventually(lambda: len(world.pd.events) == 1, "the first page")
    [trigger] = world.pd.events
    assert (trigger["event_action"], trigger["payload"]["severity"]) == ("trigger", "critical")
    assert trigger["payload"]["summary"].startswith("[SEV-1] APIUnavailable")
    assert world.slack.messages == [] and world.genie.alerts == {}
    world.clock.advance(1800)
    await eventually(lambda: len(world.slack.messages) == 1, "the platform lead tier")
    world.clock.advance(1800)
    await eventually(lambda: len(world.genie.alerts) == 1, "the engineering manager tier")
    await world.post(down("resolved"))
    world.clock.advance(GRACE_S + 2)  # past the episode grace and each sink's pacing
    await eventually(lambda: len(world.pd.events) == 2, "the resolve")
    assert [e["event_action"] for e in world.pd.events] == ["trigger", "resolve"]
    key = trigger["dedup_key"]
    assert world.pd.incidents[key].status == "resolved"
    await eventually(lambda: world.genie.alerts[key]["status"] == "closed", "the Opsgenie close")
    await eventually(lambda: len(world.slack.messages) == 2, "the Slack follow-up")
    assert "Resolved" in world.slack.messages[-1]["json"]["text"]


ALERT_CONTENT = {
    "annotations": {"summary": "API down", "description": "No healthy upstream for 2 min.",
                    "runbook_url": "https://runbooks.example/api-down"},
    "generatorURL": "http://prometheus.example:9090/graph?g0.expr=up%3D%3D0",
}  # fmt: skip


async def test_a_page_carries_the_alerts_own_words_a_silence_link_and_the_episode_link(
    tmp_path: Path, stubs: Any
) -> None:
    settings = world_settings(tmp_path, stubs).model_copy(
        update={"external_url": "https://remediator.example.com/"}
    )
    clock, pd, _, _, hook = stubs
    async with serve(settings, clock=clock) as service:
        world = World(service, clock, *stubs[1:])
        alert = webhook_alert(labels={"alertname": "APIUnavailable", "region": "eu-1"},
                              **ALERT_CONTENT)  # fmt: skip
        await world.post(alert, externalURL="http://alertmanager.example:9093")
        await world.post(cpu(namespace="kube-system"))  # a guard refusal: the webhook sink
        await eventually(lambda: len(pd.events) == 1 and len(hook.received) == 1, "the pages")
    [trigger] = pd.events
    content = trigger["payload"]["custom_details"]["alert"]
    assert content == {
        "labels": {"alertname": "APIUnavailable", "region": "eu-1"},
        "annotations": ALERT_CONTENT["annotations"],
        "generator_url": ALERT_CONTENT["generatorURL"],
        "starts_at": alert["startsAt"],
        "silence_url": "http://alertmanager.example:9093/#/silences/new?filter="
        "%7Balertname%3D%22APIUnavailable%22%2Cregion%3D%22eu-1%22%7D",
    }
    episode = trigger["payload"]["custom_details"]["episode"]
    decisions = f"https://remediator.example.com/api/v1/decisions?episode={episode}"
    assert trigger["payload"]["custom_details"]["decisions"] == decisions
    # PagerDuty's own fields: what is affected, what kind of event, and one click away.
    payload = trigger["payload"]
    assert (payload["source"], payload["class"]) == ("APIUnavailable", "APIUnavailable")
    assert "component" not in payload and "group" not in payload  # no such labels
    assert trigger["links"] == [
        {"href": "https://runbooks.example/api-down", "text": "Runbook"},
        {"href": ALERT_CONTENT["generatorURL"], "text": "Alert source"},
        {"href": content["silence_url"], "text": "Silence in Alertmanager"},
        {"href": decisions, "text": "remediator: what was decided"},
    ]
    assert (trigger["client"], trigger["client_url"]) == ("remediator", decisions)
    body = json.loads(hook.received[0].body)
    assert body["details"]["alert"]["labels"]["namespace"] == "kube-system"
    assert body["details"]["alert"]["silence_url"] == (  # the Alertmanager that sent it
        "http://alertmanager:9093/#/silences/new?filter=%7Balertname%3D%22HighCPUUsage%22"
        "%2Cdeployment%3D%22api%22%2Cnamespace%3D%22kube-system%22%7D"
    )


async def test_without_an_external_url_a_page_has_no_episode_link_rather_than_a_broken_one(
    world: World,
) -> None:
    await world.post(down())
    await eventually(lambda: len(world.pd.events) == 1, "the first page")
    [trigger] = world.pd.events
    assert "decisions" not in trigger["payload"]["custom_details"]
    assert "client_url" not in trigger
    assert all("decisions" not in link["href"] for link in trigger.get("links", []))


@pytest.mark.parametrize(
    ("target", "labels", "expected"),
    [
        ("llm-research/Deployment/api",
         {"alertname": "HighCPUUsage", "namespace": "llm-research", "deployment": "api"},
         {"source": "llm-research/Deployment/api", "component": "api", "group": "llm-research",
          "class": "HighCPUUsage"}),
        ("", {"alertname": "NodeDown", "instance": "10.0.0.7:9100", "job": "node",
              "cluster": "eu-1"},
         {"source": "10.0.0.7:9100", "component": "node", "group": "eu-1", "class": "NodeDown"}),
        ("", {}, {"source": "remediator"}),
    ],
    ids=["a target", "an instance", "nothing known"],
)  # fmt: skip
def test_a_pagerduty_event_names_the_affected_system_from_the_target_or_the_labels(
    target: str, labels: dict[str, str], expected: dict[str, str]
) -> None:
    note = Notification(
        Event.TRIGGER, "k", "SEV-3", "[SEV-3] it", 0, "page",
        {"target": target, "alert": {"labels": labels}},
    )  # fmt: skip
    payload = PagerDutySink("pd", ROUTING_KEY).body(note)["payload"]
    assert {k: payload[k] for k in ("source", "component", "group", "class") if k in payload} == (
        expected
    )


GRACE_S = 300  # the default episode grace: a resolve is held this long


async def test_a_resolve_is_held_for_the_grace_and_sent_once_it_has_passed(world: World) -> None:
    await world.post(down())
    await eventually(lambda: len(world.pd.events) == 1, "the first page")
    await world.post(down("resolved"))
    world.clock.advance(GRACE_S - 10)
    await asyncio.sleep(0.3)  # several delivery polls
    assert [e["event_action"] for e in world.pd.events] == ["trigger"]
    world.clock.advance(12)
    await eventually(lambda: len(world.pd.events) == 2, "the resolve after the grace")
    assert world.pd.incidents[world.pd.events[0]["dedup_key"]].status == "resolved"


async def test_an_alert_that_fires_again_within_the_grace_keeps_its_incident_open(
    world: World,
) -> None:
    await world.post(down())
    await eventually(lambda: len(world.pd.events) == 1, "the first page")
    key = world.pd.events[0]["dedup_key"]
    await world.post(down("resolved"))
    world.clock.advance(120)
    await world.post(down())  # flapping: within the 300 s grace
    world.clock.advance(GRACE_S)
    await eventually(lambda: len(world.pd.events) == 2, "the reopen, as news")
    await asyncio.sleep(0.3)
    reopen = world.pd.events[1]  # no resolve was sent: a trigger on the key, in its log
    assert (reopen["event_action"], reopen["dedup_key"]) == ("trigger", key)
    assert "fired again within 300 s" in reopen["payload"]["custom_details"]["update"]
    assert world.pd.incidents[key].status == "triggered"
    decisions = await world.service.decisions()
    [reopened] = [d for d in decisions if d["step"] == "reopened"]
    assert reopened["sentence"] == (
        f"The alert fired again within 300 s of resolving: episode {reopened['episode']} goes"
        " on, its incident stays open and no new decision is taken."
    )
    # When it then stays resolved, the one incident resolves, once, after the grace.
    await world.post(down("resolved"))
    world.clock.advance(GRACE_S + 2)
    await eventually(lambda: len(world.pd.events) == 3, "the resolve")
    assert [e["event_action"] for e in world.pd.events] == ["trigger", "trigger", "resolve"]
    assert world.pd.incidents[key].status == "resolved"


async def test_an_alert_that_fires_again_after_the_grace_is_a_new_incident(world: World) -> None:
    await world.post(down())
    await eventually(lambda: len(world.pd.events) == 1, "the first page")
    await world.post(down("resolved"))
    world.clock.advance(GRACE_S + 2)
    await eventually(lambda: len(world.pd.events) == 2, "the resolve")
    world.clock.advance(60)
    await world.post(down())
    await eventually(lambda: len(world.pd.events) == 3, "the new page")
    first, _, again = world.pd.events
    assert again["event_action"] == "trigger" and again["dedup_key"] != first["dedup_key"]
    assert world.pd.incidents[again["dedup_key"]].status == "triggered"


async def test_tiers_not_yet_due_are_dropped_when_the_episode_resolves(world: World) -> None:
    await world.post(down())
    await eventually(lambda: len(world.pd.events) == 1, "the first page")
    await world.post(down("resolved"))
    world.clock.advance(GRACE_S + 2)  # past the episode grace and PagerDuty's pacing
    await eventually(lambda: len(world.pd.events) == 2, "the resolve")
    world.clock.advance(7200)
    await asyncio.sleep(0.3)
    assert world.slack.messages == [] and world.genie.alerts == {}


async def test_a_guard_refusal_reaches_the_webhook_once_and_signed(world: World) -> None:
    await world.post(cpu(namespace="kube-system"))
    await eventually(lambda: len(world.hook.received) == 1, "the webhook")
    await world.post(cpu(namespace="kube-system"))  # a resend
    await asyncio.sleep(0.2)
    [request] = world.hook.received
    expected = hmac.new(HOOK_SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Remediator-Signature"] == f"sha256={expected}"
    body = json.loads(request.body)
    assert (body["event"], body["severity"], body["details"]["reason"]) == (
        "trigger", "SEV-3", "out_of_scope",
    )  # fmt: skip


async def test_a_sink_that_fails_then_recovers_is_paged_exactly_once(world: World) -> None:
    world.pd.fail_next(2, status=503)
    await world.post(down())
    for attempt in (1, 2):
        await eventually(lambda n=attempt: world.pd.requests >= n, f"attempt {attempt}")
        world.clock.advance(10)  # past the backoff
    await eventually(lambda: len(world.pd.events) == 1, "the page after recovery")
    await asyncio.sleep(0.2)
    assert len(world.pd.events) == 1
    assert world.pd.requests == 3


async def test_retry_after_from_a_429_is_honoured(world: World) -> None:
    world.pd.fail_next(1, status=429, retry_after=30)
    await world.post(down())
    # The retry's time is set from the clock when the 429 is handled, not when the stub
    # counted the request: advance the clock only once the retry is on record.
    await eventually(lambda: _retried(world.service), "the throttled attempt's retry")
    assert world.pd.requests == 1
    world.clock.advance(20)
    await asyncio.sleep(0.2)
    assert world.pd.events == []
    world.clock.advance(11)
    await eventually(lambda: len(world.pd.events) == 1, "the page after Retry-After")


async def test_an_undelivered_page_survives_a_restart_and_is_delivered_once(
    tmp_path: Path, stubs: Any
) -> None:
    clock, pd = stubs[0], stubs[1]
    settings = world_settings(tmp_path, stubs)
    await pd.down()
    async with serve(settings, clock=clock) as service:
        await service.post(webhook_payload(down()))
        await service.settle()
        await eventually(lambda: _retried(service), "a failed delivery attempt")
    await pd.up()
    clock.advance(600)
    async with serve(settings, clock=clock):
        await eventually(lambda: len(pd.events) == 1, "the page after the restart")
        await asyncio.sleep(0.2)
    assert len(pd.events) == 1


async def _retried(service: ServiceUnderTest) -> bool:
    value = await service.metric(
        "remediator_escalations_total", {"result": "retried", "sink": "pagerduty"}
    )
    return value >= 1


async def test_a_storm_pages_one_incident_not_one_per_alert(world: World) -> None:
    alerts = [cpu(deployment=f"svc-{i}") for i in range(3)]
    await world.post(*alerts, truncatedAlerts=40)
    await eventually(lambda: len(world.hook.received) == 1, "the storm page")
    await asyncio.sleep(0.2)
    [request] = world.hook.received
    assert "Alert storm" in json.loads(request.body)["summary"]
    decisions = await world.service.decisions(outcome="escalated")
    assert len([d for d in decisions if d["step"] == "escalated"]) == 3


async def test_the_same_fix_again_and_again_stops_and_pages_once(world: World) -> None:
    for i in range(5):  # five alerts, one episode each, on one target; the rule has no cooldown
        await world.post(cpu(pod=f"api-{i}"))
        await world.post(cpu(pod=f"api-{i}", status="resolved"))
    decisions = await world.service.decisions()
    reasons = [d["reason"] for d in decisions if d["step"] == "refused"]
    assert reasons == ["ineffective_remediation", "ineffective_remediation"]
    assert [d["step"] for d in decisions].count("claimed") == 3
    await eventually(lambda: len(world.hook.received) == 1, "the ineffective page")
    await asyncio.sleep(0.2)
    assert len(world.hook.received) == 1
    assert "does not help" in json.loads(world.hook.received[0].body)["summary"]


@pytest.mark.parametrize(
    ("header", "delay"),
    [
        ("30", 30.0),
        ("0", 0.0),
        ("2.5", 2.5),
        ("1e12", MAX_RETRY_AFTER_S),
        ("inf", None),
        ("-inf", None),
        ("nan", None),
        ("-5", None),
        ("Wed, 21 Oct 2026 07:28:00 GMT", None),
        ("", None),
        ("9" * 400, None),  # a float past its range: inf
    ],
)
def test_a_sinks_retry_after_is_bounded_so_no_answer_can_overflow_the_next_due_time(
    header: str, delay: float | None
) -> None:
    assert retry_after({"Retry-After": header}) == delay
    if delay is not None:  # what Delivery._retry computes from it
        assert datetime(9999, 12, 1) + timedelta(seconds=delay) <= datetime.max


def test_a_slack_page_shows_the_alerts_words_its_target_and_one_line_of_links() -> None:
    note = Notification(
        Event.TRIGGER, "remediator-aa01-7", "SEV-2", "[SEV-2] HighLatency on x: refused.", 0,
        "page", {
            "target": "llm-research/Deployment/api",
            "decisions": "https://remediator.example.com/api/v1/decisions?episode=7",
            "alert": {
                "annotations": {"summary": "p95 > 5 s", "description": "for 10 min",
                                "runbook_url": "https://runbooks.example/latency"},
                "generator_url": "http://prometheus:9090/graph?g0.expr=x",
                "silence_url": "",
            },
        },
    )  # fmt: skip
    assert SlackSink("slack", "http://hooks.example/x").text(note) == (
        ":rotating_light: SEV-2: HighLatency on x: refused. (remediator-aa01-7)\n"
        "p95 &gt; 5 s\nfor 10 min\nTarget: llm-research/Deployment/api\n"
        "<https://runbooks.example/latency|Runbook> · "
        "<http://prometheus:9090/graph?g0.expr=x|Alert source> · "
        "<https://remediator.example.com/api/v1/decisions?episode=7|What remediator decided>"
    )
