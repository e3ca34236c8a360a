"""The sinks people are moving to, and Opsgenie's ladder: Opsgenie, Jira Service Management,
Grafana IRM, Microsoft Teams and the Alertmanager-format webhook, each through the real HTTP
client against its stand-in server, which records every request.

For each: the golden request bodies of a page (tier 0), a later tier (tier index 2), an
update and the resolve, checked against the public documentation's examples; Opsgenie's
later tier adding its responders to the same alert (JSM, whose integration API has no
responders endpoint, naming them in a note); a notification of 40 alerts as one request
listing them and "and N more"; hostile label values (markup, control characters, lone
surrogates, a 1 MB annotation) escaped, cut at the limits, sent as valid UTF-8 JSON; each
sink's error mapping; and the registry building every sink type from its spec."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from remediator.clients.http import HttpClient
from remediator.core.errors import SinkRejected, SinkUnavailable
from remediator.escalate.sinks import escape, registry
from remediator.escalate.sinks.base import Event, Notification, Sink
from remediator.escalate.sinks.grafana_irm import GrafanaIrmSink
from remediator.escalate.sinks.jsm import JsmSink
from remediator.escalate.sinks.opsgenie import OpsgenieSink
from remediator.escalate.sinks.slack import SlackSink
from remediator.escalate.sinks.teams import TeamsSink
from remediator.escalate.sinks.webhook import WebhookSink
from remediator.ruleset.schema import (
    GrafanaIrmSpec,
    JsmSpec,
    OpsgenieSpec,
    SlackSpec,
    TeamsSpec,
    WebhookSpec,
)
from tests.support.sinks import (
    GrafanaIrmStub,
    JsmStub,
    OpsgenieStub,
    RecordedRequest,
    StubServer,
    TeamsStub,
    WebhookStub,
)

GENIE_KEY = str(uuid.UUID(int=16))
KEY = "remediator-episode-7"
MARKER = "… [truncated]"
FIXTURES = Path(__file__).parent / "fixtures" / "alertmanager-0.25"

SUMMARY = "[SEV-1] APIUnavailable on Deployment/shop/api: scale_out did not help."
HEADLINE = SUMMARY.removeprefix("[SEV-1] ")
UPDATE = "remediator scaled Deployment/shop/api out to 4 replicas; the alert still fires."
RUNBOOK = "https://runbooks.example/api"
SOURCE = "http://prometheus:9090/graph?g0.expr=up"
SILENCE = "http://alertmanager:9093/#/silences/new?filter=%7Balertname%3D%22APIUnavailable%22%7D"
DECISIONS = "https://remediator.example/api/v1/decisions?episode=7"

ALERT: dict[str, Any] = {
    "labels": {"alertname": "APIUnavailable", "namespace": "shop", "deployment": "api"},
    "annotations": {
        "summary": "The API answers 503",
        "description": "Every request failed for 5 minutes.",
        "runbook_url": RUNBOOK,
    },
    "generator_url": SOURCE,
    "starts_at": "2026-11-28T09:44:26Z",
    "silence_url": SILENCE,
}
TIER_0 = [{"type": "team", "name": "platform"}]
TIER_2 = [
    {"type": "user", "username": "lead@example.com"},
    {"type": "escalation", "name": "db-oncall"},
]


def details(**extra: Any) -> dict[str, Any]:
    return {
        "rule": "api-down",
        "reason": "ineffective",
        "target": "Deployment/shop/api",
        "action": "scale_out",
        "episode": 7,
        "alertname": "APIUnavailable",
        "alert": copy.deepcopy(ALERT),
        "decisions": DECISIONS,
        "responders": TIER_0,
        **extra,
    }


def page(
    event: Event = Event.TRIGGER, tier: int = 0, *, summary: str = SUMMARY, **extra: Any
) -> Notification:
    update = UPDATE if event is Event.UPDATE else ""
    return Notification(event, KEY, "SEV-1", summary, tier, "sev1-ladder", details(**extra), update)


def story() -> list[Notification]:
    """A page, its third tier, an update and the resolve."""
    return [page(), page(tier=2, responders=TIER_2), page(Event.UPDATE), page(Event.RESOLVE)]


def group_of(count: int) -> dict[str, Any]:
    """The details of one notification of ``count`` DiskUsageHigh alerts (20 listed)."""
    alerts = [
        {
            "labels": {"alertname": "DiskUsageHigh", "instance": f"node-{i}:9100"},
            "annotations": {"summary": f"Disk {80 + i % 20}% full"},
            "generator_url": "",
            "starts_at": "2026-11-28T09:44:26Z",
            "silence_url": "",
            "target": "",
            "episode": 100 + i,
        }
        for i in range(min(count, 20))
    ]
    return {"alerts": alerts, "count": count, "alert": alerts[0], "alertname": "DiskUsageHigh",
            "target": "", "responders": []}  # fmt: skip


def sent(request: RecordedRequest) -> Any:
    """The body as a strict receiver reads it: UTF-8, then JSON."""
    return json.loads(request.body.decode("utf-8"))


def calls(stub: StubServer) -> list[tuple[str, dict[str, str], Any]]:
    return [(r.path, r.query, sent(r)) for r in stub.log]


def shaped_like(body: dict[str, Any], example: dict[str, Any]) -> None:
    """Every field of ``body`` is one the documentation's ``example`` shows, with the same
    JSON type (and, for a list of objects, only the keys its items show)."""
    assert set(body) <= set(example), set(body) - set(example)
    for key, value in body.items():
        assert type(value) is type(example[key]), key
        if isinstance(value, list) and value and isinstance(value[0], dict):
            keys = set().union(*(item.keys() for item in example[key]))
            assert all(set(item) <= keys for item in value), key


@pytest.fixture
async def opsgenie() -> AsyncIterator[OpsgenieStub]:
    async with OpsgenieStub(api_keys=[GENIE_KEY]) as stub:
        yield stub


@pytest.fixture
async def jsm() -> AsyncIterator[JsmStub]:
    async with JsmStub(api_keys=[GENIE_KEY]) as stub:
        yield stub


@pytest.fixture
async def grafana() -> AsyncIterator[GrafanaIrmStub]:
    async with GrafanaIrmStub() as stub:
        yield stub


@pytest.fixture
async def teams() -> AsyncIterator[TeamsStub]:
    async with TeamsStub() as stub:
        yield stub


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookStub]:
    async with WebhookStub() as stub:
        yield stub


# ---- Opsgenie and Jira Service Management ---------------------------------------------------

# https://docs.opsgenie.com/docs/alert-api#create-alert (its sample request, abridged)
OPSGENIE_CREATE_EXAMPLE: dict[str, Any] = {
    "message": "An example alert message",
    "alias": "Life is too short for no alias",
    "description": "Every alert needs a description",
    "responders": [
        {"id": "4513b7ea-3b91-438f-b7e4-e3e54af9147c", "type": "team"},
        {"name": "NOC", "type": "team"},
        {"username": "trinity@opsgenie.com", "type": "user"},
        {"name": "Nightwatch Escalation", "type": "escalation"},
        {"name": "First Responders Schedule", "type": "schedule"},
    ],
    "visibleTo": [{"name": "rocket_team", "type": "team"}],
    "actions": ["Restart", "AnExampleAction"],
    "tags": ["OverwriteQuietHours", "Critical"],
    "details": {"key1": "value1", "key2": "value2"},
    "entity": "An example entity",
    "priority": "P1",
    "source": "Monitoring Script",
}
# https://docs.opsgenie.com/docs/alert-api-continued#add-note-to-alert and #add-responder-to-alert
OPSGENIE_NOTE_EXAMPLE = {"user": "Monitoring Script", "source": "AWS Lambda",
                         "note": "Action executed via Alert API"}  # fmt: skip
OPSGENIE_RESPONDER_EXAMPLE = {"responder": {"type": "user", "username": "john@opsgenie.com"},
                              **OPSGENIE_NOTE_EXAMPLE}  # fmt: skip

DESCRIPTION = "\n".join(
    [
        "The API answers 503",
        "Every request failed for 5 minutes.",
        SUMMARY,
        "Target: Deployment/shop/api",
        f"Runbook: {RUNBOOK}",
        f"Alert source: {SOURCE}",
        f"Silence: {SILENCE}",
        f"What remediator decided: {DECISIONS}",
        "",
        "Labels:",
        "  alertname=APIUnavailable",
        "  deployment=api",
        "  namespace=shop",
    ]
)


def create(responders: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "message": SUMMARY,
        "alias": KEY,
        "description": DESCRIPTION,
        "priority": "P1",
        "details": {
            "rule": "api-down",
            "reason": "ineffective",
            "target": "Deployment/shop/api",
            "action": "scale_out",
            "episode": "7",
            "alertname": "APIUnavailable",
            "decisions": DECISIONS,
            "deployment": "api",
            "namespace": "shop",
        },
        "source": "remediator",
        "responders": responders,
        "tags": ["SEV-1", "APIUnavailable", "shop"],
        "entity": "Deployment/shop/api",
    }


BY_ALIAS = {"identifierType": "alias"}
TIER_3_SAYS = f"Escalation tier 3: {HEADLINE}"


async def test_opsgenie_pages_then_adds_the_later_tiers_responders_notes_and_closes_one_alert(
    client: HttpClient, opsgenie: OpsgenieStub
) -> None:
    sink = OpsgenieSink("og", GENIE_KEY, opsgenie.url)
    for note in story():
        await sink.send(client, note)
    alert = f"/v2/alerts/{KEY}"
    assert calls(opsgenie) == [
        ("/v2/alerts", {}, create(TIER_0)),
        ("/v2/alerts", {}, create(TIER_2)),
        (f"{alert}/responders", BY_ALIAS, {"responder": TIER_2[0], "note": TIER_3_SAYS}),
        (f"{alert}/responders", BY_ALIAS, {"responder": TIER_2[1], "note": TIER_3_SAYS}),
        (f"{alert}/notes", BY_ALIAS, {"note": UPDATE}),
        (f"{alert}/close", BY_ALIAS, {}),
    ]
    assert all(r.status == 202 for r in opsgenie.log)
    [stored] = opsgenie.all_alerts  # one alert, which the later tier reached
    assert stored["responders"] == TIER_0 + TIER_2
    assert [n["note"] for n in stored["notes"]] == [TIER_3_SAYS, TIER_3_SAYS, UPDATE]
    assert (stored["count"], stored["status"]) == (2, "closed")
    shaped_like(sent(opsgenie.log[0]), OPSGENIE_CREATE_EXAMPLE)
    shaped_like(sent(opsgenie.log[2]), OPSGENIE_RESPONDER_EXAMPLE)
    shaped_like(sent(opsgenie.log[4]), OPSGENIE_NOTE_EXAMPLE)


async def test_a_later_opsgenie_tier_naming_no_responders_adds_a_note_saying_its_tier(
    client: HttpClient, opsgenie: OpsgenieStub
) -> None:
    sink = OpsgenieSink("og", GENIE_KEY, opsgenie.url)
    await sink.send(client, page())
    await sink.send(client, page(tier=1, responders=[]))
    assert calls(opsgenie)[-1] == (
        f"/v2/alerts/{KEY}/notes",
        BY_ALIAS,
        {"note": f"Escalation tier 2: {HEADLINE}"},
    )
    assert opsgenie.alerts[KEY]["responders"] == TIER_0


async def test_jsm_posts_the_opsgenie_bodies_under_its_own_paths_and_names_responders_in_a_note(
    client: HttpClient, jsm: JsmStub
) -> None:
    sink = JsmSink("jsm", GENIE_KEY, jsm.url)
    for note in story():
        await sink.send(client, note)
    base = "/jsm/ops/integration/v2/alerts"
    named = "Escalation tier 3, for user lead@example.com, escalation db-oncall"
    assert calls(jsm) == [
        (base, {}, create(TIER_0)),
        (base, {}, create(TIER_2)),
        (f"{base}/{KEY}/notes", BY_ALIAS, {"note": f"{named}: {HEADLINE}"}),
        (f"{base}/{KEY}/notes", BY_ALIAS, {"note": UPDATE}),
        (f"{base}/{KEY}/close", BY_ALIAS, {}),
    ]
    assert [r.headers["Authorization"] for r in jsm.log] == [f"GenieKey {GENIE_KEY}"] * 5
    [stored] = jsm.all_alerts
    assert [n["note"] for n in stored["notes"]] == [f"{named}: {HEADLINE}", UPDATE]
    assert stored["status"] == "closed"


async def test_a_later_tier_first_seen_by_opsgenie_opens_the_alert_with_its_responders(
    client: HttpClient, opsgenie: OpsgenieStub
) -> None:
    await OpsgenieSink("og", GENIE_KEY, opsgenie.url).send(client, page(tier=2, responders=TIER_2))
    assert opsgenie.alerts[KEY]["responders"] == TIER_2
    assert opsgenie.alerts[KEY]["status"] == "open"


# ---- Grafana IRM ----------------------------------------------------------------------------

# https://grafana.com/docs/oncall/latest/configure/integrations/references/webhook/ lists the
# fields; this is the integration's own example payload (grafana/oncall,
# engine/config_integrations/formatted_webhook.py).
GRAFANA_EXAMPLE: dict[str, Any] = {
    "alert_uid": "08d6891a-835c-e661-39fa-96b6a9e26552",
    "title": "TestAlert: The whole system is down",
    "image_url": "https://upload.wikimedia.org/wikipedia/commons/e/ee/Grumpy_Cat_by_Gage_Skidmore.jpg",
    "state": "alerting",
    "link_to_upstream_details": "https://en.wikipedia.org/wiki/Downtime",
    "message": "This alert was sent by user for the demonstration purposes\nSmth happened. Oh no!",
}
GRAFANA_LINES = [
    "The API answers 503",
    "Every request failed for 5 minutes.",
    SUMMARY,
    "Target: Deployment/shop/api",
    f"Runbook: {RUNBOOK}",
    f"Alert source: {SOURCE}",
    f"Silence: {SILENCE}",
    f"What remediator decided: {DECISIONS}",
]


def grafana_body(state: str, title: str, first: list[str], event: str, tier: int) -> dict[str, Any]:
    return {
        "alert_uid": KEY,
        "title": title,
        "state": state,
        "message": "\n".join(first + GRAFANA_LINES),
        "link_to_upstream_details": DECISIONS,
        "severity": "SEV-1",
        "event": event,
        "tier": tier,
        "count": 1,
        "labels": {"alertname": "APIUnavailable", "deployment": "api", "namespace": "shop"},
    }


async def test_grafana_irm_gets_one_alert_group_by_alert_uid_which_state_ok_resolves(
    client: HttpClient, grafana: GrafanaIrmStub
) -> None:
    sink = GrafanaIrmSink("irm", grafana.integration_url())
    for note in story():
        await sink.send(client, note)
    path = "/integrations/v1/formatted_webhook/t0ken/"
    assert calls(grafana) == [
        (path, {}, grafana_body("alerting", SUMMARY, [], "trigger", 0)),
        (path, {}, grafana_body("alerting", SUMMARY, ["Escalation: escalation tier 3."],
                                "trigger", 2)),
        (path, {}, grafana_body("alerting", SUMMARY, [f"Update: {UPDATE}"], "update", 0)),
        (path, {}, grafana_body("ok", f"Resolved: {SUMMARY}", [], "resolve", 0)),
    ]  # fmt: skip
    [group] = grafana.all_groups
    assert (len(group.alerts), group.resolved, group.title) == (4, True, SUMMARY)
    for request in grafana.log:
        recognised = {k: v for k, v in sent(request).items() if k in GRAFANA_EXAMPLE}
        assert set(recognised) == set(GRAFANA_EXAMPLE) - {"image_url"}
        shaped_like(recognised, GRAFANA_EXAMPLE)


# ---- Microsoft Teams -------------------------------------------------------------------------

# https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/
# connectors-using#send-adaptive-cards-using-an-incoming-webhook
TEAMS_EXAMPLE: dict[str, Any] = {
    "type": "message",
    "attachments": [
        {
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": None,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.2",
                "body": [{"type": "TextBlock", "text": "For Samples and Templates, see ..."}],
            },
        }
    ],
}
ESCAPED_HEADLINE = HEADLINE.replace("_", "\\_")
TEAMS_FACTS = [
    {"title": "Severity", "value": "SEV-1"},
    {"title": "Target", "value": "Deployment/shop/api"},
    {"title": "Alert", "value": "APIUnavailable"},
    {"title": "Incident", "value": "remediator-episode-7"},
]
TEAMS_BUTTONS = [
    {"type": "Action.OpenUrl", "title": "Runbook", "url": RUNBOOK},
    {"type": "Action.OpenUrl", "title": "Alert source", "url": SOURCE},
    {"type": "Action.OpenUrl", "title": "Silence", "url": SILENCE},
    {"type": "Action.OpenUrl", "title": "What remediator decided", "url": DECISIONS},
]


def teams_message(first: list[dict[str, Any]]) -> dict[str, Any]:
    text = [
        {"type": "TextBlock", "text": "The API answers 503", "wrap": True},
        {"type": "TextBlock", "text": "Every request failed for 5 minutes.", "wrap": True},
        {"type": "TextBlock", "text": "Labels: alertname=APIUnavailable, deployment=api,"
         " namespace=shop", "wrap": True, "isSubtle": True, "size": "Small"},
    ]  # fmt: skip
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [*first, {"type": "FactSet", "facts": TEAMS_FACTS}, *text],
        "msteams": {"width": "Full"},
        "actions": TEAMS_BUTTONS,
    }
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
         "content": card}]}  # fmt: skip


def headline(text: str, **style: str) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, "weight": "Bolder", "size": "Medium",
            **style}  # fmt: skip


async def test_teams_gets_an_adaptive_card_per_notification_with_facts_and_link_buttons(
    client: HttpClient, teams: TeamsStub
) -> None:
    sink = TeamsSink("teams", teams.workflow_url())
    for note in story():
        await sink.send(client, note)
    update = {"type": "TextBlock", "text": UPDATE, "wrap": True}
    assert [sent(r) for r in teams.log] == [
        teams_message([headline(f"SEV-1: {ESCAPED_HEADLINE}", color="Attention")]),
        teams_message([headline(f"SEV-1, escalation tier 3: {ESCAPED_HEADLINE}",
                                color="Attention")]),
        teams_message([headline(f"Update: {ESCAPED_HEADLINE}"), update]),
        teams_message([headline(f"Resolved: {ESCAPED_HEADLINE}", color="Good")]),
    ]  # fmt: skip
    assert [r.status for r in teams.log] == [202] * 4 and len(teams.cards) == 4
    assert all(r.headers["Content-Type"] == "application/json; charset=utf-8" for r in teams.log)
    message = sent(teams.log[0])
    shaped_like(message, TEAMS_EXAMPLE)
    shaped_like(message["attachments"][0], TEAMS_EXAMPLE["attachments"][0])
    card, example = message["attachments"][0]["content"], TEAMS_EXAMPLE["attachments"][0]["content"]
    assert {k: card[k] for k in ("$schema", "type")} == {k: example[k] for k in ("$schema", "type")}


# ---- the Alertmanager-format webhook ---------------------------------------------------------

REMEDIATOR_FACTS = {
    "remediator_event": "trigger",
    "remediator_severity": "SEV-1",
    "remediator_summary": SUMMARY,
    "remediator_tier": "0",
    "remediator_policy": "sev1-ladder",
    "remediator_reason": "ineffective",
    "remediator_action": "scale_out",
    "remediator_target": "Deployment/shop/api",
    "remediator_rule": "api-down",
    "remediator_episode": "7",
    "remediator_decisions": DECISIONS,
}


def alertmanager_body(status: str, **facts: str) -> dict[str, Any]:
    annotations = {**ALERT["annotations"], **REMEDIATOR_FACTS, **facts}
    return {
        "version": "4",
        "groupKey": KEY,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "am-hook",
        "groupLabels": {"alertname": "APIUnavailable"},
        "commonLabels": ALERT["labels"],
        "commonAnnotations": annotations,
        "externalURL": "http://alertmanager:9093",
        "alerts": [
            {
                "status": status,
                "labels": ALERT["labels"],
                "annotations": annotations,
                "startsAt": "2026-11-28T09:44:26Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": SOURCE,
                "fingerprint": "571f8290ca3a7c60",
            }
        ],
    }


async def test_the_alertmanager_format_webhook_sends_a_version_4_payload_per_notification(
    client: HttpClient, webhook: WebhookStub
) -> None:
    sink = WebhookSink("am-hook", f"{webhook.url}/alerts", b"s3cret", "alertmanager")
    for note in story():
        await sink.send(client, note)
    assert [sent(r) for r in webhook.received] == [
        alertmanager_body("firing"),
        alertmanager_body("firing", remediator_tier="2"),
        alertmanager_body("firing", remediator_event="update", remediator_update=UPDATE),
        alertmanager_body("resolved", remediator_event="resolve"),
    ]
    fixture = json.loads((FIXTURES / "firing-2-alerts.json").read_text())
    for request in webhook.received:
        body = sent(request)
        assert set(body) == set(fixture)
        shaped_like(body, fixture)
        shaped_like(body["alerts"][0], fixture["alerts"][0])
        assert set(body["alerts"][0]) == set(fixture["alerts"][0])


def as_content(alert: dict[str, Any]) -> dict[str, Any]:
    """An Alertmanager alert as ``plan`` puts it in a page's details."""
    return {"labels": alert["labels"], "annotations": alert["annotations"],
            "generator_url": alert["generatorURL"], "starts_at": alert["startsAt"],
            "silence_url": "http://vm:19093/#/silences/new?filter=x", "target": "",
            "episode": 1}  # fmt: skip


