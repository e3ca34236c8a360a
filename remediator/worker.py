"""The journal worker: accepted payloads → episodes → one pipeline decision per new episode.

Payloads are processed one at a time, in the order they were journaled; an entry is
marked done once every alert in it has its decision recorded (actions run on after that,
from their durable claims). After a restart, entries not marked done are processed again:
episodes already decided are skipped and claims are unique, so nothing acts twice.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from remediator import failpoints
from remediator.ackgate import AckGate
from remediator.clock import Clock
from remediator.errors import RequestRejected, StoreUnavailable
from remediator.metrics import Metrics
from remediator.model import AlertStatus, EpisodeEvent, Incident, Observation
from remediator.payload import WebhookAlert, WebhookPayload, check, to_alert
from remediator.pipeline import Pipeline
from remediator.settings import Settings
from remediator.store.base import JournalEntry, Sighting, Store

log = logging.getLogger(__name__)

RETRY_AFTER_STORE_ERROR_S = 1.0
PRUNE_EVERY_S = 60.0
STATUSES = {status.value: status for status in AlertStatus}
#: Sightings that need no decision: a resolve for an episode already closed.
RESENT = frozenset({EpisodeEvent.ALREADY_CLOSED})
#: Sightings of an episode that needs no new decision once one was taken.
DECIDED_IF_SEEN = frozenset({EpisodeEvent.JOINED, EpisodeEvent.REOPENED})


class JournalWorker:
    def __init__(
        self,
        store: Store,
        pipeline: Pipeline,
        metrics: Metrics,
        clock: Clock,
        settings: Settings,
        gate: AckGate,
    ) -> None:
        self._gate = gate
        self._pruned_at = float("-inf")
        self._store = store
        self._pipeline = pipeline
        self._metrics = metrics
        self._clock = clock
        self._settings = settings
        self._queue: asyncio.Queue[int] = asyncio.Queue()
        self.idle = asyncio.Event()
        self.idle.set()

    def accept(self, journal_id: int) -> None:
        """Queue a journaled payload. Only its id waits in memory; the body stays on disk."""
        self.idle.clear()
        self._queue.put_nowait(journal_id)
        self._metrics.journal_backlog.set(self._queue.qsize())

    async def recover(self) -> int:
        """Queue the journal entries a previous run accepted but did not finish."""
        pending = await self._store.journal_pending()
        for journal_id in pending:
            self.accept(journal_id)
        return len(pending)

    async def run(self) -> None:
        while True:
            journal_id = await self._queue.get()
            await self._process_until_done(journal_id)
            await self._prune_now_and_then()
            self._metrics.journal_backlog.set(self._queue.qsize())
            if self._queue.empty():
                self.idle.set()

    async def _process_until_done(self, journal_id: int) -> None:
        while True:
            try:
                await self.process(journal_id)
                return
            except StoreUnavailable:
                log.exception("state store unavailable; retrying journal entry %d", journal_id)
                await asyncio.sleep(RETRY_AFTER_STORE_ERROR_S)

    async def _prune_now_and_then(self) -> None:
        now = self._clock.monotonic()
        if now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        horizon = self._clock.now() - timedelta(seconds=self._settings.journal_retention_s)
        try:
            await self._store.journal_prune(horizon)
        except StoreUnavailable:
            log.exception("could not prune the journal; will try again")

    async def process(self, journal_id: int) -> None:
        failpoints.hit("before_process")
        entry = await self._store.journal_entry(journal_id)
        try:
            model = check(entry.body, self._settings.payload_limits)
        except RequestRejected as exc:  # accepted under other limits; keep it, say so
            log.error("journal entry %d no longer validates (%s); skipping", entry.id, exc)
            await self._store.journal_done(entry.id, self._clock.now())
            return
        if model.truncatedAlerts:
            self._metrics.truncated_alerts.inc(model.truncatedAlerts)
        size = self._settings.worker_chunk_alerts
        for start in range(0, len(model.alerts), size):
            await self._gate.quiet(self._settings.worker_yield_s)
            await self._process_chunk(entry, model, model.alerts[start : start + size])
        await self._store.journal_done(entry.id, self._clock.now())

    async def _process_chunk(
        self, entry: JournalEntry, model: WebhookPayload, chunk: list[WebhookAlert]
    ) -> None:
        sightings = [
            Sighting(raw.fingerprint, STATUSES[raw.status], raw.labels.get("alertname", ""))
            for raw in chunk
        ]
        observations = await self._store.observe(
            sightings, self._clock.now(), self._settings.episode_grace_s
        )
        self._count_received(sightings)
        await self._arm_undos(observations)
        decisions = []
        for raw, observation in zip(chunk, observations, strict=True):
            event = observation.event
            if event in RESENT or (event in DECIDED_IF_SEEN and observation.episode.decided):
                self._metrics.alerts_resent.inc()
                continue
            incident = Incident(
                alert=to_alert(raw),
                episode_id=observation.episode.id,
                journal_id=entry.id,
                received_at=entry.received_at,
                truncated_alerts=model.truncatedAlerts,
            )
            if event in (EpisodeEvent.CLOSED, EpisodeEvent.RESOLVED_UNSEEN):
                decisions.append(self._pipeline.resolved(incident))
            else:
                decisions.append(await self._pipeline.decide(incident, observation.episode.is_open))
        await self._pipeline.commit(decisions)

    async def _arm_undos(self, observations: list[Observation]) -> None:
        closed = [o.episode.id for o in observations if o.event is EpisodeEvent.CLOSED]
        reopened = [o.episode.id for o in observations if o.event is EpisodeEvent.REOPENED]
        if closed:
            await self._store.undo_arm(closed, self._clock.now())
        if reopened:
            await self._store.undo_disarm(reopened)

    def _count_received(self, sightings: list[Sighting]) -> None:
        firing = sum(1 for s in sightings if s.status is AlertStatus.FIRING)
        self._metrics.alerts_received.labels(AlertStatus.FIRING.value).inc(firing)
        self._metrics.alerts_received.labels(AlertStatus.RESOLVED.value).inc(
            len(sightings) - firing
        )
