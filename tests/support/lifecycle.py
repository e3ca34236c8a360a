"""``async with`` for the test servers and stand-ins: start on entry, stop on exit."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class StartStop:
    """A server a test runs for a block: subclasses give ``start`` and ``stop``."""

    async def start(self) -> object:
        """Serve; what it returns (a URL, for some) is the subclass's to say."""
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