async def test_a_real_alertmanager_payloads_alerts_come_back_with_its_own_common_pairs(
    client: HttpClient, webhook: WebhookStub
) -> None:
    fixture = json.loads((FIXTURES / "firing-2-alerts.json").read_text())
    alerts = [as_content(a) for a in fixture["alerts"]]
    note = Notification(Event.TRIGGER, "k", "SEV-3", "[SEV-3] HighCPUUsage", 0, "p",
                        {"alerts": alerts, "count": 2, "alert": alerts[0]})  # fmt: skip
    await WebhookSink("hook", f"{webhook.url}/am", None, "alertmanager").send(client, note)
    body = sent(webhook.received[0])

    def own(annotations: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in annotations.items() if not k.startswith("remediator_")}

    assert body["commonLabels"] == fixture["commonLabels"]
    assert own(body["commonAnnotations"]) == fixture["commonAnnotations"]
    assert (body["groupLabels"], body["externalURL"]) == (fixture["groupLabels"], "http://vm:19093")
    for ours, theirs in zip(body["alerts"], fixture["alerts"], strict=True):
        assert {**ours, "annotations": own(ours["annotations"])} == theirs


# ---- one message per story ---------------------------------------------------------------------


async def test_forty_alerts_are_one_request_per_sink_listing_twenty_and_twenty_more(
    client: HttpClient,
    opsgenie: OpsgenieStub,
    jsm: JsmStub,
    grafana: GrafanaIrmStub,
    teams: TeamsStub,
    webhook: WebhookStub,
) -> None:
    note = Notification(Event.TRIGGER, "storm-1", "SEV-3", "[SEV-3] DiskUsageHigh on 40 nodes",
                        0, "p", group_of(40))  # fmt: skip
    await OpsgenieSink("og", GENIE_KEY, opsgenie.url).send(client, note)
    await JsmSink("jsm", GENIE_KEY, jsm.url).send(client, note)
    await GrafanaIrmSink("irm", grafana.integration_url()).send(client, note)
    await TeamsSink("teams", teams.workflow_url()).send(client, note)
    await WebhookSink("hook", f"{webhook.url}/am", None, "alertmanager").send(client, note)
    stubs: list[StubServer] = [opsgenie, jsm, grafana, teams, webhook]
    assert [len(stub.log) for stub in stubs] == [1] * 5
    listed = [f"node-{i}:9100 — Disk {80 + i}% full" for i in range(20)]

    description = sent(opsgenie.log[0])["description"]
    assert description.split("\n")[2:25] == ["", "Alerts:", *(f"- {x}" for x in listed),
                                              "and 20 more"]  # fmt: skip
    assert sent(jsm.log[0])["description"] == description
    message = sent(grafana.log[0])["message"].split("\n")
    assert message[-21:] == [*(f"• {x}" for x in listed), "and 20 more"]
    assert sent(grafana.log[0])["count"] == 40
    card = sent(teams.log[0])["attachments"][0]["content"]
    [group] = [b for b in card["body"] if b.get("text", "").startswith("- node-0")]
    assert group["text"] == "\n".join([*(f"- {x}" for x in listed), "and 20 more"])
    assert {"title": "Alerts", "value": "40"} in card["body"][1]["facts"]
    body = sent(webhook.received[0])
    assert (len(body["alerts"]), body["truncatedAlerts"]) == (20, 20)
    assert body["commonLabels"] == {"alertname": "DiskUsageHigh"}


