"""A real Alertmanager 0.25 delivers real webhooks to a running ``remediator serve``.

Alertmanager gets alerts on its API, groups them and posts to remediator with the bearer
token from its credentials file; the test reads the decisions back over remediator's API.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.alertmanager import AlertmanagerProcess, alertmanager
from tests.support.process import RemediatorProcess, start_remediator
from tests.support.waiting import eventually


def fired(labels: dict[str, str]) -> dict[str, Any]:
    return {"labels": labels, "annotations": {"summary": "test"}}


def resolved(labels: dict[str, str]) -> dict[str, Any]:
    past = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    return {"labels": labels, "annotations": {"summary": "test"}, "endsAt": past}


@pytest.fixture
async def remediator(tmp_path: Path) -> AsyncIterator[RemediatorProcess]:
    service = await start_remediator(tmp_path / "remediator")
    try:
        yield service
    finally:
        await service.stop()


@pytest.fixture
async def am(tmp_path: Path, remediator: RemediatorProcess) -> AsyncIterator[AlertmanagerProcess]:
    async with alertmanager(
        tmp_path / "am",
        remediator.webhook_url,
        credentials_file=tmp_path / "remediator" / "token",
        group_wait="1s",
        group_interval="2s",
        repeat_interval="1h",
    ) as process:
        yield process


API = {"alertname": "HighCPUUsage", "namespace": "llm-research", "deployment": "llm-research-api"}
WORKER = {**API, "deployment": "llm-research-worker"}
DOWN = {"alertname": "APIUnavailable", "namespace": "llm-research"}


def by_label(decisions: list[dict[str, Any]], **labels: str) -> list[dict[str, Any]]:
    """Decisions of the episode whose received labels contain ``labels``."""
    episodes = {
        d["episode"]
        for d in decisions
        if d["step"] == "received" and labels.items() <= d["details"]["labels"].items()
    }
    return [d for d in decisions if d["episode"] in episodes]


async def test_alertmanager_webhooks_yield_audited_decisions_with_the_seed_severities(
    remediator: RemediatorProcess, am: AlertmanagerProcess
) -> None:
    await am.post_alerts([fired(API), fired(WORKER), fired(DOWN)])

    async def all_decided() -> bool:
        decisions = await remediator.decisions()
        return (
            sum(d["step"] == "acted" for d in decisions) == 2
            and sum(d["step"] == "escalated" for d in decisions) == 1
        )

    await eventually(all_decided, "two scale-outs and one escalation")
    decisions = await remediator.decisions()
    api = by_label(decisions, deployment="llm-research-api")
    assert [d["step"] for d in api] == ["received", "classified", "claimed", "acted", "verified"]
    assert {(d["rule"], d["severity"]) for d in api} == {("cpu-above-85-percent", "SEV-3")}
    assert api[2]["target"] == "llm-research/Deployment/llm-research-api"
    down = by_label(decisions, alertname="APIUnavailable")
    assert [(d["step"], d["severity"]) for d in down][-2:] == [
        ("refused", "SEV-1"),
        ("escalated", "SEV-1"),
    ]
    assert down[-1]["details"]["policy"] == "sev1-ladder"
    assert all(d["ruleset_hash"] == decisions[0]["ruleset_hash"] for d in decisions)


async def test_a_mixed_group_resolves_one_alert_and_the_resend_claims_nothing_new(
    remediator: RemediatorProcess, am: AlertmanagerProcess
) -> None:
    await am.post_alerts([fired(API), fired(WORKER)])

    async def both_acted() -> bool:
        return sum(d["step"] == "acted" for d in await remediator.decisions()) == 2

    await eventually(both_acted, "both deployments scaled")
    # One alert resolves: Alertmanager sends the whole group again at the next
    # group_interval, one alert resolved and the other firing (a resend of it).
    await am.post_alerts([resolved(API)])

    async def api_resolved() -> bool:
        api = by_label(await remediator.decisions(), deployment="llm-research-api")
        return api[-1]["step"] == "resolved"

    await eventually(api_resolved, "the resolved alert to close its episode")
    # Let another group_interval pass so any further resend would have arrived.
    await asyncio.sleep(2.5)
    decisions = await remediator.decisions()
    assert sum(d["step"] == "claimed" for d in decisions) == 2
    worker = by_label(decisions, deployment="llm-research-worker")
    assert [d["step"] for d in worker] == ["received", "classified", "claimed", "acted", "verified"]
    api = by_label(decisions, deployment="llm-research-api")
    assert [d["step"] for d in api][-1] == "resolved"
    assert len({d["episode"] for d in api}) == 1
