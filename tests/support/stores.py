"""What tests ask of a store beyond the ``Store`` contract, through the store's own
statements (``remediator.store.sql``) run by its backend."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry

from remediator.act.runner import ActionRunner
from remediator.audit.recorder import Recorder
from remediator.core.clock import Clock
from remediator.core.metrics import Metrics
from remediator.store import sql
from remediator.store.contract import Store
from remediator.store.program import count
from remediator.store.rows import ts
from remediator.store.sqlstore import SqlStore


async def mark_decided(store: Store, episode_id: int, now: datetime) -> bool:
    """Take the right to decide an episode, as ``Store.audit`` does for the episodes it is
    given; False when someone already did."""
    assert isinstance(store, SqlStore)
    params = {"now": ts(now), "id": episode_id}
    return await store.run(count(sql.EPISODE_DECIDE, params), atomic=True) == 1


def runner_for(store: Store, recorder: Recorder, clock: Clock) -> ActionRunner:
    """A live action runner on ``store``, for what resumes or settles claims."""
    metrics = Metrics(CollectorRegistry(), [])
    return ActionRunner(store, recorder, metrics, clock, dry_run=False, max_concurrent=4)