# ---- hostile values ------------------------------------------------------------------------------

FFFD = "\ufffd"
WJ = "\u2060"

#: (value, as Teams Markdown, as Grafana IRM's mixed markup, as plain text)
HOSTILE: dict[str, tuple[str, str, str, str]] = {
    "markdown link": ("[click](https://evil.example)", "\\[click\\]\\(https://evil.example\\)",
                      f"[click]{WJ}(https://evil.example)", "[click](https://evil.example)"),
    "image": ("![x](https://evil.example/p.png)", "\\!\\[x\\]\\(https://evil.example/p.png\\)",
              f"![x]{WJ}(https://evil.example/p.png)", "![x](https://evil.example/p.png)"),
    "emphasis and code": ("**b** _i_ `c` ~s~", "\\*\\*b\\*\\* \\_i\\_ \\`c\\` \\~s\\~",
                          "**b** _i_ `c` ~s~", "**b** _i_ `c` ~s~"),
    "html and mention": ("<at>all</at> <b>x</b>", "\\<at\\>all\\</at\\> \\<b\\>x\\</b\\>",
                         "&lt;at&gt;all&lt;/at&gt; &lt;b&gt;x&lt;/b&gt;", "<at>all</at> <b>x</b>"),
    "slack ping": ("<!channel> @here", "\\<\\!channel\\> @here", f"&lt;!channel&gt; @{WJ}here",
                   "<!channel> @here"),
    "list and heading": ("- a # b", "\\- a \\# b", "- a # b", "- a # b"),
    "controls": ("a\x00b\x1b[31mc\u202ed", f"a{FFFD}b{FFFD}\\[31mc{FFFD}d",
                 f"a{FFFD}b{FFFD}[31mc{FFFD}d", f"a{FFFD}b{FFFD}[31mc{FFFD}d"),
    "lone surrogate": ("x\ud800y", f"x{FFFD}y", f"x{FFFD}y", f"x{FFFD}y"),
}  # fmt: skip


