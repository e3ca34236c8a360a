"""The HTTP edge over raw sockets on loopback: malformed framing, encodings, ``Expect``,
authentication before the body, pipelining, header timeouts and decompression bombs.

Every refusal is our short JSON (``application/json``, ``{"error", "detail"}``) that echoes
no request byte (neither ``MARKER`` nor the token), comes within a time bound, and leaves
the service ready and accepting a valid webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.support.service import TOKEN, ServiceUnderTest, fixture_bytes, serve, settings_for

log = logging.getLogger(__name__)

MARKER = "ECHO-MARKER-7f3a"
M = MARKER.encode()
AUTH = f"Bearer {TOKEN}".encode()
VALID = fixture_bytes("firing-2-alerts.json")
ANSWER_WITHIN_S = 2.0
MIB = 1024 * 1024
REJECTED = "remediator_payloads_rejected_total"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    raw: bytes

    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Exchange:
    interim: list[int] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    closed: bool = False
    elapsed_s: float = 0.0
    leftover: bytes = b""

    @property
    def raw(self) -> bytes:
        return b"".join(a.raw for a in self.answers) + self.leftover


async def read_answer(reader: asyncio.StreamReader) -> Answer | bytes:
    """One response (the bytes read so far when the connection ends first)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        return exc.partial
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in filter(None, lines):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Answer(int(status_line.split()[1]), headers, body, head + body)


