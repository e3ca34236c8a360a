"""The bounded backlog: past ``--max-backlog-alerts`` undecided alerts, webhooks get 503.

remediator is started fresh (SQLite state, dry-run) with ``--max-backlog-alerts 20000``
(3000 in quick mode, so that the drain is short). Four connections post 1000-alert webhooks
of new alerts as fast as they are answered, for 5 s (1 s in quick mode): a 200 takes the
next fresh body, a 503 sends the same body again at once (the load is meant to overrun the
limit; Alertmanager would wait ``Retry-After``).
Every 503 is checked for a ``Retry-After`` header and the JSON ``{"error": "backlogged"}``;
``/metrics`` is scraped every 100 ms for ``remediator_decision_backlog_alerts``. When the
feed stops, the clock waits until the journal backlog is 0 and every acked alert is decided
(``remediator_decisions_total{outcome="received"}`` risen by the acked count).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import sys
import time

import ack_throughput as at
import aiohttp
import decisions
from figures import Figure

SCENARIO = "backlog"
#: ``--max-backlog-alerts``: full mode, quick mode.
LIMIT, QUICK_LIMIT = 20_000, 3000
ALERTS = 1000
CONNECTIONS = 4
GAUGE = "remediator_decision_backlog_alerts"
SAMPLE_S = 0.1
#: The gauge may pass the limit by the payloads accepted just under it: 10 % of the full
#: run's limit, the same number of alerts in quick mode (as a ratio to its lower limit).
OVERSHOOT = 1.1
ALLOWED_OVER = round((OVERSHOOT - 1) * LIMIT)
NO_FLAG = "serve has no --max-backlog-alerts"


@dataclasses.dataclass(slots=True)
class Feed:
    accepted_alerts: int = 0
    accepted: int = 0
    refused: int = 0
    with_retry_after: int = 0
    well_formed: int = 0
    other: list[str] = dataclasses.field(default_factory=list)
    retry_after_values: set[str] = dataclasses.field(default_factory=set)
    max_gauge: float = math.nan
    ready: list[bytes] = dataclasses.field(default_factory=list)
    """Bodies built before the clock starts (the limit's worth), then one at a time."""
    made: int = 0

    def prepare(self, count: int) -> None:
        self.ready += [self.build() for _ in range(count)]

    def build(self) -> bytes:
        self.made += 1
        return decisions.payload(self.made, ALERTS, prefix="backlog")

    def body(self) -> bytes:
        return self.ready.pop() if self.ready else self.build()

    def answered(self, answer: at.Answer) -> bool:
        """Count one answer; True when it took the body."""
        if answer.status == 200:
            self.accepted += 1
            self.accepted_alerts += ALERTS
            return True
        if answer.status != 503:
            self.other.append(f"{answer.status} {answer.error or answer.body[:100]!r}")
            return False
        self.refused += 1
        if answer.retry_after:
            self.with_retry_after += 1
            self.retry_after_values.add(answer.retry_after)
        with contextlib.suppress(ValueError, AttributeError):
            doc = json.loads(answer.body)
            self.well_formed += doc.get("error") == "backlogged" and bool(doc.get("detail"))
        return False


async def connection(
    session: aiohttp.ClientSession, target: at.Target, feed: Feed, end: float
) -> None:
    body = feed.body()
    while time.perf_counter() < end:
        if feed.answered(await at.post_timed(session, target, body)):
            body = feed.body()


async def sample(session: aiohttp.ClientSession, base: str, feed: Feed) -> None:
    """Keep the largest ``GAUGE`` seen, until cancelled."""
    while True:
        value = (await decisions.read_metrics(session, base)).get(GAUGE)
        if value is not None:
            feed.max_gauge = value if math.isnan(feed.max_gauge) else max(feed.max_gauge, value)
        await asyncio.sleep(SAMPLE_S)


async def overrun(seconds: float, limit: int, within_s: float) -> tuple[Feed, float, float]:
    """Feed, then drain: the feed, the acked alerts not decided, the drain seconds."""
    feed = Feed()
    feed.prepare(limit // ALERTS + CONNECTIONS + 1)
    args = ["--max-backlog-alerts", str(limit)]
    async with (
        at.running(
            "remediator", at.bodies_of(feed.body()), args, stop_timeout_s=at.QUICK_STOP_S
        ) as (target, _),
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session,
    ):
        base = at.base_url(target)
        before = decisions.decided_alerts(await decisions.read_metrics(session, base))
        sampler = asyncio.create_task(sample(session, base, feed))
        end = time.perf_counter() + seconds
        await asyncio.gather(*(connection(session, target, feed, end) for _ in range(CONNECTIONS)))
        stopped = time.perf_counter()
        drained = decisions.caught_up(before + feed.accepted_alerts)
        await decisions.wait_metrics(session, base, drained, within_s, poll_s=SAMPLE_S)
        drain_s = time.perf_counter() - stopped
        decided = decisions.decided_alerts(await decisions.read_metrics(session, base)) - before
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    return feed, max(0.0, feed.accepted_alerts - decided), drain_s


def figures(feed: Feed, lost: float, drain_s: float, limit: int, within_s: float) -> list[Figure]:
    every = float(feed.refused > 0 and feed.with_retry_after == feed.refused)
    drained = "" if drain_s < within_s else f" (NOT drained within {within_s:.0f} s)"
    return [
        Figure(
            SCENARIO,
            "503 answers while over the limit",
            feed.refused,
            "",
            target=1,
            sense="value_min",
            note=f"{feed.accepted} payloads ({feed.accepted_alerts} alerts) acked, "
            f"{feed.refused} answered 503, {len(feed.other)} other"
            + (f" (e.g. {feed.other[0]})" if feed.other else ""),
        ),
        Figure(
            SCENARIO,
            "every 503 had Retry-After",
            every,
            "",
            target=1,
            sense="value_min",
            note=f"{feed.with_retry_after}/{feed.refused} with Retry-After"
            f" {sorted(feed.retry_after_values)}; {feed.well_formed} with"
            ' {"error": "backlogged", "detail": ...}',
        ),
        Figure(
            SCENARIO,
            f"max {GAUGE} seen",
            feed.max_gauge,
            "alerts",
            limit,
            "--max-backlog-alerts",
            1 + ALLOWED_OVER / limit,
            "max",
            "" if not math.isnan(feed.max_gauge) else f"{GAUGE} not exported",
        ),
        Figure(
            SCENARIO,
            "acked alerts never decided",
            lost,
            "alerts",
            target=0,
            sense="value_max",
            note=f"drained {drain_s:.1f} s after the feed stopped{drained}",
        ),
    ]


async def measure(quick: bool) -> list[Figure]:
    seconds, limit, within = (1.0, QUICK_LIMIT, 30.0) if quick else (5.0, LIMIT, 90.0)
    try:
        return figures(*await overrun(seconds, limit, within), limit, within)
    except at.StartError as exc:
        unknown = "unrecognized arguments" in str(exc)
        note = NO_FLAG if unknown else at.short_reason(str(exc))
        name = "503 answers while over the limit"
        return [Figure(SCENARIO, name, math.nan, "", target=1, sense="value_min", note=note)]


if __name__ == "__main__":
    import run

    sys.exit(run.script_main(measure, __doc__))
