"""Ingest: webhook acks per second by payload size, and the first ack after ``/readyz``.

Payload sizes 1, 100, 1000 and 10 000 alerts; 1000 only in quick mode (``decisions.payload``:
distinct firing alerts with Alertmanager fingerprints). Three systems, one after another,
each started fresh by ``ack_throughput.running``: the bare aiohttp server
(``bare_server.py``), remediator (SQLite state, dry-run, a backlog limit no run reaches: the
ack path alone) and Alertmanager's ``POST /api/v2/alerts`` (the same alerts in API v2 form).
Per size: a short warm-up, then
eight keep-alive connections (two for 10 000 alerts) POST the same body back to back for the
window (2 s, 2 s, 5 s, 6 s; quick 1 s for 1000 alerts: one Alertmanager POST of 1000 alerts
takes up to 0.3 s); payloads/s and the p50 latency of the 2xx answers inside it. The
same body again and again is a resend for remediator (cheap to decide), which is fine: this
measures the ack path.

First ack: remediator is started, ``/readyz`` polled every 5 ms; the moment it answers 200
one 1000-alert webhook of new alerts is sent and timed, then 20 more of fresh alerts, one
after another (warm acks, same process). Three fresh processes (one in quick mode); the
figure is the median first ack against the median of the warm acks' medians.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import sys

import ack_throughput as at
import aiohttp
import decisions
from figures import Figure

SCENARIO = "ingest"
SYSTEMS = ("bare", "remediator", "alertmanager")
#: Keep-alive connections per size: eight, as ``ack_throughput.py``; two for 10 000 alerts,
#: whose requests take long enough that eight would only queue (and stretch the windows).
CONCURRENCY = {1: 8, 100: 8, 1000: 8, 10_000: 2}
JUDGED_SIZE = 1000
VS_BARE, VS_ALERTMANAGER = 0.7, 3.0
WARM_ACKS = 20
FIRST_ACK_RATIO = 2.0
READY_POLL_S = 0.005

Rates = dict[int, at.SystemResult]


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    warmup_s: float
    seconds: dict[int, float]
    """Per payload size measured: long enough for a few Alertmanager POSTs of the large ones."""

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(self.seconds)


QUICK = Window(0.1, {1000: 1.0})
FULL = Window(0.5, {1: 2.0, 100: 2.0, 1000: 5.0, 10_000: 6.0})


async def rates(name: str, bodies: dict[int, at.Bodies], window: Window) -> Rates | str:
    """Each measured size's payloads/s and latency for one system; its start error as text."""
    args = at.EXTRA_ARGS.get(name, ())
    started = at.running(name, bodies[JUDGED_SIZE], args, stop_timeout_s=at.QUICK_STOP_S)
    try:
        async with started as (target, pid):
            return {
                size: await one_size(name, target, pid, bodies[size], window)
                for size in window.sizes
            }
    except at.StartError as exc:
        return at.short_reason(str(exc))


async def one_size(
    name: str, target: at.Target, pid: int, bodies: at.Bodies, window: Window
) -> at.SystemResult:
    body = bodies.api_v2 if name == "alertmanager" else bodies.webhook
    sized, connections = dataclasses.replace(target, body=body), CONCURRENCY[bodies.alerts]
    await at.drive(sized, connections, window.warmup_s)
    cpu0 = at.process_cpu_s(pid)
    stats = await at.drive(sized, connections, window.seconds[bodies.alerts])
    return at.summarise(name, stats, at.process_cpu_s(pid) - cpu0, bodies.alerts)


def note(result: at.SystemResult) -> str:
    parts = [f"{result.name}: {result.ok} ok, {result.errors} errors"]
    if result.error_samples:
        parts.append("e.g. " + "; ".join(result.error_samples))
    parts.append(f"client CPU {result.client_cpu_pct:.0f}%, server {result.server_cpu_pct:.0f}%")
    return ", ".join(parts)


