"""Nothing an accepted payload holds can stop the journal worker: strings no store can keep
are refused at the edge; what still fails is quarantined (audited as ``unprocessable`` and
escalated) and the worker goes on deciding, through restarts. Identity is the labels'.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from remediator.actions.registry import default_registry
from remediator.core.errors import StoreRejected
from remediator.core.fingerprint import fingerprint
from remediator.core.model import AlertStatus
from remediator.decide.worker import MAX_QUARANTINED_ALERTS
from remediator.ruleset.load import load_rules
from remediator.ruleset.matchers import Matcher, MatchType
from remediator.ruleset.rules import RuleSet
from remediator.runtime.app import SERVICES
from remediator.store.contract import Sighting, Store
from remediator.store.sqlite import SqliteStore
from tests.conftest import postgres_store
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.process import start_remediator
from tests.support.service import (
    LOG_ONLY_RULES,
    ServiceUnderTest,
    serve,
    settings_for,
)

MARKER = "POISON-MARKER-51c2"
API_DOWN = {"alertname": "APIUnavailable", "namespace": "llm-research"}


def alert(labels: Mapping[str, str], status: str = "firing", **fields: Any) -> dict[str, Any]:
    """An alert as Alertmanager sends it: the fingerprint its labels give, unless overridden."""
    return webhook_alert(
        fields.pop("fingerprint", fingerprint(labels)), status, labels=dict(labels), **fields
    )


def body(*alerts: dict[str, Any]) -> bytes:
    return json.dumps(webhook_payload(*alerts)).encode()


def cpu(deployment: str, **extra: str) -> dict[str, str]:
    return {"alertname": "HighCPUUsage", "namespace": "llm-research", "deployment": deployment,
            **extra}  # fmt: skip


async def sev1_is_decided(service: ServiceUnderTest, labels: Mapping[str, str]) -> None:
    """The check every case ends with: the service is ready and still decides a SEV-1."""
    async with service.session.get(f"{service.url}/readyz") as resp:
        assert resp.status == 200, await resp.text()
    status, _ = await service.post(body(alert(labels)))
    assert status == 200
    await service.settle()
    steps = [(d["step"], d["severity"])
             for d in await service.decisions(fingerprint=fingerprint(labels))]  # fmt: skip
    assert ("classified", "SEV-1") in steps and ("escalated", "SEV-1") in steps, steps


# --- strings no store can keep are refused at the edge ------------------------------------

#: (where the bad string goes, the escape as it appears in the JSON body)
BAD_STRINGS = [
    ("alertname", r"\ud800"),
    ("alertname", r"\udc00"),
    ("alertname", r"x\ud800\u0041"),
    ("fingerprint", r"\ud800"),
    ("label value", r"\udfff"),
    ("annotation", r"\ud800"),
    ("label value", r"\u0000"),
    ("alertname", r"a\u0000b"),
    ("annotation", r"\u0000"),
    ("generatorURL", r"\ud800"),
]


def _with_escape(where: str, escape: str) -> bytes:
    placeholder = "PLACEHOLDER-9d1e"
    labels = {"alertname": "HighCPUUsage", "namespace": "llm-research", "marker": MARKER}
    fields: dict[str, Any] = {"annotations": {"summary": MARKER}}
    if where == "alertname":
        labels["alertname"] = placeholder
    elif where == "label value":
        labels["marker"] = placeholder
    elif where == "annotation":
        fields["annotations"] = {"summary": placeholder}
    elif where == "fingerprint":
        fields["fingerprint"] = placeholder
    else:
        fields[where] = placeholder
    return body(alert(labels, **fields)).replace(placeholder.encode(), escape.encode())


@pytest.mark.parametrize(("where", "escape"), BAD_STRINGS)
async def test_a_string_no_store_can_keep_is_refused_with_422_and_nothing_is_recorded(
    tmp_path: Path, where: str, escape: str
) -> None:
    async with serve(settings_for(tmp_path)) as service:
        status, answer = await service.post(_with_escape(where, escape))
        assert (status, answer["error"]) == (422, "invalid_string"), answer
        assert MARKER not in json.dumps(answer) and "ud8" not in json.dumps(answer)
        assert await service.server.app[SERVICES].store.journal_pending() == []
        await sev1_is_decided(service, API_DOWN)
        assert not [d for d in await service.decisions() if d["alertname"] == "HighCPUUsage"]


async def test_a_valid_surrogate_pair_is_text_and_is_decided(tmp_path: Path) -> None:
    labels = cpu("api", marker="\U0001f600")
    payload = body(alert(labels)).replace("\U0001f600".encode(), rb"\ud83d\ude00")
    async with serve(settings_for(tmp_path)) as service:
        status, answer = await service.post(payload)
        assert status == 200, answer
        await service.settle()
        steps = [d["step"] for d in await service.decisions(fingerprint=fingerprint(labels))]
    assert steps[:2] == ["received", "classified"]


# --- the fingerprint is ours ------------------------------------------------------------


async def test_a_sev1_sent_under_an_open_episodes_fingerprint_gets_its_own_episode(
    tmp_path: Path,
) -> None:
    latency = {"alertname": "HighLatency", "namespace": "llm-research", "deployment": "api"}
    borrowed = fingerprint(latency)
    async with serve(settings_for(tmp_path)) as service:
        await service.post(body(alert(latency)))
        await service.settle()
        await service.post(body(alert(API_DOWN, fingerprint=borrowed)))
        await service.settle()
        sev1 = await service.decisions(fingerprint=fingerprint(API_DOWN))
        latency_steps = [d["step"] for d in await service.decisions(fingerprint=borrowed)]
        mismatches = await service.metric("remediator_fingerprint_mismatches_total")
    received = next(d for d in sev1 if d["step"] == "received")
    assert received["details"]["sent_fingerprint"] == borrowed
    assert ("escalated", "SEV-1") in [(d["step"], d["severity"]) for d in sev1]
    assert latency_steps.count("received") == 1
    assert mismatches == 1


async def test_a_resolve_with_other_labels_under_a_sev1_fingerprint_leaves_it_open(
    tmp_path: Path,
) -> None:
    async with serve(settings_for(tmp_path)) as service:
        await service.post(body(alert(API_DOWN)))
        await service.settle()
        other = {"alertname": "DiskUsageHigh", "instance": "db-1"}
        await service.post(body(alert(other, "resolved", fingerprint=fingerprint(API_DOWN))))
        await service.settle()
        steps = [d["step"] for d in await service.decisions(fingerprint=fingerprint(API_DOWN))]
        store = service.server.app[SERVICES].store
        episode = next(d["episode"] for d in await service.decisions() if d["step"] == "received")
        still_open = await store.episode_is_open(episode)
    assert "resolved" not in steps
    assert still_open


# --- what still fails is quarantined, and the worker goes on ---------------------------


@dataclass(frozen=True, slots=True)
class FailingMatcher(Matcher):
    """A matcher with a bug that only one label value triggers, as a real bug would."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        if labels.get("victim") == "poison":
            raise RuntimeError("matcher bug")
        return True