async def read_all(reader: asyncio.StreamReader, exchange: Exchange, timeout_s: float) -> None:
    """Responses until the server closes the connection, within ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while True:
            answer = await read_answer(reader)
            if isinstance(answer, bytes):
                exchange.leftover = answer
                exchange.closed = True
                return
            if 100 <= answer.status < 200:
                exchange.interim.append(answer.status)
            else:
                exchange.answers.append(answer)


async def exchange(
    service: ServiceUnderTest, data: bytes, timeout_s: float = ANSWER_WITHIN_S
) -> Exchange:
    """Send ``data`` in one write, then read until the server closes."""
    reader, writer = await asyncio.open_connection(service.server.host, service.server.port)
    result = Exchange()
    started = time.monotonic()
    try:
        writer.write(data)
        await writer.drain()
        with contextlib.suppress(TimeoutError):
            await read_all(reader, result, timeout_s)
    finally:
        result.elapsed_s = time.monotonic() - started
        writer.close()
    return result


def head(
    *lines: bytes,
    method: bytes = b"POST",
    path: bytes = b"/webhook",
    version: bytes = b"HTTP/1.1",
    length: int | None = len(VALID),
    auth: bytes | None = AUTH,
) -> bytes:
    """A request head; ``lines`` are extra header lines, without their CRLF."""
    out = [
        method + b" " + path + b" " + version,
        b"Host: 127.0.0.1",
        b"Content-Type: application/json",
    ]
    if auth is not None:
        out.append(b"Authorization: " + auth)
    if length is not None:
        out.append(b"Content-Length: " + str(length).encode())
    out.extend(lines)
    return b"\r\n".join(out) + b"\r\n\r\n"


def assert_our_json(answer: Answer, status: int, error: str) -> None:
    assert answer.status == status, answer.raw[:300]
    assert answer.headers["content-type"].startswith("application/json"), answer.headers
    assert len(answer.body) < 300, answer.body[:300]
    parsed = answer.json()
    assert set(parsed) == {"error", "detail"}, parsed
    assert parsed["error"] == error
    assert isinstance(parsed["detail"], str) and parsed["detail"].endswith(".")


def assert_echoes_nothing(result: Exchange) -> None:
    raw = result.raw
    assert M not in raw and TOKEN.encode() not in raw, raw[:500]


def moved(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


async def assert_still_serving(service: ServiceUnderTest) -> None:
    async with service.session.get(f"{service.url}/readyz") as resp:
        assert resp.status == 200, await resp.text()
    status, answer = await service.post(VALID)
    assert (status, answer["status"], answer["alerts"]) == (200, "accepted", 2)


# Framing the parser refuses, or we refuse right behind it.


@dataclass(frozen=True)
class Framing:
    status: int
    error: str
    data: bytes


def many_headers(count: int) -> list[bytes]:
    return [b"X-" + M + str(i).encode() + b": " + M for i in range(count)]


FRAMING: dict[str, Framing] = {
    "1000-headers": Framing(431, "headers_too_large", head(*many_headers(1000)) + VALID),
    "65-headers": Framing(431, "headers_too_large", head(*many_headers(61)) + VALID),
    "64-kib-header": Framing(431, "headers_too_large", head(b"X-Big: " + M * 4096) + VALID),
    "64-kib-request-line": Framing(
        431, "headers_too_large", head(path=b"/webhook?" + M * 4096) + VALID
    ),
    "control-byte-in-a-header": Framing(
        400, "invalid_request", head(b"X-A: " + M + b"\x01") + VALID
    ),
    "nul-in-a-header": Framing(400, "invalid_request", head(b"X-A: " + M + b"\x00" + M) + VALID),
    "control-byte-in-the-authorization-header": Framing(
        400, "invalid_request", head(auth=AUTH + b"\x01" + M) + VALID
    ),
    "control-byte-before-the-token": Framing(
        400, "invalid_request", head(auth=b"Bearer \x01" + TOKEN.encode()) + VALID
    ),
    "del-byte-after-the-token": Framing(400, "invalid_request", head(auth=AUTH + b"\x7f") + VALID),
    "space-before-a-colon": Framing(400, "invalid_request", head(M + b" : " + M) + VALID),
    "obsolete-line-folding": Framing(400, "invalid_request", head(b"X-A: a", b" " + M) + VALID),
    "bare-lf-line-endings": Framing(400, "invalid_request", head().replace(b"\r\n", b"\n") + VALID),
    "no-host-header": Framing(
        400, "invalid_request", head().replace(b"Host: 127.0.0.1\r\n", b"") + VALID
    ),
    "two-host-headers": Framing(400, "invalid_request", head(b"Host: " + M) + VALID),
    "content-length-negative": Framing(
        400, "invalid_request", head(b"Content-Length: -1", length=None) + VALID
    ),
    "content-length-not-a-number": Framing(
        400, "invalid_request", head(b"Content-Length: " + M, length=None) + VALID
    ),
    "content-length-twice-different": Framing(
        400, "invalid_request", head(b"Content-Length: 7") + VALID
    ),
    "content-length-overflowing": Framing(
        400, "invalid_request", head(b"Content-Length: " + b"9" * 30, length=None) + VALID
    ),
    "content-length-of-a-terabyte": Framing(413, "body_too_large", head(length=10**12) + VALID),
    "transfer-encoding-unknown": Framing(
        400, "invalid_request", head(b"Transfer-Encoding: " + M, length=None) + VALID
    ),
    "transfer-encoding-gzip-then-chunked": Framing(
        400,
        "invalid_request",
        head(b"Transfer-Encoding: gzip, chunked", length=None) + b"0\r\n\r\n",
    ),
    "transfer-encoding-chunked-and-content-length": Framing(
        400, "invalid_request", head(b"Transfer-Encoding: chunked") + b"0\r\n\r\n"
    ),
    "transfer-encoding-bad-chunk-size": Framing(
        400,
        "invalid_request",
        head(b"Transfer-Encoding: chunked", length=None) + M + b"\r\n" + VALID + b"\r\n0\r\n\r\n",
    ),
    "unknown-method": Framing(400, "invalid_request", head(method=M) + VALID),
    "garbage-request-line": Framing(400, "invalid_request", M + b" \x00\xff " + M + b"\r\n\r\n"),
    "tls-client-hello": Framing(
        400, "invalid_request", b"\x16\x03\x01\x02\x00\x01" + M + b"\r\n\r\n"
    ),
    "http-0.9-line": Framing(400, "unsupported_http_version", b"GET /healthz\r\n\r\n"),
    "http-0.9-post": Framing(400, "unsupported_http_version", b"POST /webhook\r\n\r\n" + VALID),
    "http-2.0-line": Framing(400, "unsupported_http_version", head(version=b"HTTP/2.0") + VALID),
    "expect-other": Framing(417, "expectation_failed", head(b"Expect: " + M) + VALID),
    "expect-other-on-healthz": Framing(
        417, "expectation_failed", head(b"Expect: " + M, method=b"GET", path=b"/healthz", length=0)
    ),
    "expect-other-on-an-unknown-path": Framing(
        417, "expectation_failed", head(b"Expect: " + M, path=b"/" + M) + VALID
    ),
    "expect-two-values": Framing(
        417, "expectation_failed", head(b"Expect: 100-continue", b"Expect: 100-continue") + VALID
    ),
}


@pytest.mark.parametrize("case", list(FRAMING.values()), ids=list(FRAMING))
async def test_a_malformed_request_gets_our_json_error_and_the_service_stays_up(
    tmp_path: Path, case: Framing
) -> None:
    async with serve(settings_for(tmp_path)) as service:
        before = await service.metric_by_label(REJECTED)
        result = await exchange(service, case.data)
        assert result.closed and result.elapsed_s < ANSWER_WITHIN_S, result
        assert result.interim == [] and len(result.answers) == 1, result
        assert_our_json(result.answers[0], case.status, case.error)
        assert_echoes_nothing(result)
        assert moved(before, await service.metric_by_label(REJECTED)) == {case.error: 1.0}
        await assert_still_serving(service)
        await service.settle()


async def test_a_content_length_shorter_than_the_body_is_answered_and_the_rest_is_not_read(
    tmp_path: Path,
) -> None:
    async with serve(settings_for(tmp_path)) as service:
        result = await exchange(service, head(length=10) + VALID)
        assert result.closed and result.elapsed_s < ANSWER_WITHIN_S, result
        assert [a.status for a in result.answers] == [400], result
        assert_our_json(result.answers[0], 400, "invalid_json")
        assert result.answers[0].headers["connection"] == "close"
        assert_echoes_nothing(result)
        await assert_still_serving(service)
        await service.settle()


@pytest.mark.parametrize(
    ("garbage", "status", "error"),
    [
        (M + b"\r\n\r\n", 400, "invalid_request"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: \x01" + M + b"\r\n\r\n", 400, "invalid_request"),
        (b"GET /" + M * 3000, 431, "headers_too_large"),
    ],
    ids=["garbage-line", "bad-header-byte", "line-too-long"],
)
async def test_pipelined_webhooks_before_a_malformed_request_are_answered_in_order(
    tmp_path: Path, garbage: bytes, status: int, error: str
) -> None:
    async with serve(settings_for(tmp_path)) as service:
        healthz = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        result = await exchange(service, head() + VALID + healthz + head() + VALID + garbage)
        assert result.closed and result.elapsed_s < ANSWER_WITHIN_S, result
        assert [a.status for a in result.answers] == [200, 200, 200, status], result
        first, second = result.answers[0].json(), result.answers[2].json()
        assert (first["status"], second["status"]) == ("accepted", "accepted")
        assert second["journal_id"] > first["journal_id"]
        assert result.answers[1].json() == {"status": "ok"}
        assert_our_json(result.answers[3], status, error)
        assert_echoes_nothing(result)
        await service.settle()
        received = [d for d in await service.decisions() if d["step"] == "received"]
        assert len(received) == 2  # the same two alerts, twice: one episode each
        await assert_still_serving(service)
        await service.settle()


async def test_pipelined_requests_split_anywhere_across_writes_are_all_answered(
    tmp_path: Path,
) -> None:
    healthz = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    data = healthz + head() + VALID + healthz
    async with serve(settings_for(tmp_path)) as service:
        for cut in (len(healthz) - 1, len(healthz) - 2, len(healthz) - 3, len(healthz) + 5):
            reader, writer = await asyncio.open_connection(service.server.host, service.server.port)
            try:
                writer.write(data[:cut])
                await writer.drain()
                await asyncio.sleep(0.05)
                writer.write(data[cut:])
                answers = [await asyncio.wait_for(read_answer(reader), 2) for _ in range(3)]
            finally:
                writer.close()
            assert [a.status for a in answers if isinstance(a, Answer)] == [200, 200, 200]
        await service.settle()


# Bodies: no Content-Encoding is inflated; refused before a body byte is read.


def gzip_bomb(inflated: int, wbits: int = 31) -> bytes:
    """A valid gzip (wbits 31) or zlib (15) stream of ``inflated`` zero bytes, built by
    repeating one fully flushed block: never more than 1 MiB in memory on either side."""
    chunk = bytes(MIB)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = packer.compress(chunk) + packer.flush(zlib.Z_FULL_FLUSH)
    again = packer.compress(chunk) + packer.flush(zlib.Z_FULL_FLUSH)
    end = packer.flush(zlib.Z_FINISH)
    count = inflated // MIB
    raw = block + again * (count - 1) + end
    if wbits == 15:
        checksum = zlib.adler32(chunk)
        for _ in range(count - 1):
            checksum = zlib.adler32(chunk, checksum)
        return b"\x78\xda" + raw + checksum.to_bytes(4, "big")
    crc = zlib.crc32(chunk)
    for _ in range(count - 1):
        crc = zlib.crc32(chunk, crc)
    gzip_head = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return gzip_head + raw + crc.to_bytes(4, "little") + (inflated % 2**32).to_bytes(4, "little")


@cache
def bomb_1_gib() -> bytes:
    return gzip_bomb(1024 * MIB)


def test_the_bomb_is_1_mib_of_gzip_that_inflates_past_the_body_limit() -> None:
    bomb = bomb_1_gib()
    assert MIB - 64 * 1024 < len(bomb) < MIB + 64 * 1024
    inflater = zlib.decompressobj(31)
    first = inflater.decompress(bomb[: 64 * 1024], 16 * MIB)
    assert first == bytes(len(first)) and len(first) >= 16 * MIB
    small = gzip_bomb(4 * MIB)
    assert zlib.decompress(small, 31) == bytes(4 * MIB)
    assert zlib.decompress(gzip_bomb(2 * MIB, wbits=15)) == bytes(2 * MIB)


@dataclass(frozen=True)
class Encoded:
    encoding: bytes
    body: bytes


ENCODED: dict[str, Encoded] = {
    "gzip": Encoded(b"gzip", gzip_bomb(64 * MIB)),
    "deflate": Encoded(b"deflate", gzip_bomb(64 * MIB, wbits=15)),
    "br": Encoded(b"br", M * 1000),
    "x-unknown": Encoded(b"x-" + M, M * 1000),
    "garbage-gzip": Encoded(b"gzip", b"\x1f\x8b" + M * 1000),
    "gzip-upper-case": Encoded(b"GZIP", gzip_bomb(8 * MIB)),
    "identity-then-gzip": Encoded(b"identity, gzip", gzip_bomb(8 * MIB)),
}


async def send_head_and_part(
    service: ServiceUnderTest, head_bytes: bytes, part: bytes
) -> tuple[Exchange, asyncio.StreamWriter]:
    """Send a head and the start of its body only: an answer that comes now was given
    without the rest of the body; the writer is left open for the caller to close."""
    reader, writer = await asyncio.open_connection(service.server.host, service.server.port)
    result = Exchange()
    started = time.monotonic()
    writer.write(head_bytes + part)
    await writer.drain()
    with contextlib.suppress(TimeoutError):
        await read_all(reader, result, ANSWER_WITHIN_S)
    result.elapsed_s = time.monotonic() - started
    return result, writer


@pytest.mark.parametrize("token", [True, False], ids=["with-token", "without-token"])
@pytest.mark.parametrize("case", list(ENCODED.values()), ids=list(ENCODED))
async def test_a_compressed_body_is_refused_before_it_is_read(
    tmp_path: Path, case: Encoded, token: bool
) -> None:
    status, error = (415, "unsupported_encoding") if token else (401, "unauthorized")
    data = case.body + bytes(2 * MIB)  # more than the part sent: the server must not wait for it
    request = head(
        b"Content-Encoding: " + case.encoding, length=len(data), auth=AUTH if token else None
    )
    async with serve(settings_for(tmp_path)) as service:
        before = await service.metric_by_label(REJECTED)
        result, writer = await send_head_and_part(service, request, data[: 16 * 1024])
        writer.close()
        assert result.closed and result.elapsed_s < ANSWER_WITHIN_S, result
        assert [a.status for a in result.answers] == [status], result
        assert_our_json(result.answers[0], status, error)
        assert result.answers[0].headers["connection"] == "close"
        assert_echoes_nothing(result)
        assert moved(before, await service.metric_by_label(REJECTED)) == {error: 1.0}
        await assert_still_serving(service)
        await service.settle()


async def test_an_identity_content_encoding_is_accepted(tmp_path: Path) -> None:
    async with serve(settings_for(tmp_path)) as service:
        status, answer = await service.post(VALID, headers={"Content-Encoding": "identity"})
        assert (status, answer["alerts"]) == (200, 2)
        await service.settle()


async def post_bomb(service: ServiceUnderTest, bomb: bytes, token: bool) -> tuple[int, float]:
    """POST the bomb as a client would (all of it, while reading): status and seconds."""
    request = head(b"Content-Encoding: gzip", length=len(bomb), auth=AUTH if token else None)
    reader, writer = await asyncio.open_connection(service.server.host, service.server.port)
    started = time.monotonic()

    async def send() -> None:
        writer.write(request + bomb)
        await writer.drain()

    sender = asyncio.create_task(send())
    try:
        answer = await asyncio.wait_for(read_answer(reader), 10)
        assert isinstance(answer, Answer), answer
        elapsed = time.monotonic() - started
        assert_our_json(answer, 415 if token else 401, answer.json()["error"])
        return answer.status, elapsed
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        writer.close()


async def healthz_latencies(service: ServiceUnderTest, stop: asyncio.Event) -> list[float]:
    """/healthz round trips until ``stop`` and for at least a second: work the bombs left
    behind (inflating, draining) would show after their answers too."""
    latencies = []
    until = time.monotonic() + 1.0
    while not stop.is_set() or time.monotonic() < until:
        started = time.monotonic()
        async with service.session.get(f"{service.url}/healthz") as resp:
            assert resp.status == 200
            await resp.read()
        latencies.append(time.monotonic() - started)
        await asyncio.sleep(0.01)
    return latencies


@pytest.mark.parametrize("token", [True, False], ids=["with-token", "without-token"])
async def test_four_concurrent_decompression_bombs_are_refused_fast_and_healthz_stays_fast(
    tmp_path: Path, token: bool
) -> None:
    bomb = bomb_1_gib()
    async with serve(settings_for(tmp_path)) as service:
        stop = asyncio.Event()
        probe = asyncio.create_task(healthz_latencies(service, stop))
        await asyncio.sleep(0.05)
        try:
            refused = await asyncio.gather(*(post_bomb(service, bomb, token) for _ in range(4)))
        finally:
            stop.set()
            latencies = await probe
        log.info(
            "bombs (%s token): answered %s in %s s; /healthz worst %.4f s over %d probes",
            "with" if token else "without",
            [status for status, _ in refused],
            [round(seconds, 4) for _, seconds in refused],
            max(latencies),
            len(latencies),
        )
        assert {status for status, _ in refused} == {415 if token else 401}
        assert max(seconds for _, seconds in refused) < 1.0, refused
        assert max(latencies) < 0.5, latencies
        await assert_still_serving(service)
        await service.settle()


# Authentication before the body: no 100 Continue for a refused client.


@pytest.mark.parametrize(
    ("path", "method", "auth"),
    [
        (b"/webhook", b"POST", b"Bearer " + M),
        (b"/webhook", b"POST", None),
        (b"/webhook", b"POST", b"Basic " + M),
        (b"/api/v1/decisions", b"GET", b"Bearer " + M),
    ],
    ids=["webhook-bad-token", "webhook-no-token", "webhook-basic", "decisions-bad-token"],
)
async def test_expect_100_continue_with_a_bad_token_gets_401_and_is_never_asked_for_the_body(
    tmp_path: Path, path: bytes, method: bytes, auth: bytes | None
) -> None:
    request = head(b"Expect: 100-continue", method=method, path=path, length=8 * MIB, auth=auth)
    async with serve(settings_for(tmp_path)) as service:
        result, writer = await send_head_and_part(service, request, b"")
        try:
            assert result.closed and result.elapsed_s < ANSWER_WITHIN_S, result
            assert result.interim == [], result  # no 100 Continue
            assert [a.status for a in result.answers] == [401], result
            assert_our_json(result.answers[0], 401, "unauthorized")
            assert result.answers[0].headers["connection"] == "close"
            assert_echoes_nothing(result)  # closed before we sent a body byte: none was awaited
        finally:
            writer.close()
        await assert_still_serving(service)
        await service.settle()


async def test_expect_100_continue_with_a_good_token_but_a_bad_head_is_not_asked_for_the_body(
    tmp_path: Path,
) -> None:
    request = head(b"Expect: 100-continue", b"Content-Encoding: gzip", length=8 * MIB)
    async with serve(settings_for(tmp_path)) as service:
        result, writer = await send_head_and_part(service, request, b"")
        writer.close()
        assert result.closed and result.interim == [], result
        assert_our_json(result.answers[0], 415, "unsupported_encoding")
        await assert_still_serving(service)
        await service.settle()


async def test_expect_100_continue_with_a_good_token_is_asked_for_the_body_and_accepted(
    tmp_path: Path,
) -> None:
    async with serve(settings_for(tmp_path)) as service:
        reader, writer = await asyncio.open_connection(service.server.host, service.server.port)
        try:
            writer.write(head(b"Expect: 100-continue"))
            await writer.drain()
            interim = await asyncio.wait_for(read_answer(reader), ANSWER_WITHIN_S)
            assert isinstance(interim, Answer) and interim.status == 100
            writer.write(VALID)
            answer = await asyncio.wait_for(read_answer(reader), ANSWER_WITHIN_S)
        finally:
            writer.close()
        assert isinstance(answer, Answer) and answer.status == 200, answer
        assert answer.json()["alerts"] == 2
        await service.settle()


# The bearer scheme, and one Authorization header.


@pytest.mark.parametrize("scheme", [b"Bearer", b"bearer", b"BEARER", b"bEaReR"])
async def test_the_bearer_scheme_name_is_case_insensitive(tmp_path: Path, scheme: bytes) -> None:
    async with serve(settings_for(tmp_path)) as service:
        result = await exchange(
            service, head(b"Connection: close", auth=scheme + b" " + TOKEN.encode()) + VALID
        )
        assert [a.status for a in result.answers] == [200], result
        assert result.answers[0].json()["alerts"] == 2
        await service.settle()


@pytest.mark.parametrize(
    "second",
    [AUTH, b"Bearer " + M, b"Basic " + M],
    ids=["the-same-token-twice", "a-bad-token-second", "basic-second"],
)
async def test_two_authorization_headers_are_refused(tmp_path: Path, second: bytes) -> None:
    async with serve(settings_for(tmp_path)) as service:
        before = await service.metric_by_label(REJECTED)
        result = await exchange(service, head(b"Authorization: " + second) + VALID)
        assert result.closed and result.elapsed_s < ANSWER_WITHIN_S, result
        assert [a.status for a in result.answers] == [401], result
        assert_our_json(result.answers[0], 401, "unauthorized")
        assert_echoes_nothing(result)
        assert moved(before, await service.metric_by_label(REJECTED)) == {"unauthorized": 1.0}
        await assert_still_serving(service)
        await service.settle()


# Header timeout: idle and trickling connections are closed at the bound.

HEADER_TIMEOUT_S = 0.6


async def test_an_idle_connection_is_closed_at_the_header_timeout(tmp_path: Path) -> None:
    async with serve(settings_for(tmp_path, header_timeout_s=HEADER_TIMEOUT_S)) as service:
        result = await exchange(service, b"", timeout_s=HEADER_TIMEOUT_S + 1.0)
        assert result.closed and result.answers == [] and result.leftover == b"", result
        assert HEADER_TIMEOUT_S - 0.05 < result.elapsed_s < HEADER_TIMEOUT_S + 0.5, result
        await assert_still_serving(service)
        await service.settle()


async def test_a_keep_alive_connection_is_closed_a_header_timeout_after_its_last_answer(
    tmp_path: Path,
) -> None:
    healthz = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    async with serve(settings_for(tmp_path, header_timeout_s=HEADER_TIMEOUT_S)) as service:
        reader, writer = await asyncio.open_connection(service.server.host, service.server.port)
        try:
            for _ in range(3):  # each answer restarts the bound
                await asyncio.sleep(HEADER_TIMEOUT_S * 0.6)
                writer.write(healthz)
                answer = await asyncio.wait_for(read_answer(reader), ANSWER_WITHIN_S)
                assert isinstance(answer, Answer) and answer.status == 200
            answered = time.monotonic()
            assert await asyncio.wait_for(reader.read(), HEADER_TIMEOUT_S + 1.0) == b""
            idle_s = time.monotonic() - answered
        finally:
            writer.close()
        assert HEADER_TIMEOUT_S - 0.05 < idle_s < HEADER_TIMEOUT_S + 0.5, idle_s
        await assert_still_serving(service)
        await service.settle()


async def _trickle(writer: asyncio.StreamWriter, data: bytes, every_s: float) -> None:
    for byte in data:
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(every_s)


@pytest.mark.parametrize("every_s", [0.05, 0.25], ids=["20-bytes-per-s", "4-bytes-per-s"])
async def test_a_slowloris_head_is_cut_off_at_the_header_timeout(
    tmp_path: Path, every_s: float
) -> None:
    async with serve(settings_for(tmp_path, header_timeout_s=HEADER_TIMEOUT_S)) as service:
        before = await service.metric_by_label(REJECTED)
        reader, writer = await asyncio.open_connection(service.server.host, service.server.port)
        result = Exchange()
        started = time.monotonic()
        sender = asyncio.create_task(_trickle(writer, head(b"X-A: " + M * 10), every_s))
        try:
            await read_all(reader, result, HEADER_TIMEOUT_S + 1.0)
        finally:
            result.elapsed_s = time.monotonic() - started
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            writer.close()
        assert result.closed, result
        assert HEADER_TIMEOUT_S - 0.05 < result.elapsed_s < HEADER_TIMEOUT_S + 0.5, result
        assert [a.status for a in result.answers] == [408], result
        assert_our_json(result.answers[0], 408, "header_timeout")
        assert_echoes_nothing(result)
        assert moved(before, await service.metric_by_label(REJECTED)) == {"header_timeout": 1.0}
        await assert_still_serving(service)
        await service.settle()


async def test_a_slow_body_is_bounded_by_the_read_timeout_not_the_header_timeout(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path, header_timeout_s=0.3, read_timeout_s=5.0)
    async with serve(settings) as service:
        reader, writer = await asyncio.open_connection(service.server.host, service.server.port)
        try:
            writer.write(head())
            await writer.drain()
            for start in range(0, len(VALID), len(VALID) // 4 + 1):
                await asyncio.sleep(0.2)  # 0.8 s in all, past the header timeout
                writer.write(VALID[start : start + len(VALID) // 4 + 1])
            answer = await asyncio.wait_for(read_answer(reader), ANSWER_WITHIN_S)
        finally:
            writer.close()
        assert isinstance(answer, Answer) and answer.status == 200, answer
        await service.settle()


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_a_chunked_webhook_is_accepted(tmp_path: Path) -> None:
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in _chunks(VALID, 100)) + b"0\r\n\r\n"
    async with serve(settings_for(tmp_path)) as service:
        result = await exchange(
            service, head(b"Transfer-Encoding: chunked", b"Connection: close", length=None) + body
        )
        assert [a.status for a in result.answers] == [200], result
        await service.settle()
