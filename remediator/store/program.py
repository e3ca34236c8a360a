"""The seam between what the store does and the database it does it on.

A store operation is a *program*: a generator that yields database steps (``Op``) and is
sent each step's answer, so its logic (the episode state machine, the claim guards, the
takeover) is written once. SQLite runs a whole program on its connection's thread, one
hop from the event loop per operation; PostgreSQL awaits each step inside one transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, TypeVar, cast

from remediator.store.sql import Statement

T = TypeVar("T")
Row: TypeAlias = tuple[Any, ...]
Params: TypeAlias = Mapping[str, Any]
Kind = Literal["rows", "count", "many", "lock", "script"]

#: Advisory lock keys: PostgreSQL serialises replicas' transactions on them; on SQLite a
#: write transaction (``BEGIN IMMEDIATE``) holds the whole file, so they are moot there.
LOCK_MIGRATE = 7_100_001
LOCK_EPISODES = 7_100_002
LOCK_CLAIMS = 7_100_003
LOCK_TAKEOVER = 7_100_004


@dataclass(frozen=True, slots=True)
class Op:
    """One step: ``rows`` of a statement, the ``count`` of rows it touched, ``many`` runs
    of it, an advisory ``lock``, or a ``script`` of DDL statements (``;``-separated)."""

    kind: Kind
    statement: Statement = field(default_factory=lambda: Statement(""))
    params: Params = field(default_factory=dict)
    batch: Sequence[Params] = ()
    key: int = 0


Program: TypeAlias = Generator[Op, Any, T]


def rows(statement: Statement, params: Params) -> Program[list[Row]]:
    return cast(list[Row], (yield Op("rows", statement, params)))


def row(statement: Statement, params: Params) -> Program[Row | None]:
    found = yield from rows(statement, params)
    return found[0] if found else None


def value(statement: Statement, params: Params) -> Program[Any]:
    """The first column of the first row; None without one."""
    found = yield from row(statement, params)
    return None if found is None else found[0]


def count(statement: Statement, params: Params) -> Program[int]:
    return cast(int, (yield Op("count", statement, params)))


def many(statement: Statement, batch: Sequence[Params]) -> Program[None]:
    if batch:
        yield Op("many", statement, batch=batch)


def lock(key: int) -> Program[None]:
    yield Op("lock", key=key)


def script(text: str) -> Program[None]:
    yield Op("script", Statement(text))


def drive(program: Program[T], answer: Callable[[Op], Any]) -> T:
    """Run ``program`` to its end, answering each step with ``answer`` (blocking)."""
    reply: Any = None
    try:
        while True:
            reply = answer(program.send(reply))
    except StopIteration as done:
        return cast(T, done.value)


async def drive_async(program: Program[T], answer: Callable[[Op], Awaitable[Any]]) -> T:
    """Run ``program`` to its end, awaiting ``answer`` for each step."""
    reply: Any = None
    try:
        while True:
            reply = await answer(program.send(reply))
    except StopIteration as done:
        return cast(T, done.value)


def statements(text: str) -> list[str]:
    """A DDL script's statements; our scripts keep ``;`` out of comments and literals."""
    return [s.strip() for s in text.split(";") if s.strip()]
