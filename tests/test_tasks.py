"""Supervised loops: a loop that fails unexpectedly is logged, counted and restarted with a
capped backoff; expected temporary errors only wait for the next period; loops stop in the
reverse of their start order, leaving no task behind; ``/readyz`` names every loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from remediator.config import Settings
from remediator.core.errors import StoreUnavailable
from remediator.core.metrics import LOOPS, Metrics
from remediator.core.model import AlertStatus
from remediator.runtime.app import SERVICES
from remediator.runtime.tasks import Backoff, Loops, Run
from remediator.store.contract import OutboxItem, Sighting
from remediator.store.sqlite import SqliteStore
from tests.support.service import fixture_json, serve, settings_for

FAST = Backoff(first_s=0.01, max_s=0.04, healthy_s=30.0)
#: Long enough that a failed loop is still waiting to restart when the test looks.
SLOW = Backoff(first_s=30.0, max_s=30.0, healthy_s=30.0)


class Supervised:
    """A supervisor on a registry of its own, and what its failure counter says."""

    def __init__(self, backoff: Backoff) -> None:
        self.registry = CollectorRegistry()
        metrics = Metrics(self.registry, [])
        self.loops = Loops(metrics.loop_failures, backoff)

    def failures(self, loop: str) -> float | None:
        return self.registry.get_sample_value("remediator_loop_failures_total", {"loop": loop})


def failing(times: int, error: Callable[[int], Exception], done: asyncio.Event) -> Run:
    """A step that raises ``error(n)`` on its first ``times`` calls, then sets ``done``."""
    calls = 0

    async def step() -> None:
        nonlocal calls
        calls += 1
        if calls <= times:
            raise error(calls)
        done.set()

    return step


async def until(check: Callable[[], bool], what: str) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_loop_that_raises_is_logged_counted_and_restarted_with_a_growing_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sup = Supervised(FAST)
    done = asyncio.Event()
    sup.loops.every("aftercare", failing(2, lambda n: RuntimeError(f"boom {n}"), done), 0.001)
    assert sup.failures("aftercare") == 0  # the series exists before any failure
    sup.loops.start()
    try:
        await asyncio.wait_for(done.wait(), 5)
        loop = sup.loops["aftercare"]
        assert (loop.state, loop.restarts, loop.last_error) == (
            "running",
            2,
            "RuntimeError: boom 2",
        )
        assert sup.failures("aftercare") == 2
    finally:
        await sup.loops.stop()
    errors = [r for r in caplog.records if r.name == "remediator.runtime.tasks"]
    assert [r.getMessage() for r in errors] == [
        "loop aftercare failed; restarting it in 0.01 s",
        "loop aftercare failed; restarting it in 0.02 s",
    ]
    assert all(r.levelno == logging.ERROR and r.exc_info for r in errors)
    assert [r.__dict__["fields"]["error"] for r in errors] == [
        "RuntimeError: boom 1",
        "RuntimeError: boom 2",
    ]


async def test_a_loop_that_returns_is_restarted_as_a_failure() -> None:
    sup = Supervised(FAST)
    runs = 0

    async def returns() -> None:
        nonlocal runs
        runs += 1

    sup.loops.forever("worker", returns)
    sup.loops.start()
    try:
        await until(lambda: runs >= 3, "three runs")
    finally:
        await sup.loops.stop()
    assert sup.loops["worker"].last_error == "RuntimeError: the loop returned"
    assert (sup.failures("worker") or 0) >= 2


async def test_a_temporary_error_waits_for_the_next_period_without_a_restart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sup = Supervised(FAST)
    done = asyncio.Event()
    sup.loops.every("spool", failing(2, lambda n: StoreUnavailable(f"away {n}"), done), 0.001)
    sup.loops.start()
    try:
        await asyncio.wait_for(done.wait(), 5)
    finally:
        await sup.loops.stop()
    assert (sup.loops["spool"].restarts, sup.failures("spool")) == (0, 0)
    # Quiet: the store tells the outage (``core/outage.py``), the loop only tries again.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize(
    ("previous_s", "ran_s", "expected_s"),
    [
        (None, 0.0, 1.0),  # the first failure
        (1.0, 0.5, 2.0),  # failing again soon doubles
        (16.0, 0.5, 32.0),
        (32.0, 0.5, 60.0),  # capped
        (60.0, 0.5, 60.0),
        (60.0, 59.9, 60.0),
        (60.0, 60.0, 1.0),  # a healthy minute starts over
    ],
)
def test_the_backoff_doubles_up_to_its_cap_and_starts_over_after_a_healthy_period(
    previous_s: float | None, ran_s: float, expected_s: float
) -> None:
    assert Backoff().next_s(previous_s, ran_s) == expected_s


async def test_loops_stop_in_the_reverse_of_their_start_order() -> None:
    sup = Supervised(FAST)
    events: list[str] = []

    def recording(name: str) -> Run:
        async def run() -> None:
            events.append(f"start {name}")
            try:
                await asyncio.Event().wait()
            finally:
                events.append(f"stop {name}")

        return run

    def after(name: str) -> Callable[[], Awaitable[None]]:
        async def released() -> None:
            events.append(f"after {name}")

        return released

    for name in ("lease", "worker", "spool"):
        sup.loops.forever(name, recording(name), after_stop=after(name))
    sup.loops.start()
    await until(lambda: len(events) == 3, "every loop started")
    await sup.loops.stop()
    assert events == [
        "start lease", "start worker", "start spool",
        "stop spool", "after spool", "stop worker", "after worker", "stop lease", "after lease",
    ]  # fmt: skip
    assert [sup.loops[name].state for name in sup.loops.names] == ["stopped"] * 3


async def test_a_loop_waiting_to_restart_stops_at_once() -> None:
    sup = Supervised(SLOW)
    done = asyncio.Event()
    sup.loops.every("delivery", failing(1, lambda n: ValueError("bad"), done), 0.001)
    sup.loops.start()
    await until(lambda: sup.loops["delivery"].state == "restarting", "the failure")
    await asyncio.wait_for(sup.loops.stop(), 1)
    assert sup.loops["delivery"].state == "stopped" and not done.is_set()


async def test_a_required_loop_restarting_is_down_and_an_optional_one_is_not() -> None:
    sup = Supervised(SLOW)
    never = asyncio.Event()
    sup.loops.every("worker", failing(1, lambda n: ValueError("worker broke"), never), 0.001)
    sup.loops.every(
        "delivery", failing(1, lambda n: ValueError("delivery broke"), never), 0.001,
        required=False,
    )  # fmt: skip
    sup.loops.every("spool", failing(0, lambda n: ValueError(), asyncio.Event()), 0.001)
    sup.loops.start()
    try:
        await until(lambda: sup.loops["delivery"].state == "restarting", "the failures")
        await until(lambda: sup.loops["worker"].state == "restarting", "the failures")
        assert sup.loops.down() == ["worker"]
        report = sup.loops.report()
        assert report["delivery"] == {"state": "restarting", "required": False, "restarts": 1,
                                      "last_error": "ValueError: delivery broke"}  # fmt: skip
        assert report["spool"]["state"] == "running"
        task = sup.loops["delivery"].task
        assert task is not None
        task.cancel()  # beyond the supervisor: nothing will restart it
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert sup.loops.down() == ["worker", "delivery"]
    finally:
        await sup.loops.stop()


async def test_readyz_names_every_loop_and_is_not_ready_once_one_is_down(tmp_path: Path) -> None:
    async with serve(settings_for(tmp_path)) as service:
        async with service.session.get(f"{service.url}/readyz") as resp:
            ready = (resp.status, await resp.json())
        failures = {name: await service.metric("remediator_loop_failures_total", {"loop": name})
                    for name in LOOPS}  # fmt: skip
        task = service.server.app[SERVICES].loops["worker"].task
        assert task is not None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        async with service.session.get(f"{service.url}/readyz") as resp:
            down = (resp.status, await resp.json())
    status, body = ready
    assert (status, body["ready"], body["stopped_loops"]) == (200, True, [])
    assert list(body["loops"]) == list(LOOPS)
    assert {name: loop["state"] for name, loop in body["loops"].items()} == dict.fromkeys(
        LOOPS, "running"
    )
    assert failures == dict.fromkeys(LOOPS, 0.0)
    status, body = down
    assert (status, body["ready"], body["stopped_loops"]) == (503, False, ["worker"])
    assert body["loops"]["worker"]["state"] == "stopped"


RULES_WITH_A_SINK = """
policy:
  namespaces: [llm-research]
