"""State: one ``Store`` contract (``contract``), one schema (``schema``, ``migrations``), each
statement once (``sql``, run by ``sqlstore``), and two backends that differ only in how they
connect, lock and number parameters. SQLite (a file, one replica) is the embedded default;
PostgreSQL is for several replicas sharing one truth."""

from __future__ import annotations

from remediator.config import POSTGRES_SCHEMES, Settings
from remediator.store.contract import Store


def open_store(settings: Settings, *, reads_only: bool = False) -> Store:
    """The backend the state URL names: ``sqlite:///…`` or ``postgresql://…``. A store that
    ``reads_only`` opens a SQLite file while a ``serve`` writes it (PostgreSQL: always)."""
    if settings.state_url.startswith(POSTGRES_SCHEMES):
        from remediator.store.postgres import PostgresStore

        return PostgresStore(settings.state_url, settings.instance_id)
    from remediator.store.sqlite import SqliteStore

    return SqliteStore(settings.sqlite_path, reads_only=reads_only)
