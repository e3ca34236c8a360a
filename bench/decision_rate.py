"""Decisions per second: new alerts, resends of decided ones, and one 10 000-alert webhook.

remediator (SQLite state, dry-run, the example rules) is started fresh by
``ack_throughput.running``; the clock is read from its ``/metrics``, scraped every 50 ms:

* new alerts: N webhooks of 1000 distinct new firing alerts (N = 20; 3 in quick mode) are
  posted over four connections as fast as they are acked; the clock runs from the first
  POST until ``remediator_journal_backlog`` is 0 and ``remediator_decisions_total{outcome=
  "received"}`` has risen by N x 1000 (each decision writes exactly one ``received`` record;
  the other outcomes of a decision vary with the guards: with the example rules 1000 alerts
  add 1000 ``classified``, about 990 ``refused`` and ``escalated`` and a few ``claimed`` and
  ``dry_run``). "acked alerts/s" is the same count over the time until the last ack.
* resends: the same N webhooks again, in the same process (all episodes open and decided),
  until the backlog is 0 and ``remediator_alerts_resent_total`` has risen by N x 1000.
* one webhook of 10 000 new alerts (3000 in quick mode, where the issue's target, defined
  for 10 000, is not judged), first thing in the fresh process: seconds from its ack to
  decided.

The three parts run in this order in one process (new alerts, then their resends, after
the 10 000), each once the one before is decided.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable, Sequence

import ack_throughput as at
import aiohttp
import decisions
from figures import Figure

SCENARIO = "decision_rate"
ALERTS = 1000
#: The one big webhook: full mode (judged), quick mode (context only).
BIG, QUICK_BIG = 10_000, 3000
NEW_PER_S, RESENT_PER_S, BIG_DECIDED_S = 10_000.0, 50_000.0, 2.0
RESENT = "remediator_alerts_resent_total"
POLL_S = 0.05
Done = Callable[[dict[str, float]], bool]
Counted = Callable[[dict[str, float]], float]


@dataclasses.dataclass(frozen=True, slots=True)
class Timed:
    acked_s: float
    done_s: float
    """Both from the first POST; ``done_s`` is nan when it did not finish in time."""


async def timed_feed(
    session: aiohttp.ClientSession,
    target: at.Target,
    bodies: Sequence[bytes],
    done: Done,
    within_s: float,
) -> Timed:
    """Post ``bodies`` as fast as acked, then scrape until ``done``; the times taken."""
    start = time.perf_counter()
    await decisions.post_all(session, target.url, target.headers, bodies)
    acked = time.perf_counter() - start
    finished = await decisions.wait_metrics(
        session, at.base_url(target), done, within_s, poll_s=POLL_S
    )
    return Timed(acked, time.perf_counter() - start if finished else math.nan)


def rose(metrics: dict[str, float], key: Counted, by: float) -> Done:
    """Done when the journal backlog is 0 and ``key`` rose by ``by`` from ``metrics``."""
    return decisions.caught_up(key(metrics) + by, key)


def resent(metrics: dict[str, float]) -> float:
    return metrics.get(RESENT, 0.0)


@dataclasses.dataclass(frozen=True, slots=True)
class Parts:
    big_s: float
    new: Timed
    resent: Timed


async def all_parts(n: int, big_alerts: int, within_s: float) -> Parts:
    """In one fresh remediator: the ``big_alerts``-alert webhook, then the new alerts, then
    them resent (each part waits for the one before to be decided)."""
    big = decisions.payload(0, big_alerts, prefix="big")
    bodies = [decisions.payload(k, ALERTS, prefix="rate") for k in range(n)]
    async with (
        at.running("remediator", at.bodies_of(big), stop_timeout_s=at.QUICK_STOP_S) as (target, _),
        aiohttp.ClientSession() as session,
    ):

        async def part(sent: Sequence[bytes], alerts: int, key: Counted) -> Timed:
            metrics = await decisions.read_metrics(session, at.base_url(target))
            done = rose(metrics, key, len(sent) * alerts)
            return await timed_feed(session, target, sent, done, within_s)

        one = await part([big], big_alerts, decisions.decided_alerts)
        new = await part(bodies, ALERTS, decisions.decided_alerts)
        again = await part(bodies, ALERTS, resent)
    return Parts(one.done_s - one.acked_s, new, again)


def rate_figures(n: int, new: Timed, again: Timed) -> list[Figure]:
    total = n * ALERTS
    late = f"not done within the time box; acked in {new.acked_s:.2f} s"
    return [
        Figure(
            SCENARIO,
            f"new alerts decided/s ({n} x {ALERTS} alerts)",
            total / new.done_s,
            "alerts/s",
            target=NEW_PER_S,
            sense="value_min",
            note=late if math.isnan(new.done_s) else f"decided in {new.done_s:.2f} s",
        ),
        Figure(SCENARIO, "new alerts acked/s (context)", total / new.acked_s, "alerts/s"),
        Figure(
            SCENARIO,
            f"resent alerts decided/s ({n} x {ALERTS} alerts)",
            total / again.done_s,
            "alerts/s",
            target=RESENT_PER_S,
            sense="value_min",
            note=f"acked in {again.acked_s:.2f} s, done in {again.done_s:.2f} s",
        ),
    ]


async def measure(quick: bool) -> list[Figure]:
    n, big_alerts, within = (3, QUICK_BIG, 30.0) if quick else (20, BIG, 120.0)
    try:
        parts = await all_parts(n, big_alerts, within)
    except (at.StartError, decisions.BenchFailure) as exc:
        return [failure(f"new alerts decided/s ({n} x {ALERTS} alerts)", "alerts/s", exc)]
    note = "not decided within the time box" if math.isnan(parts.big_s) else "fresh process"
    name = f"one {big_alerts}-alert webhook: ack to decided"
    judged = big_alerts == BIG
    big = Figure(
        SCENARIO,
        name,
        parts.big_s,
        "s",
        target=BIG_DECIDED_S,
        sense="value_max" if judged else "info",
        note=note if judged else f"{note}; the target is for {BIG} alerts",
    )
    return [*rate_figures(n, parts.new, parts.resent), big]


def failure(name: str, unit: str, exc: BaseException) -> Figure:
    return Figure(SCENARIO, name, math.nan, unit, note=at.short_reason(str(exc)))


if __name__ == "__main__":
    import run

    sys.exit(run.script_main(measure, __doc__))
