"""SQLite backend of the ``Store`` contract: the embedded default, one replica, a file.

WAL mode with ``synchronous=FULL``: a commit is on disk before the webhook acks. Each
connection lives on its own single thread, so blocking SQLite calls never stall the
event loop, and a whole operation (``program``) runs there in one hop; the journal has a
connection of its own so acks never queue behind the pipeline's writes. Atomic programs
run in ``BEGIN IMMEDIATE``: the write lock is taken first, so a transaction that read
cannot find the file changed under it; advisory locks are moot, the file is locked whole.
One process writes a file: ``open`` takes its lock (``file_lock``) before anything else.
The request bodies in ``journal`` are LZ4 frames: Alertmanager JSON shrinks ~13 times.
"""

from __future__ import annotations

import asyncio
import functools
import operator
import re
import sqlite3
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from remediator.core.errors import ConfigError, StoreRejected, StoreUnavailable
from remediator.guards.storm import TargetWindow
from remediator.store.contract import TakenOver
from remediator.store.file_lock import FileInUse, FileLock
from remediator.store.program import Op, Program, drive, statements
from remediator.store.rows import ts
from remediator.store.schema import SQLITE
from remediator.store.sql import Statement
from remediator.store.sqlstore import Lane, SqlStore

T = TypeVar("T")
#: What SQLite (or its Python binding) raises for a value it cannot keep: a lone surrogate,
#: an integer past 64 bits, a string past its size limit, a broken constraint. Permanent.
REFUSED_VALUES = (sqlite3.DataError, sqlite3.IntegrityError, UnicodeEncodeError, OverflowError)

#: Seconds a journal write waits for a lock before the webhook answers 503 (Alertmanager
#: retries 5xx). Short: a stalled ack makes HA peers deliver twice.
JOURNAL_BUSY_TIMEOUT_S = 2.0
#: Seconds the worker's statements wait for a lock; the worker retries after a failure.
WORK_BUSY_TIMEOUT_S = 10.0


NUMBERED = re.compile(r"\$(\d+)\b")


@functools.lru_cache(maxsize=256)
def _positional(statement: Statement) -> tuple[str, Callable[[Mapping[str, Any]], tuple[Any, ...]]]:
    """``statement`` with numbered placeholders (``?1`` …) and what turns a row's named
    parameters into a tuple: sqlite3 looks each name up per row otherwise, which doubles
    the cost of writing a batch of audit records."""
    text, names = statement.numbered()
    getter = operator.itemgetter(*names)
    row_of = getter if len(names) > 1 else (lambda row: (getter(row),))
    return NUMBERED.sub(r"?\1", text), row_of


def answer(db: sqlite3.Connection, op: Op) -> Any:
    """One step of a program, on ``db``."""
    if op.kind == "rows":
        return db.execute(op.statement.text, op.params).fetchall()
    if op.kind == "count":
        return db.execute(op.statement.text, op.params).rowcount
    if op.kind == "many":
        text, row_of = _positional(op.statement)
        db.executemany(text, map(row_of, op.batch))
    elif op.kind == "script":
        for statement in statements(op.statement.text):
            db.execute(statement)
    return None


def _transaction(db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    db.execute("BEGIN IMMEDIATE")
    try:
        result = fn(db)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return result


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


class SqliteStore(SqlStore):
    dialect = SQLITE

    def __init__(self, path: Path, *, reads_only: bool = False) -> None:
        self._path = path
        self._lock = FileLock(path)
        self._reads_only = reads_only
        self._lanes = {
            "journal": _Connection(path, "journal", JOURNAL_BUSY_TIMEOUT_S),
            "work": _Connection(path, "store", WORK_BUSY_TIMEOUT_S),
        }
        self._storm_windows: dict[float, TargetWindow] = {}

    async def _run(self, program: Program[T], lane: Lane, atomic: bool) -> T:
        def whole(db: sqlite3.Connection) -> T:
            return drive(program, lambda op: answer(db, op))

        if atomic:
            return await self._lanes[lane].run(lambda db: _transaction(db, whole))
        return await self._lanes[lane].run(whole)

    async def open(self) -> None:
        """Take the file's one-writer lock (``FileInUse`` when another store holds it),
        then migrate. A store that only reads holds the lock only to migrate, and neither
        migrates nor is refused while a writer holds the file: the writer has migrated it.
        A store that only reads opens a file that exists, or none (a mistyped ``--state``
        would otherwise read a new, empty store and say nothing)."""
        if self._reads_only and not self._path.is_file():
            raise ConfigError(
                f"there is no state file {self._path}: give the --state a serve writes"
            )
        self._path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except FileInUse:
            if self._reads_only:
                return
            raise
        try:
            await self.migrate()
        except BaseException:
            self._lock.release()  # a store that did not open holds nothing another waits for
            raise
        if self._reads_only:
            self._lock.release()

    async def close(self) -> None:
        for connection in self._lanes.values():
            await connection.close()
        self._lock.release()

    async def heartbeat(self, now: datetime) -> None:
        """One process owns the file: there is no one to take over from."""

    async def take_over(self, now: datetime, lease_s: float) -> TakenOver:
        return TakenOver([], [])

    async def storm_add(self, target: str, now: datetime, window_s: float) -> int:
        """In memory: one process owns the file, and the window is only ``window_s`` long
        (a transaction per alert would cost a disk flush each, in a storm of all times)."""
        window = self._storm_windows.setdefault(window_s, TargetWindow(window_s))
        return window.add(target, ts(now))

    async def storm_peek(self, target: str, now: datetime, window_s: float) -> int:
        window = self._storm_windows.setdefault(window_s, TargetWindow(window_s))
        return window.peek(target, ts(now))
