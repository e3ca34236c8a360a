"""The escalation stubs in :mod:`tests.support.sinks` answer like the services they replace,
and the sinks, through :mod:`remediator.clients.http`, turn each answer into delivered,
``SinkUnavailable`` (retry, when) or ``SinkRejected`` (drop)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from remediator.clients.http import MAX_RETRY_AFTER_S, HttpClient
from remediator.core.errors import SinkRejected, SinkUnavailable
from remediator.core.vocab import Event
from remediator.escalate.sinks.base import Notification
from remediator.escalate.sinks.opsgenie import OpsgenieSink
from remediator.escalate.sinks.pagerduty import PagerDutySink
from remediator.escalate.sinks.slack import SlackSink
from remediator.escalate.sinks.webhook import SIGNATURE_HEADER, WebhookSink, signature
from tests.support.clock import FakeClock
from tests.support.sinks import (
    OpsgenieStub,
    PagerDutyStub,
    SlackStub,
    StubServer,
    WebhookStub,
)

ROUTING_KEY = "R0123456789abcdef0123456789abcde"  # 32 characters, like an integration key
OTHER_ROUTING_KEY = "R_other_789abcdef0123456789abcde"
GENIE_KEY = "6f1c3e0a-6d2b-4c1e-9a57-2f8d1b3c4e5f"
SLACK_HOOK = "/services/T0AAAAAAA/B0BBBBBBB/abcdefghijklmnopqrstuvwx"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def pagerduty(clock: FakeClock) -> AsyncIterator[PagerDutyStub]:
    async with PagerDutyStub(clock=clock.monotonic) as stub:
        yield stub


@pytest.fixture
async def slack(clock: FakeClock) -> AsyncIterator[SlackStub]:
    async with SlackStub(clock=clock.monotonic) as stub:
        yield stub


@pytest.fixture
async def opsgenie() -> AsyncIterator[OpsgenieStub]:
    async with OpsgenieStub(api_keys=[GENIE_KEY]) as stub:
        yield stub


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookStub]:
    async with WebhookStub() as stub:
        yield stub


def trigger(dedup_key: str | None = "db-down", **payload: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "payload": {
            "summary": "Primary database is down",
            "source": "db-0.shop",
            "severity": "critical",
            "custom_details": {"alertname": "DatabasePrimaryDown"},
            **payload,
        },
    }
    if dedup_key is not None:
        event["dedup_key"] = dedup_key
    return event


def follow_up(action: str, dedup_key: str = "db-down", routing_key: str = ROUTING_KEY) -> Any:
    return {"routing_key": routing_key, "event_action": action, "dedup_key": dedup_key}


async def enqueue(
    http: aiohttp.ClientSession, stub: PagerDutyStub, event: Any
) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    async with http.post(f"{stub.url}/v2/enqueue", json=event) as resp:
        return resp.status, await resp.json(), resp


def genie(key: str = GENIE_KEY) -> dict[str, str]:
    return {"Authorization": f"GenieKey {key}"}


# ---- PagerDuty -----------------------------------------------------------------------------------


async def test_a_pagerduty_trigger_is_accepted_with_its_dedup_key_and_opens_an_incident(
    http: aiohttp.ClientSession, pagerduty: PagerDutyStub
) -> None:
    status, body, resp = await enqueue(http, pagerduty, trigger())

    assert status == 202
    assert resp.content_type == "application/json"
    assert body == {"status": "success", "message": "Event processed", "dedup_key": "db-down"}
    incident = pagerduty.incidents["db-down"]
    assert incident.status == "triggered"
    assert incident.summary == "Primary database is down"
    assert incident.severity == "critical"
    assert incident.routing_key == ROUTING_KEY
    assert [e["event_action"] for e in incident.events] == ["trigger"]
    assert len(pagerduty.events) == 1
    assert pagerduty.events[0]["payload"]["custom_details"] == {"alertname": "DatabasePrimaryDown"}
    assert pagerduty.events[0]["received_at"] == 1000.0


async def test_a_trigger_without_a_dedup_key_gets_a_generated_one_and_its_own_incident(
    http: aiohttp.ClientSession, pagerduty: PagerDutyStub
) -> None:
    _, first, _ = await enqueue(http, pagerduty, trigger(dedup_key=None))
    _, second, _ = await enqueue(http, pagerduty, trigger(dedup_key=None))

    assert first["dedup_key"] != second["dedup_key"]
    assert set(pagerduty.incidents) == {first["dedup_key"], second["dedup_key"]}
    assert pagerduty.events[0]["dedup_key"] == first["dedup_key"]


async def test_a_second_trigger_with_the_same_dedup_key_updates_the_same_incident(
    http: aiohttp.ClientSession, pagerduty: PagerDutyStub
) -> None:
    await enqueue(http, pagerduty, trigger())
    status, body, _ = await enqueue(
        http, pagerduty, trigger(severity="error", summary="Still down")
    )

    assert (status, body["dedup_key"]) == (202, "db-down")
    assert len(pagerduty.incidents) == 1
    assert len(pagerduty.all_incidents) == 1
    incident = pagerduty.incidents["db-down"]
    assert incident.number == 1
    assert incident.trigger_count == 2
    assert (incident.status, incident.severity, incident.summary) == (
        "triggered",
        "error",
        "Still down",
    )


async def test_acknowledge_then_resolve_moves_the_incident_to_resolved(
    http: aiohttp.ClientSession, pagerduty: PagerDutyStub, clock: FakeClock
) -> None:
    await enqueue(http, pagerduty, trigger())
    clock.advance(5)
    status, body, _ = await enqueue(http, pagerduty, follow_up("acknowledge"))
    assert (status, body["dedup_key"]) == (202, "db-down")
    assert pagerduty.incidents["db-down"].status == "acknowledged"

    clock.advance(5)
    status, body, _ = await enqueue(http, pagerduty, follow_up("resolve"))

    assert status == 202
    assert body == {"status": "success", "message": "Event processed", "dedup_key": "db-down"}
    incident = pagerduty.incidents["db-down"]
    assert incident.status == "resolved"
    assert (incident.acknowledged_at, incident.resolved_at) == (1005.0, 1010.0)
    assert [e["event_action"] for e in incident.events] == ["trigger", "acknowledge", "resolve"]


async def test_a_trigger_after_resolve_opens_a_new_incident(
    http: aiohttp.ClientSession, pagerduty: PagerDutyStub
) -> None:
    await enqueue(http, pagerduty, trigger())
    await enqueue(http, pagerduty, follow_up("resolve"))
    await enqueue(http, pagerduty, trigger())

    assert pagerduty.incidents["db-down"].number == 2
    assert pagerduty.incidents["db-down"].status == "triggered"
    assert [i.status for i in pagerduty.all_incidents] == ["resolved", "triggered"]


async def test_follow_ups_for_an_unknown_key_or_another_routing_key_are_accepted_and_dropped(
    http: aiohttp.ClientSession, pagerduty: PagerDutyStub
) -> None:
    await enqueue(http, pagerduty, trigger())

    unknown = await enqueue(http, pagerduty, follow_up("resolve", dedup_key="never-triggered"))
    foreign = await enqueue(http, pagerduty, follow_up("resolve", routing_key=OTHER_ROUTING_KEY))

    assert (unknown[0], foreign[0]) == (202, 202)
    assert "never-triggered" not in pagerduty.incidents
    assert pagerduty.incidents["db-down"].status == "triggered"
    assert len(pagerduty.events) == 3


@pytest.mark.parametrize(
    ("event", "error"),
    [
        ({**trigger(), "routing_key": ""}, "'routing_key' is missing or blank"),
        (
            {**trigger(), "routing_key": "short"},
            "Length of 'routing_key' is incorrect (should be 32 characters)",
        ),
        ({**trigger(), "event_action": "explode"}, "'event_action' is invalid"),
        ({**trigger(), "payload": None}, "'payload' is missing or blank"),
        (trigger(summary=""), "'payload.summary' is missing or blank"),
        (trigger(source=None), "'payload.source' is missing or blank"),
        ({**trigger(), "payload": {"summary": "x", "source": "y"}}, "'payload.severity' is"),
        (trigger(severity="fatal"), "'payload.severity' is invalid"),
        ({"routing_key": ROUTING_KEY, "event_action": "resolve"}, "'dedup_key' is missing"),
        (trigger(dedup_key="k" * 256), "'dedup_key' is too long"),
        ([1, 2], "Event object must be a JSON object"),
    ],
    ids=[
        "blank-routing-key",
        "short-routing-key",
        "bad-action",
        "no-payload",
        "no-summary",
        "no-source",
        "no-severity",
        "bad-severity",
        "resolve-without-dedup-key",
        "long-dedup-key",
        "not-an-object",
    ],
)
async def test_an_invalid_event_is_rejected_with_400_and_the_errors(
    http: aiohttp.ClientSession, pagerduty: PagerDutyStub, event: Any, error: str
) -> None:
    status, body, _ = await enqueue(http, pagerduty, event)

    assert status == 400
    assert body["status"] == "invalid event"
    assert body["message"] == "Event object is invalid"
    assert any(e.startswith(error) for e in body["errors"]), body["errors"]
    assert pagerduty.events == []
    assert pagerduty.incidents == {}


async def test_malformed_json_is_rejected_with_400(
    http: aiohttp.ClientSession, pagerduty: PagerDutyStub
) -> None:
    async with http.post(
        f"{pagerduty.url}/v2/enqueue",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["status"] == "invalid event"


async def test_the_121st_event_in_a_minute_is_rejected_with_429_and_retry_after(
    http: aiohttp.ClientSession, pagerduty: PagerDutyStub, clock: FakeClock
) -> None:
    for i in range(120):
        status, _, _ = await enqueue(http, pagerduty, trigger(dedup_key=f"k{i}"))
        assert status == 202
        clock.advance(0.25)  # 120 events over 30 s

    status, body, resp = await enqueue(http, pagerduty, trigger(dedup_key="k120"))

    assert status == 429
    assert resp.headers["Retry-After"] == "30"  # the first event leaves the window at t0 + 60
    assert body["status"] == "throttle event"
    assert "k120" not in pagerduty.incidents
    assert pagerduty.throttled == 1
    # another integration key has its own budget
    other = {**trigger(dedup_key="other"), "routing_key": OTHER_ROUTING_KEY}
    assert (await enqueue(http, pagerduty, other))[0] == 202
    # the window slides: each event frees its slot 60 s after it was accepted
    clock.advance(30)
    assert (await enqueue(http, pagerduty, trigger(dedup_key="k120")))[0] == 202
    status, _, resp = await enqueue(http, pagerduty, trigger(dedup_key="k121"))
    assert (status, resp.headers["Retry-After"]) == (429, "1")
    clock.advance(0.25)
    assert (await enqueue(http, pagerduty, trigger(dedup_key="k121")))[0] == 202


async def test_a_small_rate_limit_window_slides_in_real_time(http: aiohttp.ClientSession) -> None:
    async with PagerDutyStub(rate_limit=2, rate_window=0.2) as pd:
        results = [(await enqueue(http, pd, trigger()))[0] for _ in range(3)]
        assert results == [202, 202, 429]
        assert pd.log[-1].status == 429
        await asyncio.sleep(0.25)
        assert (await enqueue(http, pd, follow_up("resolve")))[0] == 202
        assert pd.incidents["db-down"].status == "resolved"


async def test_routing_key_length_can_be_relaxed(http: aiohttp.ClientSession) -> None:
    async with PagerDutyStub(routing_key_length=None) as pd:
        status, _, _ = await enqueue(http, pd, {**trigger(), "routing_key": "test"})
        assert status == 202


# ---- Slack ---------------------------------------------------------------------------------------


async def test_a_slack_message_is_answered_ok_in_plain_text_and_recorded(
    http: aiohttp.ClientSession, slack: SlackStub
) -> None:
    async with http.post(slack.webhook_url(SLACK_HOOK), json={"text": "db-0 is down"}) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/plain"
        assert await resp.text() == "ok"

    assert slack.messages == [
        {"path": SLACK_HOOK, "json": {"text": "db-0 is down"}, "time": 1000.0}
    ]


async def test_a_slack_message_with_only_blocks_or_a_form_payload_is_accepted(
    http: aiohttp.ClientSession, slack: SlackStub, clock: FakeClock
) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*down*"}}]
    async with http.post(slack.webhook_url(SLACK_HOOK), json={"blocks": blocks}) as resp:
        assert (resp.status, await resp.text()) == (200, "ok")
    clock.advance(1)
    async with http.post(
        slack.webhook_url(SLACK_HOOK), data={"payload": '{"text": "via form"}'}
    ) as resp:
        assert (resp.status, await resp.text()) == (200, "ok")

    assert [m["json"] for m in slack.messages] == [{"blocks": blocks}, {"text": "via form"}]


@pytest.mark.parametrize(
    ("body", "answer"),
    [
        ({"username": "remediator"}, "no_text"),
        ({"text": "", "blocks": []}, "no_text"),
        (b"{not json", "invalid_payload"),
        (b"[]", "invalid_payload"),
    ],
    ids=["no-text", "empty-text-and-blocks", "malformed", "not-an-object"],
)
async def test_a_slack_message_without_content_is_rejected_with_400(
    http: aiohttp.ClientSession, slack: SlackStub, body: Any, answer: str
) -> None:
    if isinstance(body, bytes):
        kwargs: dict[str, Any] = {"data": body, "headers": {"Content-Type": "application/json"}}
    else:
        kwargs = {"json": body}
    async with http.post(slack.webhook_url(SLACK_HOOK), **kwargs) as resp:
        assert (resp.status, await resp.text()) == (400, answer)
    assert slack.messages == []


async def test_two_slack_messages_within_a_second_get_429_with_retry_after(
    http: aiohttp.ClientSession, slack: SlackStub, clock: FakeClock
) -> None:
    url = slack.webhook_url(SLACK_HOOK)
    async with http.post(url, json={"text": "one"}) as resp:
        assert resp.status == 200
    clock.advance(0.5)
    async with http.post(url, json={"text": "two"}) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "1"
        assert await resp.text() == "rate_limited"
    # another webhook is limited separately
    async with http.post(slack.webhook_url("/services/T1/B2/other"), json={"text": "x"}) as resp:
        assert resp.status == 200
    clock.advance(0.5)
    async with http.post(url, json={"text": "three"}) as resp:
        assert resp.status == 200

    assert [m["json"]["text"] for m in slack.messages_to(SLACK_HOOK)] == ["one", "three"]
    assert slack.throttled == 1


async def test_a_revoked_slack_webhook_answers_no_service(
    http: aiohttp.ClientSession, slack: SlackStub
) -> None:
    slack.revoke(SLACK_HOOK)
    async with http.post(slack.webhook_url(SLACK_HOOK), json={"text": "x"}) as resp:
        assert (resp.status, await resp.text()) == (404, "no_service")


# ---- Opsgenie ------------------------------------------------------------------------------------


async def test_an_opsgenie_alert_is_created_and_closed_by_alias(
    http: aiohttp.ClientSession, opsgenie: OpsgenieStub
) -> None:
    alert = {
        "message": "Primary database is down",
        "alias": "db-down",
        "description": "db-0.shop refuses connections",
        "priority": "P1",
        "details": {"alertname": "DatabasePrimaryDown"},
    }
    async with http.post(f"{opsgenie.url}/v2/alerts", json=alert, headers=genie()) as resp:
        assert resp.status == 202
        created = await resp.json()
    assert created["result"] == "Request will be processed"
    assert isinstance(created["took"], float)
    uuid.UUID(created["requestId"])
    stored = opsgenie.alerts["db-down"]
    assert (stored["status"], stored["priority"], stored["count"]) == ("open", "P1", 1)
    assert stored["details"] == {"alertname": "DatabasePrimaryDown"}

    async with http.post(
        f"{opsgenie.url}/v2/alerts/db-down/close",
        params={"identifierType": "alias"},
        json={"user": "remediator", "note": "resolved"},
        headers=genie(),
    ) as resp:
        assert resp.status == 202
        closed = await resp.json()
    assert closed["result"] == "Request will be processed"
    assert opsgenie.alerts["db-down"]["status"] == "closed"
    assert opsgenie.alerts["db-down"]["closeNote"] == "resolved"

    async with http.get(
        f"{opsgenie.url}/v2/alerts/requests/{closed['requestId']}", headers=genie()
    ) as resp:
        assert resp.status == 200
        data = (await resp.json())["data"]
    assert (data["action"], data["isSuccess"], data["alias"]) == ("Close", True, "db-down")


async def test_an_opsgenie_alert_with_an_open_alias_is_deduplicated(
    http: aiohttp.ClientSession, opsgenie: OpsgenieStub
) -> None:
    for _ in range(2):
        async with http.post(
            f"{opsgenie.url}/v2/alerts", json={"message": "m", "alias": "a"}, headers=genie()
        ) as resp:
            assert resp.status == 202
    assert opsgenie.alerts["a"]["count"] == 2
    assert opsgenie.alerts["a"]["priority"] == "P3"
    assert len(opsgenie.all_alerts) == 1


async def test_closing_an_unknown_opsgenie_alert_is_accepted_but_fails_asynchronously(
    http: aiohttp.ClientSession, opsgenie: OpsgenieStub
) -> None:
    async with http.post(
        f"{opsgenie.url}/v2/alerts/nope/close?identifierType=alias", headers=genie()
    ) as resp:
        assert resp.status == 202
        request_id = (await resp.json())["requestId"]
    assert opsgenie.request_status[request_id]["isSuccess"] is False


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({}, 401, "Could not authenticate"),
        ({"Authorization": f"Bearer {GENIE_KEY}"}, 401, "Could not authenticate"),
        (genie("not-a-uuid"), 422, "Key format is not valid!"),
        (genie(str(uuid.UUID(int=1))), 401, "Could not authenticate"),
    ],
    ids=["missing", "wrong-scheme", "malformed", "unknown"],
)
async def test_an_opsgenie_request_without_a_valid_genie_key_is_rejected(
    http: aiohttp.ClientSession,
    opsgenie: OpsgenieStub,
    headers: dict[str, str],
    status: int,
    message: str,
) -> None:
    async with http.post(
        f"{opsgenie.url}/v2/alerts", json={"message": "m", "alias": "a"}, headers=headers
    ) as resp:
        assert resp.status == status
        body = await resp.json()
    assert body["message"] == message
    assert "requestId" in body
    assert opsgenie.alerts == {}


@pytest.mark.parametrize(
    ("alert", "field"),
    [({"alias": "a"}, "message"), ({"message": "m", "priority": "P0"}, "priority")],
    ids=["no-message", "bad-priority"],
)
async def test_an_invalid_opsgenie_alert_is_rejected_with_422(
    http: aiohttp.ClientSession, opsgenie: OpsgenieStub, alert: dict[str, Any], field: str
) -> None:
    async with http.post(f"{opsgenie.url}/v2/alerts", json=alert, headers=genie()) as resp:
        assert resp.status == 422
        body = await resp.json()
    assert field in body["errors"]
    assert opsgenie.alerts == {}


# ---- generic webhook -----------------------------------------------------------------------------


async def test_the_webhook_records_headers_raw_body_and_json(
    http: aiohttp.ClientSession, webhook: WebhookStub
) -> None:
    async with http.post(
        f"{webhook.url}/hooks/escalate", json={"alert": "x"}, headers={"X-Signature": "abc"}
    ) as resp:
        assert resp.status == 200
        assert await resp.json() == {}
    async with http.post(f"{webhook.url}/raw", data=b"not json") as resp:
        assert resp.status == 200

    first, second = webhook.received
    assert first.path == "/hooks/escalate"
    assert first.headers["x-signature"] == "abc"
    assert first.body == b'{"alert": "x"}'
    assert first.json == {"alert": "x"}
    assert (second.body, second.json) == (b"not json", None)
    assert webhook.requests == 2


# ---- fault injection -----------------------------------------------------------------------------


async def test_fail_next_answers_the_given_status_then_recovers(
    http: aiohttp.ClientSession, pagerduty: PagerDutyStub
) -> None:
    pagerduty.fail_next(2, status=503, retry_after=7)

    for _ in range(2):
        async with http.post(f"{pagerduty.url}/v2/enqueue", json=trigger()) as resp:
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "7"
    status, _, _ = await enqueue(http, pagerduty, trigger())

    assert status == 202
    assert pagerduty.requests == 3
    assert [r.status for r in pagerduty.requests_to("/v2/enqueue")] == [503, 503, 202]
    assert len(pagerduty.events) == 1
    assert pagerduty.incidents["db-down"].trigger_count == 1


async def test_fail_next_with_429_uses_the_services_own_body(
    http: aiohttp.ClientSession, slack: SlackStub, pagerduty: PagerDutyStub
) -> None:
    slack.fail_next(1, status=429, retry_after=3)
    pagerduty.fail_next(1, status=429)
    async with http.post(slack.webhook_url(SLACK_HOOK), json={"text": "x"}) as resp:
        assert (resp.status, resp.headers["Retry-After"], await resp.text()) == (
            429,
            "3",
            "rate_limited",
        )
    status, body, resp = await enqueue(http, pagerduty, trigger())
    assert (status, body["status"]) == (429, "throttle event")
    assert "Retry-After" not in resp.headers


async def test_drop_next_closes_the_connection_without_an_answer(
    http: aiohttp.ClientSession, webhook: WebhookStub
) -> None:
    webhook.drop_next()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.post(f"{webhook.url}/x", json={}) as resp:
            await resp.read()
    async with http.post(f"{webhook.url}/x", json={}) as resp:
        assert resp.status == 200
    assert webhook.requests == 2
    assert [r.status for r in webhook.log] == [None, 200]
    assert len(webhook.received) == 1


@pytest.mark.parametrize("kind", [PagerDutyStub, SlackStub, OpsgenieStub, WebhookStub])
async def test_down_refuses_connections_and_up_listens_again_on_the_same_port(
    http: aiohttp.ClientSession, kind: type[StubServer]
) -> None:
    async with kind() as stub:
        url = stub.url
        async with http.post(f"{url}/services/x", json={"text": "warm"}) as resp:
            await resp.read()  # leaves a keep-alive connection in the pool

        await stub.down()
        assert not stub.is_up
        with pytest.raises(aiohttp.ClientConnectionError):
            async with http.post(f"{url}/services/x", json={"text": "x"}) as resp:
                await resp.read()
        with pytest.raises(aiohttp.ClientConnectorError):
            async with http.post(f"{url}/services/x", json={"text": "x"}) as resp:
                await resp.read()

        await stub.up()
        assert stub.is_up
        assert stub.url == url
        async with http.get(f"{url}/nothing-here") as resp:
            assert resp.status in (404, 405, 401)
        assert stub.requests == 2


async def test_state_survives_down_and_up(
    http: aiohttp.ClientSession, pagerduty: PagerDutyStub
) -> None:
    await enqueue(http, pagerduty, trigger())
    await pagerduty.down()
    await pagerduty.up()
    await pagerduty.up()  # idempotent
    status, _, _ = await enqueue(http, pagerduty, follow_up("resolve"))
    assert status == 202
    assert pagerduty.incidents["db-down"].status == "resolved"


async def test_a_stub_cannot_start_twice_and_stop_is_idempotent() -> None:
    stub = WebhookStub()
    with pytest.raises(RuntimeError):
        _ = stub.url
    await stub.start()
    with pytest.raises(RuntimeError):
        await stub.start()
    await stub.stop()
    await stub.stop()


# ---- the HTTP client edge (remediator.clients.http) and the sinks through it -----------------


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    client = HttpClient.open(timeout_s=5)
    yield client
    await client.close()


def note(event: Event = Event.TRIGGER, dedup_key: str = "db-down") -> Notification:
    return Notification(event, dedup_key, "SEV-1", "Primary database is down", 0, "sev1-ladder")


async def test_each_sink_delivers_through_the_client(
    client: HttpClient,
    pagerduty: PagerDutyStub,
    slack: SlackStub,
    opsgenie: OpsgenieStub,
    webhook: WebhookStub,
) -> None:
    await PagerDutySink("pd", ROUTING_KEY, f"{pagerduty.url}/v2/enqueue").send(client, note())
    await SlackSink("slack", slack.webhook_url(SLACK_HOOK)).send(client, note())
    await OpsgenieSink("og", GENIE_KEY, opsgenie.url).send(client, note())
    await OpsgenieSink("og", GENIE_KEY, opsgenie.url).send(client, note(Event.RESOLVE))
    await WebhookSink("hook", f"{webhook.url}/remediator", b"s3cret").send(client, note())

    assert pagerduty.incidents["db-down"].status == "triggered"
    assert "Primary database is down" in slack.messages_to(SLACK_HOOK)[0]["json"]["text"]
    assert opsgenie.alerts["db-down"]["status"] == "closed"
    [request] = webhook.received
    assert request.headers[SIGNATURE_HEADER] == signature(b"s3cret", request.body)


@pytest.mark.parametrize(
    ("status", "retry_after", "delay"),
    [(503, 7, 7.0), (429, None, None), (500, "1e12", MAX_RETRY_AFTER_S), (502, "soon", None)],
)
async def test_a_429_or_5xx_answer_is_unavailable_with_its_bounded_retry_after(
    client: HttpClient,
    pagerduty: PagerDutyStub,
    status: int,
    retry_after: int | str | None,
    delay: float | None,
) -> None:
    pagerduty.fail_next(1, status=status, retry_after=retry_after)
    with pytest.raises(SinkUnavailable) as raised:
        await PagerDutySink("pd", ROUTING_KEY, f"{pagerduty.url}/v2/enqueue").send(client, note())
    assert str(raised.value).startswith(f"PagerDuty answered {status}: ")
    assert raised.value.retry_after_s == delay
    assert not isinstance(raised.value, SinkRejected)


async def test_a_4xx_answer_is_rejected_quoting_the_sinks_reason(
    client: HttpClient, pagerduty: PagerDutyStub, opsgenie: OpsgenieStub
) -> None:
    with pytest.raises(SinkRejected) as raised:
        await PagerDutySink("pd", "short", f"{pagerduty.url}/v2/enqueue").send(client, note())
    assert str(raised.value).startswith("PagerDuty answered 400: ")
    assert "invalid event" in str(raised.value)
    with pytest.raises(SinkRejected, match=r"^Opsgenie answered 401: .*Could not authenticate"):
        await OpsgenieSink("og", str(uuid.UUID(int=1)), opsgenie.url).send(client, note())


async def test_a_dropped_or_refused_connection_is_unavailable(
    client: HttpClient, webhook: WebhookStub
) -> None:
    sink = WebhookSink("hook", f"{webhook.url}/remediator")
    webhook.drop_next()
    with pytest.raises(SinkUnavailable, match=r"^webhook hook: ServerDisconnectedError"):
        await sink.send(client, note())
    await webhook.down()
    with pytest.raises(SinkUnavailable, match=r"^webhook hook: ClientConnectorError") as raised:
        await sink.send(client, note())
    assert raised.value.retry_after_s is None
    await webhook.up()
    await sink.send(client, note())
    assert len(webhook.received) == 1


async def test_a_sink_that_never_answers_is_unavailable_after_the_timeout() -> None:
    accepted = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = HttpClient.open(timeout_s=0.2)
    try:
        with pytest.raises(SinkUnavailable, match=r"^Slack: .*Timeout"):
            await SlackSink("slack", f"http://127.0.0.1:{port}/services/x").send(client, note())
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
    assert accepted.is_set()
