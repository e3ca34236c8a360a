"""Bad requests against ``POST /webhook`` over real HTTP: each gets its status and a short
JSON error that echoes nothing, is counted, records nothing, and leaves the service up.

Every case runs with the small ``LIMITS`` below, which the recorded two-alert body still
fits, so the limit cases stay small and the sweep can end with a valid payload.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import sqlite3
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from remediator.config import PayloadLimits
from remediator.runtime.app import SERVICES
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.service import (
    TOKEN,
    ServiceUnderTest,
    fixture_bytes,
    fixture_json,
    serve,
    settings_for,
)

MARKER = "ECHO_MARKER_7f3a"  # a valid label name: only what is tested is wrong
MIB = 1024 * 1024
LIMITS = PayloadLimits(
    max_alerts=2,
    max_labels=4,
    max_label_name_chars=32,
    max_label_value_chars=32,
    max_annotation_value_chars=64,
)
REJECTED = "remediator_payloads_rejected_total"
NO_HEADER = None


def alert(fingerprint: str = "aa01", **overrides: Any) -> dict[str, Any]:
    marked = {
        "labels": {"alertname": "HighCPUUsage", MARKER: MARKER},
        "annotations": {"summary": MARKER},
    }
    return webhook_alert(fingerprint, **{**marked, **overrides})


def body(*alerts: dict[str, Any], drop: tuple[str, ...] = (), **overrides: Any) -> bytes:
    """A version-4 payload (valid unless overridden) carrying ``MARKER`` in its labels."""
    raw = webhook_payload(*(alerts or (alert(),)), groupLabels={MARKER: MARKER}, **overrides)
    for key in drop:
        del raw[key]
    return json.dumps(raw).encode()


def without(raw: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k != key}


def replaced(template: bytes, old: str, new: str) -> bytes:
    """Raw JSON surgery for what ``json.dumps`` cannot write (duplicates, NaN)."""
    assert old.encode() in template
    return template.replace(old.encode(), new.encode(), 1)


VALID = body()
AUTH = f"Bearer {TOKEN}"


@dataclass(frozen=True)
class Bad:
    """One bad request. ``headers`` override the defaults; a ``None`` value drops one."""

    status: int
    error: str
    data: bytes = VALID
    headers: Mapping[str, str | None] = field(default_factory=dict)
    method: str = "POST"
    path: str = "/webhook"
    chunked: bool = False
    counted: bool = True
    """Whether the webhook handler saw it (404/405 are answered by the router)."""


CASES: dict[str, Bad] = {
    # Bodies that are not JSON, or not the JSON we read.
    "truncated-json": Bad(400, "invalid_json", VALID[: len(VALID) // 2]),
    "empty-body": Bad(400, "invalid_json", b""),
    "whitespace-body": Bad(400, "invalid_json", b" \r\n\t "),
    "two-json-documents": Bad(400, "invalid_json", VALID + VALID),
    "utf8-bom": Bad(400, "invalid_json", b"\xef\xbb\xbf" + VALID),
    "invalid-utf8": Bad(400, "invalid_utf8", VALID.replace(MARKER.encode(), b"\xff\xfe", 1)),
    "overlong-utf8": Bad(400, "invalid_utf8", VALID.replace(b"remediator", b"\xc0\xaf", 1)),
    "utf16-body": Bad(400, "invalid_utf8", VALID.decode().encode("utf-16")),
    "deep-nesting-objects": Bad(400, "too_deep", b'{"a":' * 100_000),
    "deep-nesting-arrays-closed": Bad(400, "too_deep", b"[" * 100_000 + b"]" * 100_000),
    "duplicate-key-top-level": Bad(
        400, "duplicate_key", replaced(VALID, '"version": "4"', '"version": "4", "version": "4"')
    ),
    "duplicate-key-in-labels": Bad(
        400,
        "duplicate_key",
        replaced(VALID, f'"{MARKER}": "{MARKER}"', f'"{MARKER}": "a", "{MARKER}": "b"'),
    ),
    "nan": Bad(400, "non_finite_number", replaced(VALID, '"truncatedAlerts": 0', '"x": NaN')),
    "infinity": Bad(
        400, "non_finite_number", replaced(VALID, '"truncatedAlerts": 0', '"x": Infinity')
    ),
    "minus-infinity": Bad(
        400, "non_finite_number", replaced(VALID, '"truncatedAlerts": 0', '"x": -Infinity')
    ),
    "float-overflowing-to-infinity": Bad(
        400, "non_finite_number", replaced(VALID, '"truncatedAlerts": 0', '"x": 1e999')
    ),
    "integer-of-5000-digits": Bad(
        400, "invalid_json", replaced(VALID, '"truncatedAlerts": 0', '"x": ' + "7" * 5000)
    ),
    # JSON of the wrong shape.
    "body-is-a-list": Bad(422, "invalid_payload", json.dumps([json.loads(VALID)]).encode()),
    "body-is-a-string": Bad(422, "invalid_payload", json.dumps(MARKER).encode()),
    "body-is-a-number": Bad(422, "invalid_payload", b"4"),
    "body-is-null": Bad(422, "invalid_payload", b"null"),
    "alerts-not-a-list": Bad(422, "invalid_payload", body(alerts={MARKER: alert()})),
    "alerts-missing": Bad(422, "invalid_payload", body(drop=("alerts",))),
    "alert-not-an-object": Bad(422, "invalid_payload", body(alerts=[MARKER])),
    "labels-not-an-object": Bad(422, "invalid_payload", body(alert(labels=[MARKER]))),
    "label-value-is-a-number": Bad(422, "invalid_payload", body(alert(labels={MARKER: 7}))),
    "label-value-is-null": Bad(422, "invalid_payload", body(alert(labels={MARKER: None}))),
    "label-value-is-an-object": Bad(
        422, "invalid_payload", body(alert(labels={MARKER: {MARKER: MARKER}}))
    ),
    "annotation-value-is-a-list": Bad(
        422, "invalid_payload", body(alert(annotations={MARKER: [MARKER]}))
    ),
    "alert-status-unknown": Bad(422, "invalid_payload", body(alert(status=MARKER))),
    "payload-status-unknown": Bad(422, "invalid_payload", body(status=MARKER)),
    "starts-at-not-a-time": Bad(422, "invalid_payload", body(alert(startsAt=MARKER))),
    "starts-at-missing": Bad(422, "invalid_payload", body(without(alert(), "startsAt"))),
    "starts-at-a-unix-number": Bad(422, "invalid_payload", body(alert(startsAt=1795859066))),
    "starts-at-without-a-zone": Bad(
        422, "invalid_payload", body(alert(startsAt="2026-11-28T09:44:26"))
    ),
    "ends-at-not-a-time": Bad(422, "invalid_payload", body(alert(endsAt="2026-13-45T99:00:00Z"))),
    "fingerprint-missing": Bad(422, "invalid_payload", body(without(alert(), "fingerprint"))),
    "fingerprint-empty": Bad(422, "invalid_payload", body(alert(fingerprint=""))),
    "fingerprint-a-number": Bad(422, "invalid_payload", body(alert(fingerprint=12345))),
    "fingerprint-too-long": Bad(422, "invalid_payload", body(alert(fingerprint=MARKER * 5))),
    "truncated-alerts-negative": Bad(422, "invalid_payload", body(truncatedAlerts=-1)),
    "truncated-alerts-a-string": Bad(422, "invalid_payload", body(truncatedAlerts="3")),
    "version-3": Bad(422, "unsupported_version", body(version="3")),
    "version-missing": Bad(422, "unsupported_version", body(drop=("version",))),
    "version-number-4": Bad(422, "unsupported_version", body(version=4)),
    "version-marker": Bad(422, "unsupported_version", body(version=MARKER)),
    # Limits.
    "body-10-mib": Bad(413, "body_too_large", b" " * (10 * MIB)),
    "body-10-mib-chunked": Bad(413, "body_too_large", b" " * (10 * MIB), chunked=True),
    "too-many-alerts": Bad(413, "too_many_alerts", body(alert("a1"), alert("a2"), alert("a3"))),
    "too-many-labels": Bad(
        422, "too_many_labels", body(alert(labels={f"{MARKER}-{i}": MARKER for i in range(5)}))
    ),
    "huge-label-value": Bad(422, "label_too_long", body(alert(labels={"a": MARKER * 1000}))),
    "huge-label-name": Bad(422, "label_too_long", body(alert(labels={MARKER * 1000: "a"}))),
    "huge-annotation": Bad(
        422, "annotation_too_long", body(alert(annotations={"summary": MARKER * 1000}))
    ),
    "too-many-annotations": Bad(
        422, "annotation_too_long", body(alert(annotations={f"{MARKER}{i}": "a" for i in range(5)}))
    ),
    # Content type.
    "content-type-text-plain": Bad(
        415, "unsupported_media_type", headers={"Content-Type": "text/plain"}
    ),
    "content-type-none": Bad(415, "unsupported_media_type", headers={"Content-Type": NO_HEADER}),
    "content-type-form": Bad(
        415, "unsupported_media_type", headers={"Content-Type": "application/x-www-form-urlencoded"}
    ),
    "content-type-charset-latin-1": Bad(
        415, "unsupported_media_type", headers={"Content-Type": "application/json; charset=latin-1"}
    ),
    "content-type-charset-utf-16": Bad(
        415,
        "unsupported_media_type",
        VALID.decode().encode("utf-16"),
        headers={"Content-Type": "application/json; charset=utf-16"},
    ),
    # Authentication, which comes before the body is looked at.
    "token-missing": Bad(401, "unauthorized", headers={"Authorization": NO_HEADER}),
    "token-wrong": Bad(401, "unauthorized", headers={"Authorization": f"Bearer {MARKER}"}),
    "token-empty": Bad(401, "unauthorized", headers={"Authorization": "Bearer "}),
    "token-prefix": Bad(
        401, "unauthorized", headers={"Authorization": f"Bearer {TOKEN[: len(TOKEN) // 2]}"}
    ),
    "token-with-suffix": Bad(401, "unauthorized", headers={"Authorization": f"{AUTH}{MARKER}"}),
    "token-without-scheme": Bad(401, "unauthorized", headers={"Authorization": TOKEN}),
    "basic-scheme": Bad(
        401,
        "unauthorized",
        headers={"Authorization": "Basic " + base64.b64encode(f"u:{TOKEN}".encode()).decode()},
    ),
    "token-missing-and-body-invalid": Bad(
        401, "unauthorized", b"{", headers={"Authorization": NO_HEADER}
    ),
    "token-missing-and-body-10-mib": Bad(
        401, "unauthorized", b" " * (10 * MIB), headers={"Authorization": NO_HEADER}
    ),
    "token-missing-and-wrong-content-type": Bad(
        401, "unauthorized", headers={"Authorization": NO_HEADER, "Content-Type": "text/plain"}
    ),
    # Routing.
    "get-webhook": Bad(405, "method_not_allowed", method="GET", counted=False),
    "put-webhook": Bad(405, "method_not_allowed", method="PUT", counted=False),
    "unknown-path": Bad(404, "not_found", path=f"/webhook/{MARKER}", counted=False),
}


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), MIB):
        yield data[start : start + MIB]


async def send(service: ServiceUnderTest, case: Bad) -> tuple[int, bytes]:
    wanted: dict[str, str | None] = {"Authorization": AUTH, "Content-Type": "application/json"}
    wanted.update(case.headers)
    headers = {k: v for k, v in wanted.items() if v is not None}
    skip = [k for k, v in wanted.items() if v is None]
    data: bytes | io.BytesIO | AsyncIterator[bytes] = case.data
    if case.chunked:
        data = _chunks(case.data)
    elif len(case.data) > MIB:  # aiohttp warns about large raw bytes
        data = io.BytesIO(case.data)
    async with service.session.request(
        case.method,
        f"{service.url}{case.path}",
        data=data,
        headers=headers,
        skip_auto_headers=skip,
    ) as resp:
        return resp.status, await resp.read()


def assert_short_json_error(raw: bytes, error: str) -> None:
    assert len(raw) < 300, raw[:300]
    text = raw.decode()
    assert MARKER not in text and TOKEN not in text
    parsed = json.loads(text)
    assert set(parsed) == {"error", "detail"}
    assert parsed["error"] == error
    assert isinstance(parsed["detail"], str) and parsed["detail"].endswith(".")


async def assert_healthy(service: ServiceUnderTest) -> None:
    async with service.session.get(f"{service.url}/healthz") as resp:
        assert resp.status == 200


async def check_rejected(service: ServiceUnderTest, case: Bad) -> None:
    before = await service.metric_by_label(REJECTED)
    status, raw = await send(service, case)
    assert status == case.status, raw[:300]
    assert_short_json_error(raw, case.error)
    await assert_healthy(service)
    after = await service.metric_by_label(REJECTED)
    moved = {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}
    assert moved == ({case.error: 1.0} if case.counted else {})


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
async def test_rejects_a_bad_request_with_a_short_json_error_and_records_nothing(
    tmp_path: Path, case: Bad
) -> None:
    async with serve(settings_for(tmp_path, payload_limits=LIMITS)) as service:
        await check_rejected(service, case)
        await service.settle()
        assert await service.decisions() == []


async def test_after_every_bad_request_a_valid_payload_is_still_accepted_and_processed(
    tmp_path: Path,
) -> None:
    async with serve(settings_for(tmp_path, payload_limits=LIMITS)) as service:
        for case in CASES.values():
            await check_rejected(service, case)
        await service.settle()
        assert await service.decisions() == []
        status, answer = await service.post(fixture_json("firing-2-alerts.json"))
        assert (status, answer["status"], answer["alerts"]) == (200, "accepted", 2)
        await service.settle()
        decisions = await service.decisions()
    received = {d["fingerprint"] for d in decisions if d["step"] == "received"}
    assert received == {"df82dde64a63646d", "2c81c384699be73d"}


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=UTF-8",
        "application/json;charset=utf-8",
        "Application/JSON",
    ],
    ids=["bare", "charset-utf-8", "charset-upper-case", "no-space", "type-upper-case"],
)
async def test_accepts_every_spelling_of_json_in_utf8(tmp_path: Path, content_type: str) -> None:
    async with serve(settings_for(tmp_path)) as service:
        status, answer = await service.post(
            fixture_bytes("firing-2-alerts.json"), headers={"Content-Type": content_type}
        )
        await service.settle()
    assert (status, answer["alerts"]) == (200, 2)


# Raw sockets, for what an HTTP client will not do: stall, trickle, send odd bytes.


def request_head(service: ServiceUnderTest, length: int, auth: bytes = AUTH.encode()) -> bytes:
    return (
        b"POST /webhook HTTP/1.1\r\n"
        b"Host: " + service.server.host.encode() + b"\r\n"
        b"Authorization: " + auth + b"\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: " + str(length).encode() + b"\r\n"
        b"\r\n"
    )


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in filter(None, lines):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    raw = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
    return int(status_line.split()[1]), headers, raw


async def _trickle(writer: asyncio.StreamWriter, data: bytes) -> None:
    for byte in data:
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("trickle", [False, True], ids=["stalled", "trickled"])
async def test_a_body_that_does_not_arrive_in_time_gets_408_read_timeout(
    tmp_path: Path, trickle: bool
) -> None:
    async with serve(settings_for(tmp_path, read_timeout_s=0.5)) as service:
        before = await service.metric_by_label(REJECTED)
        reader, writer = await asyncio.open_connection(service.server.host, service.server.port)
        try:
            writer.write(request_head(service, len(VALID)))
            await writer.drain()
            sender = asyncio.create_task(_trickle(writer, VALID if trickle else b""))
            try:
                status, _, raw = await read_response(reader)
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
        finally:
            writer.close()
        assert status == 408
        assert_short_json_error(raw, "read_timeout")
        await assert_healthy(service)
        assert (await service.metric_by_label(REJECTED))["read_timeout"] == before[
            "read_timeout"
        ] + 1
        await service.settle()
        assert await service.decisions() == []


async def test_more_requests_than_max_in_flight_get_503_with_retry_after(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, max_in_flight=1, read_timeout_s=2.0)
    async with serve(settings) as service:
        state = service.server.app[SERVICES].webhook
        reader, writer = await asyncio.open_connection(service.server.host, service.server.port)
        try:
            writer.write(request_head(service, len(VALID)))
            await writer.drain()
            for _ in range(200):
                if state.gate.in_flight:
                    break
                await asyncio.sleep(0.01)
            assert state.gate.in_flight == 1
            sent = {"Authorization": AUTH, "Content-Type": "application/json"}
            async with service.session.post(
                f"{service.url}/webhook", data=VALID, headers=sent
            ) as resp:
                assert (resp.status, resp.headers.get("Retry-After")) == (503, "1")
                assert_short_json_error(await resp.read(), "overloaded")
            held_status, _, _ = await read_response(reader)
            assert held_status == 408
        finally:
            writer.close()
        counts = await service.metric_by_label(REJECTED)
        assert (counts["overloaded"], counts["read_timeout"]) == (1, 1)
        status, answer = await service.post(fixture_json("firing-2-alerts.json"))
        assert (status, answer["alerts"]) == (200, 2)
        await service.settle()
        assert len(await service.decisions()) > 0


async def test_rejects_an_authorization_header_that_is_not_utf8_with_401(tmp_path: Path) -> None:
    async with serve(settings_for(tmp_path)) as service:
        reader, writer = await asyncio.open_connection(service.server.host, service.server.port)
        try:
            writer.write(request_head(service, len(VALID), auth=b"Bearer \xff\xfe") + VALID)
            await writer.drain()
            status, _, raw = await read_response(reader)
        finally:
            writer.close()
        await assert_healthy(service)
    assert status == 401
    assert_short_json_error(raw, "unauthorized")


async def test_a_journal_that_cannot_be_written_gets_503_and_the_retry_is_accepted(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path)
    async with serve(settings) as service:
        blocker = sqlite3.connect(settings.sqlite_path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the database
        try:
            async with service.session.post(
                f"{service.url}/webhook",
                data=VALID,
                headers={"Authorization": AUTH, "Content-Type": "application/json"},
            ) as resp:
                assert resp.status == 503
                assert resp.headers["Retry-After"] == "5"
                assert (await resp.json())["error"] == "journal_unavailable"
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        status, _ = await service.post(VALID)
        assert status == 200
        await service.settle()
        assert len(await service.decisions()) > 0
        assert await service.metric(REJECTED, {"reason": "journal_unavailable"}) == 1