def size_figures(size: int, by_system: dict[str, Rates | str]) -> list[Figure]:
    """payloads/s against bare and Alertmanager, and the p50 ack, for one payload size."""
    missing = {n: r for n, r in by_system.items() if isinstance(r, str)}

    def get(name: str) -> at.SystemResult | None:
        result = by_system[name]
        return None if isinstance(result, str) else result[size]

    rem, bare, am = get("remediator"), get("bare"), get("alertmanager")
    judged = size == JUDGED_SIZE
    why = "; ".join(f"{n} did not start: {r}" for n, r in missing.items())
    notes = "; ".join(note(r) for r in (rem, bare, am) if r is not None and r.errors) or why
    nan = math.nan
    return [
        Figure(
            SCENARIO,
            f"payloads/s, {size} alerts",
            rem.payloads_per_s if rem else nan,
            "payloads/s",
            bare.payloads_per_s if bare else nan,
            "bare aiohttp",
            VS_BARE if judged else None,
            "min" if judged else "info",
            notes,
        ),
        Figure(
            SCENARIO,
            f"payloads/s vs Alertmanager, {size} alerts",
            rem.payloads_per_s if rem else nan,
            "payloads/s",
            am.payloads_per_s if am else nan,
            "Alertmanager /api/v2/alerts",
            VS_ALERTMANAGER if judged else None,
            "min" if judged else "info",
        ),
        Figure(
            SCENARIO,
            f"ack p50, {size} alerts, {CONCURRENCY[size]} connections",
            (rem.p50_ms or nan) if rem else nan,
            "ms",
            (bare.p50_ms or nan) if bare else nan,
            "bare aiohttp",
        ),
    ]


async def first_ack(bodies: list[bytes]) -> tuple[float, float]:
    """One fresh remediator: the first ack after ready, and the median warm ack, in ms."""
    started = at.running(
        "remediator", at.bodies_of(bodies[0]), poll_s=READY_POLL_S, stop_timeout_s=at.QUICK_STOP_S
    )
    async with started as (target, _), aiohttp.ClientSession() as session:
        async with session.get(f"{at.base_url(target)}/readyz") as ready:  # opens the connection
            await ready.read()
        answers = [await at.post_timed(session, target, body) for body in bodies]
    bad = [a for a in answers if a.status != 200]
    if bad:
        raise decisions.BenchFailure(f"{len(bad)} webhooks failed: {bad[0].status} {bad[0].error}")
    warm = statistics.median(a.seconds for a in answers[1:])
    return answers[0].seconds * 1000, warm * 1000


async def first_ack_figure(quick: bool) -> Figure:
    bodies = [decisions.payload(i, JUDGED_SIZE, prefix="first") for i in range(WARM_ACKS + 1)]
    runs: list[tuple[float, float]] = []
    name = "first ack after /readyz, 1000 new alerts"
    try:
        for _ in range(1 if quick else 3):
            runs.append(await first_ack(bodies))
    except (at.StartError, decisions.BenchFailure) as exc:
        return Figure(SCENARIO, name, math.nan, "ms", note=at.short_reason(str(exc)))
    each = ", ".join(f"{f:.1f}/{w:.1f}" for f, w in runs)
    return Figure(
        SCENARIO,
        name,
        statistics.median(f for f, _ in runs),
        "ms",
        statistics.median(w for _, w in runs),
        f"median of {WARM_ACKS} warm acks",
        FIRST_ACK_RATIO,
        "max",
        f"median of {len(runs)} fresh processes; first/warm ms each: {each}",
    )


async def measure(quick: bool) -> list[Figure]:
    window = QUICK if quick else FULL
    bodies = {n: at.bodies_of(decisions.payload(0, n, prefix="ingest")) for n in window.sizes}
    by_system: dict[str, Rates | str] = {}
    for name in SYSTEMS:
        by_system[name] = await rates(name, bodies, window)
    figures = [fig for size in window.sizes for fig in size_figures(size, by_system)]
    return [*figures, await first_ack_figure(quick)]


if __name__ == "__main__":
    import run

    sys.exit(run.script_main(measure, __doc__))
