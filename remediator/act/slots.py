"""The runner's bound on actions running at once (``policy.max_concurrent_actions``), as a
semaphore whose size a rule reload may change while actions hold it: a smaller bound lets no
new action start until enough running ones end; none is interrupted."""

from __future__ import annotations

import asyncio
from types import TracebackType


class Slots:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used = 0
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def limit(self) -> int:
        return self._limit

    def resize(self, limit: int) -> None:
        self._limit = limit
        self._wake()

    def _wake(self) -> None:
        """Every waiter looks again: at most one per target waits here (its lock is taken
        first), so a storm's few hundred cost little."""
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def __aenter__(self) -> None:
        while self._used >= self._limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                self._waiters.remove(waiter)
        self._used += 1

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._used -= 1
        self._wake()
