"""The decision backlog bounds what is accepted: while more alerts than
``--max-backlog-alerts`` wait for their decision, a webhook is answered 503 with
``Retry-After`` (Alertmanager retries), counted, logged once, and nothing already accepted
is lost; once decisions catch up the same webhook is accepted. ``Backlog`` counts entries
given with and without their count of alerts."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, Gauge

from remediator.core.errors import RequestRejected
from remediator.decide.backlog import Backlog
from remediator.ingest.webhook import _check_backlog
from tests.support.payloads import notifications, page_only_labels
from tests.support.service import TOKEN, serve, settings_for


def backlog() -> tuple[Backlog, Gauge]:
    gauge = Gauge("waiting", "test", registry=CollectorRegistry())
    return Backlog(gauge), gauge


def value(gauge: Gauge) -> float:
    return gauge._value.get()  # type: ignore[attr-defined, no-any-return]


def test_the_backlog_counts_what_is_given_decided_and_finished() -> None:
    waiting, gauge = backlog()
    waiting.add(1, 500)
    waiting.add(2, 300)
    waiting.decided(1, 256)
    assert (waiting.alerts, value(gauge)) == (544, 544)
    waiting.finished(1)
    assert waiting.alerts == 300
    waiting.decided(2, 1_000)  # never below what the entry had
    waiting.finished(2)
    assert (waiting.alerts, value(gauge)) == (0, 0)


def test_an_entry_given_without_its_count_counts_once_read() -> None:
    waiting, _ = backlog()
    waiting.add(7, None)  # recovered at start-up: only its id is known
    assert waiting.alerts == 0
    waiting.known(7, 1_000)
    waiting.decided(7, 256)
    assert waiting.alerts == 744
    waiting.add(7, 1_000)  # queued again (taken over twice): not counted twice
    assert waiting.alerts == 744
    waiting.finished(7)
    waiting.finished(7)
    waiting.known(7, 5)  # finished: reading it again counts nothing
    assert waiting.alerts == 0


async def test_a_webhook_over_the_backlog_gets_503_and_is_accepted_once_decisions_catch_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="remediator.ingest.webhook")
    [big] = notifications([page_only_labels(i) for i in range(3_000)], per_payload=3_000)
    [small] = notifications([page_only_labels(i) for i in range(3_000, 3_002)])
    async with serve(settings_for(tmp_path, max_backlog_alerts=1_000)) as service:
        assert (await service.post(big))[0] == 200
        waiting = await service.metric("remediator_decision_backlog_alerts")
        for _ in range(2):
            status, answer = await service.post(small)
            assert (status, answer["error"]) == (503, "backlogged")
        assert waiting > 1_000
        assert answer["detail"].endswith(
            "accepted alerts wait for their decision, more than the 1000 allowed"
            " (--max-backlog-alerts); retry."
        )
        rejected = await service.metric_by_label("remediator_payloads_rejected_total")
        assert rejected["backlogged"] == 2
        await service.settle()
        assert await service.metric("remediator_decision_backlog_alerts") == 0
        assert (await service.post(small))[0] == 200
        await service.settle()
        received = await service.metric("remediator_alerts_received_total", {"status": "firing"})
        decided = await service.metric_by_label("remediator_decisions_total")
    assert received == 3_002  # the 3 000 accepted first, then the 2 retried
    assert sum(decided.values()) >= 3_002
    refused = [r.getMessage() for r in caplog.records if "answering webhooks 503" in r.message]
    assert len(refused) == 1
    assert any("decisions caught up" in r.getMessage() for r in caplog.records)


async def test_a_503_for_the_backlog_carries_retry_after(tmp_path: Path) -> None:
    [big] = notifications([page_only_labels(i) for i in range(3_000)], per_payload=3_000)
    async with serve(settings_for(tmp_path, max_backlog_alerts=1)) as service:
        assert (await service.post(big))[0] == 200
        headers = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}
        async with service.session.post(f"{service.url}/webhook", data=big, headers=headers) as r:
            assert (r.status, r.headers["Retry-After"]) == (503, "5")
        await service.settle()


async def test_a_payload_that_would_take_the_backlog_past_the_limit_is_refused_once_counted(
    tmp_path: Path,
) -> None:
    [first] = notifications([page_only_labels(i) for i in range(900)], per_payload=900)
    [second] = notifications([page_only_labels(i) for i in range(900, 1_200)], per_payload=300)
    async with serve(settings_for(tmp_path, max_backlog_alerts=1_000)) as service:
        assert (await service.post(first))[0] == 200
        status, answer = await service.post(second)  # 900 wait, under the limit: read
        assert (status, answer["error"]) == (503, "backlogged")
        assert ", and these 300 would make more than the 1000 allowed" in answer["detail"]
        await service.settle()
        assert (await service.post(second))[0] == 200
        await service.settle()


@pytest.mark.parametrize(
    ("waiting", "journaling", "alerts", "refused"),
    [
        (0, 0, 5_000, False),  # alone over the limit, nothing waits: taken
        (0, 900, 200, True),  # in flight ahead of it, not yet the worker's: counted
        (0, 900, 100, False),
        (600, 300, 100, False),
        (600, 300, 101, True),
        (1_001, 0, 0, True),  # before the body is read
    ],
)
def test_the_backlog_check_counts_what_is_being_journaled(
    waiting: int, journaling: int, alerts: int, refused: bool
) -> None:
    state = SimpleNamespace(
        backlog=SimpleNamespace(alerts=waiting),
        journaling=journaling,
        settings=SimpleNamespace(max_backlog_alerts=1_000),
        backlogged=False,
    )
    if refused:
        with pytest.raises(RequestRejected) as caught:
            _check_backlog(state, alerts)  # type: ignore[arg-type]
        assert (caught.value.status, caught.value.code) == (503, "backlogged")
    else:
        _check_backlog(state, alerts)  # type: ignore[arg-type]
