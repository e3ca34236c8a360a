"""The archive's part of the ``Store`` contract, on both backends: the cursor of each stream
(a batch begun before its upload, done after it, never begun twice), pruning the journal
no further than the archive, and deleting only archived decisions past their retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from remediator.core.model import AuditRecord, Outcome, Step
from remediator.store.contract import ArchiveCursor, AuditQuery, Store

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def record(seconds: float) -> AuditRecord:
    return AuditRecord(at(seconds), Step.RECEIVED, Outcome.RECEIVED, f"record at {seconds}")


async def test_a_stream_never_archived_starts_at_zero_with_nothing_pending(store: Store) -> None:
    assert await store.archive_cursor("decisions") == ArchiveCursor(0)


async def test_a_batch_is_pending_from_its_begin_until_its_done(store: Store) -> None:
    assert await store.archive_begin("journal", 1, 40) == ArchiveCursor(0, (1, 40))
    assert await store.archive_cursor("journal") == ArchiveCursor(0, (1, 40))
    assert await store.archive_cursor("decisions") == ArchiveCursor(0)  # streams apart
    await store.archive_done("journal", 40)
    assert await store.archive_cursor("journal") == ArchiveCursor(40)


async def test_a_second_begin_while_a_batch_is_pending_keeps_the_pending_one(
    store: Store,
) -> None:
    """Two replicas, or a retry after a crash: the rows of the batch stay the ones fixed
    first, so its object is the same object."""
    await store.archive_begin("decisions", 1, 40)
    assert await store.archive_begin("decisions", 1, 55) == ArchiveCursor(0, (1, 40))


async def test_the_cursor_never_moves_back_nor_for_a_batch_not_pending(store: Store) -> None:
    await store.archive_begin("decisions", 1, 40)
    await store.archive_done("decisions", 39)  # not the pending batch: nothing changes
    assert await store.archive_cursor("decisions") == ArchiveCursor(0, (1, 40))
    await store.archive_done("decisions", 40)
    assert await store.archive_begin("decisions", 20, 30) == ArchiveCursor(40)  # behind it
    await store.archive_done("decisions", 40)  # again, late: nothing changes
    assert await store.archive_cursor("decisions") == ArchiveCursor(40)


async def test_the_journal_is_pruned_no_further_than_the_archive_has_shipped(
    store: Store,
) -> None:
    ids = [await store.journal_append(b'{"n": %d}' % i, at(i)) for i in range(4)]
    for journal_id in ids:
        await store.journal_done(journal_id, at(10))
    assert await store.journal_prune(at(100), up_to_id=ids[1]) == 2
    left = await store.journal_since(at(0), 0, 10)
    assert [e.id for e in left] == ids[2:]
    assert await store.journal_prune(at(100)) == 2  # no archive to wait for


async def test_only_archived_decisions_past_the_retention_are_deleted_a_bounded_number_at_a_time(
    store: Store,
) -> None:
    await store.audit([record(s) for s in (0, 1, 2, 3, 50)])
    ids = [r.id or 0 for r in await store.decisions(AuditQuery(limit=10))]
    assert await store.audit_prune(at(10), up_to_id=ids[2], limit=2) == 2  # the oldest two
    assert await store.audit_prune(at(10), up_to_id=ids[2], limit=2) == 1
    assert await store.audit_prune(at(10), up_to_id=ids[-1], limit=9) == 1  # not at 50
    left = await store.decisions(AuditQuery(limit=10))
    assert [r.sentence for r in left] == ["record at 50"]
