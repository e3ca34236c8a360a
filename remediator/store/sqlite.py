"""SQLite backend of the ``Store`` contract: the embedded default, one replica, a file.

WAL mode with ``synchronous=FULL``: a commit is on disk before the webhook acks. Each
connection lives on its own single thread, so blocking SQLite calls never stall the
event loop; the journal has a connection of its own so acks never queue behind the
pipeline's writes.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import lz4.frame

from remediator.core.episodes import next_event
from remediator.core.errors import StoreRejected, StoreUnavailable
from remediator.core.model import (
    AuditRecord,
    Episode,
    EpisodeEvent,
    Observation,
)
from remediator.guards import claim as claim_guards
from remediator.guards.claim import ClaimFacts, ClaimRequest, Limit
from remediator.guards.storm import TargetWindow
from remediator.store.contract import (
    AuditQuery,
    ClaimResult,
    IntentAnswer,
    JournalEntry,
    OutboxItem,
    Sighting,
    TakenOver,
    Undo,
    UnfinishedClaim,
)
from remediator.store.rows import (
    AUDIT_COLUMNS,
    OUTBOX_COLUMNS,
    OUTBOX_WIDTH,
    claim_windows,
)
from remediator.store.rows import audit_record as _audit_record
from remediator.store.rows import audit_row as _audit_row
from remediator.store.rows import dt as _dt
from remediator.store.rows import outbox_item as _outbox_item
from remediator.store.rows import outbox_row as _outbox_row
from remediator.store.rows import query_sql as _query_sql
from remediator.store.rows import ts as _ts
from remediator.store.rows import unfinished_claim as _unfinished_claim

T = TypeVar("T")
#: What SQLite (or its Python binding) raises for a value it cannot keep: a lone surrogate,
#: an integer past 64 bits, a string past its size limit, a broken constraint. Permanent.
REFUSED_VALUES = (sqlite3.DataError, sqlite3.IntegrityError, UnicodeEncodeError, OverflowError)

#: Seconds a journal write waits for a lock before the webhook answers 503 (Alertmanager
#: retries 5xx). Short: a stalled ack makes HA peers deliver twice.
JOURNAL_BUSY_TIMEOUT_S = 2.0
#: Seconds the worker's statements wait for a lock; the worker retries after a failure.
WORK_BUSY_TIMEOUT_S = 10.0


SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    body BLOB NOT NULL, -- the request body, LZ4 frame: Alertmanager JSON shrinks ~13 times
    done_at REAL
);
CREATE INDEX IF NOT EXISTS journal_pending ON journal (id) WHERE done_at IS NULL;
CREATE TABLE IF NOT EXISTS episodes (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    alertname TEXT NOT NULL,
    opened_at REAL NOT NULL,
    last_seen_at REAL NOT NULL,
    closed_at REAL,
    decided_at REAL
);
CREATE INDEX IF NOT EXISTS episodes_by_fingerprint ON episodes (fingerprint, id);
CREATE TABLE IF NOT EXISTS claims (
    id INTEGER PRIMARY KEY,
    episode_id INTEGER NOT NULL REFERENCES episodes (id),
    rule TEXT NOT NULL,
    action TEXT NOT NULL,
    action_kind TEXT NOT NULL,
    target TEXT NOT NULL,
    destructive INTEGER NOT NULL,
    dry_run INTEGER NOT NULL,
    claimed_at REAL NOT NULL,
    outcome TEXT,
    outcome_at REAL,
    UNIQUE (episode_id, rule, action)
);
CREATE INDEX IF NOT EXISTS claims_by_target ON claims (target, dry_run, claimed_at);
CREATE INDEX IF NOT EXISTS claims_by_time ON claims (claimed_at);
CREATE TABLE IF NOT EXISTS undos (
    id INTEGER PRIMARY KEY,
    claim_id INTEGER NOT NULL REFERENCES claims (id),
    target TEXT NOT NULL,
    state TEXT,
    after_s REAL NOT NULL,
    due_at REAL,
    done_at REAL
);
CREATE INDEX IF NOT EXISTS undos_due ON undos (due_at) WHERE done_at IS NULL;
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    episode_id INTEGER NOT NULL,
    dedup_key TEXT NOT NULL,
    sink TEXT NOT NULL,
    event TEXT NOT NULL,
    tier INTEGER NOT NULL,
    severity TEXT NOT NULL,
    policy TEXT NOT NULL,
    summary TEXT NOT NULL,
    details TEXT NOT NULL,
    created_at REAL NOT NULL,
    due_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    delivered_at REAL,
    dropped_at REAL,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX IF NOT EXISTS outbox_once ON outbox (dedup_key, sink, event, tier);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (due_at)
    WHERE delivered_at IS NULL AND dropped_at IS NULL;
CREATE TABLE IF NOT EXISTS followups (
    id INTEGER PRIMARY KEY,
    claim_id INTEGER NOT NULL UNIQUE REFERENCES claims (id),
    due_at REAL NOT NULL,
    done_at REAL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    step TEXT NOT NULL,
    outcome TEXT NOT NULL,
    sentence TEXT NOT NULL,
    journal_id INTEGER,
    episode_id INTEGER,
    fingerprint TEXT NOT NULL,
    alertname TEXT NOT NULL,
    rule TEXT NOT NULL,
    ruleset_hash TEXT NOT NULL,
    severity TEXT NOT NULL,
    reason TEXT NOT NULL,
    target TEXT NOT NULL,
    action TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_episode ON audit (episode_id);
CREATE INDEX IF NOT EXISTS audit_by_fingerprint ON audit (fingerprint);
CREATE INDEX IF NOT EXISTS audit_by_at ON audit (at);
"""