def hostile(value: str) -> Notification:
    alert = {"labels": {"alertname": value}, "annotations": {"summary": value}}
    return Notification(Event.TRIGGER, KEY, "SEV-2", f"[SEV-2] {value}", 0, "p",
                        {"alert": alert, "alertname": value, "target": value})  # fmt: skip


@pytest.mark.parametrize("case", HOSTILE)
async def test_teams_shows_a_hostile_value_as_typed_markdown_that_links_and_styles_nothing(
    client: HttpClient, teams: TeamsStub, case: str
) -> None:
    value, shown, _, _ = HOSTILE[case]
    await TeamsSink("teams", teams.workflow_url()).send(client, hostile(value))
    [request] = teams.log
    assert request.status == 202
    body = sent(request)["attachments"][0]["content"]["body"]
    assert body[0]["text"] == f"SEV-2: {shown}"
    assert body[1]["facts"][1:3] == [{"title": "Target", "value": shown},
                                     {"title": "Alert", "value": shown}]  # fmt: skip
    assert body[2]["text"] == shown
    assert "actions" not in sent(request)["attachments"][0]["content"]


@pytest.mark.parametrize("case", HOSTILE)
async def test_grafana_irm_gets_a_hostile_value_that_links_pings_and_tags_nothing(
    client: HttpClient, grafana: GrafanaIrmStub, case: str
) -> None:
    value, _, shown, _ = HOSTILE[case]
    await GrafanaIrmSink("irm", grafana.integration_url()).send(client, hostile(value))
    body = sent(grafana.log[0])
    assert body["title"] == f"[SEV-2] {shown}"
    assert body["message"] == "\n".join([shown, f"[SEV-2] {shown}", f"Target: {shown}"])
    assert body["labels"] == {"alertname": escape.text(value)}  # data, read by templates


