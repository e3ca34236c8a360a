"""Delivery: the loop that sends what ``plan`` queued in the outbox.

A later tier is sent only while the incident is open (an alert it pages for still fires)
and no human has acknowledged it since it was queued. When the incident's last episode
resolves, every sink that was paged gets a resolve once the episode grace has passed, and
tiers not yet sent are dropped then; a re-fire within the grace withdraws the resolve, so a
flapping alert's incident stays open. An update goes once the sink has the incident's page,
naming what the sink answered to it (``Notification.reference``: Slack's thread). Failed
sends are retried with backoff, honouring ``Retry-After``, until ``max_age_s``; each sink is
paced to its documented rate limit.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from remediator.audit import records as audit
from remediator.audit.recorder import Recorder
from remediator.clients.http import HttpClient
from remediator.core.clock import Clock
from remediator.core.errors import ObjectStoreError, SinkError, SinkRejected
from remediator.core.metrics import Metrics
from remediator.escalate.sinks.base import Event, Notification, Sink
from remediator.store.contract import ACKNOWLEDGED_TOPIC, OutboxItem, Store

log = logging.getLogger(__name__)

BACKOFF_S = (1.0, 2.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0)
WITHDRAWN = "withdrawn"
"""``_still_wanted``'s word for a held resolve its episode's re-fire withdrew."""
LATER = "later"
"""``_still_wanted``'s word for an update whose page has not reached its sink yet."""
BATCH = 100
EVENTS = frozenset(e.value for e in Event)
EVIDENCE_LAST_FIRST = ("refused", "after", "before")
Sign = Callable[[str], Awaitable[str]]
"""A link that reads an object of the evidence, by its key, for a while (``evidence``)."""


