"""Waiting for what a service does in the background, with a bound."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

WAIT_S = 20.0


async def eventually(
    check: Callable[[], bool | Awaitable[bool]],
    what: str,
    timeout_s: float = WAIT_S,
    poll_s: float = 0.1,
) -> None:
    """Return once ``check()`` (plain or awaitable) is true, looking every ``poll_s``;
    ``AssertionError`` naming ``what`` after the bound: a deadline, not a count of looks,
    so a loaded machine (the suite runs on several workers) is not mistaken for a miss."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        result = check()
        if result if isinstance(result, bool) else await result:
            return
        await asyncio.sleep(poll_s)
    raise AssertionError(f"timed out waiting for {what}")
