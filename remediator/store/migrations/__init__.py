"""Versioned migrations of the state schema, run by ``Store.open`` before anything else.

A ``schema_version`` table holds one row per version applied. A new database gets
``schema.ddl`` at ``schema.VERSION`` at once; an existing one without the table was made
before versions were kept and is version 1 (``v1``); each later version is a step of its
own module (``v2``…), one script per dialect. The whole run is one transaction under the
migration lock, so replicas starting together migrate once; a database newer than this
code is refused, since the statements here would not know its rows.
"""

from __future__ import annotations

from remediator.core.errors import StoreUnavailable
from remediator.store import schema
from remediator.store.migrations import v1, v2, v3, v4, v5, v6, v7
from remediator.store.program import LOCK_MIGRATE, Program, count, lock, script, value
from remediator.store.schema import Dialect
from remediator.store.sql import Statement

#: The script of each version after the first, by dialect name.
STEPS: dict[int, dict[str, str]] = {
    2: v2.SCRIPTS,
    3: v3.SCRIPTS,
    4: v4.SCRIPTS,
    5: v5.SCRIPTS,
    6: v6.SCRIPTS,
    7: v7.SCRIPTS,
}
assert max(STEPS) == schema.VERSION, "schema.VERSION is the last migration's"

CURRENT = Statement("SELECT MAX(version) FROM schema_version")
RECORD = Statement("INSERT INTO schema_version (version) VALUES (:version)")


def migrate(dialect: Dialect) -> Program[int]:
    """Bring the schema to ``schema.VERSION``; the version it was at (0: a new database)."""
    yield from lock(LOCK_MIGRATE)
    current = yield from version(dialect)
    if current > schema.VERSION:
        raise StoreUnavailable(
            f"the state store's schema is version {current}, newer than this remediator"
            f" knows ({schema.VERSION}): run the remediator that wrote it, or another store"
        )
    if current == 0:
        yield from script(schema.ddl(dialect))
        yield from script(v1.VERSION_TABLE)
        yield from count(RECORD, {"version": schema.VERSION})
        return current
    for number in range(current + 1, schema.VERSION + 1):
        yield from script(STEPS[number][dialect.name])
        yield from count(RECORD, {"version": number})
    return current


def version(dialect: Dialect) -> Program[int]:
    """The schema's version: 0 for an empty database, 1 for one from before versions."""
    exists = Statement(dialect.table_exists)
    if (yield from value(exists, {"name": "schema_version"})) is not None:
        return int((yield from value(CURRENT, {})) or 0)
    if (yield from value(exists, {"name": "journal"})) is None:
        return 0
    yield from v1.recognise(dialect)
    yield from count(RECORD, {"version": 1})
    return 1
