"""Several replicas, one truth: two ``remediator serve`` processes on one PostgreSQL store,
each behind its own Alertmanager with no cluster between them (split brain: every
notification reaches both replicas), plus forced resends straight to both. Every episode is
acted on exactly once. And a replica killed for good: the other takes its work over."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.support.alertmanager import alertmanager
from tests.support.payloads import fleet_labels, fleet_notifications
from tests.support.postgres import PostgresServer
from tests.support.process import RemediatorProcess, start_remediator
from tests.support.replicas import NS, force_resends, scale_writes, shared_state
from tests.support.waiting import eventually

ALERTS = 200


async def test_two_replicas_behind_split_brain_alertmanagers_act_once_per_episode(
    tmp_path: Path, pg: PostgresServer
) -> None:
    async with shared_state(tmp_path, pg, ALERTS, seed=5) as (kube, args, rules):
        replicas = [
            await start_remediator(
                tmp_path / name,
                rules=rules,
                extra_args=args(name),
            )
            for name in ("replica-a", "replica-b")
        ]
        try:
            async with (
                alertmanager(tmp_path / "am-a", replicas[0].webhook_url,
                             credentials_file=tmp_path / "replica-a" / "token") as am_a,
                alertmanager(tmp_path / "am-b", replicas[1].webhook_url,
                             credentials_file=tmp_path / "replica-b" / "token") as am_b,
            ):  # fmt: skip
                alerts = [{"labels": fleet_labels(i)} for i in range(ALERTS)]
                await asyncio.gather(
                    am_a.post_alerts(alerts),
                    am_b.post_alerts(alerts),
                    force_resends(replicas, fleet_notifications(ALERTS)),
                )
                for _ in range(600):
                    if sum(scale_writes(kube).values()) >= ALERTS:
                        break
                    await asyncio.sleep(0.2)
                await asyncio.sleep(2.5)  # both replicas got both deliveries by now
                claims = await replicas[1].decisions(outcome="claimed", limit="1000")
        finally:
            stopped = [await replica.stop() for replica in replicas]  # every one, then judge
            assert stopped == [0, 0]
    patches = scale_writes(kube)
    assert len(patches) == ALERTS and set(patches.values()) == {1}
    claimed = Counter(d["episode"] for d in claims)
    assert len(claimed) == ALERTS and set(claimed.values()) == {1}
    assert {kube.deployment(NS, f"d{i}")["spec"]["replicas"] for i in range(ALERTS)} == {2}


TAKEOVER_ALERTS = 20


@pytest.mark.parametrize(
    ("failpoint", "outcome"),
    [("before_process", ("claimed",)), ("after_action", ("reconciled", "acted"))],
    ids=["acked-not-processed", "acted-outcome-lost"],
)
async def test_a_replica_that_dies_for_good_leaves_its_work_to_the_other(
    tmp_path: Path, pg: PostgresServer, failpoint: str, outcome: tuple[str, ...]
) -> None:
    """Replica A acks a notification and dies (before processing it, or after its first
    write and before recording that outcome) and never comes back under its name. Once its
    lease runs out, replica B processes A's journal entry; or takes A's claims over: those
    that had sent nothing it runs, those that had announced a write it settles by looking
    at the Deployment (in place: succeeded; not: paged), and none of those is run again."""
    async with shared_state(tmp_path, pg, TAKEOVER_ALERTS, seed=6) as (kube, args, rules):
        lease = ("--lease-seconds", "1.5")
        doomed = await start_remediator(
            tmp_path / "replica-a", rules=rules, failpoints=failpoint,
            extra_args=(*args("a"), *lease),
        )  # fmt: skip
        survivor = await start_remediator(
            tmp_path / "replica-b", rules=rules, extra_args=(*args("b"), *lease)
        )
        try:
            [body] = fleet_notifications(TAKEOVER_ALERTS, per_payload=TAKEOVER_ALERTS)
            assert await doomed.post(body) == 200
            assert await doomed.wait_exit() == 137
            for _ in range(200):
                settled = await survivor.decisions(limit="1000")
                if sum(d["step"] in outcome for d in settled) >= TAKEOVER_ALERTS:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)
            decisions = await survivor.decisions(limit="1000")
        finally:
            await doomed.stop()
            assert await survivor.stop() == 0
    patches = scale_writes(kube)
    assert set(patches.values()) == {1}  # never twice
    scaled = {f"d{i}" for i in range(TAKEOVER_ALERTS)
              if kube.deployment(NS, f"d{i}")["spec"]["replicas"] == 2}  # fmt: skip
    assert len(scaled) == len(patches)
    settled_by = Counter(d["episode"] for d in decisions if d["step"] in outcome)
    assert len(settled_by) == TAKEOVER_ALERTS and set(settled_by.values()) == {1}
    paged = [d for d in decisions if d["step"] == "escalated"]
    assert "took over" in survivor.log_tail(200)
    if outcome == ("claimed",):  # B processed A's journal entry as if it had been its own
        assert len(patches) == TAKEOVER_ALERTS and paged == []
        return

    def targets(step: str, result: str) -> set[str]:
        return {d["target"].rsplit("/", 1)[1] for d in decisions
                if d["step"] == step and d["outcome"] == result}  # fmt: skip

    observed, run_here = targets("reconciled", "succeeded"), targets("acted", "succeeded")
    assert len(observed) >= 1 and observed.isdisjoint(run_here)  # A's first write landed
    assert observed | run_here == scaled
    unscaled = {f"d{i}" for i in range(TAKEOVER_ALERTS)} - scaled
    assert sorted(d["target"].rsplit("/", 1)[1] for d in paged) == sorted(unscaled)  # once each
    assert {d["reason"] for d in paged} <= {"not_applied"}


async def test_sigterm_to_one_replica_under_load_drains_it_while_the_other_carries_on(
    tmp_path: Path, pg: PostgresServer
) -> None:
    """Both replicas get every notification, over and over. Replica A is sent SIGTERM while
    its actions run: it answers only 200 or 503 while draining, finishes what it started
    and exits 0; B keeps answering 200; every Deployment is scaled exactly once and every
    claim has an outcome."""
    count = 40
    bodies = fleet_notifications(count, per_payload=5)
    async with shared_state(tmp_path, pg, count, seed=7) as (kube, args, rules):
        replicas = [
            await start_remediator(tmp_path / name, rules=rules, extra_args=args(name))
            for name in ("a", "b")
        ]
        statuses: dict[str, list[int | None]] = {"a": [], "b": []}
        stop = asyncio.Event()

        async def load(name: str, replica: RemediatorProcess) -> None:
            while not stop.is_set():
                for body in bodies:
                    statuses[name].append(await replica.post(body))
                if replica.proc.returncode is not None:
                    await asyncio.sleep(0.1)  # gone: Alertmanager would back off too

        try:
            senders = [asyncio.create_task(load(n, r)) for n, r in zip("ab", replicas, strict=True)]
            for _ in range(400):
                if sum(scale_writes(kube).values()) >= 3:
                    break
                await asyncio.sleep(0.01)
            replicas[0].proc.send_signal(signal.SIGTERM)
            assert await replicas[0].wait_exit(40) == 0
            for _ in range(300):
                if len(scale_writes(kube)) == count:
                    break
                await asyncio.sleep(0.1)
            stop.set()
            await asyncio.gather(*senders)
            outcomes: list[dict[str, Any]] = []

            async def settled() -> bool:  # a claim's outcome is written once its check ends
                nonlocal outcomes
                outcomes = await replicas[1].decisions(limit="1000")
                steps = Counter(d["step"] for d in outcomes)
                return steps["claimed"] <= steps["acted"] + steps["reconciled"]

            await eventually(settled, "an outcome for every claim", timeout_s=30)
        finally:
            stopped = [await replica.stop() for replica in replicas]  # every one, then judge
            assert stopped == [0, 0]
    assert set(statuses["a"]) <= {200, 503, None} and 503 in statuses["a"]  # None: closed
    assert set(statuses["b"]) == {200}
    patches = scale_writes(kube)
    assert len(patches) == count and set(patches.values()) == {1}
    claimed = Counter(d["episode"] for d in outcomes if d["step"] == "claimed")
    acted = Counter(d["episode"] for d in outcomes if d["step"] in ("acted", "reconciled"))
    assert claimed == acted and set(acted.values()) == {1}  # nothing left half done