defaults:
  escalation: {SEV-1: page, SEV-2: page, SEV-3: page}
escalations:
  page:
    tiers: [{after_s: 0, notify: [hook]}]
sinks:
  hook: {type: webhook, url: "http://127.0.0.1:9/never-called"}
rules:
  - name: default
    match: []
    severity: SEV-3
"""


async def queued_before_start(tmp_path: Path, event: str) -> Settings:
    """The settings of a service whose state holds one notification of ``event`` to the
    webhook sink, due now, queued before it starts."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "rules.yaml").write_text(RULES_WITH_A_SINK)
    settings = settings_for(tmp_path, rules_dir=rules, delivery_poll_s=0.01)
    earlier = SqliteStore(settings.sqlite_path)
    await earlier.open()
    now = datetime.now(UTC)
    [seen] = await earlier.observe([Sighting("f" * 16, AlertStatus.FIRING, "Down")], now, 60.0)
    item = OutboxItem(seen.episode.id, "key-1", "hook", event, 0, "SEV-3", "page",
                      "down", {}, now)  # fmt: skip
    await earlier.audit([], outbox=[item])
    await earlier.close()
    return settings


async def test_an_app_loop_that_fails_is_restarted_counted_and_shown_while_still_ready(
    tmp_path: Path,
) -> None:
    """An outbox row the store cannot read back (its details are not JSON: a broken disk, a
    hand edit) fails the delivery loop each time it is due: the loop restarts, the failures
    count, ``/readyz`` shows the error, and the replica keeps taking webhooks."""
    settings = await queued_before_start(tmp_path, "trigger")
    with sqlite3.connect(settings.sqlite_path) as db:
        db.execute("UPDATE outbox SET details = 'not json'")
    async with serve(settings) as service:
        loop = service.server.app[SERVICES].loops["delivery"]
        await until(lambda: loop.restarts >= 1, "the delivery loop's failure")
        async with service.session.get(f"{service.url}/readyz") as resp:
            status, body = resp.status, await resp.json()
        failures = await service.metric("remediator_loop_failures_total", {"loop": "delivery"})
        accepted, _ = await service.post(fixture_json("firing-2-alerts.json"))
    assert (status, body["ready"], body["stopped_loops"]) == (200, True, [])
    assert body["loops"]["delivery"]["restarts"] >= 1
    assert "JSONDecodeError" in body["loops"]["delivery"]["last_error"]
    assert failures >= 1 and accepted == 200


