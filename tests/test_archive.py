"""The archive against a real S3 endpoint (moto in server mode), through a proxy that can
fail: every journal entry and decision arrives, once; an object store that is down, failing
or slow stops nothing and loses nothing; rows too young wait; batches split where they
should; encryption is asked for; retention deletes only what is archived; and the only call
made is ``s3:PutObject`` (the README's IAM policy)."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from remediator.actions.registry import default_registry
from remediator.audit.shipper import Shipper
from remediator.clients.s3 import ObjectStore
from remediator.config import Settings
from remediator.core.metrics import Metrics
from remediator.core.model import AuditRecord, Outcome, Step
from remediator.runtime.objects import s3_settings
from remediator.store.contract import ArchiveCursor, AuditQuery
from remediator.store.sqlite import SqliteStore
from tests.support import s3
from tests.support.clock import FakeClock

BUCKET = "remediator-archive"
T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
async def moto() -> AsyncIterator[s3.MotoS3]:
    async with s3.MotoS3() as server:
        await s3.create_bucket(server.url, BUCKET)
        yield server


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch, moto: s3.MotoS3) -> None:
    """The standard chain finds the test server's keys (and looks no further)."""
    for name, value in s3.env(moto.url).items():
        monkeypatch.setenv(name, value)


@dataclass
class Rig:
    store: SqliteStore
    shipper: Shipper
    faults: s3.S3Faults
    registry: CollectorRegistry
    clock: FakeClock
    prefix: str

    async def keys(self, stream: str = "") -> list[str]:
        return await s3.list_keys(self.faults.url, BUCKET, f"{self.prefix}/{stream}")

    async def rows(self, stream: str) -> list[dict[str, Any]]:
        """Every row of ``stream``'s objects, by the manifests, in row order."""
        found = []
        manifests = [k for k in await self.keys(stream) if k.endswith(".manifest.json")]
        for key in sorted(manifests):
            doc = json.loads(await s3.get_object(self.faults.url, BUCKET, key))
            body = await s3.get_object(self.faults.url, BUCKET, doc["object"])
            found += [json.loads(line) for line in gzip.decompress(body).splitlines()]
        return found

    def gauge(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        assert value is not None, name
        return value


@pytest.fixture
async def rig(
    tmp_path: Path, moto: s3.MotoS3, request: pytest.FixtureRequest
) -> AsyncIterator[Rig]:
    prefix = "team-a/remediator"
    overrides = getattr(request, "param", {})
    async with s3.S3Faults(moto.url) as faults:
        given = {"s3_bucket": BUCKET, "s3_prefix": prefix, "s3_endpoint_url": faults.url,
                 "s3_region": s3.REGION, "s3_max_attempts": 1, "archive_settle_s": 0}  # fmt: skip
        settings = Settings(insecure_no_auth=True, **{**given, **overrides})
        registry = CollectorRegistry()
        metrics = Metrics(registry, default_registry(), [])
        store = SqliteStore(tmp_path / "state.db")
        await store.open()
        clock = FakeClock(T0)
        try:
            async with ObjectStore.open(s3_settings(settings)) as objects:
                shipper = Shipper(store, objects, clock, metrics, settings)
                yield Rig(store, shipper, faults, registry, clock, prefix)
        finally:
            await store.close()


def record(n: int, seconds: float = 0) -> AuditRecord:
    at = T0.replace(second=int(seconds))
    return AuditRecord(at, Step.RECEIVED, Outcome.RECEIVED, f"decision {n}", fingerprint=f"fp{n}")


async def fill(rig: Rig, entries: int, records: int) -> None:
    for n in range(entries):
        await rig.store.journal_append(b'{"version": "4", "n": %d}' % n, T0)
    await rig.store.audit([record(n) for n in range(records)])


async def test_every_journal_entry_and_decision_reaches_the_archive_once(rig: Rig) -> None:
    await fill(rig, entries=3, records=5)
    await rig.shipper.round()
    journal = await rig.rows("journal")
    assert [row["body"]["n"] for row in journal] == [0, 1, 2]
    assert {row["received_at"] for row in journal} == {"2026-12-02T09:00:00Z"}
    assert [row["sentence"] for row in await rig.rows("decisions")] == [
        f"decision {n}" for n in range(5)
    ]
    assert sorted(await rig.keys()) == [
        f"{rig.prefix}/decisions/2026/12/02/09/000000000001-000000000005.jsonl.gz",
        f"{rig.prefix}/decisions/2026/12/02/09/000000000001-000000000005.manifest.json",
        f"{rig.prefix}/journal/2026/12/02/09/000000000001-000000000003.jsonl.gz",
        f"{rig.prefix}/journal/2026/12/02/09/000000000001-000000000003.manifest.json",
    ]
    puts = len(rig.faults.seen)
    await rig.shipper.round()  # nothing new: nothing written
    assert len(rig.faults.seen) == puts
    assert await rig.store.archive_cursor("decisions") == ArchiveCursor(5)
    assert rig.gauge("remediator_archive_rows_total", stream="decisions") == 5


async def test_only_put_object_is_called_which_is_all_the_iam_policy_grants(rig: Rig) -> None:
    await fill(rig, entries=2, records=2)
    await rig.shipper.round()
    await rig.shipper.round()
    archive_calls = {seen.operation for seen in rig.faults.seen}
    assert archive_calls == {"PutObject"}


@pytest.mark.parametrize("rig", [{"archive_settle_s": 30}], indirect=True)
async def test_rows_younger_than_the_settle_time_wait_for_a_later_round(rig: Rig) -> None:
    await fill(rig, entries=1, records=2)
    rig.clock.advance(29)
    await rig.shipper.round()
    assert await rig.keys() == []
    rig.clock.advance(1)
    await rig.shipper.round()
    assert len(await rig.rows("decisions")) == 2


@pytest.mark.parametrize("rig", [{"archive_batch_rows": 2}], indirect=True)
async def test_batches_hold_at_most_the_batch_rows_and_one_hour_each(rig: Rig) -> None:
    await rig.store.audit([record(n) for n in range(5)])
    await rig.store.audit([AuditRecord(T0.replace(hour=10), Step.RECEIVED, Outcome.RECEIVED, "x")])
    rig.clock.advance(7200)
    await rig.shipper.round()
    objects = sorted(k.split("/")[-2:] for k in await rig.keys("decisions") if k.endswith("gz"))
    assert objects == [
        ["09", "000000000001-000000000002.jsonl.gz"],
        ["09", "000000000003-000000000004.jsonl.gz"],
        ["09", "000000000005-000000000005.jsonl.gz"],
        ["10", "000000000006-000000000006.jsonl.gz"],
    ]
    assert [r["id"] for r in await rig.rows("decisions")] == [1, 2, 3, 4, 5, 6]


async def test_an_object_store_down_then_failing_then_slow_loses_nothing_and_duplicates_nothing(
    rig: Rig,
) -> None:
    await fill(rig, entries=2, records=3)
    await rig.faults.down()
    await rig.shipper.round()  # returns: the loop and every decision go on
    assert rig.gauge("remediator_dependency_up", dependency="object_store") == 0
    await rig.faults.up()
    rig.faults.failing(500)
    await rig.store.audit([record(10)])
    await rig.shipper.round()
    assert rig.gauge("remediator_dependency_failures_total", dependency="object_store") == 4
    assert await rig.store.archive_cursor("decisions") == ArchiveCursor(0, (1, 3))
    rig.faults.slow(0.3)
    await rig.shipper.round()
    assert rig.gauge("remediator_dependency_up", dependency="object_store") == 1
    rig.faults.passing()
    assert [r["sentence"] for r in await rig.rows("decisions")] == [
        "decision 0", "decision 1", "decision 2", "decision 10"
    ]  # fmt: skip
    assert len(await rig.rows("journal")) == 2


@pytest.mark.parametrize("rig", [{"s3_sse": "AES256"}], indirect=True)
async def test_server_side_encryption_is_asked_for_each_object(rig: Rig) -> None:
    await fill(rig, entries=1, records=1)
    await rig.shipper.round()
    for key in await rig.keys():
        meta = await s3.object_meta(rig.faults.url, BUCKET, key)
        assert meta["ServerSideEncryption"] == "AES256", key


@pytest.mark.parametrize("rig", [{"audit_retention_s": 3600}], indirect=True)
async def test_retention_deletes_archived_decisions_only_once_they_are_old(rig: Rig) -> None:
    await fill(rig, entries=0, records=3)
    await rig.faults.down()
    rig.clock.advance(7200)
    await rig.shipper.round()  # not archived: nothing deleted, however old
    assert len(await rig.store.decisions(AuditQuery())) == 3
    await rig.faults.up()
    await rig.store.audit([AuditRecord(rig.clock.now(), Step.RECEIVED, Outcome.RECEIVED, "new")])
    await rig.shipper.round()
    left = await rig.store.decisions(AuditQuery())
    assert [r.sentence for r in left] == ["new"]  # archived too, but not old
    assert len(await rig.rows("decisions")) == 4
