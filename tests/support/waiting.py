"""Waiting for what a service does in the background, with a bound."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

WAIT_S = 20.0


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = WAIT_S
) -> None:
    """Return once ``check()`` is true; ``AssertionError`` naming ``what`` after the bound."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