@pytest.mark.parametrize("case", HOSTILE)
async def test_jsm_gets_a_hostile_value_as_plain_text(
    client: HttpClient, jsm: JsmStub, case: str
) -> None:
    value, _, _, line = HOSTILE[case]
    await JsmSink("jsm", GENIE_KEY, jsm.url).send(client, hostile(value))
    [request] = jsm.log
    assert request.status == 202
    body = sent(request)
    assert (body["message"], body["entity"]) == (f"[SEV-2] {line}", line)
    assert body["description"].split("\n")[:3] == [line, f"[SEV-2] {line}", f"Target: {line}"]
    assert body["tags"] == ["SEV-2", line]


@pytest.mark.parametrize("case", HOSTILE)
async def test_the_alertmanager_format_gets_a_hostile_value_itself_as_ascii_json(
    client: HttpClient, webhook: WebhookStub, case: str
) -> None:
    value = HOSTILE[case][0]
    await WebhookSink("hook", f"{webhook.url}/am", None, "alertmanager").send(
        client, hostile(value)
    )
    [request] = webhook.received
    assert request.body.isascii()
    alert = sent(request)["alerts"][0]
    assert alert["labels"] == {"alertname": escape.text(value)}
    assert alert["annotations"]["summary"] == escape.text(value)


