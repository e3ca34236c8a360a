"""Version 1: the schema each backend had before versions were kept, as it was.

It had drifted: only SQLite had the ``undos_due`` index; only PostgreSQL had owners, the
lease (``instances``) and the storm window (``storm_targets``). Each backend counted its own
steps towards it (SQLite in ``PRAGMA user_version``, PostgreSQL in ``schema_migrations``);
a database one step short of version 1 takes that step here. Both markers stay as they are,
so the code before versions still opens a migrated store (``v2`` only adds to it).
"""

from __future__ import annotations

from dataclasses import dataclass

from remediator.store.program import Program, script, value
from remediator.store.schema import Dialect
from remediator.store.sql import Statement

VERSION_TABLE = "CREATE TABLE schema_version (version INTEGER PRIMARY KEY)"


@dataclass(frozen=True, slots=True)
class Legacy:
    marker: Statement
    """The backend's own count of steps taken."""
    last: int
    """The count at version 1."""
    step: str
    """The last step towards version 1, for a database still short of it."""


LEGACY = {
    "sqlite": Legacy(
        Statement("PRAGMA user_version"),
        1,
        """
        ALTER TABLE claims ADD COLUMN intent TEXT;
        CREATE TABLE inflight (key TEXT PRIMARY KEY, claim_id INTEGER NOT NULL)
        """,
    ),
    "postgres": Legacy(
        Statement("SELECT MAX(version) FROM schema_migrations"),
        2,
        """
        ALTER TABLE claims ADD COLUMN owner TEXT NOT NULL DEFAULT '';
        ALTER TABLE claims ADD COLUMN intent TEXT;
        CREATE INDEX claims_unfinished ON claims (owner, id) WHERE outcome IS NULL;
        CREATE TABLE inflight (key TEXT PRIMARY KEY, claim_id BIGINT NOT NULL);
        CREATE TABLE storm_targets (target TEXT PRIMARY KEY, seen_at DOUBLE PRECISION NOT NULL);
        CREATE TABLE instances (id TEXT PRIMARY KEY, heartbeat_at DOUBLE PRECISION NOT NULL);
        INSERT INTO schema_migrations VALUES (2)
        """,
    ),
}


def recognise(dialect: Dialect) -> Program[None]:
    """Make a database from before versions a version-1 one that says so."""
    legacy = LEGACY[dialect.name]
    if int((yield from value(legacy.marker, {})) or 0) < legacy.last:
        yield from script(legacy.step)
        if dialect.name == "sqlite":
            yield from script(f"PRAGMA user_version = {legacy.last}")
    yield from script(VERSION_TABLE)
