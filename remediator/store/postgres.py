"""PostgreSQL backend of the ``Store`` contract: for several replicas sharing one truth.

The same rows and decisions as the SQLite backend (``rows``, ``episodes.next_event``,
``guards.claim``). Episodes and claims are decided under transaction-scoped advisory locks,
so two replicas (and two Alertmanagers) never open two episodes for one fingerprint nor
take two claims past one guard. Each replica processes the journal entries it accepted
and settles the claims it took (``instance_id``), and renews a lease on them; a replica
whose lease runs out leaves them to the first live replica that notices (``take_over``).
The schema is versioned and migrated under a lock, so replicas may start together.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import lz4.frame

from remediator.clients.state_db import StateDatabase, Tx
from remediator.core.episodes import next_event
from remediator.core.errors import StoreUnavailable
from remediator.core.model import AuditRecord, Episode, EpisodeEvent, Observation
from remediator.guards import claim as claim_guards
from remediator.guards.claim import ClaimFacts, ClaimRequest, Limit
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
    audit_record,
    audit_row,
    claim_windows,
    dt,
    outbox_item,
    outbox_row,
    query_sql,
    ts,
    unfinished_claim,
)

LOCK_MIGRATE = 7_100_001
LOCK_EPISODES = 7_100_002
LOCK_CLAIMS = 7_100_003
LOCK_TAKEOVER = 7_100_004

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE journal (
        id BIGSERIAL PRIMARY KEY,
        owner TEXT NOT NULL,
        received_at DOUBLE PRECISION NOT NULL,
        body BYTEA NOT NULL,
        done_at DOUBLE PRECISION
    );
    CREATE INDEX journal_pending ON journal (owner, id) WHERE done_at IS NULL;
    CREATE TABLE episodes (
        id BIGSERIAL PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        alertname TEXT NOT NULL,
        opened_at DOUBLE PRECISION NOT NULL,
        last_seen_at DOUBLE PRECISION NOT NULL,
        closed_at DOUBLE PRECISION,
        decided_at DOUBLE PRECISION
    );
    CREATE INDEX episodes_by_fingerprint ON episodes (fingerprint, id);
    CREATE TABLE claims (
        id BIGSERIAL PRIMARY KEY,
        episode_id BIGINT NOT NULL REFERENCES episodes (id),
        rule TEXT NOT NULL,
        action TEXT NOT NULL,
        action_kind TEXT NOT NULL,
        target TEXT NOT NULL,
        destructive INTEGER NOT NULL,
        dry_run INTEGER NOT NULL,
        claimed_at DOUBLE PRECISION NOT NULL,
        outcome TEXT,
        outcome_at DOUBLE PRECISION,
        UNIQUE (episode_id, rule, action)
    );
    CREATE INDEX claims_by_target ON claims (target, dry_run, claimed_at);
    CREATE INDEX claims_by_time ON claims (claimed_at);
    CREATE TABLE undos (
        id BIGSERIAL PRIMARY KEY,
        claim_id BIGINT NOT NULL REFERENCES claims (id),
        target TEXT NOT NULL,
        state TEXT,
        after_s DOUBLE PRECISION NOT NULL,
        due_at DOUBLE PRECISION,
        done_at DOUBLE PRECISION
    );
    CREATE TABLE followups (
        id BIGSERIAL PRIMARY KEY,
        claim_id BIGINT NOT NULL UNIQUE REFERENCES claims (id),
        due_at DOUBLE PRECISION NOT NULL,
        done_at DOUBLE PRECISION
    );
    CREATE TABLE outbox (
        id BIGSERIAL PRIMARY KEY,
        episode_id BIGINT NOT NULL,
        dedup_key TEXT NOT NULL,
        sink TEXT NOT NULL,
        event TEXT NOT NULL,
        tier INTEGER NOT NULL,
        severity TEXT NOT NULL,
        policy TEXT NOT NULL,
        summary TEXT NOT NULL,
        details TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        due_at DOUBLE PRECISION NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        delivered_at DOUBLE PRECISION,
        dropped_at DOUBLE PRECISION,
        last_error TEXT NOT NULL DEFAULT ''
    );
    CREATE UNIQUE INDEX outbox_once ON outbox (dedup_key, sink, event, tier);
    CREATE INDEX outbox_due ON outbox (due_at) WHERE delivered_at IS NULL AND dropped_at IS NULL;
    CREATE TABLE audit (
        id BIGSERIAL PRIMARY KEY,
        at DOUBLE PRECISION NOT NULL,
        step TEXT NOT NULL,
        outcome TEXT NOT NULL,
        sentence TEXT NOT NULL,
        journal_id BIGINT,
        episode_id BIGINT,
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
    CREATE INDEX audit_by_episode ON audit (episode_id);
    CREATE INDEX audit_by_fingerprint ON audit (fingerprint);
    CREATE INDEX audit_by_at ON audit (at);
    """,
    """
    ALTER TABLE claims ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    ALTER TABLE claims ADD COLUMN intent TEXT;
    CREATE INDEX claims_unfinished ON claims (owner, id) WHERE outcome IS NULL;
    CREATE TABLE inflight (key TEXT PRIMARY KEY, claim_id BIGINT NOT NULL);
    CREATE TABLE storm_targets (target TEXT PRIMARY KEY, seen_at DOUBLE PRECISION NOT NULL);
    CREATE TABLE instances (id TEXT PRIMARY KEY, heartbeat_at DOUBLE PRECISION NOT NULL);
    """,
)