def test_markdown_and_mixed_markup_escaping_leave_ordinary_words_alone() -> None:
    ordinary = "Disk 91% full on node-3:9100 (sda), 2 of 3 pods ready"
    assert escape.markdown(ordinary) == "Disk 91% full on node-3:9100 \\(sda\\), 2 of 3 pods ready"
    assert escape.oncall(ordinary) == ordinary
    assert escape.markdown("1. one\n2) two\n+ three", lines=True) == "1\\. one\n2\\) two\n\\+ three"


MEGABYTE = "é" * (512 * 1024)  # 1 MB of UTF-8


async def test_a_one_megabyte_annotation_is_cut_to_each_sinks_limit_and_accepted(
    client: HttpClient, opsgenie: OpsgenieStub, grafana: GrafanaIrmStub, teams: TeamsStub
) -> None:
    note = page(alert={**ALERT, "annotations": {"summary": "short", "description": MEGABYTE}},
                update=MEGABYTE)  # fmt: skip
    og = OpsgenieSink("og", GENIE_KEY, opsgenie.url)
    await og.send(client, note)
    await og.send(client, Notification(Event.UPDATE, KEY, "SEV-1", "s", 0, "p", {}, MEGABYTE))
    await GrafanaIrmSink("irm", grafana.integration_url()).send(client, note)
    await TeamsSink("teams", teams.workflow_url()).send(client, note)

    assert [r.status for r in opsgenie.log + grafana.log + teams.log] == [202, 202, 200, 202]
    description = sent(opsgenie.log[0])["description"]
    assert len(description) == 15_000 and description.startswith("short\néé")
    assert description.endswith("é" + MARKER)
    note_sent = sent(opsgenie.log[1])["note"]
    assert len(note_sent) == 25_000 and note_sent.endswith(MARKER)
    message = sent(grafana.log[0])["message"]
    assert len(message) == 10_000 and message.endswith(MARKER)
    assert len(teams.log[0].body) <= 28 * 1024
    card = sent(teams.log[0])["attachments"][0]["content"]
    [cut] = [b for b in card["body"] if b.get("text", "").endswith(MARKER)]
    assert set(cut["text"][: -len(MARKER)]) == {"é"} and len(cut["text"]) > 10_000
    assert [a["url"] for a in card["actions"]] == [SOURCE, SILENCE, DECISIONS]


