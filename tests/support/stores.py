"""What tests ask of a store beyond the ``Store`` contract, through the store's own
statements (``remediator.store.sql``) run by its backend."""

from __future__ import annotations

from datetime import datetime

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
    return await store.run(count(sql.EPISODE_DECIDED, params), atomic=True) == 1
