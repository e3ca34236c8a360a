"""Version 2: one schema on both backends (``schema.SCHEMA``).

SQLite gains the owner columns and their indexes, the lease and the storm-window tables;
PostgreSQL gains the ``undos_due`` index and a default owner for journal entries. Nothing
is rewritten: every row stays as it was, SQLite's owned by ``''`` (its one process).
"""

from __future__ import annotations

SCRIPTS = {
    "sqlite": """
        ALTER TABLE journal ADD COLUMN owner TEXT NOT NULL DEFAULT '';
        DROP INDEX journal_pending;
        CREATE INDEX journal_pending ON journal (owner, id) WHERE done_at IS NULL;
        ALTER TABLE claims ADD COLUMN owner TEXT NOT NULL DEFAULT '';
        CREATE INDEX claims_unfinished ON claims (owner, id) WHERE outcome IS NULL;
        CREATE TABLE storm_targets (target TEXT PRIMARY KEY, seen_at REAL NOT NULL);
        CREATE TABLE instances (id TEXT PRIMARY KEY, heartbeat_at REAL NOT NULL)
    """,
    "postgres": """
        ALTER TABLE journal ALTER COLUMN owner SET DEFAULT '';
        CREATE INDEX undos_due ON undos (due_at) WHERE done_at IS NULL
    """,
}