async def test_opsgenie_keeps_tags_to_fifty_characters_and_responders_to_fifty(
    client: HttpClient, opsgenie: OpsgenieStub
) -> None:
    many = [{"type": "team", "name": f"team-{i}"} for i in range(60)]
    labels = {"alertname": "A" * 80, "namespace": "n" * 10}
    note = page(alert={**ALERT, "labels": labels}, alertname="A" * 80, responders=many)
    await OpsgenieSink("og", GENIE_KEY, opsgenie.url).send(client, note)
    body = sent(opsgenie.log[0])
    assert body["tags"] == ["SEV-1", "A" * (50 - len(MARKER)) + MARKER, "n" * 10]
    assert body["responders"] == many[:50]


# ---- errors --------------------------------------------------------------------------------------


def sinks_on(stubs: dict[str, StubServer]) -> dict[str, tuple[Sink, StubServer, str]]:
    """Each new sink aimed at its stand-in, with the name its errors give it."""
    og, jsm, irm, teams, hook = (stubs[k] for k in ("og", "jsm", "irm", "teams", "hook"))
    assert isinstance(irm, GrafanaIrmStub) and isinstance(teams, TeamsStub)
    return {
        "opsgenie": (OpsgenieSink("og", GENIE_KEY, og.url), og, "Opsgenie"),
        "jsm": (JsmSink("jsm", GENIE_KEY, jsm.url), jsm, "Jira Service Management"),
        "grafana_irm": (GrafanaIrmSink("irm", irm.integration_url()), irm, "Grafana IRM"),
        "teams": (TeamsSink("teams", teams.workflow_url()), teams, "Teams"),
        "webhook": (WebhookSink("am", f"{hook.url}/am", None, "alertmanager"), hook, "webhook am"),
    }


