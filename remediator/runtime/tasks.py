"""Runtime: the background loops beside the HTTP server, supervised (after kopf's guarded
tasks in ``_cogs/aiokits/aiotasks.py``).

The app registers each loop by name in the order it starts them; ``stop`` stops them in the
reverse order. A loop handles the errors it expects itself (the state store away: try again
next period; the store logs the outage once, ``core/outage.py``). Any other exception is logged
once with its traceback, counted in ``remediator_loop_failures_total{loop}``, and the loop
starts again after a backoff that doubles from ``Backoff.first_s`` to ``Backoff.max_s`` and
starts over once the loop has run ``Backoff.healthy_s`` without failing. ``/readyz`` reads
``report`` and ``down``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from prometheus_client import Counter

from remediator.core.errors import StoreUnavailable

log = logging.getLogger(__name__)

LoopState = Literal["pending", "running", "restarting", "stopped"]
Run = Callable[[], Awaitable[None]]
Step = Callable[[], Awaitable[object]]
#: How much of an error's text ``/readyz`` shows.
ERROR_CHARS = 300
#: Errors a periodic loop expects and outlasts by trying again next period.
TEMPORARY: tuple[type[Exception], ...] = (StoreUnavailable,)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between restarts of a loop that keeps failing."""

    first_s: float = 1.0
    max_s: float = 60.0
    healthy_s: float = 60.0
    """A loop that ran this long before it failed starts over from ``first_s``."""

    def next_s(self, previous_s: float | None, ran_s: float) -> float:
        if previous_s is None or ran_s >= self.healthy_s:
            return self.first_s
        return min(previous_s * 2, self.max_s)


@dataclass(slots=True)
class Loop:
    """One supervised loop: ``run`` never returns on its own; ``after_stop`` releases what
    only it used, before the loops started ahead of it stop."""

    name: str
    run: Run
    required: bool = True
    after_stop: Step | None = None
    state: LoopState = "pending"
    restarts: int = 0
    last_error: str = ""
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def report(self) -> dict[str, object]:
        return {"state": self.state, "required": self.required, "restarts": self.restarts,
                "last_error": self.last_error or None}  # fmt: skip


def every(step: Step, period_s: float, *, wait_first: bool = False) -> Run:
    """A loop that runs ``step`` every ``period_s`` (after a first wait, if ``wait_first``),
    and outlasts the temporary errors in ``TEMPORARY`` by trying again next period."""

    async def run() -> None:
        if wait_first:
            await asyncio.sleep(period_s)
        while True:
            with contextlib.suppress(*TEMPORARY):  # the store tells the outage, once
                await step()
            await asyncio.sleep(period_s)

    return run


class Loops:
    """The supervisor: loops by name, in start order."""

    def __init__(self, failures: Counter, backoff: Backoff | None = None) -> None:
        self._failures = failures
        self._backoff = backoff or Backoff()
        self._loops: dict[str, Loop] = {}

    def forever(
        self, name: str, run: Run, *, required: bool = True, after_stop: Step | None = None
    ) -> None:
        """Register ``run``, a loop that never returns on its own, to start after the loops
        registered before it and stop before them."""
        if name in self._loops:
            raise ValueError(f"a loop named {name!r} is registered already")
        self._failures.labels(name)  # the series exists at zero from the start
        self._loops[name] = Loop(name, run, required, after_stop)

    def every(
        self,
        name: str,
        step: Step,
        period_s: float,
        *,
        wait_first: bool = False,
        required: bool = True,
        after_stop: Step | None = None,
    ) -> None:
        """Register a loop that runs ``step`` every ``period_s`` (see ``every``)."""
        run = every(step, period_s, wait_first=wait_first)
        self.forever(name, run, required=required, after_stop=after_stop)

    def __getitem__(self, name: str) -> Loop:
        return self._loops[name]

    @property
    def names(self) -> list[str]:
        return list(self._loops)

    def start(self) -> None:
        for loop in self._loops.values():
            if loop.task is None:
                loop.task = asyncio.create_task(self._guard(loop), name=f"loop:{loop.name}")

    async def stop(self) -> None:
        """Cancel each loop, the last started first, wait until it has ended, then run its
        ``after_stop``. A failing ``after_stop`` is logged; the loops before it still stop."""
        for loop in reversed(self._loops.values()):
            task, loop.task = loop.task, None
            if task is not None:
                task.cancel()
                await asyncio.wait([task])  # our own cancellation still propagates
                if not task.cancelled():
                    task.exception()  # retrieved: it was logged where it happened
            if loop.after_stop is not None:
                try:
                    await loop.after_stop()
                except Exception:
                    log.exception("releasing what loop %s used failed", loop.name)

    def report(self) -> dict[str, dict[str, object]]:
        return {name: loop.report() for name, loop in self._loops.items()}

    def down(self) -> list[str]:
        """Loops that hold readiness down: any that ended for good (nothing restarts it),
        and required ones that are not running."""
        return [
            loop.name
            for loop in self._loops.values()
            if loop.state == "stopped" or (loop.required and loop.state != "running")
        ]

    async def _guard(self, loop: Loop) -> None:
        delay_s: float | None = None
        clock = asyncio.get_running_loop()
        try:
            while True:
                loop.state = "running"
                started = clock.time()
                try:
                    await loop.run()
                    raise RuntimeError("the loop returned")  # a loop never ends on its own
                except Exception as exc:
                    delay_s = self._backoff.next_s(delay_s, clock.time() - started)
                    self._failed(loop, exc, delay_s)
                await asyncio.sleep(delay_s)
        finally:
            loop.state = "stopped"

    def _failed(self, loop: Loop, exc: Exception, delay_s: float) -> None:
        loop.state = "restarting"
        loop.restarts += 1
        loop.last_error = f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]
        self._failures.labels(loop.name).inc()
        log.error(
            "loop %s failed; restarting it in %g s",
            loop.name,
            delay_s,
            exc_info=exc,
            extra={"fields": {"loop": loop.name, "restart_in_s": delay_s,
                              "error": loop.last_error}},
        )  # fmt: skip