def failing_rules() -> RuleSet:
    """The example rules with the failing matcher added to the CPU rule."""
    ruleset = load_rules(LOG_ONLY_RULES, default_registry())
    failing = FailingMatcher("victim", MatchType.REGEX, ".*")
    rules = [
        replace(r, matchers=(*r.matchers, failing)) if r.name == "cpu-above-85-percent" else r
        for r in ruleset.rules
    ]
    return replace(ruleset, rules=rules)


async def quarantine_records(service: ServiceUnderTest) -> list[dict[str, Any]]:
    return [d for d in await service.decisions() if d["reason"] == "unprocessable"]


async def test_an_alert_that_fails_alone_is_quarantined_and_its_neighbours_are_decided(
    tmp_path: Path,
) -> None:
    poison = cpu("api", victim="poison")
    healthy = cpu("web")
    async with serve(settings_for(tmp_path), ruleset=failing_rules()) as service:
        status, _ = await service.post(body(alert(poison), alert(healthy), alert(API_DOWN)))
        assert status == 200
        await service.settle()
        quarantined = await quarantine_records(service)
        healthy_steps = [d["step"] for d in await service.decisions(
            fingerprint=fingerprint(healthy))]  # fmt: skip
        sev1_steps = [d["step"] for d in await service.decisions(
            fingerprint=fingerprint(API_DOWN))]  # fmt: skip
        counted = await service.metric("remediator_quarantined_total", {"what": "alert"})
        # Alertmanager resends the group: the quarantined episode is decided, no new page.
        await service.post(body(alert(poison), alert(healthy), alert(API_DOWN)))
        await service.settle()
        assert len(await quarantine_records(service)) == len(quarantined)
        assert await service.server.app[SERVICES].store.journal_pending() == []
        await sev1_is_decided(service, {"alertname": "DatabasePrimaryDown"})
    assert [(d["step"], d["fingerprint"]) for d in quarantined] == [
        ("refused", fingerprint(poison)),
        ("escalated", fingerprint(poison)),
    ]
    assert "RuntimeError: matcher bug" in quarantined[0]["sentence"]
    assert quarantined[0]["severity"] == "SEV-1"  # matching failed: the SEV-1 policy
    assert healthy_steps[:3] == ["received", "classified", "claimed"]
    assert "escalated" in sev1_steps
    assert counted == 1