@pytest.fixture
async def every(
    opsgenie: OpsgenieStub,
    jsm: JsmStub,
    grafana: GrafanaIrmStub,
    teams: TeamsStub,
    webhook: WebhookStub,
) -> dict[str, tuple[Sink, StubServer, str]]:
    return sinks_on({"og": opsgenie, "jsm": jsm, "irm": grafana, "teams": teams, "hook": webhook})


SINKS = ["opsgenie", "jsm", "grafana_irm", "teams", "webhook"]


@pytest.mark.parametrize("name", SINKS)
async def test_a_429_with_retry_after_is_unavailable_and_says_when(
    client: HttpClient, every: dict[str, tuple[Sink, StubServer, str]], name: str
) -> None:
    sink, stub, what = every[name]
    stub.fail_next(1, status=429, retry_after=7)
    with pytest.raises(SinkUnavailable, match=rf"^{what} answered 429: ") as raised:
        await sink.send(client, page())
    assert raised.value.retry_after_s == 7.0


@pytest.mark.parametrize("name", SINKS)
async def test_a_5xx_is_unavailable_and_a_400_is_rejected(
    client: HttpClient, every: dict[str, tuple[Sink, StubServer, str]], name: str
) -> None:
    sink, stub, what = every[name]
    stub.fail_next(1, status=503)
    with pytest.raises(SinkUnavailable, match=rf"^{what} answered 503: ") as unavailable:
        await sink.send(client, page(Event.RESOLVE))
    assert unavailable.value.retry_after_s is None
    stub.fail_next(1, status=400)
    with pytest.raises(SinkRejected, match=rf"^{what} answered 400: "):
        await sink.send(client, page(Event.UPDATE))


async def test_a_later_opsgenie_tier_stops_at_the_first_refused_request(
    client: HttpClient, opsgenie: OpsgenieStub
) -> None:
    sink = OpsgenieSink("og", GENIE_KEY, opsgenie.url)
    await sink.send(client, page())
    opsgenie.log.clear()
    opsgenie.fail_next(1, status=202)  # the create, taken
    opsgenie.fail_next(1, status=502)  # the first responder
    with pytest.raises(SinkUnavailable, match=r"^Opsgenie answered 502: "):
        await sink.send(client, page(tier=2, responders=TIER_2))
    assert [r.path.rsplit("/", 1)[-1] for r in opsgenie.log] == ["alerts", "responders"]


async def test_teams_answers_400_to_a_message_without_an_adaptive_card(teams: TeamsStub) -> None:
    async with aiohttp.ClientSession() as session:
        for message in ({"type": "message", "attachments": []}, {"text": "hi"}):
            async with session.post(teams.workflow_url(), json=message) as response:
                assert response.status == 400
                error = (await response.json())["error"]
            assert error["code"] == "InvalidRequestContent"
    assert teams.cards == []


# ---- the registry -------------------------------------------------------------------------------


def test_the_registry_builds_every_new_sink_with_its_secret_read_from_a_file(
    tmp_path: Path,
) -> None:
    key = tmp_path / "key"
    key.write_text(GENIE_KEY + "\n")
    url = tmp_path / "url"
    url.write_text("https://hooks.example/secret-path\n")
    built = registry.build_sinks(
        {
            "og": OpsgenieSpec(type="opsgenie", api_key_file=str(key)),
            "jsm": JsmSpec(type="jsm", api_key_file=str(key)),
            "irm": GrafanaIrmSpec(type="grafana_irm", url_file=str(url)),
            "teams": TeamsSpec(type="teams", url_file=str(url)),
            "am": WebhookSpec(type="webhook", url="https://r.example", format="alertmanager"),
            "slack": SlackSpec(type="slack", webhook_url_file=str(url)),
        }
    )
    og, jsm_sink, irm, teams, am, slack = built.values()
    assert isinstance(og, OpsgenieSink) and og.api_key == GENIE_KEY
    assert isinstance(jsm_sink, JsmSink)
    assert (jsm_sink.api_key, jsm_sink.url) == (GENIE_KEY, "https://api.atlassian.com")
    assert isinstance(irm, GrafanaIrmSink) and irm.url == "https://hooks.example/secret-path"
    assert isinstance(teams, TeamsSink) and teams.url == "https://hooks.example/secret-path"
    assert isinstance(am, WebhookSink) and (am.format, am.secret) == ("alertmanager", None)
    assert isinstance(slack, SlackSink) and slack.webhook_url == "https://hooks.example/secret-path"
    assert [s.kind for s in built.values()] == ["opsgenie", "jsm", "grafana_irm", "teams",
                                                "webhook", "slack"]  # fmt: skip
    assert "secret-path" not in repr(irm) + repr(teams) and GENIE_KEY not in repr(og)