class Delivery:
    """Sends what the outbox holds, when it is due, to the sinks by name."""

    def __init__(
        self,
        store: Store,
        recorder: Recorder,
        sinks: Mapping[str, Sink],
        http: HttpClient,
        metrics: Metrics,
        clock: Clock,
        *,
        poll_s: float,
        max_age_s: float,
        external_url: str = "",
        sign: Sign | None = None,
    ) -> None:
        self._sign = sign
        self._store = store
        self._recorder = recorder
        self._sinks = sinks
        self._http = http
        self._metrics = metrics
        self._clock = clock
        self.poll_s = poll_s
        self._max_age_s = max_age_s
        self._external_url = external_url.rstrip("/")
        self._last_sent: dict[str, float] = {}
        self._retired: list[Sink] = []

    def use(self, sinks: Mapping[str, Sink]) -> None:
        """The sinks a rule reload configured, from the next send on; the ones they replace
        are closed when delivery stops (a send may be using one now)."""
        self._retired.extend(s for s in self._sinks.values() if s not in sinks.values())
        self._sinks = sinks

    async def close(self) -> None:
        """Close every sink that holds a connection of its own, and the HTTP client."""
        for sink in [*self._retired, *self._sinks.values()]:
            close = getattr(sink, "close", None)
            if close is not None:
                await close()
        self._retired.clear()
        await self._http.close()

    async def deliver_due(self) -> None:
        """Send what is due; a supervised loop (``runtime/tasks.py``) runs this every
        ``poll_s`` and restarts it after an unexpected failure."""
        stalled: set[tuple[str, str]] = set()
        for item in await self._store.outbox_due(self._clock.now(), BATCH):
            if (item.dedup_key, item.sink) in stalled:
                continue  # an earlier notification of its incident to that sink waits
            if not await self._deliver(item):
                stalled.add((item.dedup_key, item.sink))

    async def _deliver(self, item: OutboxItem) -> bool:
        """Whether ``item`` is done with (sent, dropped or withdrawn); not when it waits
        (paced, behind its page, to be retried), and then its incident's later
        notifications to that sink wait behind it."""
        assert item.id is not None
        sink = self._sinks.get(item.sink)
        if sink is None:
            await self._drop(item, f"sink {item.sink!r} is not configured")
            return True
        if item.event not in EVENTS:  # a row from a newer version, or a broken one
            await self._drop(item, f"the event {item.event!r} is not one this version sends")
            return True
        why_not, reference = await self._still_wanted(item)
        if why_not in (WITHDRAWN, LATER):
            return why_not == WITHDRAWN
        if why_not:
            await self._drop(item, why_not, count=False)
            return True
        if self._clock.monotonic() - self._last_sent.get(sink.name, -1e9) < sink.min_interval_s:
            return False  # paced: the next poll sends it
        self._last_sent[sink.name] = self._clock.monotonic()
        note = _notification(item, self._external_url, reference, self._clock.now())
        try:
            answer = await sink.send(self._http, await self._linked(note))
        except SinkRejected as exc:
            await self._drop(item, str(exc))
            return True
        except SinkError as exc:  # SinkUnavailable: the far side may answer later
            await self._retry(item, exc)
            return False
        else:
            await self._store.outbox_done(item.id, self._clock.now(), True, reference=answer)
            self._metrics.escalations.labels(item.sink, "delivered").inc()
            _log(logging.INFO, item, "delivered")
            await self._recorder.write([audit.notified(self._recorder.stamp(), item)])
            return True

    async def _linked(self, note: Notification) -> Notification:
        """``note`` with a signed link to its claim's last evidence bundle (the refusal's,
        else the outcome's, else the one before the write), when links are signed; a link
        that cannot be signed is left out, the page goes."""
        evidence = note.details.get("evidence")
        if self._sign is None or not isinstance(evidence, Mapping):
            return note
        key = next(
            (evidence[p] for p in EVIDENCE_LAST_FIRST if isinstance(evidence.get(p), str)), ""
        )
        if not key:
            return note
        try:
            url = await self._sign(key)
        except ObjectStoreError as exc:
            log.warning("no evidence link on a page: %s", exc)
            return note
        return replace(note, details={**note.details, "evidence_url": url})

    async def _still_wanted(self, item: OutboxItem) -> tuple[str, Mapping[str, Any]]:
        """'' when ``item`` is to be sent now (with the reference of its incident's page on
        its sink), else why not: a reason to drop it, ``WITHDRAWN`` or ``LATER``."""
        if item.event == Event.TRIGGER.value:
            return await self._trigger_wanted(item), {}
        if item.event == Event.RESOLVE.value and await self._goes_on(item):
            # Fired again within the grace, or another alert of the incident still fires:
            # the incident goes on, and the next close queues its resolve anew.
            assert item.id is not None
            await self._store.outbox_withdraw(item.id)
            _log(logging.INFO, item, "withdrawn", "an alert of the incident fires again")
            return WITHDRAWN, {}
        if item.event == Event.RESOLVE.value:
            why = "the incident resolved first"
            await self._store.outbox_drop_pending_triggers(item.dedup_key, self._clock.now(), why)
        page = await self._store.outbox_trigger_state(item.dedup_key, item.sink)
        if page is None or page.dropped:
            return f"nothing was sent to {item.event}", {}
        if page.resolved and item.event == Event.UPDATE.value:
            # A trigger on PagerDuty's key of a resolved incident opens a new one.
            return "the incident was resolved on this sink", {}
        if not page.delivered:  # the page is still to go (paced, retried): after it
            await self._after(item, page.due_at)
            return LATER, {}
        return "", page.reference

    async def _goes_on(self, item: OutboxItem) -> bool:
        """Whether the incident a resolve is for goes on: an alert of it fires, and no human
        resolved it on a sink (that closes it everywhere, firing or not)."""
        if not await self._store.incident_is_open(item.dedup_key):
            return False
        return await self._store.incident_ack(item.dedup_key, kind="resolved") is None

    async def _trigger_wanted(self, item: OutboxItem) -> str:
        if item.tier == 0:
            return ""
        if not await self._store.incident_is_open(item.dedup_key):
            return "the incident resolved before this tier was due"
        assert item.created_at is not None
        ack = await self._store.incident_ack(item.dedup_key, item.created_at)
        if ack is not None:
            return f"{ack.kind} by {ack.by} on {ack.source} before this tier was due"
        return ""

    async def _after(self, item: OutboxItem, page_due_at: datetime) -> None:
        """The page's updates to this sink, due with it, all at once: the outbox sorts by
        due time then id, and a page is queued before its updates, so they keep their order
        behind it. Not a moment later: an update queued meanwhile, due when it was queued,
        would sort ahead of its elders, and a thread would tell the story out of order."""
        due = max(page_due_at, self._clock.now())
        await self._store.outbox_defer_updates(item.dedup_key, item.sink, due)

    async def _retry(self, item: OutboxItem, exc: BaseException) -> None:
        assert item.id is not None and item.created_at is not None
        now = self._clock.now()
        if (now - item.created_at).total_seconds() > self._max_age_s:
            await self._drop(item, f"gave up after {item.attempts + 1} attempts: {exc}")
            return
        delay = (
            getattr(exc, "retry_after_s", None) or BACKOFF_S[min(item.attempts, len(BACKOFF_S) - 1)]
        )
        due = now + timedelta(seconds=delay)
        await self._store.outbox_retry(item.id, due, str(exc)[:500])
        if item.event == Event.UPDATE.value:  # the incident's later updates stay behind it
            await self._store.outbox_defer_updates(item.dedup_key, item.sink, due)
        self._metrics.escalations.labels(item.sink, "retried").inc()
        _log(logging.WARNING, item, "retried", f"{exc}; next try in {delay:g} s")

    async def _drop(self, item: OutboxItem, why: str, count: bool = True) -> None:
        assert item.id is not None
        await self._store.outbox_done(item.id, self._clock.now(), delivered=False, error=why)
        _log(logging.ERROR if count else logging.INFO, item, "dropped", why)
        if count:
            self._metrics.escalations.labels(item.sink, "dropped").inc()
            await self._recorder.write([audit.notified(self._recorder.stamp(), item, why)])


