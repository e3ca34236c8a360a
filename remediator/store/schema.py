"""The state schema, defined once for both backends: what a new database is created with.

Tables and indexes are written here in one text; the few words the dialects spell apart (a
key column, a reference to one, a float, bytes) are filled in per dialect. The owner columns,
the lease (``instances``) and the storm window (``storm_targets``) exist on SQLite too,
though one process owns a SQLite file (every row is owner ``''``) and it keeps the storm
window in memory: one schema means one set of statements. ``migrations`` brings databases
created before this schema to it; ``VERSION`` is the version this text is.
"""

from __future__ import annotations

from dataclasses import dataclass

VERSION = 7


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    key: str
    ref: str
    real: str
    bytes: str
    #: Answers whether a table (``:name``) exists in the store's schema.
    table_exists: str


SQLITE = Dialect(
    "sqlite",
    key="INTEGER PRIMARY KEY",
    ref="INTEGER",
    real="REAL",
    bytes="BLOB",
    table_exists="SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name",
)
POSTGRES = Dialect(
    "postgres",
    key="BIGSERIAL PRIMARY KEY",
    ref="BIGINT",
    real="DOUBLE PRECISION",
    bytes="BYTEA",
    table_exists=(
        "SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = :name"
    ),
)

SCHEMA = """
CREATE TABLE journal (
    id {key},
    owner TEXT NOT NULL DEFAULT '',
    received_at {real} NOT NULL,
    body {bytes} NOT NULL,
    done_at {real}
);
CREATE INDEX journal_pending ON journal (owner, id) WHERE done_at IS NULL;
CREATE TABLE episodes (
    id {key},
    fingerprint TEXT NOT NULL,
    alertname TEXT NOT NULL,
    opened_at {real} NOT NULL,
    last_seen_at {real} NOT NULL,
    closed_at {real},
    decided_at {real}
);
CREATE INDEX episodes_by_fingerprint ON episodes (fingerprint, id);
CREATE TABLE claims (
    id {key},
    episode_id {ref} NOT NULL REFERENCES episodes (id),
    rule TEXT NOT NULL,
    action TEXT NOT NULL,
    action_kind TEXT NOT NULL,
    target TEXT NOT NULL,
    destructive INTEGER NOT NULL,
    dry_run INTEGER NOT NULL,
    claimed_at {real} NOT NULL,
    outcome TEXT,
    outcome_at {real},
    owner TEXT NOT NULL DEFAULT '',
    intent TEXT,
    job TEXT,
    UNIQUE (episode_id, rule, action)
);
CREATE INDEX claims_by_target ON claims (target, dry_run, claimed_at);
CREATE INDEX claims_by_time ON claims (claimed_at);
CREATE INDEX claims_unfinished ON claims (owner, id) WHERE outcome IS NULL;
CREATE TABLE inflight (key TEXT PRIMARY KEY, claim_id {ref} NOT NULL);
CREATE TABLE undos (
    id {key},
    claim_id {ref} NOT NULL REFERENCES claims (id),
    target TEXT NOT NULL,
    state TEXT,
    after_s {real} NOT NULL,
    due_at {real},
    done_at {real}
);
CREATE INDEX undos_due ON undos (due_at) WHERE done_at IS NULL;
CREATE INDEX undos_by_claim ON undos (claim_id);
CREATE TABLE followups (
    id {key},
    claim_id {ref} NOT NULL UNIQUE REFERENCES claims (id),
    due_at {real} NOT NULL,
    done_at {real}
);
CREATE TABLE outbox (
    id {key},
    episode_id {ref} NOT NULL,
    dedup_key TEXT NOT NULL,
    sink TEXT NOT NULL,
    event TEXT NOT NULL,
    tier INTEGER NOT NULL,
    severity TEXT NOT NULL,
    policy TEXT NOT NULL,
    summary TEXT NOT NULL,
    details TEXT NOT NULL,
    created_at {real} NOT NULL,
    due_at {real} NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    delivered_at {real},
    dropped_at {real},
    last_error TEXT NOT NULL DEFAULT '',
    topic TEXT NOT NULL DEFAULT '',
    reference TEXT,
    note TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX outbox_once ON outbox (dedup_key, sink, event, tier, topic);
CREATE INDEX outbox_by_episode ON outbox (episode_id);
CREATE TABLE incident_members (
    dedup_key TEXT NOT NULL,
    episode_id {ref} NOT NULL,
    joined_at {real} NOT NULL,
    PRIMARY KEY (dedup_key, episode_id)
);
CREATE INDEX incident_members_by_episode ON incident_members (episode_id);
CREATE TABLE acks (
    id {key},
    dedup_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    by_whom TEXT NOT NULL,
    source TEXT NOT NULL,
    url TEXT NOT NULL,
    at {real} NOT NULL
);
CREATE INDEX acks_by_key ON acks (dedup_key);
CREATE INDEX outbox_due ON outbox (due_at) WHERE delivered_at IS NULL AND dropped_at IS NULL;
CREATE TABLE audit (
    id {key},
    at {real} NOT NULL,
    step TEXT NOT NULL,
    outcome TEXT NOT NULL,
    sentence TEXT NOT NULL,
    journal_id {ref},
    episode_id {ref},
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
CREATE TABLE storm_targets (target TEXT PRIMARY KEY, seen_at {real} NOT NULL);
CREATE TABLE instances (id TEXT PRIMARY KEY, heartbeat_at {real} NOT NULL);
CREATE TABLE archive_cursors (
    stream TEXT PRIMARY KEY,
    archived_to {ref} NOT NULL,
    pending_from {ref},
    pending_to {ref}
);
CREATE TABLE evidence_queue (
    key TEXT PRIMARY KEY,
    body {bytes} NOT NULL,
    queued_at {real} NOT NULL,
    due_at {real} NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX evidence_queue_due ON evidence_queue (due_at);
CREATE TABLE approvals (
    claim_id {ref} PRIMARY KEY REFERENCES claims (id),
    requested_at {real} NOT NULL,
    due_at {real} NOT NULL,
    needed INTEGER NOT NULL,
    approvers TEXT NOT NULL,
    initiator TEXT NOT NULL DEFAULT '',
    on_timeout TEXT NOT NULL,
    state TEXT NOT NULL,
    decided_at {real},
    decided_by TEXT NOT NULL DEFAULT ''
);
CREATE INDEX approvals_pending ON approvals (due_at) WHERE state = 'pending';
CREATE TABLE approval_votes (
    claim_id {ref} NOT NULL REFERENCES approvals (claim_id),
    by_whom TEXT NOT NULL,
    vote TEXT NOT NULL,
    source TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    at {real} NOT NULL,
    PRIMARY KEY (claim_id, by_whom)
);
"""


def ddl(dialect: Dialect) -> str:
    """The schema in ``dialect``'s words."""
    return SCHEMA.format(key=dialect.key, ref=dialect.ref, real=dialect.real, bytes=dialect.bytes)