#: Schema versions after the first, in ``PRAGMA user_version`` order.
MIGRATIONS: tuple[str, ...] = (
    """
    ALTER TABLE claims ADD COLUMN intent TEXT; -- JSON, written before the side effect
    CREATE TABLE inflight (key TEXT PRIMARY KEY, claim_id INTEGER NOT NULL);
    """,
)


def _migrate(db: sqlite3.Connection) -> None:
    db.executescript(SCHEMA)
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        db.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {number}; COMMIT;")


class _Connection:
    """One SQLite connection confined to one thread."""

    def __init__(self, path: Path, name: str, busy_timeout_s: float) -> None:
        self._busy_timeout_s = busy_timeout_s
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None, timeout=self._busy_timeout_s)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        self._db = db

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            if self._db is None:
                self._connect()
            assert self._db is not None
            return fn(self._db)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except REFUSED_VALUES as exc:
            raise StoreRejected(f"SQLite state store refused a value: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite state store at {self._path}: {exc}") from exc

    async def close(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=True)


def _transaction(db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    db.execute("BEGIN IMMEDIATE")
    try:
        result = fn(db)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return result


def _latest_episodes(db: sqlite3.Connection, fingerprints: set[str]) -> dict[str, Episode]:
    marks = ", ".join("?" * len(fingerprints))
    rows = db.execute(
        "SELECT id, fingerprint, opened_at, closed_at, decided_at FROM episodes WHERE id IN"
        f" (SELECT MAX(id) FROM episodes WHERE fingerprint IN ({marks}) GROUP BY fingerprint)",
        tuple(fingerprints),
    ).fetchall()
    return {row[1]: Episode(row[0], row[1], row[2], row[3], row[4] is not None) for row in rows}


def _open_episode(db: sqlite3.Connection, s: Sighting, now: float, closed: bool) -> Episode:
    closed_at = now if closed else None
    cursor = db.execute(
        "INSERT INTO episodes (fingerprint, alertname, opened_at, last_seen_at, closed_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (s.fingerprint, s.alertname, now, now, closed_at),
    )
    assert cursor.lastrowid is not None
    return Episode(cursor.lastrowid, s.fingerprint, now, closed_at, False)


def _observe(
    db: sqlite3.Connection, sightings: Sequence[Sighting], now: float, grace_s: float
) -> list[Observation]:
    """Apply ``episodes.next_event`` to each sighting in order; joins are written in bulk."""
    if not sightings:
        return []
    latest = _latest_episodes(db, {s.fingerprint for s in sightings})
    joined: list[tuple[float, int]] = []
    observed = []
    for s in sightings:
        episode = latest.get(s.fingerprint)
        event = next_event(episode, s.status, now, grace_s)
        if event in (EpisodeEvent.OPENED, EpisodeEvent.RESOLVED_UNSEEN):
            episode = _open_episode(db, s, now, closed=event is EpisodeEvent.RESOLVED_UNSEEN)
        elif event is EpisodeEvent.REOPENED or event is EpisodeEvent.CLOSED:
            assert episode is not None
            closed_at = now if event is EpisodeEvent.CLOSED else None
            db.execute(
                "UPDATE episodes SET closed_at = ?, last_seen_at = ? WHERE id = ?",
                (closed_at, now, episode.id),
            )
            episode = replace(episode, closed_at_s=closed_at)
        elif event is EpisodeEvent.JOINED:
            assert episode is not None
            joined.append((now, episode.id))
        assert episode is not None
        latest[s.fingerprint] = episode
        observed.append(Observation(episode, event))
    db.executemany("UPDATE episodes SET last_seen_at = ? WHERE id = ?", joined)
    return observed


def _count_since(db: sqlite3.Connection, where: str, args: tuple[Any, ...], since: float) -> int:
    row = db.execute(
        f"SELECT COUNT(*) FROM claims WHERE {where} AND claimed_at > ?", (*args, since)
    ).fetchone()
    return int(row[0])


def _window_count(
    db: sqlite3.Connection, where: str, args: tuple[Any, ...], limit: Limit | None, now: float
) -> int:
    if limit is None:
        return 0
    return _count_since(db, where, args, now - limit.window_s)


def _claim_facts(db: sqlite3.Connection, r: ClaimRequest, now: float) -> ClaimFacts:
    already = db.execute(
        "SELECT 1 FROM claims WHERE episode_id = ? AND rule = ? AND action = ?",
        (r.episode_id, r.rule, r.action),
    ).fetchone()
    last = db.execute(
        "SELECT MAX(claimed_at) FROM claims WHERE target = ? AND dry_run = ?",
        (r.target, r.dry_run),
    ).fetchone()[0]
    counts = {
        name: _window_count(db, where, args, limit, now)
        for name, where, args, limit in claim_windows(r)
    }
    return ClaimFacts(
        already_claimed=already is not None,
        seconds_since_target_claim=None if last is None else now - last,
        **counts,
    )


def _claim(db: sqlite3.Connection, r: ClaimRequest, now: float) -> ClaimResult:
    verdict = claim_guards.decide(r, _claim_facts(db, r, now))
    if not verdict.allowed:
        return ClaimResult(verdict, None)
    cursor = db.execute(
        "INSERT INTO claims (episode_id, rule, action, action_kind, target, destructive,"
        " dry_run, claimed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (r.episode_id, r.rule, r.action, r.action_kind, r.target, r.destructive, r.dry_run, now),
    )
    return ClaimResult(verdict, cursor.lastrowid)


#: A resolve for every sink an episode's triggers went to, due at once, queued once. Storm
#: and ineffective-remediation incidents span episodes; a human resolves them.
RESOLVE_SQL = """
INSERT OR IGNORE INTO outbox (episode_id, dedup_key, sink, event, tier, severity, policy,
                              summary, details, due_at, created_at)
SELECT DISTINCT episode_id, dedup_key, sink, 'resolve', 0, severity, policy,
       summary, details, ?, ?
FROM outbox WHERE episode_id = ? AND event = 'trigger'
  AND dedup_key NOT LIKE 'remediator-storm-%'
  AND dedup_key NOT LIKE 'remediator-ineffective-%'
"""


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._journal = _Connection(path, "journal", JOURNAL_BUSY_TIMEOUT_S)
        self._work = _Connection(path, "store", WORK_BUSY_TIMEOUT_S)
        self._storm_windows: dict[float, TargetWindow] = {}

    async def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        await self._work.run(_migrate)

    async def close(self) -> None:
        await self._journal.close()
        await self._work.close()

    async def ping(self) -> bool:
        try:
            await self._work.run(lambda db: db.execute("SELECT 1").fetchone())
        except StoreUnavailable:
            return False
        return True

    async def journal_append(self, body: bytes, received_at: datetime) -> int:
        def append(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "INSERT INTO journal (received_at, body) VALUES (?, ?)",
                (_ts(received_at), lz4.frame.compress(body)),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

        return await self._journal.run(append)

    async def journal_pending(self) -> list[int]:
        rows = await self._work.run(
            lambda db: db.execute(
                "SELECT id FROM journal WHERE done_at IS NULL ORDER BY id"
            ).fetchall()
        )
        return [row[0] for row in rows]

    async def journal_entry(self, journal_id: int) -> JournalEntry:
        row = await self._work.run(
            lambda db: db.execute(
                "SELECT id, received_at, body FROM journal WHERE id = ?", (journal_id,)
            ).fetchone()
        )
        if row is None:
            raise StoreUnavailable(f"journal entry {journal_id} is missing")
        return JournalEntry(row[0], _dt(row[1]), lz4.frame.decompress(row[2]))

    async def journal_done(self, journal_id: int, now: datetime) -> None:
        await self._work.run(
            lambda db: db.execute(
                "UPDATE journal SET done_at = ? WHERE id = ?", (_ts(now), journal_id)
            )
        )

    async def journal_prune(self, done_before: datetime) -> int:
        cursor = await self._work.run(
            lambda db: db.execute(
                "DELETE FROM journal WHERE done_at IS NOT NULL AND done_at < ?",
                (_ts(done_before),),
            )
        )
        return int(cursor.rowcount)

    async def observe(
        self, sightings: Sequence[Sighting], now: datetime, grace_s: float
    ) -> list[Observation]:
        at = _ts(now)
        return await self._work.run(
            lambda db: _transaction(db, lambda tx: _observe(tx, sightings, at, grace_s))
        )

    async def mark_decided(self, episode_id: int, now: datetime) -> bool:
        cursor = await self._work.run(
            lambda db: db.execute(
                "UPDATE episodes SET decided_at = ? WHERE id = ? AND decided_at IS NULL",
                (_ts(now), episode_id),
            )
        )
        return cursor.rowcount == 1

    async def claim(self, request: ClaimRequest, now: datetime) -> ClaimResult:
        at = _ts(now)
        return await self._work.run(lambda db: _transaction(db, lambda tx: _claim(tx, request, at)))

    async def claim_intent(
        self, claim_id: int, intent: Mapping[str, Any], exclusive: str | None
    ) -> IntentAnswer:
        def record(db: sqlite3.Connection) -> IntentAnswer:
            cursor = db.execute(
                "UPDATE claims SET intent = ? WHERE id = ? AND outcome IS NULL",
                (json.dumps(dict(intent), default=str), claim_id),
            )
            if cursor.rowcount != 1:
                return "lost"
            if exclusive is not None:
                held = db.execute(
                    "INSERT OR IGNORE INTO inflight (key, claim_id) VALUES (?, ?)",
                    (exclusive, claim_id),
                )
                if held.rowcount != 1:
                    db.execute("UPDATE claims SET intent = NULL WHERE id = ?", (claim_id,))
                    return "busy"
            return "recorded"

        return await self._work.run(lambda db: _transaction(db, record))

    async def record_outcome(self, claim_id: int, outcome: str, now: datetime) -> bool:
        def record(db: sqlite3.Connection) -> bool:
            db.execute("DELETE FROM inflight WHERE claim_id = ?", (claim_id,))
            cursor = db.execute(
                "UPDATE claims SET outcome = ?, outcome_at = ? WHERE id = ? AND outcome IS NULL",
                (outcome, _ts(now), claim_id),
            )
            return cursor.rowcount == 1

        return await self._work.run(lambda db: _transaction(db, record))

    async def heartbeat(self, now: datetime) -> None:
        """One process owns the file: there is no one to take over from."""

    async def take_over(self, now: datetime, lease_s: float) -> TakenOver:
        return TakenOver([], [])

    async def storm_add(self, target: str, now: datetime, window_s: float) -> int:
        """In memory: one process owns the file, and the window is only ``window_s`` long
        (a transaction per alert would cost a disk flush each, in a storm of all times)."""
        window = self._storm_windows.setdefault(window_s, TargetWindow(window_s))
        return window.add(target, _ts(now))

    async def unfinished_claims(self) -> list[UnfinishedClaim]:
        rows = await self._work.run(
            lambda db: db.execute(
                "SELECT c.id, c.episode_id, e.fingerprint, e.alertname, c.rule, c.action,"
                " c.target, c.claimed_at, c.intent FROM claims c"
                " JOIN episodes e ON e.id = c.episode_id WHERE c.outcome IS NULL ORDER BY c.id"
            ).fetchall()
        )
        return [_unfinished_claim(row) for row in rows]

    async def undo_plan(
        self, claim_id: int, target: str, state: Mapping[str, Any], after_s: float
    ) -> None:
        await self._work.run(
            lambda db: db.execute(
                "INSERT INTO undos (claim_id, target, state, after_s) VALUES (?, ?, ?, ?)",
                (claim_id, target, json.dumps(dict(state)), after_s),
            )
        )

    async def undo_arm(self, episode_ids: Sequence[int], closed_at: datetime) -> None:
        rows = [(_ts(closed_at), e) for e in episode_ids]
        await self._work.run(
            lambda db: db.executemany(
                "UPDATE undos SET due_at = ? + after_s WHERE done_at IS NULL AND due_at IS NULL"
                " AND claim_id IN (SELECT id FROM claims WHERE episode_id = ?)",
                rows,
            )
        )

    async def undo_disarm(self, episode_ids: Sequence[int]) -> None:
        rows = [(e,) for e in episode_ids]
        await self._work.run(
            lambda db: db.executemany(
                "UPDATE undos SET due_at = NULL WHERE done_at IS NULL"
                " AND claim_id IN (SELECT id FROM claims WHERE episode_id = ?)",
                rows,
            )
        )

    async def undo_due(self, now: datetime) -> list[Undo]:
        rows = await self._work.run(
            lambda db: db.execute(
                "SELECT u.id, c.episode_id, e.fingerprint, c.rule, c.action, u.target, u.state"
                " FROM undos u JOIN claims c ON c.id = u.claim_id"
                " JOIN episodes e ON e.id = c.episode_id"
                " WHERE u.done_at IS NULL AND u.due_at <= ? ORDER BY u.due_at",
                (_ts(now),),
            ).fetchall()
        )
        return [Undo(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]

    async def followup_plan(self, claim_id: int, due_at: datetime) -> None:
        await self._work.run(
            lambda db: db.execute(
                "INSERT OR IGNORE INTO followups (claim_id, due_at) VALUES (?, ?)",
                (claim_id, _ts(due_at)),
            )
        )

    async def followup_due(self, now: datetime) -> list[Undo]:
        rows = await self._work.run(
            lambda db: db.execute(
                "SELECT f.id, c.episode_id, e.fingerprint, c.rule, c.action, c.target"
                " FROM followups f JOIN claims c ON c.id = f.claim_id"
                " JOIN episodes e ON e.id = c.episode_id"
                " WHERE f.done_at IS NULL AND f.due_at <= ? ORDER BY f.due_at",
                (_ts(now),),
            ).fetchall()
        )
        return [Undo(r[0], r[1], r[2], r[3], r[4], r[5], {}) for r in rows]

    async def followup_done(self, followup_id: int, now: datetime) -> None:
        await self._work.run(
            lambda db: db.execute(
                "UPDATE followups SET done_at = ? WHERE id = ?", (_ts(now), followup_id)
            )
        )

    async def undo_next(
        self, undo_id: int, state: Mapping[str, Any] | None, due_at: datetime | None
    ) -> None:
        def write(db: sqlite3.Connection) -> None:
            if state is None or due_at is None:
                db.execute("UPDATE undos SET done_at = due_at WHERE id = ?", (undo_id,))
            else:
                db.execute(
                    "UPDATE undos SET state = ?, due_at = ? WHERE id = ?",
                    (json.dumps(dict(state)), _ts(due_at), undo_id),
                )

        await self._work.run(write)

    async def audit(
        self,
        records: Sequence[AuditRecord],
        decided_episodes: Sequence[int] = (),
        now: datetime | None = None,
        outbox: Sequence[OutboxItem] = (),
        resolved_episodes: Sequence[int] = (),
    ) -> None:
        rows = [_audit_row(r) for r in records]
        at = _ts(now) if now else 0.0
        decided = [(at, e) for e in decided_episodes] if now else []
        queued = [_outbox_row(item, at) for item in outbox]
        resolved = [(at, at, e) for e in resolved_episodes]
        if not (rows or decided or queued or resolved):
            return

        def write(db: sqlite3.Connection) -> None:
            if rows:
                marks = ", ".join("?" * len(rows[0]))
                db.executemany(f"INSERT INTO audit ({AUDIT_COLUMNS}) VALUES ({marks})", rows)
            db.executemany(
                "UPDATE episodes SET decided_at = ? WHERE id = ? AND decided_at IS NULL", decided
            )
            db.executemany(
                f"INSERT OR IGNORE INTO outbox ({OUTBOX_COLUMNS})"
                f" VALUES ({', '.join('?' * OUTBOX_WIDTH)})",
                queued,
            )
            db.executemany(RESOLVE_SQL, resolved)

        await self._work.run(lambda db: _transaction(db, write))

    async def outbox_due(self, now: datetime, limit: int) -> list[OutboxItem]:
        rows = await self._work.run(
            lambda db: db.execute(
                f"SELECT id, attempts, created_at, {OUTBOX_COLUMNS} FROM outbox"
                " WHERE delivered_at IS NULL AND dropped_at IS NULL AND due_at <= ?"
                " ORDER BY due_at, id LIMIT ?",
                (_ts(now), limit),
            ).fetchall()
        )
        return [_outbox_item(row) for row in rows]

    async def outbox_done(
        self, item_id: int, now: datetime, delivered: bool, error: str = ""
    ) -> None:
        column = "delivered_at" if delivered else "dropped_at"
        await self._work.run(
            lambda db: db.execute(
                f"UPDATE outbox SET {column} = ?, attempts = attempts + 1, last_error = ?"
                " WHERE id = ?",
                (_ts(now), error, item_id),
            )
        )

    async def outbox_retry(self, item_id: int, due_at: datetime, error: str) -> None:
        await self._work.run(
            lambda db: db.execute(
                "UPDATE outbox SET due_at = ?, attempts = attempts + 1, last_error = ?"
                " WHERE id = ?",
                (_ts(due_at), error, item_id),
            )
        )

    async def outbox_drop_pending_triggers(self, episode_id: int, now: datetime) -> int:
        cursor = await self._work.run(
            lambda db: db.execute(
                "UPDATE outbox SET dropped_at = ?, last_error = 'the episode resolved first'"
                " WHERE episode_id = ? AND event = 'trigger'"
                " AND delivered_at IS NULL AND dropped_at IS NULL",
                (_ts(now), episode_id),
            )
        )
        return int(cursor.rowcount)

    async def outbox_was_triggered(self, dedup_key: str, sink: str) -> bool:
        row = await self._work.run(
            lambda db: db.execute(
                "SELECT 1 FROM outbox WHERE dedup_key = ? AND sink = ? AND event = 'trigger'"
                " AND delivered_at IS NOT NULL LIMIT 1",
                (dedup_key, sink),
            ).fetchone()
        )
        return row is not None

    async def episode_is_open(self, episode_id: int) -> bool:
        row = await self._work.run(
            lambda db: db.execute(
                "SELECT closed_at IS NULL FROM episodes WHERE id = ?", (episode_id,)
            ).fetchone()
        )
        return bool(row and row[0])

    async def decisions(self, query: AuditQuery) -> list[AuditRecord]:
        sql, args = _query_sql(query)
        rows = await self._work.run(lambda db: db.execute(sql, args).fetchall())
        return [_audit_record(row) for row in rows]
