"""A virtual clock for the offline engine (``engine``): time moves only when the engine
moves it, so a case's ``at: 10m`` costs no waiting. Implements ``core.clock.Clock``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
"""Where a test case's ``at: 0s`` falls: any fixed time would do; a fixed one keeps
failure texts the same from run to run."""


class VirtualClock:
    def __init__(self, start: datetime = EPOCH) -> None:
        self.start = start
        self._now = start

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return (self._now - self.start).total_seconds()

    def set(self, when: datetime) -> None:
        """Move to ``when``; never back (a stream out of order keeps the latest time)."""
        self._now = max(self._now, when)

    def at(self, offset_s: float) -> datetime:
        """The time ``offset_s`` seconds after the start."""
        return self.start + timedelta(seconds=offset_s)
