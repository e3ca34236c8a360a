"""The shared state database goes away and comes back, through a TCP proxy the test cuts:
nothing acts meanwhile (fail closed); with ``--journal-spool`` every webhook is still
acknowledged at once from the local spool, and once the database answers again the backlog
is processed, each episode acted on exactly once; without a spool, webhooks answer 503 so
that Alertmanager retries."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from remediator.core.errors import StoreUnavailable
from remediator.core.metrics import Metrics
from remediator.core.outage import Outage
from remediator.store.postgres import PostgresStore
from tests.support.kube_api import KubeApiServer
from tests.support.kubeconfig import write_kubeconfig
from tests.support.payloads import fleet_notifications
from tests.support.postgres import PostgresServer
from tests.support.process import RemediatorProcess, start_remediator
from tests.support.service import SCALE_FLEET_RULES, TOKEN
from tests.support.tcp_proxy import TcpProxy

NS = "llm-research"
DEPENDENCY = {"dependency": "state_store"}
DEPLOYMENTS = 10


def notification(i: int) -> bytes:
    """HighCPUUsage for Deployment d<i> alone."""
    return fleet_notifications(i + 1, per_payload=1)[i]


async def timed_post(
    service: RemediatorProcess, body: bytes
) -> tuple[int, float, dict[str, object]]:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as session,
        session.post(service.webhook_url, data=body, headers=headers) as resp,
    ):
        answer = await resp.json()
        return resp.status, time.monotonic() - started, answer


def scale_writes(kube: KubeApiServer) -> Counter[str]:
    return Counter(
        r.path.split("/")[-2]
        for r in kube.requests
        if r.method == "PATCH" and r.path.endswith("/scale") and r.status == 200
    )


async def outage_setup(
    tmp_path: Path, pg: PostgresServer, kube: KubeApiServer, proxy: TcpProxy
) -> tuple[str, ...]:
    dsn = await pg.create_state_database(port=proxy.port)
    for i in range(DEPLOYMENTS):
        kube.add_deployment(
            NS, f"d{i}", replicas=1, annotations={"remediator.io/allow": "scale_out"}
        )
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
    return ("--state", dsn, "--kubeconfig", str(kubeconfig))


async def test_with_a_spool_acks_stay_fast_nothing_acts_and_the_backlog_acts_once_later(
    tmp_path: Path, pg: PostgresServer
) -> None:
    async with KubeApiServer(seed=8) as kube, TcpProxy(pg.host, pg.port) as proxy:
        args = await outage_setup(tmp_path, pg, kube, proxy)
        spool = ("--journal-spool", str(tmp_path / "spool.db"))
        service = await start_remediator(
            tmp_path / "replica", rules=SCALE_FLEET_RULES, extra_args=(*args, *spool)
        )
        try:
            status, _, answer = await timed_post(service, notification(0))
            assert status == 200 and answer["journal_id"] is not None
            for _ in range(100):
                if scale_writes(kube)["d0"]:
                    break
                await asyncio.sleep(0.05)
            await proxy.down()
            acks = [await timed_post(service, notification(i)) for i in range(DEPLOYMENTS)]
            resent = [await timed_post(service, notification(i)) for i in range(DEPLOYMENTS)]
            assert {(s, a.get("spooled")) for s, _, a in acks + resent} == {(200, True)}
            assert max(seconds for _, seconds, _ in acks + resent) < 1.5
            await asyncio.sleep(2.0)
            assert scale_writes(kube) == Counter({"d0": 1})  # fail closed: nothing acted
            await proxy.up()
            for _ in range(300):
                if len(scale_writes(kube)) == DEPLOYMENTS:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)
            claims = await service.decisions(outcome="claimed")
        finally:
            assert await service.stop() == 0
    assert scale_writes(kube) == Counter({f"d{i}": 1 for i in range(DEPLOYMENTS)})
    assert sorted(Counter(d["target"] for d in claims).values()) == [1] * DEPLOYMENTS
    assert "spooling locally" in service.log_tail(400)


async def test_without_a_spool_webhooks_answer_503_while_the_database_is_away(
    tmp_path: Path, pg: PostgresServer
) -> None:
    async with KubeApiServer(seed=9) as kube, TcpProxy(pg.host, pg.port) as proxy:
        args = await outage_setup(tmp_path, pg, kube, proxy)
        service = await start_remediator(
            tmp_path / "replica", rules=SCALE_FLEET_RULES, extra_args=args
        )
        try:
            await proxy.down()
            status, _, answer = await timed_post(service, notification(1))
            assert (status, answer["error"]) == (503, "journal_unavailable")
            await proxy.up()
            for _ in range(100):
                status, _, _ = await timed_post(service, notification(1))  # Alertmanager retries
                if status == 200:
                    break
                await asyncio.sleep(0.1)
            for _ in range(100):
                if scale_writes(kube)["d1"]:
                    break
                await asyncio.sleep(0.05)
        finally:
            assert await service.stop() == 0
    assert scale_writes(kube) == Counter({"d1": 1})


async def test_the_store_tells_an_outage_once_when_it_goes_and_once_when_it_is_back(
    pg: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Every caller retries the store in silence: the store itself tells ``Outage`` of
    each failed call and of the first answer after, so a 20-call outage is two lines."""
    registry = CollectorRegistry()
    async with TcpProxy(pg.host, pg.port) as proxy:
        store = PostgresStore(await pg.create_state_database(port=proxy.port), "replica")
        await store.open()
        store.watch(Outage("state_store", Metrics(registry, []), "state store"))
        try:
            assert await store.ping()
            await proxy.down()
            for _ in range(20):
                with pytest.raises(StoreUnavailable):
                    await store.journal_pending()
            down = registry.get_sample_value("remediator_dependency_up", DEPENDENCY)
            await proxy.up()
            for _ in range(100):
                if await store.ping():
                    break
                await asyncio.sleep(0.05)
            await store.journal_pending()
        finally:
            await store.close()
    told = [r for r in caplog.records if r.name == "remediator.core.outage"]
    gone, back = (r.getMessage() for r in told)
    assert gone.startswith("state store unavailable (") and gone.endswith("until it answers")
    assert re.fullmatch(r"state store is back after [\d.]+ s \(\d\d+ calls failed \w+\)", back)
    assert all(r.exc_info is None for r in told)
    assert down == 0
    assert registry.get_sample_value("remediator_dependency_up", DEPENDENCY) == 1
    assert (
        registry.get_sample_value("remediator_dependency_failures_total", DEPENDENCY) or 0
    ) >= 20
