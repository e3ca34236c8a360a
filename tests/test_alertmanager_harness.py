"""Tests for the real-Alertmanager test harness in ``tests/support/alertmanager.py``."""

from __future__ import annotations

import asyncio
import datetime as dt
import pathlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from tests.support.alertmanager import (
    ZERO_TIME,
    alertmanager,
    to_api_alert,
)
from tests.support.ports import free_port

TOKEN = "s3cret-test-token"


@dataclass
class RecordedRequest:
    headers: dict[str, str]
    payload: dict[str, Any]


@dataclass
class Receiver:
    url: str
    requests: list[RecordedRequest] = field(default_factory=list)

    async def wait_for(
        self,
        predicate: Callable[[RecordedRequest], bool],
        *,
        start: int = 0,
        timeout_s: float = 10.0,
    ) -> RecordedRequest:
        """Poll until a request at index >= ``start`` satisfies ``predicate``."""
        deadline = time.monotonic() + timeout_s
        while True:
            for req in self.requests[start:]:
                if predicate(req):
                    return req
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"no matching webhook within {timeout_s}s; got {len(self.requests)} "
                    f"request(s): {[r.payload for r in self.requests]}"
                )
            await asyncio.sleep(0.05)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    port = free_port()
    rec = Receiver(url=f"http://127.0.0.1:{port}/webhook")

    async def handle(request: web.Request) -> web.Response:
        payload = await request.json()
        rec.requests.append(RecordedRequest(headers=dict(request.headers), payload=payload))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/webhook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield rec
    finally:
        await runner.cleanup()


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _by_instance(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["labels"]["instance"]: a for a in payload["alerts"]}


def test_to_api_alert_drops_webhook_only_fields_and_a_zero_ends_at() -> None:
    webhook_alert = {
        "status": "firing",
        "labels": {"alertname": "A"},
        "annotations": {"summary": "s"},
        "startsAt": "2024-01-01T00:00:00Z",
        "endsAt": ZERO_TIME,
        "generatorURL": "http://prom/graph",
        "fingerprint": "abc",
    }
    assert to_api_alert(webhook_alert) == {
        "labels": {"alertname": "A"},
        "annotations": {"summary": "s"},
        "startsAt": "2024-01-01T00:00:00Z",
        "generatorURL": "http://prom/graph",
    }
    resolved = {**webhook_alert, "status": "resolved", "endsAt": "2024-01-01T01:00:00Z"}
    assert to_api_alert(resolved)["endsAt"] == "2024-01-01T01:00:00Z"


async def test_alertmanager_delivers_a_webhook_with_bearer_token_to_a_receiver(
    tmp_path: pathlib.Path, receiver: Receiver
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    now = dt.datetime.now(dt.UTC)
    alerts = [
        {
            "labels": {"alertname": "HarnessTest", "instance": f"host-{i}", "severity": "warning"},
            "annotations": {"summary": f"harness alert {i}"},
            "startsAt": _iso(now - dt.timedelta(seconds=30)),
            "generatorURL": "http://prometheus.example/graph",
        }
        for i in (1, 2)
    ]

    async with alertmanager(tmp_path / "am", receiver.url, credentials_file=token_file) as am:
        await am.post_alerts(alerts)

        first = await receiver.wait_for(lambda r: len(r.payload.get("alerts", [])) == 2)
        assert first.headers["Authorization"] == f"Bearer {TOKEN}"
        assert first.headers["Content-Type"].startswith("application/json")
        payload = first.payload
        assert payload["version"] == "4"
        assert payload["status"] == "firing"
        assert payload["truncatedAlerts"] == 0
        assert payload["groupLabels"] == {"alertname": "HarnessTest"}
        got = _by_instance(payload)
        assert set(got) == {"host-1", "host-2"}
        for alert in got.values():
            assert alert["status"] == "firing"
            assert alert["endsAt"] == ZERO_TIME

        # Resolve host-1 by re-posting it with endsAt in the past.
        resolved = to_api_alert(got["host-1"])
        resolved["endsAt"] = _iso(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        seen = len(receiver.requests)
        await am.post_alerts([resolved])

        later = await receiver.wait_for(
            lambda r: any(
                a["labels"]["instance"] == "host-1" and a["status"] == "resolved"
                for a in r.payload["alerts"]
            ),
            start=seen,
        )
        assert later.headers["Authorization"] == f"Bearer {TOKEN}"
        later_alerts = _by_instance(later.payload)
        assert later_alerts["host-1"]["endsAt"] != ZERO_TIME
        # The still-firing alert of the group is re-sent alongside the resolved one.
        assert later_alerts["host-2"]["status"] == "firing"
        assert later.payload["status"] == "firing"
