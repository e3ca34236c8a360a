"""Replicas of ``remediator serve`` on one PostgreSQL state database, and what the tests
count afterwards: a fleet of opted-in Deployments on the test Kubernetes API, the
arguments of a replica by name, resends of every body to every replica, the scale writes
the API server answered, and the state tables read directly (claims, audit)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from tests.support.kube_api import KubeApiServer
from tests.support.kubeconfig import write_kubeconfig
from tests.support.postgres import PostgresServer
from tests.support.process import RemediatorProcess
from tests.support.service import SCALE_FLEET_RULES

NS = "llm-research"
SCALE_PATH = r"/namespaces/llm-research/deployments/[^/]+/scale$"
"""The scale subresource of any fleet Deployment, as a fault's ``path``."""


async def force_resends(replicas: list[RemediatorProcess], bodies: list[bytes]) -> None:
    """Post every body to every replica, twice, as Alertmanager's retries would."""
    for _ in range(2):
        statuses = await asyncio.gather(*(r.post(b) for r in replicas for b in bodies))
        assert set(statuses) == {200}
        await asyncio.sleep(0.3)


@dataclass(frozen=True)
class Fleet:
    """``deployments`` Deployments d0, d1, … and a state database for the replicas."""

    kube: KubeApiServer
    dsn: str
    kubeconfig: Path
    rules: Path
    deployments: int

    def args(self, name: str) -> tuple[str, ...]:
        """The ``serve`` arguments of replica ``name`` (its instance id)."""
        return ("--state", self.dsn, "--instance-id", name, "--kubeconfig", str(self.kubeconfig))

    def replicas_of(self, i: int) -> int:
        replicas: int = self.kube.deployment(NS, f"d{i}")["spec"]["replicas"]
        return replicas


@asynccontextmanager
async def fleet(
    tmp_path: Path, pg: PostgresServer, deployments: int, seed: int
) -> AsyncIterator[Fleet]:
    dsn = await pg.create_state_database()
    async with KubeApiServer(seed=seed) as kube:
        for i in range(deployments):
            kube.add_deployment(
                NS, f"d{i}", replicas=1, annotations={"remediator.io/allow": "scale_out"}
            )
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
        yield Fleet(kube, dsn, kubeconfig, SCALE_FLEET_RULES, deployments)


@asynccontextmanager
async def shared_state(
    tmp_path: Path, pg: PostgresServer, deployments: int, seed: int
) -> AsyncIterator[tuple[KubeApiServer, Callable[[str], tuple[str, ...]], Path]]:
    """A state database on ``pg``, the rules, and ``deployments`` opted-in Deployments
    d0, d1, … of one replica each; with the ``serve`` arguments of a replica by name."""
    async with fleet(tmp_path, pg, deployments, seed) as f:
        yield f.kube, f.args, f.rules


def scale_writes(kube: KubeApiServer) -> Counter[str]:
    """Successful PATCHes of a scale subresource, by path."""
    return Counter(
        r.path
        for r in kube.requests
        if r.method == "PATCH" and r.path.endswith("/scale") and r.status == 200
    )


def deployment_of(path_or_target: str) -> str:
    """``d7`` from a scale path (``…/deployments/d7/scale``) or a target key (``…/d7``)."""
    parts = path_or_target.rstrip("/").split("/")
    return parts[-2] if parts[-1] == "scale" else parts[-1]


async def ready(replica: RemediatorProcess) -> int | None:
    """The status of ``/readyz``, or None when the connection broke."""
    try:
        async with aiohttp.ClientSession() as session, session.get(f"{replica.url}/readyz") as r:
            return r.status
    except aiohttp.ClientError:
        return None


class StateTables:
    """The state database read directly, one short connection per question, so that a
    question asked while the server is away fails alone."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        conn = await asyncpg.connect(self.dsn, timeout=15)
        try:
            return [dict(row) for row in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    async def claims(self) -> list[dict[str, Any]]:
        return await self.fetch(
            "SELECT id, episode_id, target, outcome, owner, intent FROM claims ORDER BY id"
        )

    async def audit(self) -> list[dict[str, Any]]:
        return await self.fetch(
            "SELECT id, step, outcome, reason, episode_id, target, fingerprint, alertname"
            " FROM audit ORDER BY id"
        )

    async def count_claims(self) -> int:
        [row] = await self.fetch("SELECT count(*) AS n FROM claims")
        count: int = row["n"]
        return count

    async def open_claims(self) -> int:
        [row] = await self.fetch("SELECT count(*) AS n FROM claims WHERE outcome IS NULL")
        count: int = row["n"]
        return count


def per_episode(
    records: list[dict[str, Any]], step: str, reason: str | None = None
) -> Counter[int]:
    """How many ``step`` records (with ``reason``, when given) each episode has."""
    return Counter(
        r["episode_id"]
        for r in records
        if r["step"] == step and (reason is None or r["reason"] == reason)
    )
