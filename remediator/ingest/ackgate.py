"""The ack path goes first: webhook requests in flight, and a quiet moment to wait for.

Acks and the journal worker share one event loop. A slow ack makes Alertmanager HA peers
deliver twice, so between chunks of alerts the worker waits for no request to be in
flight, but never longer than a bound, so decisions still progress under constant load.
"""

from __future__ import annotations

import asyncio

#: No request started for this long (seconds) counts as quiet. Requests queued in the
#: kernel are invisible until read, so "none in flight" alone says little under load.
SETTLE_S = 0.01
POLL_S = 0.005


class AckGate:
    def __init__(self) -> None:
        self.in_flight = 0
        self._last_enter = -1.0

    def enter(self) -> None:
        self.in_flight += 1
        self._last_enter = asyncio.get_running_loop().time()

    def leave(self) -> None:
        self.in_flight -= 1

    def _busy(self, now: float) -> bool:
        return self.in_flight > 0 or now - self._last_enter < SETTLE_S

    async def quiet(self, max_wait_s: float) -> None:
        """Return once the webhook is quiet, or after ``max_wait_s`` seconds at most."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait_s
        # Polling, not an Event: quiet is the absence of new requests over a short time.
        while self._busy(loop.time()) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(POLL_S)