def _log(level: int, item: OutboxItem, outcome: str, why: str = "") -> None:
    """One line per notification delivered, retried or dropped, with what names it."""
    fields: dict[str, object] = {
        "sink": item.sink,
        "event": item.event,
        "tier": item.tier,
        "dedup_key": item.dedup_key,
        "episode": item.episode_id,
        "outcome": outcome,
    }
    if why:
        fields["why"] = why
    text = "notification to %s %s: %s" if why else "notification to %s %s%s"
    log.log(level, text, item.sink, outcome, why, extra={"fields": fields})


def _notification(
    item: OutboxItem, external_url: str, reference: Mapping[str, Any], now: datetime
) -> Notification:
    """``item`` as its sink sends it; with the service's ``--external-url``, an absolute
    link to the episode's decisions (without it, none: a relative link would be broken)."""
    details = dict(item.details)
    if item.event == Event.RESOLVE.value:  # when it ended, as Alertmanager's endsAt says
        details["ends_at"] = now.isoformat().replace("+00:00", "Z")
    episode = details.get("episode")
    if external_url and isinstance(episode, int):
        details["decisions"] = f"{external_url}/api/v1/decisions?episode={episode}"
    approval = details.get("approval")
    if external_url and isinstance(approval, dict) and isinstance(approval.get("id"), int):
        details["approval_url"] = f"{external_url}/api/v1/approvals/{approval['id']}"
    return Notification(
        event=Event(item.event),
        dedup_key=item.dedup_key,
        severity=item.severity,
        summary=item.summary,
        tier=item.tier,
        policy=item.policy,
        details=details,
        update=item.note,
        reference=reference,
        acknowledged=item.topic.startswith(ACKNOWLEDGED_TOPIC),
    )