async def test_fixes_claimed_before_an_alert_that_fails_still_run_once(tmp_path: Path) -> None:
    before, poison, after = cpu("api"), cpu("web", victim="poison"), cpu("worker")
    async with serve(settings_for(tmp_path), ruleset=failing_rules()) as service:
        await service.post(body(alert(before), alert(poison), alert(after)))
        await service.settle()
        decisions = await service.decisions()
    for fixed in (before, after):
        steps = [d["step"] for d in decisions if d["fingerprint"] == fingerprint(fixed)]
        assert steps == ["received", "classified", "claimed", "acted", "verified"], steps
    refused = [d["reason"] for d in decisions if d["step"] == "refused"]
    assert refused == ["unprocessable"]  # no "duplicate": the first claim was not orphaned


async def test_an_entry_whose_alerts_keep_failing_is_quarantined_whole_after_the_cap(
    tmp_path: Path,
) -> None:
    poisons = [alert(cpu(f"d{i}", victim="poison")) for i in range(10)]
    async with serve(settings_for(tmp_path), ruleset=failing_rules()) as service:
        await service.post(body(*poisons))
        await service.settle()
        quarantined = await quarantine_records(service)
        entry = await service.metric("remediator_quarantined_total", {"what": "entry"})
        alerts = await service.metric("remediator_quarantined_total", {"what": "alert"})
        assert await service.server.app[SERVICES].store.journal_pending() == []
        await sev1_is_decided(service, API_DOWN)
    escalated = [d for d in quarantined if d["step"] == "escalated"]
    assert (alerts, entry) == (MAX_QUARANTINED_ALERTS, 1)
    assert len(escalated) == MAX_QUARANTINED_ALERTS + 1  # bounded pages, not one per alert
    whole = [d for d in quarantined if d["episode"] is None]
    assert [d["step"] for d in whole] == ["refused", "escalated"]
    assert whole[0]["journal_id"] is not None
    assert "more than 3 alerts failed" in whole[0]["sentence"]


def poisoned_body() -> bytes:
    """What an earlier version accepted: a lone surrogate in the alert's name."""
    labels = {"alertname": "PLACEHOLDER", "namespace": "llm-research"}
    return body(alert(labels)).replace(b"PLACEHOLDER", rb"Oops\ud800")


