"""The archive loop: every ``archive_every_s``, each stream's rows old enough (the journal's
bodies, then the decisions) go to the object store as ``archive`` batches, exactly once.

Where it sits: beside the decision flow, never in it. It reads what the worker and the
recorder wrote, and what it does cannot stop, slow or fail a decision: an object store that
is away, refusing or slow costs a warning (once, ``core/outage.py``), a count, and a later
round; the rows wait in the state store meanwhile (the journal is not pruned past the
archive's cursor while an archive is configured).

Exactly once: a batch's rows are fixed in the store (``archive_begin``) before its upload
and the cursor moves past them (``archive_done``) after it. A crash between the two uploads
the same rows under the same key again: an overwrite, never a second copy. Two replicas of
one PostgreSQL store share the cursor; the second one to look uploads the pending batch
again (the same object) rather than a new one. Rows younger than ``archive_settle_s`` wait:
on PostgreSQL a row can commit after one with a higher id.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

from remediator.audit import archive
from remediator.audit.archive import Batch, Row, Stream
from remediator.clients.s3 import ObjectStore
from remediator.config import Settings
from remediator.core import failpoints
from remediator.core.clock import Clock
from remediator.core.errors import ObjectStoreError
from remediator.core.metrics import Metrics
from remediator.core.outage import Outage
from remediator.store.contract import AuditQuery, Store

log = logging.getLogger(__name__)

#: Rows read per query while a batch fills (journal bodies can be megabytes each).
PAGE_ROWS = 100
#: Lines of one object at most, whatever ``archive_batch_rows`` says.
MAX_BATCH_BYTES = 64 * 1024 * 1024
#: Batches per stream per round: a long backlog drains over rounds, and a stop is not held.
MAX_BATCHES_PER_ROUND = 50
#: Archived decisions deleted per query under ``audit_retention_s``.
PRUNE_ROWS = 10_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Page = Callable[[int, int], Awaitable[Sequence[Row]]]
"""Rows with ids above the first argument, by id, at most the second argument of them."""


class Shipper:
    def __init__(
        self,
        store: Store,
        objects: ObjectStore,
        clock: Clock,
        metrics: Metrics,
        settings: Settings,
        outage: Outage | None = None,
    ) -> None:
        self._store = store
        self._objects = objects
        self._clock = clock
        self._metrics = metrics
        self._settings = settings
        self._prefix = settings.s3_prefix
        self._outage = outage or Outage("object_store", metrics, "the archive's object store")
        self._rows = Rows(store, settings.archive_batch_rows)

    async def round(self) -> None:
        """Ship what is due of each stream, then prune what the retention lets go. The store
        being away ends the round (the loop outlasts it); the object store being away ends
        the stream's part of it."""
        for stream in archive.STREAMS:
            try:
                await self._ship(stream)
            except ObjectStoreError as exc:
                self._outage.failed(exc)
        if self._settings.audit_retention_s:
            await self._prune()

    async def _ship(self, stream: Stream) -> None:
        for _ in range(MAX_BATCHES_PER_ROUND):
            if not await self._one_batch(stream):
                self._metrics.archive_caught_up_at.labels(stream).set(self._clock.now().timestamp())
                return

    async def _one_batch(self, stream: Stream) -> bool:
        """Ship one batch of ``stream``: the pending one, else the next; False when none
        was due."""
        cursor = await self._store.archive_cursor(stream)
        if cursor.pending is None:
            settled_at = self._clock.now() - timedelta(seconds=self._settings.archive_settle_s)
            rows = await self._rows.batch_after(stream, cursor.archived_to, settled_at)
            if not rows:
                return False
            cursor = await self._store.archive_begin(stream, rows[0].id, rows[-1].id)
            if cursor.pending is None:  # another replica shipped it meanwhile
                return True
        first_id, last_id = cursor.pending
        rows = await self._rows.between(stream, first_id, last_id)
        if rows:
            await self._upload(Batch(stream, rows))
        failpoints.hit("after_archive_upload")
        await self._store.archive_done(stream, last_id)
        return True

    async def _upload(self, batch: Batch) -> None:
        """The object, then its manifest (a manifest names only an object that is there)."""
        body = batch.body()
        key = batch.key(self._prefix)
        meta = {"rows": str(len(batch.rows)), "first-id": str(batch.first_id),
                "last-id": str(batch.last_id)}  # fmt: skip
        await self._objects.put(key, body, "application/gzip", metadata=meta)
        manifest = batch.manifest(self._prefix, body)
        await self._objects.put(batch.manifest_key(self._prefix), manifest, archive.MANIFEST_TYPE)
        self._outage.answered()
        self._metrics.archive_objects.labels(batch.stream).inc()
        self._metrics.archive_rows.labels(batch.stream).inc(len(batch.rows))
        log.debug("archived %s", key, extra={"fields": {"key": key, "rows": len(batch.rows)}})

    async def _prune(self) -> None:
        cursor = await self._store.archive_cursor("decisions")
        before = self._clock.now() - timedelta(seconds=self._settings.audit_retention_s)
        while await self._store.audit_prune(before, cursor.archived_to, PRUNE_ROWS) == PRUNE_ROWS:
            pass


class Rows:
    """The rows of a stream as batches: read from the store a page at a time, cut at the
    batch's limits and at the hour. The shipper's, and ``audit export``'s."""

    def __init__(self, store: Store, batch_rows: int) -> None:
        self._store = store
        self._batch_rows = batch_rows

    async def batch_after(
        self, stream: Stream, after_id: int, settled_at: datetime | None = None
    ) -> Sequence[Row]:
        """The next batch's rows after ``after_id``: recorded by ``settled_at`` (when
        given), within one UTC hour, within the size limits; none when none is due."""
        rows = await self._collect(
            self._page(stream), after_id, lambda r: settled_at is None or r.at <= settled_at
        )
        return archive.one_hour(rows) if rows else rows

    async def between(self, stream: Stream, first_id: int, last_id: int) -> Sequence[Row]:
        """Rows ``first_id``..``last_id``, whatever the limits: a pending batch again."""
        return await self._collect(
            self._page(stream), first_id - 1, lambda r: r.id <= last_id, limited=False
        )

    async def _collect(
        self, page: Page, after_id: int, wanted: Callable[[Row], bool], limited: bool = True
    ) -> list[Row]:
        """Rows after ``after_id``, by id, up to the first one not ``wanted`` or (when
        ``limited``: a new batch, not a pending one read again) the batch's limits."""
        rows: list[Row] = []
        size = 0
        limit = self._batch_rows if limited else None
        while limit is None or len(rows) < limit:
            asked = PAGE_ROWS if limit is None else min(PAGE_ROWS, limit - len(rows))
            found = await page(rows[-1].id if rows else after_id, asked)
            for row in found:
                size += len(row.line) + 1
                if not wanted(row) or (limited and rows and size > MAX_BATCH_BYTES):
                    return rows
                rows.append(row)
            if len(found) < asked:
                return rows
        return rows

    def _page(self, stream: Stream) -> Page:
        async def journal(after_id: int, limit: int) -> Sequence[Row]:
            entries = await self._store.journal_since(EPOCH, after_id, limit)
            return [archive.journal_row(e) for e in entries]

        async def decisions(after_id: int, limit: int) -> Sequence[Row]:
            records = await self._store.decisions(AuditQuery(after_id=after_id, limit=limit))
            return [archive.decision_row(r) for r in records]

        return journal if stream == "journal" else decisions
