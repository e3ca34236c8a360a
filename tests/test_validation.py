"""Webhook validation in worker processes: same answers as inline, and a dead worker costs
one retried request (503), never a lost or wrongly accepted alert."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from remediator.config import PayloadLimits
from remediator.ingest.validation import check_body
from remediator.runtime.app import SERVICES
from tests.support.service import fixture_bytes, serve, settings_for


def test_the_worker_function_answers_with_plain_values() -> None:
    limits = PayloadLimits()
    assert check_body(fixture_bytes("firing-2-alerts.json"), limits) == (0, 2, "", "")
    status, alerts, code, detail = check_body(b'{"a": 1, "a": 2}', limits)
    assert (status, alerts, code) == (400, 0, "duplicate_key")
    assert detail == "A JSON object in the body repeats a key."


async def test_inline_and_pooled_validation_accept_and_refuse_alike(tmp_path: Path) -> None:
    bodies = [fixture_bytes("firing-2-alerts.json"), b"{", b'{"version": "3"}']
    answers = []
    for workers in (0, 1):
        (tmp_path / str(workers)).mkdir()
        async with serve(settings_for(tmp_path / str(workers), validation_workers=workers)) as svc:
            answers.append([await svc.post(body) for body in bodies])
    inline, pooled = answers
    assert [status for status, _ in inline] == [200, 400, 422]
    assert [(s, b.get("error")) for s, b in inline] == [(s, b.get("error")) for s, b in pooled]


async def test_a_killed_validation_worker_costs_one_503_and_the_next_request_succeeds(
    tmp_path: Path,
) -> None:
    body = fixture_bytes("firing-2-alerts.json")
    async with serve(settings_for(tmp_path, validation_workers=1)) as service:
        assert (await service.post(body))[0] == 200
        pool = service.server.app[SERVICES].webhook.validator._pool
        assert pool is not None
        for pid in list(pool._processes):
            os.kill(pid, signal.SIGKILL)
        status, answer = await service.post(body)
        assert (status, answer["error"]) == (503, "validation_unavailable")
        assert (await service.post(body))[0] == 200
        await service.settle()
        decisions = await service.decisions()
    assert sum(d["step"] == "received" for d in decisions) == 2
