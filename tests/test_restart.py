"""Crash and restart: payloads acknowledged but not processed are processed after a
restart, exactly once, and a resend of the same payload changes nothing."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from tests.support.process import RemediatorProcess, start_remediator
from tests.support.service import fixture_bytes


async def wait_for_claims(service: RemediatorProcess, count: int) -> None:
    for _ in range(200):
        decisions = await service.decisions()
        if sum(d["step"] == "claimed" for d in decisions) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} claims did not appear:\n{service.log_tail()}")


async def test_a_payload_accepted_before_a_crash_is_processed_once_after_restart(
    tmp_path: Path,
) -> None:
    body = fixture_bytes("firing-2-alerts.json")
    crashing = await start_remediator(tmp_path, failpoints="before_process")
    try:
        await crashing.post(body)
        assert await crashing.wait_exit() == 137
    finally:
        await crashing.stop()

    service = await start_remediator(tmp_path, port=int(crashing.url.rsplit(":", 1)[1]))
    try:
        await wait_for_claims(service, 2)
        assert await service.post(body) == 200  # Alertmanager resends what it thinks was lost
        await asyncio.sleep(0.5)
        decisions = await service.decisions()
    finally:
        assert await service.stop() == 0
    steps = Counter((d["fingerprint"], d["step"]) for d in decisions)
    for fingerprint in ("df82dde64a63646d", "2c81c384699be73d"):
        assert steps[(fingerprint, "received")] == 1
        assert steps[(fingerprint, "claimed")] == 1
        assert steps[(fingerprint, "acted")] == 1


async def test_a_finished_payload_is_not_processed_again_after_a_clean_restart(
    tmp_path: Path,
) -> None:
    body = fixture_bytes("firing-2-alerts.json")
    first = await start_remediator(tmp_path)
    try:
        assert await first.post(body) == 200
        await wait_for_claims(first, 2)
        await asyncio.sleep(0.3)
        before = await first.decisions()
    finally:
        assert await first.stop() == 0
    second = await start_remediator(tmp_path)
    try:
        await asyncio.sleep(0.5)
        after = await second.decisions()
    finally:
        await second.stop()
    assert after == before


async def test_a_crash_between_claim_and_action_runs_the_claim_once_after_the_restart(
    tmp_path: Path,
) -> None:
    body = fixture_bytes("firing-2-alerts.json")
    crashing = await start_remediator(tmp_path, failpoints="after_claim")
    try:
        await crashing.post(body)
        assert await crashing.wait_exit() == 137
    finally:
        await crashing.stop()
    service = await start_remediator(tmp_path)
    try:
        for _ in range(100):
            decisions = await service.decisions()
            if sum(d["step"] == "acted" for d in decisions) >= 2:
                break
            await asyncio.sleep(0.05)
        assert await service.post(body) == 200  # Alertmanager resends what it thinks was lost
        await asyncio.sleep(0.5)
        decisions = await service.decisions()
    finally:
        await service.stop()
    first = [d for d in decisions if d["fingerprint"] == "df82dde64a63646d"]
    # The claim and its decision survived the crash together; it holds no intent, so
    # nothing was sent: the restart runs it from the job stored with it, once. Reprocessing
    # the journal and the resend find the episode decided and write nothing.
    assert [(d["step"], d["outcome"], d["reason"]) for d in first] == [
        ("received", "received", None),
        ("classified", "classified", None),
        ("claimed", "claimed", None),
        ("acted", "succeeded", None),
        ("verified", "succeeded", None),
    ]
    assert "1 had sent nothing and run now" in service.log_tail(200)
    second = Counter(d["step"] for d in decisions if d["fingerprint"] == "2c81c384699be73d")
    assert (second["received"], second["claimed"], second["acted"]) == (1, 1, 1)
