"""One of every hostile class, sent to a real ``remediator serve``, then a real Alertmanager
delivers a SEV-1: it must be decided, and the service must have stayed answerable all along.

The classes are those an adversarial run found: poison strings, repeated keys hidden by
re-encoding, forbidden label names, a borrowed fingerprint, a backtracking regex fed a
hostile label value, decompression bombs, refused bodies, framing garbage, slow and idle
connections. Each class has its own table test elsewhere; this one checks they leave
nothing behind when they come together.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import zlib
from pathlib import Path
from typing import Any

import aiohttp

from remediator.core.fingerprint import fingerprint
from tests.support.alertmanager import alertmanager
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.process import RemediatorProcess, start_remediator
from tests.support.service import LOG_ONLY_RULES, TOKEN
from tests.support.waiting import eventually

REDOS_RULE = """
rules:
  - name: backtracking
    description: A regex that backtracks exponentially in a backtracking engine.
    match: ['alertname="Backtrack"', 'victim=~"(a+)+$"']
    severity: SEV-2
"""
DOWN = {"alertname": "APIUnavailable", "namespace": "llm-research"}
LATENCY = {"alertname": "HighLatency", "namespace": "llm-research", "deployment": "api"}


def rules_with_redos(tmp_path: Path) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(LOG_ONLY_RULES, rules)
    (rules / "05-backtracking.yaml").write_text(REDOS_RULE)
    return rules


def body(*alerts: dict[str, Any]) -> bytes:
    return json.dumps(webhook_payload(*alerts)).encode()


def gzip_bomb(inflated_mib: int) -> bytes:
    """A gzip stream of ``inflated_mib`` MiB of zeros, built without holding them."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"\0" * (1024 * 1024)
    parts = [deflate.compress(chunk) for _ in range(inflated_mib)]
    return b"".join(parts) + deflate.flush()


async def raw(service: RemediatorProcess, request: bytes, read_s: float = 2.0) -> bytes:
    """Send raw bytes on a fresh connection; what came back before it closed or went idle."""
    host, port = service.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        answer = b""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + read_s
        while loop.time() < deadline:
            try:
                piece = await asyncio.wait_for(reader.read(65536), deadline - loop.time())
            except TimeoutError:
                break
            if not piece:
                break
            answer += piece
        return answer
    finally:
        writer.close()


def head(method: str, headers: dict[str, str], length: int) -> bytes:
    fields = [f"{k}: {v}" for k, v in headers.items()]
    lines = [f"{method} /webhook HTTP/1.1", "Host: remediator", *fields]
    return "\r\n".join([*lines, f"Content-Length: {length}", "", ""]).encode()


AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def hostile_requests() -> dict[str, bytes]:
    valid = body(webhook_alert(labels={"alertname": "HighCPUUsage", "namespace": "x"}))
    surrogate = body(webhook_alert(labels={"alertname": "PLACE"})).replace(b"PLACE", rb"\ud800")
    nul = body(webhook_alert(labels={"alertname": "PLACE"})).replace(b"PLACE", rb"a\u0000")
    twice = body(webhook_alert(startsAt="2026-11-28T09:44:26+0530")).replace(
        b'"namespace": "llm-research"', b'"namespace": "kube-system", "namespace": "llm-research"'
    )
    bad_name = body(webhook_alert(labels={"alertname": "HighCPUUsage", "a-b": "x"}))
    bomb = gzip_bomb(64)
    return {
        "lone surrogate": head("POST", AUTH, len(surrogate)) + surrogate,
        "NUL": head("POST", AUTH, len(nul)) + nul,
        "key repeated behind offsets": head("POST", AUTH, len(twice)) + twice,
        "forbidden label name": head("POST", AUTH, len(bad_name)) + bad_name,
        "gzip bomb with a token": head("POST", {**AUTH, "Content-Encoding": "gzip"}, len(bomb))
        + bomb,
        "gzip bomb without a token": head(
            "POST", {"Content-Type": "application/json", "Content-Encoding": "gzip"}, len(bomb)
        )
        + bomb,
        "unknown encoding": head("POST", {**AUTH, "Content-Encoding": "x-unknown"}, len(valid))
        + valid,
        "refused body behind 100-continue": head(
            "POST",
            {
                "Authorization": "Bearer wrong",
                "Expect": "100-continue",
                "Content-Type": "application/json",
            },
            512 * 1024 * 1024,
        ),
        "garbage request line": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        "control byte in the token header": (
            f"POST /webhook HTTP/1.1\r\nHost: r\r\nAuthorization: Bearer {TOKEN}\x01\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode(),
        "a thousand headers": b"GET /healthz HTTP/1.1\r\n"
        + b"".join(b"X-%d: y\r\n" % i for i in range(1000))
        + b"\r\n",
        "bad content length": b"POST /webhook HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        "unknown method": b"BREW /webhook HTTP/1.1\r\nHost: r\r\n\r\n",
    }


async def healthz_latency(service: RemediatorProcess, session: aiohttp.ClientSession) -> float:
    started = time.monotonic()
    async with session.get(f"{service.url}/healthz") as resp:
        assert resp.status == 200
    return time.monotonic() - started


async def test_every_hostile_class_together_leaves_a_service_that_decides_a_sev1(
    tmp_path: Path,
) -> None:
    service = await start_remediator(tmp_path / "remediator", rules=rules_with_redos(tmp_path))
    try:
        async with aiohttp.ClientSession() as session:
            answers = dict(
                zip(
                    hostile_requests(),
                    await asyncio.gather(*(raw(service, r) for r in hostile_requests().values())),
                    strict=True,
                )
            )
            slowest = max([await healthz_latency(service, session) for _ in range(5)])
            for name in ("lone surrogate", "NUL", "forbidden label name"):
                assert answers[name].startswith(b"HTTP/1.1 422"), (name, answers[name][:200])
            assert answers["key repeated behind offsets"].startswith(b"HTTP/1.1 400")
            assert answers["gzip bomb with a token"].startswith(b"HTTP/1.1 415")
            assert answers["unknown encoding"].startswith(b"HTTP/1.1 415")
            assert b"100 Continue" not in answers["refused body behind 100-continue"]
            for name, answer in answers.items():
                assert TOKEN.encode() not in answer, name
                assert not answer or b"application/json" in answer, (name, answer[:300])

            # A backtracking regex and a hostile value; a SEV-1 under a borrowed fingerprint.
            backtrack = {"alertname": "Backtrack", "victim": "a" * 40 + "!"}
            matching = {"alertname": "Backtrack", "victim": "a" * 40}
            latency = webhook_alert(labels=LATENCY)
            borrowed = webhook_alert(fingerprint(LATENCY), labels={**DOWN, "via": "borrowed"})
            hostile = body(webhook_alert(labels=backtrack), webhook_alert(labels=matching), latency)
            assert await service.post(hostile) == 200
            assert await service.post(body(borrowed)) == 200
            slowest = max(slowest, await healthz_latency(service, session))

            async with alertmanager(
                tmp_path / "am",
                service.webhook_url,
                credentials_file=tmp_path / "remediator" / "token",
            ) as am:
                await am.post_alerts([{"labels": DOWN, "annotations": {"summary": "down"}}])

                async def sev1_escalated() -> bool:
                    records = await service.decisions(fingerprint=fingerprint(DOWN))
                    return any(d["step"] == "escalated" for d in records)

                await eventually(sev1_escalated, "the SEV-1 from Alertmanager", 20.0)
            async with session.get(f"{service.url}/readyz") as resp:
                assert resp.status == 200
            decisions = await service.decisions()
    finally:
        assert await service.stop() == 0
    by_fingerprint: dict[str, list[tuple[str, str]]] = {}
    for d in decisions:
        by_fingerprint.setdefault(d["fingerprint"], []).append((d["step"], d["severity"]))
    assert ("classified", "SEV-3") in by_fingerprint[fingerprint(backtrack)]  # no match
    assert ("classified", "SEV-2") in by_fingerprint[fingerprint(matching)]
    assert ("escalated", "SEV-1") in by_fingerprint[fingerprint({**DOWN, "via": "borrowed"})]
    assert ("classified", "SEV-1") in by_fingerprint[fingerprint(DOWN)]
    received = [d for d in decisions if d["step"] == "received"]
    assert not any(d["alertname"] in ("\ud800", "a\x00") for d in received)
    assert not any(d["reason"] == "unprocessable" for d in decisions)
    assert slowest < 0.5, f"/healthz took {slowest:.3f} s"
