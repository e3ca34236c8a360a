"""Ack latency under open-loop load, with and without the worker deciding.

Open loop: the client sends on a fixed schedule whatever the answers (10 payloads/s of 1000
alerts each, 60 s; 1 s in quick mode), each request on its own connection if the previous one
has not been answered, so queueing in the server shows as latency. Latency is client-side,
send to full answer; bodies are built before the clock starts, and the client's CPU and its
worst lateness against the schedule are reported, so a client-bound run is visible.

* bare: ``bare_server.py``, the same body every time;
* remediator, new alerts: every payload carries 1000 alerts never seen before, so the
  worker decides all the time (the backlog limit is set out of reach: acks, not 503s);
* remediator, resends: one payload, decided once before the load, then resent (almost
  nothing to decide).

Then the 2-alert probe: in the same remediator process (started fresh, before the two loads
above), 20 probes of 2 new alerts each, 50 ms apart, while idle; then one webhook of 10 000 new
alerts (2000 in quick mode) and a probe every 50 ms until the journal backlog is 0 and they
are all decided.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import sys
import time
from collections.abc import Sequence

import ack_throughput as at
import aiohttp
import decisions
from figures import Figure

SCENARIO = "ack_latency"
RATE = 10.0
ALERTS = 1000
P99_RATIO = 2.0
PROBE_EVERY_S = 0.05
IDLE_PROBES = 20
#: The webhook decided while probing: full mode, quick mode.
BIG, QUICK_BIG = 10_000, 2000
#: The client's own lateness against the schedule above which the run is suspect.
LATE_S = 0.02


@dataclasses.dataclass(frozen=True, slots=True)
class Load:
    """What one open-loop run saw."""

    latencies_s: list[float]
    failures: int
    first_failure: str
    client_cpu_pct: float
    late_s: float

    def pct(self, p: float) -> float:
        return at.percentile_ms(sorted(self.latencies_s), p) or math.nan

    def summary(self, name: str) -> str:
        text = (
            f"{name}: {len(self.latencies_s)} ok, p50 {self.pct(50):.1f}, p99 {self.pct(99):.1f},"
            f" max {self.pct(100):.1f} ms"
        )
        if not math.isnan(self.client_cpu_pct):
            text += f", client CPU {self.client_cpu_pct:.0f}%, late by up to"
            text += f" {self.late_s * 1000:.1f} ms"
        if self.failures:
            text += f", {self.failures} failed ({self.first_failure})"
        return text


async def open_loop(
    session: aiohttp.ClientSession, target: at.Target, bodies: Sequence[bytes], rate: float, n: int
) -> Load:
    """Send ``n`` requests at ``rate``/s on schedule (``bodies`` in turn), await all answers."""
    cpu0, start = time.process_time(), time.perf_counter() + 0.05
    tasks, late = [], 0.0
    for k in range(n):
        due = start + k / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        late = max(late, time.perf_counter() - due)
        body = bodies[k % len(bodies)]
        tasks.append(asyncio.create_task(at.post_timed(session, target, body)))
    answers = await asyncio.gather(*tasks)
    cpu_pct = 100 * (time.process_time() - cpu0) / (time.perf_counter() - start)
    bad = [a for a in answers if a.status != 200]
    first = f"{bad[0].status} {bad[0].error or bad[0].body[:80]!r}" if bad else ""
    ok = [a.seconds for a in answers if a.status == 200]
    return Load(ok, len(bad), first, cpu_pct, late)


def unlimited() -> aiohttp.ClientSession:
    """A session that opens as many connections as there are requests in flight."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


async def bare_load(n: int) -> Load:
    body = decisions.payload(0, ALERTS, prefix="bare")
    async with at.running("bare", at.bodies_of(body)) as (target, _), unlimited() as session:
        return await open_loop(session, target, [body], RATE, n)


async def decided(
    session: aiohttp.ClientSession, base: str, expected: float, within: float
) -> bool:
    """Wait until the backlog is 0 and ``expected`` alerts in all are decided."""
    done = decisions.caught_up(expected)
    return await decisions.wait_metrics(session, base, done, within, poll_s=0.1) is not None


@dataclasses.dataclass(frozen=True, slots=True)
class Probes:
    idle: Load
    busy: Load
    drained: bool
    seconds: float
    big_alerts: int