async def test_every_validation_process_is_running_before_the_service_says_ready(
    tmp_path: Path,
) -> None:
    """The first webhook after a start waits for no process start: ``/readyz`` answers only
    once each validation process has validated a body."""
    async with serve(settings_for(tmp_path, validation_workers=2)) as service:
        pool = service.server.app[SERVICES].webhook.validator._pool
        assert pool is not None
        started = {pid: process.is_alive() for pid, process in pool._processes.items()}
        async with service.session.get(f"{service.url}/readyz") as resp:
            assert resp.status == 200
    assert list(started.values()) == [True, True]


async def test_an_outbox_row_of_an_event_this_version_does_not_send_is_dropped_and_audited(
    tmp_path: Path,
) -> None:
    """A row a newer version queued (an event this one does not know) is dropped, counted
    and audited, never sent as something else, and the delivery loop goes on."""
    settings = await queued_before_start(tmp_path, "page-v9")
    async with serve(settings) as service:
        labels = {"sink": "hook", "result": "dropped"}
        for _ in range(500):
            if await service.metric("remediator_escalations_total", labels) >= 1:
                break
            await asyncio.sleep(0.01)
        decisions = await service.decisions(outcome="failed")
        loop = service.server.app[SERVICES].loops["delivery"]
    assert [d["sentence"] for d in decisions] == [
        "Notifying hook failed: the event 'page-v9' is not one this version sends"
    ]
    assert loop.restarts == 0