UNFINISHED_SQL = """
SELECT c.id, c.episode_id, e.fingerprint, e.alertname, c.rule, c.action, c.target,
       c.claimed_at, c.intent
FROM claims c JOIN episodes e ON e.id = c.episode_id
WHERE c.outcome IS NULL AND c.owner = $1 {also} ORDER BY c.id
"""

#: Owners of unfinished work whose lease ran out, or who never held one.
EXPIRED_OWNERS_SQL = """
SELECT owner FROM journal WHERE done_at IS NULL
UNION SELECT owner FROM claims WHERE outcome IS NULL
EXCEPT SELECT id FROM instances WHERE heartbeat_at >= $1
EXCEPT SELECT $2
"""

RESOLVE_SQL = """
INSERT INTO outbox (episode_id, dedup_key, sink, event, tier, severity, policy,
                    summary, details, due_at, created_at)
SELECT DISTINCT episode_id, dedup_key, sink, 'resolve', 0, severity, policy,
       summary, details, $1::float8, $2::float8
FROM outbox WHERE episode_id = $3 AND event = 'trigger'
  AND dedup_key NOT LIKE 'remediator-storm-%'
  AND dedup_key NOT LIKE 'remediator-ineffective-%'
ON CONFLICT DO NOTHING
"""


def numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2, …``."""
    count = iter(range(1, 10_000))
    return re.sub(r"\?", lambda _: f"${next(count)}", sql)


async def _window(
    tx: Tx, where: str, args: tuple[Any, ...], limit: Limit | None, now: float
) -> int:
    if limit is None:
        return 0
    sql = numbered(f"SELECT COUNT(*) FROM claims WHERE {where} AND claimed_at > ?")
    row = await tx.fetchrow(sql, *args, now - limit.window_s)
    return int(row[0]) if row else 0


async def _claim_facts(tx: Tx, r: ClaimRequest, now: float) -> ClaimFacts:
    mode = int(r.dry_run)
    already = await tx.fetchrow(
        "SELECT 1 FROM claims WHERE episode_id = $1 AND rule = $2 AND action = $3",
        r.episode_id, r.rule, r.action,
    )  # fmt: skip
    last = await tx.fetchrow(
        "SELECT MAX(claimed_at) FROM claims WHERE target = $1 AND dry_run = $2", r.target, mode
    )
    since = last[0] if last else None
    counts = {
        name: await _window(tx, where, args, limit, now)
        for name, where, args, limit in claim_windows(r)
    }
    return ClaimFacts(
        already_claimed=already is not None,
        seconds_since_target_claim=None if since is None else now - since,
        **counts,
    )


class PostgresStore:
    def __init__(self, dsn: str, instance_id: str) -> None:
        self.dsn = dsn
        self._db = StateDatabase(dsn)
        self._instance = instance_id

    async def open(self) -> None:
        await self._db.open()
        async with self._db.transaction() as tx:
            await tx.lock(LOCK_MIGRATE)
            await tx.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)"
            )
            done = {row[0] for row in await tx.fetch("SELECT version FROM schema_migrations")}
            for version, script in enumerate(MIGRATIONS, start=1):
                if version not in done:
                    await tx.execute(script)
                    await tx.execute("INSERT INTO schema_migrations VALUES ($1)", version)

    async def close(self) -> None:
        await self._db.close()

    async def ping(self) -> bool:
        try:
            async with self._db.transaction() as tx:
                await tx.fetchrow("SELECT 1")
        except StoreUnavailable:
            return False
        return True

    async def journal_append(self, body: bytes, received_at: datetime) -> int:
        async with self._db.transaction() as tx:
            row = await tx.fetchrow(
                "INSERT INTO journal (owner, received_at, body) VALUES ($1, $2, $3) RETURNING id",
                self._instance, ts(received_at), lz4.frame.compress(body),
            )  # fmt: skip
        assert row is not None
        return int(row[0])

    async def journal_pending(self) -> list[int]:
        async with self._db.transaction() as tx:
            rows = await tx.fetch(
                "SELECT id FROM journal WHERE owner = $1 AND done_at IS NULL ORDER BY id",
                self._instance,
            )
        return [int(row[0]) for row in rows]

    async def journal_entry(self, journal_id: int) -> JournalEntry:
        async with self._db.transaction() as tx:
            row = await tx.fetchrow(
                "SELECT id, received_at, body FROM journal WHERE id = $1", journal_id
            )
        if row is None:
            raise StoreUnavailable(f"journal entry {journal_id} is missing")
        return JournalEntry(int(row[0]), dt(row[1]), lz4.frame.decompress(row[2]))

    async def journal_done(self, journal_id: int, now: datetime) -> None:
        async with self._db.transaction() as tx:
            await tx.execute("UPDATE journal SET done_at = $1 WHERE id = $2", ts(now), journal_id)

    async def journal_prune(self, done_before: datetime) -> int:
        async with self._db.transaction() as tx:
            return await tx.execute(
                "DELETE FROM journal WHERE done_at IS NOT NULL AND done_at < $1", ts(done_before)
            )

    async def observe(
        self, sightings: Sequence[Sighting], now: datetime, grace_s: float
    ) -> list[Observation]:
        if not sightings:
            return []
        at = ts(now)
        async with self._db.transaction() as tx:
            await tx.lock(LOCK_EPISODES)
            rows = await tx.fetch(
                "SELECT id, fingerprint, opened_at, closed_at, decided_at FROM episodes"
                " WHERE id IN (SELECT MAX(id) FROM episodes WHERE fingerprint = ANY($1::text[])"
                " GROUP BY fingerprint)",
                sorted({s.fingerprint for s in sightings}),
            )
            latest = {r[1]: Episode(int(r[0]), r[1], r[2], r[3], r[4] is not None) for r in rows}
            observed, joined = [], []
            for s in sightings:
                episode = latest.get(s.fingerprint)
                event = next_event(episode, s.status, at, grace_s)
                if event in (EpisodeEvent.OPENED, EpisodeEvent.RESOLVED_UNSEEN):
                    closed_at = at if event is EpisodeEvent.RESOLVED_UNSEEN else None
                    row = await tx.fetchrow(
                        "INSERT INTO episodes (fingerprint, alertname, opened_at, last_seen_at,"
                        " closed_at) VALUES ($1, $2, $3, $3, $4) RETURNING id",
                        s.fingerprint, s.alertname, at, closed_at,
                    )  # fmt: skip
                    assert row is not None
                    episode = Episode(int(row[0]), s.fingerprint, at, closed_at, False)
                elif event in (EpisodeEvent.REOPENED, EpisodeEvent.CLOSED):
                    assert episode is not None
                    closed_at = at if event is EpisodeEvent.CLOSED else None
                    await tx.execute(
                        "UPDATE episodes SET closed_at = $1, last_seen_at = $2 WHERE id = $3",
                        closed_at, at, episode.id,
                    )  # fmt: skip
                    episode = replace(episode, closed_at_s=closed_at)
                elif event is EpisodeEvent.JOINED:
                    assert episode is not None
                    joined.append((at, episode.id))
                assert episode is not None
                latest[s.fingerprint] = episode
                observed.append(Observation(episode, event))
            await tx.executemany("UPDATE episodes SET last_seen_at = $1 WHERE id = $2", joined)
        return observed

    async def mark_decided(self, episode_id: int, now: datetime) -> bool:
        async with self._db.transaction() as tx:
            touched = await tx.execute(
                "UPDATE episodes SET decided_at = $1 WHERE id = $2 AND decided_at IS NULL",
                ts(now), episode_id,
            )  # fmt: skip
        return touched == 1

    async def claim(self, request: ClaimRequest, now: datetime) -> ClaimResult:
        at = ts(now)
        async with self._db.transaction() as tx:
            await tx.lock(LOCK_CLAIMS)
            verdict = claim_guards.decide(request, await _claim_facts(tx, request, at))
            if not verdict.allowed:
                return ClaimResult(verdict, None)
            r = request
            row = await tx.fetchrow(
                "INSERT INTO claims (episode_id, rule, action, action_kind, target, destructive,"
                " dry_run, claimed_at, owner) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                " RETURNING id",
                r.episode_id, r.rule, r.action, r.action_kind, r.target, int(r.destructive),
                int(r.dry_run), at, self._instance,
            )  # fmt: skip
        assert row is not None
        return ClaimResult(verdict, int(row[0]))

    async def claim_intent(
        self, claim_id: int, intent: Mapping[str, Any], exclusive: str | None
    ) -> IntentAnswer:
        async with self._db.transaction() as tx:
            written = await tx.execute(
                "UPDATE claims SET intent = $1 WHERE id = $2 AND outcome IS NULL AND owner = $3",
                json.dumps(dict(intent), default=str), claim_id, self._instance,
            )  # fmt: skip
            if written != 1:
                return "lost"
            if exclusive is not None:
                held = await tx.execute(
                    "INSERT INTO inflight (key, claim_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    exclusive, claim_id,
                )  # fmt: skip
                if held != 1:
                    await tx.execute("UPDATE claims SET intent = NULL WHERE id = $1", claim_id)
                    return "busy"
        return "recorded"

    async def record_outcome(self, claim_id: int, outcome: str, now: datetime) -> bool:
        async with self._db.transaction() as tx:
            await tx.execute("DELETE FROM inflight WHERE claim_id = $1", claim_id)
            written = await tx.execute(
                "UPDATE claims SET outcome = $1, outcome_at = $2 WHERE id = $3"
                " AND outcome IS NULL",
                outcome, ts(now), claim_id,
            )  # fmt: skip
        return written == 1

    async def unfinished_claims(self) -> list[UnfinishedClaim]:
        async with self._db.transaction() as tx:
            rows = await tx.fetch(UNFINISHED_SQL.format(also=""), self._instance)
        return [unfinished_claim(r) for r in rows]

    async def heartbeat(self, now: datetime) -> None:
        async with self._db.transaction() as tx:
            await tx.execute(
                "INSERT INTO instances (id, heartbeat_at) VALUES ($1, $2)"
                " ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                self._instance, ts(now),
            )  # fmt: skip

    async def take_over(self, now: datetime, lease_s: float) -> TakenOver:
        async with self._db.transaction() as tx:
            await tx.lock(LOCK_TAKEOVER)
            rows = await tx.fetch(EXPIRED_OWNERS_SQL, ts(now) - lease_s, self._instance)
            expired = [r[0] for r in rows]
            if not expired:
                return TakenOver([], [])
            journal = await tx.fetch(
                "UPDATE journal SET owner = $1 WHERE owner = ANY($2::text[])"
                " AND done_at IS NULL RETURNING id",
                self._instance, expired,
            )  # fmt: skip
            claimed = await tx.fetch(
                "UPDATE claims SET owner = $1 WHERE owner = ANY($2::text[])"
                " AND outcome IS NULL RETURNING id",
                self._instance, expired,
            )  # fmt: skip
            claims = await tx.fetch(
                UNFINISHED_SQL.format(also="AND c.id = ANY($2::bigint[])"),
                self._instance, [r[0] for r in claimed],
            )  # fmt: skip
            await tx.execute("DELETE FROM instances WHERE id = ANY($1::text[])", expired)
        return TakenOver(sorted(int(r[0]) for r in journal), [unfinished_claim(r) for r in claims])

    async def storm_add(self, target: str, now: datetime, window_s: float) -> int:
        at = ts(now)
        async with self._db.transaction() as tx:
            # A sighting, not a decision: no need to wait for the WAL flush.
            await tx.execute("SET LOCAL synchronous_commit = off")
            await tx.execute("DELETE FROM storm_targets WHERE seen_at < $1", at - window_s)
            await tx.execute(
                "INSERT INTO storm_targets (target, seen_at) VALUES ($1, $2)"
                " ON CONFLICT (target) DO UPDATE SET seen_at = excluded.seen_at",
                target, at,
            )  # fmt: skip
            row = await tx.fetchrow("SELECT COUNT(*) FROM storm_targets")
        return int(row[0]) if row else 0

    async def undo_plan(
        self, claim_id: int, target: str, state: Mapping[str, Any], after_s: float
    ) -> None:
        async with self._db.transaction() as tx:
            await tx.execute(
                "INSERT INTO undos (claim_id, target, state, after_s) VALUES ($1, $2, $3, $4)",
                claim_id, target, json.dumps(dict(state)), after_s,
            )  # fmt: skip

    async def undo_arm(self, episode_ids: Sequence[int], closed_at: datetime) -> None:
        async with self._db.transaction() as tx:
            await tx.executemany(
                "UPDATE undos SET due_at = $1 + after_s WHERE done_at IS NULL AND due_at IS NULL"
                " AND claim_id IN (SELECT id FROM claims WHERE episode_id = $2)",
                [(ts(closed_at), e) for e in episode_ids],
            )

    async def undo_disarm(self, episode_ids: Sequence[int]) -> None:
        async with self._db.transaction() as tx:
            await tx.executemany(
                "UPDATE undos SET due_at = NULL WHERE done_at IS NULL"
                " AND claim_id IN (SELECT id FROM claims WHERE episode_id = $1)",
                [(e,) for e in episode_ids],
            )

    async def _undos(self, sql: str, now: datetime) -> list[Undo]:
        async with self._db.transaction() as tx:
            rows = await tx.fetch(sql, ts(now))
        return [
            Undo(int(r[0]), int(r[1]), r[2], r[3], r[4], r[5], json.loads(r[6]) if r[6] else {})
            for r in rows
        ]

    async def undo_due(self, now: datetime) -> list[Undo]:
        return await self._undos(
            "SELECT u.id, c.episode_id, e.fingerprint, c.rule, c.action, u.target, u.state"
            " FROM undos u JOIN claims c ON c.id = u.claim_id"
            " JOIN episodes e ON e.id = c.episode_id"
            " WHERE u.done_at IS NULL AND u.due_at <= $1 ORDER BY u.due_at",
            now,
        )

    async def undo_next(
        self, undo_id: int, state: Mapping[str, Any] | None, due_at: datetime | None
    ) -> None:
        async with self._db.transaction() as tx:
            if state is None or due_at is None:
                await tx.execute("UPDATE undos SET done_at = due_at WHERE id = $1", undo_id)
            else:
                await tx.execute(
                    "UPDATE undos SET state = $1, due_at = $2 WHERE id = $3",
                    json.dumps(dict(state)), ts(due_at), undo_id,
                )  # fmt: skip

    async def followup_plan(self, claim_id: int, due_at: datetime) -> None:
        async with self._db.transaction() as tx:
            await tx.execute(
                "INSERT INTO followups (claim_id, due_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                claim_id, ts(due_at),
            )  # fmt: skip

    async def followup_due(self, now: datetime) -> list[Undo]:
        return await self._undos(
            "SELECT f.id, c.episode_id, e.fingerprint, c.rule, c.action, c.target, NULL"
            " FROM followups f JOIN claims c ON c.id = f.claim_id"
            " JOIN episodes e ON e.id = c.episode_id"
            " WHERE f.done_at IS NULL AND f.due_at <= $1 ORDER BY f.due_at",
            now,
        )

    async def followup_done(self, followup_id: int, now: datetime) -> None:
        async with self._db.transaction() as tx:
            await tx.execute(
                "UPDATE followups SET done_at = $1 WHERE id = $2", ts(now), followup_id
            )

    async def audit(
        self,
        records: Sequence[AuditRecord],
        decided_episodes: Sequence[int] = (),
        now: datetime | None = None,
        outbox: Sequence[OutboxItem] = (),
        resolved_episodes: Sequence[int] = (),
    ) -> None:
        at = ts(now) if now else 0.0
        async with self._db.transaction() as tx:
            await tx.executemany(
                numbered(f"INSERT INTO audit ({AUDIT_COLUMNS}) VALUES ({', '.join('?' * 15)})"),
                [audit_row(r) for r in records],
            )
            if now is not None:
                await tx.executemany(
                    "UPDATE episodes SET decided_at = $1 WHERE id = $2 AND decided_at IS NULL",
                    [(at, e) for e in decided_episodes],
                )
            await tx.executemany(
                numbered(
                    f"INSERT INTO outbox ({OUTBOX_COLUMNS}) VALUES ({', '.join('?' * 11)})"
                    " ON CONFLICT DO NOTHING"
                ),
                [outbox_row(item, at) for item in outbox],
            )
            await tx.executemany(RESOLVE_SQL, [(at, at, e) for e in resolved_episodes])

    async def outbox_due(self, now: datetime, limit: int) -> list[OutboxItem]:
        async with self._db.transaction() as tx:
            rows = await tx.fetch(
                f"SELECT id, attempts, created_at, {OUTBOX_COLUMNS} FROM outbox"
                " WHERE delivered_at IS NULL AND dropped_at IS NULL AND due_at <= $1"
                " ORDER BY due_at, id LIMIT $2",
                ts(now), limit,
            )  # fmt: skip
        return [outbox_item(row) for row in rows]

    async def outbox_done(
        self, item_id: int, now: datetime, delivered: bool, error: str = ""
    ) -> None:
        column = "delivered_at" if delivered else "dropped_at"
        async with self._db.transaction() as tx:
            await tx.execute(
                f"UPDATE outbox SET {column} = $1, attempts = attempts + 1, last_error = $2"
                " WHERE id = $3",
                ts(now), error, item_id,
            )  # fmt: skip

    async def outbox_retry(self, item_id: int, due_at: datetime, error: str) -> None:
        async with self._db.transaction() as tx:
            await tx.execute(
                "UPDATE outbox SET due_at = $1, attempts = attempts + 1, last_error = $2"
                " WHERE id = $3",
                ts(due_at), error, item_id,
            )  # fmt: skip

    async def outbox_drop_pending_triggers(self, episode_id: int, now: datetime) -> int:
        async with self._db.transaction() as tx:
            return await tx.execute(
                "UPDATE outbox SET dropped_at = $1, last_error = 'the episode resolved first'"
                " WHERE episode_id = $2 AND event = 'trigger'"
                " AND delivered_at IS NULL AND dropped_at IS NULL",
                ts(now), episode_id,
            )  # fmt: skip

    async def outbox_was_triggered(self, dedup_key: str, sink: str) -> bool:
        async with self._db.transaction() as tx:
            row = await tx.fetchrow(
                "SELECT 1 FROM outbox WHERE dedup_key = $1 AND sink = $2 AND event = 'trigger'"
                " AND delivered_at IS NOT NULL LIMIT 1",
                dedup_key, sink,
            )  # fmt: skip
        return row is not None

    async def episode_is_open(self, episode_id: int) -> bool:
        async with self._db.transaction() as tx:
            row = await tx.fetchrow(
                "SELECT closed_at IS NULL FROM episodes WHERE id = $1", episode_id
            )
        return bool(row and row[0])

    async def decisions(self, query: AuditQuery) -> list[AuditRecord]:
        sql, args = query_sql(query)
        async with self._db.transaction() as tx:
            rows = await tx.fetch(numbered(sql), *args)
        return [audit_record(row) for row in rows]
