"""State: one ``Store`` contract (``base``), backends beside it. SQLite is the embedded default."""

from __future__ import annotations

from remediator.settings import Settings
from remediator.store.base import Store


def open_store(settings: Settings) -> Store:
    """The backend the state URL names. Only ``sqlite:///`` exists so far."""
    from remediator.store.sqlite import SqliteStore

    return SqliteStore(settings.sqlite_path)