async def test_a_poisoned_entry_in_the_journal_is_quarantined_after_a_restart(
    tmp_path: Path,
) -> None:
    earlier = SqliteStore(tmp_path / "state.db")
    await earlier.open()
    journal_id = await earlier.journal_append(poisoned_body(), datetime.now(UTC))
    await earlier.close()

    service = await start_remediator(tmp_path)
    try:
        for _ in range(100):
            records = await service.decisions()
            if any(d["reason"] == "unprocessable" for d in records):
                break
            await asyncio.sleep(0.1)
        assert await service.post(body(alert(API_DOWN))) == 200
        for _ in range(100):
            sev1 = await service.decisions(fingerprint=fingerprint(API_DOWN))
            if any(d["step"] == "escalated" for d in sev1):
                break
            await asyncio.sleep(0.05)
        stopping = time.monotonic()
        assert await service.stop() == 0
        stopped_in_s = time.monotonic() - stopping
    finally:
        await service.stop()
    unprocessable = [d for d in records if d["reason"] == "unprocessable"]
    assert [(d["step"], d["journal_id"]) for d in unprocessable] == [
        ("refused", journal_id),
        ("escalated", journal_id),
    ]
    assert "invalid_string" in unprocessable[0]["sentence"]
    assert any(d["step"] == "escalated" for d in sev1), service.log_tail()
    assert stopped_in_s < 5
    after = SqliteStore(tmp_path / "state.db")
    await after.open()
    try:
        assert await after.journal_pending() == []
    finally:
        await after.close()


# --- a value a store cannot keep is its refusal, not an outage ----------------------------


async def test_a_lone_surrogate_is_the_stores_refusal_not_an_outage(store: Store) -> None:
    sighting = Sighting("00000000000000aa", AlertStatus.FIRING, "Oops\ud800")
    with pytest.raises(StoreRejected):
        await store.observe([sighting], datetime.now(UTC), 300.0)
    assert await store.ping()


async def test_a_nul_in_text_is_postgresqls_refusal_not_an_outage() -> None:
    async with postgres_store() as store:
        sighting = Sighting("00000000000000aa", AlertStatus.FIRING, "Oops\x00")
        with pytest.raises(StoreRejected):
            await store.observe([sighting], datetime.now(UTC), 300.0)
        assert await store.ping()


async def test_an_entry_the_disk_mangled_is_tried_three_times_then_quarantined(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing disk: the journaled body no longer decompresses. Retried (it might be a
    passing fault), then quarantined, and the SEV-1 after it is decided."""
    settings = settings_for(tmp_path)
    earlier = SqliteStore(settings.sqlite_path)
    await earlier.open()
    journal_id = await earlier.journal_append(body(alert(API_DOWN)), datetime.now(UTC))
    await earlier.close()
    with sqlite3.connect(settings.sqlite_path) as db:
        db.execute(
            "UPDATE journal SET body = ? WHERE id = ?", (b"\x04\x22\x4d\x18junk", journal_id)
        )
    async with serve(settings) as service:
        await service.settle()
        quarantined = await quarantine_records(service)
        tries = await service.metric("remediator_quarantined_total", {"what": "entry"})
        await sev1_is_decided(service, {"alertname": "DatabasePrimaryDown"})
    assert [(d["step"], d["journal_id"], d["episode"]) for d in quarantined] == [
        ("refused", journal_id, None),
        ("escalated", journal_id, None),
    ]
    assert tries == 1
    failed = [r.getMessage() for r in caplog.records if "failed (try" in r.getMessage()]
    assert failed == [f"journal entry {journal_id} failed (try {n} of 3)" for n in (1, 2, 3)]


async def test_a_background_loop_that_ended_makes_the_service_unready_and_says_which(
    tmp_path: Path,
) -> None:
    async with serve(settings_for(tmp_path)) as service:
        services = service.server.app[SERVICES]
        async with service.session.get(f"{service.url}/readyz") as resp:
            assert (resp.status, (await resp.json())["stopped_loops"]) == (200, [])
        task = services.loops["aftercare"].task
        assert task is not None
        task.cancel()  # as if the loop had died beyond its supervisor's reach
        with contextlib.suppress(asyncio.CancelledError):
            await task
        async with service.session.get(f"{service.url}/readyz") as resp:
            answer = await resp.json()
            assert resp.status == 503
    assert answer["ready"] is False and answer["stopped_loops"] == ["aftercare"]
