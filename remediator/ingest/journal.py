"""Where the webhook journals a payload: the state store's journal; or, with a shared
state database unreachable and ``--journal-spool`` configured, a local SQLite spool.

The ack stays fast and durable through an outage of the state database; nothing acts
meanwhile (no claim can be taken: fail closed). Once the database answers again, the
spooled payloads move into its journal, oldest first, and the worker takes them. While
anything waits in the spool, new payloads queue behind it there, so a resolve is never
processed before the firing it follows. A payload moved twice (a crash between its copy
and its removal) is processed twice, which episodes and unique claims make harmless.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from pathlib import Path
from typing import Protocol

from remediator.core.clock import Clock
from remediator.core.errors import StoreUnavailable
from remediator.core.metrics import Metrics
from remediator.store.contract import Store
from remediator.store.sqlite import SqliteStore

log = logging.getLogger(__name__)

#: How often a supervised loop (``runtime/tasks.py``) runs ``drain``.
DRAIN_EVERY_S = 1.0


class Taker(Protocol):
    """The journal worker, as the journal sees it: told of each entry it may take."""

    def accept(self, journal_id: int, alerts: int | None = None) -> None: ...


class Journal:
    def __init__(
        self,
        store: Store,
        worker: Taker,
        clock: Clock,
        metrics: Metrics,
        spool_path: Path | None,
        store_timeout_s: float,
    ) -> None:
        self._store = store
        self._worker = worker
        self._clock = clock
        self._metrics = metrics
        self._spool = SqliteStore(spool_path) if spool_path is not None else None
        self._store_timeout_s = store_timeout_s
        self._lock = asyncio.Lock()
        self._spooling = False

    @property
    def spooling(self) -> bool:
        """Payloads are waiting in the local spool for the state database."""
        return self._spooling

    async def open(self) -> None:
        if self._spool is not None:
            await self._spool.open()
            self._spooling = bool(await self._spool.journal_pending())

    async def close(self) -> None:
        if self._spool is not None:
            await self._spool.close()

    async def append(self, body: bytes, received_at: datetime, alerts: int) -> int | None:
        """Journal ``body`` (of ``alerts`` alerts) durably: its journal id, or None when it
        went to the spool. Raises ``StoreUnavailable`` when neither could take it."""
        if self._spool is None:
            journal_id = await self._store.journal_append(body, received_at)
            self._worker.accept(journal_id, alerts)
            return journal_id
        async with self._lock:
            if not self._spooling:
                try:
                    journal_id = await asyncio.wait_for(
                        self._store.journal_append(body, received_at), self._store_timeout_s
                    )
                except (StoreUnavailable, TimeoutError) as exc:
                    log.warning("state journal unavailable (%s); spooling locally", exc)
                    self._spooling = True
                else:
                    self._worker.accept(journal_id, alerts)
                    return journal_id
            await self._spool.journal_append(body, received_at)
            self._metrics.spooled_payloads.inc()
            return None

    async def drain(self) -> int:
        """Move spooled payloads into the state journal; how many moved."""
        if self._spool is None or not self._spooling:
            return 0
        if not await self._store.ping():  # outside the lock: acks never wait on a probe
            return 0
        moved = 0
        async with self._lock:
            for spool_id in await self._spool.journal_pending():
                entry = await self._spool.journal_entry(spool_id)
                journal_id = await self._store.journal_append(entry.body, entry.received_at)
                await self._spool.journal_done(spool_id, self._clock.now())
                self._worker.accept(journal_id)
                moved += 1
            self._spooling = False
            await self._spool.journal_prune(self._clock.now())
        log.warning("moved %d spooled payloads into the state journal", moved)
        return moved