async def probes(
    session: aiohttp.ClientSession, target: at.Target, within_s: float, big_alerts: int
) -> Probes:
    """Probe latency idle, then while a ``big_alerts``-alert webhook is decided."""
    base = at.base_url(target)
    bodies = [decisions.payload(k, 2, prefix="probe") for k in range(int(within_s * 25) + 50)]
    idle = await open_loop(session, target, bodies[:IDLE_PROBES], 1 / PROBE_EVERY_S, IDLE_PROBES)
    if not await decided(session, base, IDLE_PROBES * 2, within_s):
        raise decisions.BenchFailure("the idle probes were not decided")
    before = decisions.decided_alerts(await decisions.read_metrics(session, base))
    big = await at.post_timed(session, target, decisions.payload(0, big_alerts, prefix="big"))
    if big.status != 200:
        raise decisions.BenchFailure(f"the {big_alerts}-alert webhook answered {big.status}")
    began = time.perf_counter()
    waiting = asyncio.create_task(decided(session, base, before + big_alerts, within_s))
    answers: list[asyncio.Task[at.Answer]] = []
    for body in bodies[IDLE_PROBES:]:
        answers.append(asyncio.create_task(at.post_timed(session, target, body)))
        await asyncio.wait([waiting], timeout=PROBE_EVERY_S)
        if waiting.done():
            break
    seconds = time.perf_counter() - began
    done = [await a for a in answers]
    ok = [a.seconds for a in done if a.status == 200]
    bad = [a for a in done if a.status != 200]
    busy = Load(ok, len(bad), bad[0].error if bad else "", math.nan, 0.0)
    return Probes(idle, busy, await waiting, seconds, big_alerts)


@dataclasses.dataclass(frozen=True, slots=True)
class Remediator:
    probes: Probes
    resent: Load
    new: Load


async def remediator_loads(n: int, quick: bool) -> Remediator:
    """In one fresh remediator: the probes, the resend load, then the new-alert load."""
    new_bodies = [decisions.payload(k, ALERTS, prefix="new") for k in range(n)]
    resend = decisions.payload(0, ALERTS, prefix="resend")
    within = 20.0 if quick else 60.0
    started = at.running(
        "remediator", at.bodies_of(resend), at.UNBOUNDED_BACKLOG, stop_timeout_s=at.QUICK_STOP_S
    )
    async with started as (target, _), unlimited() as s:
        probed = await probes(s, target, within, QUICK_BIG if quick else BIG)
        base = at.base_url(target)
        before = decisions.decided_alerts(await decisions.read_metrics(s, base))
        first = await at.post_timed(s, target, resend)
        if first.status != 200 or not await decided(s, base, before + ALERTS, within):
            raise decisions.BenchFailure("the payload to resend was not decided")
        resent = await open_loop(s, target, [resend], RATE, n)
        await decided(s, base, 0, within)  # the resends' backlog drained
        new = await open_loop(s, target, new_bodies, RATE, n)
    return Remediator(probed, resent, new)


def load_figures(bare: Load, rem: Remediator) -> list[Figure]:
    out = []
    for label, load in (("1000 new alerts each", rem.new), ("1000 resent alerts each", rem.resent)):
        note = f"{load.summary('remediator')}; {bare.summary('bare')}"
        for p, target in ((99, P99_RATIO), (50, None)):
            out.append(
                Figure(
                    SCENARIO,
                    f"ack p{p}, 10 payloads/s open loop, {label}",
                    load.pct(p),
                    "ms",
                    bare.pct(p),
                    "bare aiohttp",
                    target,
                    "max" if target else "info",
                    note if p == 99 else "",
                )
            )
    return out


def probe_figures(p: Probes) -> list[Figure]:
    state = "decided" if p.drained else "NOT decided"
    note = (
        f"{len(p.busy.latencies_s)} probes over {p.seconds:.1f} s until the {p.big_alerts}"
        f" alerts were {state}; busy {p.busy.summary('probe')}; idle {p.idle.summary('probe')}"
    )
    return [
        Figure(
            SCENARIO,
            f"2-alert probe ack p{pct} while {p.big_alerts} alerts are decided",
            p.busy.pct(pct),
            "ms",
            p.idle.pct(pct),
            "idle probe",
            note=note if pct == 99 else "",
        )
        for pct in (50, 99)
    ]


def failed(name: str, exc: BaseException) -> list[Figure]:
    return [Figure(SCENARIO, name, math.nan, "ms", note=at.short_reason(str(exc)))]


async def measure(quick: bool) -> list[Figure]:
    n = int(RATE * (1 if quick else 60))
    try:
        bare = await bare_load(n)
    except at.StartError as exc:
        return failed("bare server", exc)
    try:
        rem = await remediator_loads(n, quick)
    except (at.StartError, decisions.BenchFailure) as exc:
        return failed("remediator", exc)
    return [*load_figures(bare, rem), *probe_figures(rem.probes)]


if __name__ == "__main__":
    import run

    sys.exit(run.script_main(measure, __doc__))
