"""What deciding in a process of its own would give the acks, on this machine.

The issue's two ways to keep acks fast while the worker decides are strict scheduling
(built: ``ack_latency`` measures it) and a process split (not built). This scenario
measures what a split can give at best, with two ``remediator serve`` processes:

* process A only acks: one payload of 1000 alerts, decided once before the load, resent at
  10 payloads/s open loop (what it decides costs almost nothing), first alone;
* then A again, the same load, while process B is fed 10 payloads/s of 1000 new alerts and
  decides all the time (B plays the decision process of a split).

A's ack p99 alone and beside B, each against the bare aiohttp server's p99 in the same run,
and B's own (one process that acks and decides, as remediator is today) for comparison. If
A beside B is no better than B, a split would move the contention from one interpreter lock
to the CPUs, not remove it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
from contextlib import AbstractAsyncContextManager

import ack_latency as al
import ack_throughput as at
import decisions
from figures import Figure

SCENARIO = "process_split"
SECONDS, QUICK_SECONDS = 30, 1


async def _loads(n: int, quick: bool) -> tuple[al.Load, al.Load, al.Load]:
    """A alone, then A beside B: A's two loads and B's."""
    within = 20.0 if quick else 60.0
    resend = decisions.payload(0, al.ALERTS, prefix="resend")
    new_bodies = [decisions.payload(k, al.ALERTS, prefix="new") for k in range(n)]
    async with contextlib.AsyncExitStack() as stack:  # both start at once
        (a, _), (b, _) = await asyncio.gather(
            stack.enter_async_context(_started(resend)),
            stack.enter_async_context(_started(new_bodies[0])),
        )
        session = await stack.enter_async_context(al.unlimited())
        first = await at.post_timed(session, a, resend)
        if first.status != 200 or not await al.decided(session, at.base_url(a), al.ALERTS, within):
            raise decisions.BenchFailure("the payload to resend was not decided")
        alone = await al.open_loop(session, a, [resend], al.RATE, n)
        await al.decided(session, at.base_url(a), 0, within)
        beside, b_load = await asyncio.gather(
            al.open_loop(session, a, [resend], al.RATE, n),
            al.open_loop(session, b, new_bodies, al.RATE, n),
        )
    return alone, beside, b_load


def _started(body: bytes) -> AbstractAsyncContextManager[tuple[at.Target, int]]:
    return at.running(
        "remediator", at.bodies_of(body), at.UNBOUNDED_BACKLOG, stop_timeout_s=at.QUICK_STOP_S
    )


def _failed(name: str, exc: BaseException) -> list[Figure]:
    return [Figure(SCENARIO, name, math.nan, "ms", note=at.short_reason(str(exc)))]


def figures(bare: al.Load, alone: al.Load, beside: al.Load, both: al.Load) -> list[Figure]:
    rows = (
        ("A", "A acks only, alone", alone, al.P99_RATIO),
        ("A", "A acks only, while process B decides new alerts", beside, al.P99_RATIO),
        ("B", "B acks and decides new alerts (one process, as today)", both, None),
    )
    return [
        Figure(
            SCENARIO,
            f"ack p99, 10 payloads/s open loop: {label}",
            load.pct(99),
            "ms",
            bare.pct(99),
            "bare aiohttp",
            target,
            "max" if target else "info",
            f"{load.summary(name)}; {bare.summary('bare')}",
        )
        for name, label, load, target in rows
    ]


async def measure(quick: bool) -> list[Figure]:
    n = int(al.RATE * (QUICK_SECONDS if quick else SECONDS))
    try:
        bare = await al.bare_load(n)
    except at.StartError as exc:
        return _failed("bare server", exc)
    try:
        alone, beside, both = await _loads(n, quick)
    except (at.StartError, decisions.BenchFailure) as exc:
        return _failed("remediator", exc)
    return figures(bare, alone, beside, both)


if __name__ == "__main__":
    import run

    sys.exit(run.script_main(measure, __doc__))
