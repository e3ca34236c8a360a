"""The journal worker: accepted payloads → episodes → one pipeline decision per new episode.

Payloads are processed one at a time, in the order they were journaled; an entry is
marked done once every alert in it has its decision recorded (actions run on after that,
from their durable claims). After a restart, entries not marked done are processed again:
episodes already decided are skipped and claims are unique, so nothing acts twice.

Nothing an entry holds can stop the worker. While the store is away an entry waits (the
store logs the outage once, ``core/outage.py``); any other failure is contained: a chunk that
fails is decided again alert by alert, an alert that fails alone is quarantined (audited
as ``unprocessable`` and escalated, its episode decided), and an entry that keeps failing
is retried ``MAX_ATTEMPTS`` times, then quarantined as a whole and marked done (at once
when retrying cannot help: an entry that no longer validates, or whose alerts keep failing
one after another). Either way the worker moves on to the next entry.

A stop gives the worker until its deadline (``stop_by``): then it takes up no more entries
and counts as idle, and what is still queued waits in the journal for the next start or
the replica that takes it over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from remediator.config import Settings
from remediator.core import failpoints
from remediator.core.clock import Clock
from remediator.core.errors import RequestRejected, StoreUnavailable
from remediator.core.fingerprint import of_alert
from remediator.core.metrics import Metrics
from remediator.core.model import Alert, AlertStatus, EpisodeEvent, Incident, Observation
from remediator.decide.backlog import Backlog
from remediator.decide.pipeline import Decision, Pipeline
from remediator.escalate.plan import NO_EPISODE
from remediator.ingest.ackgate import AckGate
from remediator.ingest.payload import WebhookAlert, WebhookPayload, check, to_alert
from remediator.store.contract import JournalEntry, Sighting, Store

log = logging.getLogger(__name__)

RETRY_AFTER_STORE_ERROR_S = 1.0
#: Tries of an entry whose processing fails (other than the store being away).
MAX_ATTEMPTS = 3
RETRY_AFTER_FAILURE_S = (0.2, 1.0)
#: Alerts of one entry quarantined one by one; the next to fail quarantines the entry.
MAX_QUARANTINED_ALERTS = 3
#: How much of an error's text an audit record keeps.
ERROR_CHARS = 300
PRUNE_EVERY_S = 60.0
#: Longest the worker runs on the event loop before it lets the loop read what arrived
#: (and waits for the acks in flight, see ``AckGate``): a chunk of alerts whose decisions
#: need no store round trip would otherwise hold the loop for its whole length.
SLICE_S = 0.002
STATUSES = {status.value: status for status in AlertStatus}
#: Sightings that need no decision: a resolve for an episode already closed.
RESENT = frozenset({EpisodeEvent.ALREADY_CLOSED})
#: Sightings of an episode that needs no new decision once one was taken.
DECIDED_IF_SEEN = frozenset({EpisodeEvent.JOINED, EpisodeEvent.REOPENED})


class _TooManyFailures(Exception):
    """So many alerts of one entry fail alone that the fault is not theirs: the rest of
    the entry is quarantined as a whole, at once (trying again would page per alert)."""


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
        self.undecided = Backlog(metrics.decision_backlog)
        self.idle = asyncio.Event()
        """Set while nothing is queued, and for good once a stop's deadline passed."""
        self.idle.set()
        self._halted = False
        self._slice_from = time.perf_counter()

    def accept(self, journal_id: int, alerts: int | None = None) -> None:
        """Queue a journaled payload of ``alerts`` alerts (None: not counted yet). Only its
        id waits in memory; the body stays on disk."""
        if not self._halted:
            self.idle.clear()
        self.undecided.add(journal_id, alerts)
        self._queue.put_nowait(journal_id)
        self._metrics.journal_backlog.set(self._queue.qsize())

    @property
    def backlog(self) -> int:
        """Journal entries queued here and not yet taken up."""
        return self._queue.qsize()

    def stop_by(self, deadline: float) -> None:
        """The service stops: at ``deadline`` (loop time) the worker halts (see the module)."""
        asyncio.get_running_loop().call_at(deadline, self._halt)

    def _halt(self) -> None:
        self._halted = True
        self.idle.set()

    async def recover(self) -> int:
        """Queue the journal entries a previous run accepted but did not finish."""
        pending = await self._store.journal_pending()
        for journal_id in pending:
            self.accept(journal_id)
        return len(pending)

    async def run(self) -> None:
        """Take queued entries one by one, for ever. Supervised (``runtime/tasks.py``): it
        contains every failure of an entry itself, so a restart means a bug of ours."""
        while True:
            journal_id = await self._queue.get()
            if self._halted:  # stopped: the entry waits in the journal
                continue
            try:
                await self._process_until_done(journal_id)
            finally:
                self.undecided.finished(journal_id)
            await self._prune_now_and_then()
            self._metrics.journal_backlog.set(self._queue.qsize())
            if self._queue.empty() or self._halted:
                self.idle.set()

    async def _process_until_done(self, journal_id: int) -> None:
        failures = 0
        while True:
            try:
                await self.process(journal_id)
                return
            except StoreUnavailable:  # the store tells the outage (``core/outage.py``)
                await asyncio.sleep(RETRY_AFTER_STORE_ERROR_S)
            except (RequestRejected, _TooManyFailures) as exc:  # the same again next time
                await self._quarantine_entry(journal_id, exc)
                return
            except Exception as exc:  # a poison entry must not stop the worker
                failures += 1
                log.exception("journal entry %d failed (try %d of %d)", journal_id, failures,
                              MAX_ATTEMPTS)  # fmt: skip
                if failures >= MAX_ATTEMPTS:
                    await self._quarantine_entry(journal_id, exc)
                    return
                await asyncio.sleep(RETRY_AFTER_FAILURE_S[failures - 1])

    async def _quarantine_entry(self, journal_id: int, exc: Exception) -> None:
        """Record and escalate an entry that cannot be processed, then mark it done. If even
        that fails (other than by the store being away) the entry stays in the journal,
        for the next start, and the worker still moves on."""
        incident = Incident(
            alert=Alert("", AlertStatus.FIRING, {}, {}, self._clock.now(), None),
            episode_id=NO_EPISODE,
            journal_id=journal_id,
            received_at=self._clock.now(),
        )
        decision = self._pipeline.unprocessable(incident, "The payload", _error_text(exc))
        while True:
            try:
                await self._pipeline.commit([decision])
                await self._store.journal_done(journal_id, self._clock.now())
                self._metrics.quarantined.labels("entry").inc()
                return
            except StoreUnavailable:  # the store tells the outage (``core/outage.py``)
                await asyncio.sleep(RETRY_AFTER_STORE_ERROR_S)
            except Exception:
                log.critical("journal entry %d could not be quarantined; left for the next"
                             " start", journal_id, exc_info=True)  # fmt: skip
                return

    async def _prune_now_and_then(self) -> None:
        now = self._clock.monotonic()
        if now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        horizon = self._clock.now() - timedelta(seconds=self._settings.journal_retention_s)
        try:
            archived = None
            if self._settings.s3_bucket:  # what the archive has not shipped stays
                archived = (await self._store.archive_cursor("journal")).archived_to
            await self._store.journal_prune(horizon, archived)
        except StoreUnavailable:
            pass  # the store tells the outage; pruning waits for the next time
        except Exception:  # pruning is housekeeping: it never stops deciding
            log.exception("could not prune the journal; will try again")

    async def process(self, journal_id: int) -> None:
        """Decide every alert of one entry, then mark it done. An entry that no longer
        validates (accepted by an earlier version, or under other limits) raises
        ``RequestRejected``, like any other failure: it ends quarantined, never skipped."""
        failpoints.hit("before_process")
        entry = await self._store.journal_entry(journal_id)
        # Off the event loop: a 10 000-alert body takes some 40 ms to check, and acks wait
        # for no decision (the decoder itself still holds the interpreter for half of it).
        model = await asyncio.to_thread(check, entry.body, self._settings.payload_limits)
        if model.truncatedAlerts:
            self._metrics.truncated_alerts.inc(model.truncatedAlerts)
        size = self._settings.worker_chunk_alerts
        self.undecided.known(entry.id, len(model.alerts))
        quarantined = 0
        for start in range(0, len(model.alerts), size):
            await self._give_way()
            chunk = model.alerts[start : start + size]
            try:
                await self._process_chunk(entry, model, chunk)
            except StoreUnavailable:
                raise
            except Exception:
                log.exception("journal entry %d: a chunk failed; deciding its alerts one by"
                              " one", entry.id)  # fmt: skip
                quarantined = await self._process_alone(entry, model, chunk, quarantined)
            self.undecided.decided(entry.id, len(chunk))
        await self._store.journal_done(entry.id, self._clock.now())

    async def _process_alone(
        self,
        entry: JournalEntry,
        model: WebhookPayload,
        chunk: list[WebhookAlert],
        quarantined: int,
    ) -> int:
        """Decide each alert of ``chunk`` on its own and quarantine those that fail; the
        entry's count of quarantined alerts after it. ``_TooManyFailures`` past the cap."""
        for raw in chunk:
            try:
                await self._process_chunk(entry, model, [raw])
            except StoreUnavailable:
                raise
            except Exception as exc:
                if quarantined >= MAX_QUARANTINED_ALERTS:
                    raise _TooManyFailures(f"more than {quarantined} alerts failed") from exc
                log.exception("journal entry %d: an alert failed; quarantining it", entry.id)
                await self._quarantine_alert(entry, raw, exc)
                quarantined += 1
        return quarantined

    async def _quarantine_alert(
        self, entry: JournalEntry, raw: WebhookAlert, exc: Exception
    ) -> None:
        alert = to_alert(raw)
        episode_id = NO_EPISODE
        try:
            [observation] = await self._store.observe(
                [Sighting(alert.fingerprint, alert.status, alert.name)],
                self._clock.now(),
                self._settings.episode_grace_s,
            )
            episode_id = observation.episode.id
        except StoreUnavailable:
            raise
        except Exception:
            log.exception("journal entry %d: no episode for the quarantined alert", entry.id)
        incident = Incident(
            alert=alert, episode_id=episode_id, journal_id=entry.id, received_at=entry.received_at
        )
        decision = self._pipeline.unprocessable(incident, "An alert", _error_text(exc))
        await self._pipeline.commit([decision])
        self._metrics.quarantined.labels("alert").inc()

    async def _process_chunk(
        self, entry: JournalEntry, model: WebhookPayload, chunk: list[WebhookAlert]
    ) -> None:
        sightings = []
        for raw in chunk:  # a new alert's fingerprint is hashed here
            await self._give_way_after_a_slice()
            sightings.append(self._sighting(raw))
        observations = await self._store.observe(
            sightings, self._clock.now(), self._settings.episode_grace_s
        )
        self._count_received(sightings)
        await self._arm_undos(observations)
        decisions: list[Decision] = []
        try:
            for raw, observation in zip(chunk, observations, strict=True):
                await self._give_way_after_a_slice()
                event = observation.event
                decided = observation.episode.decided
                if event in RESENT or (event in DECIDED_IF_SEEN and decided):
                    self._metrics.alerts_resent.inc()
                    if event is not EpisodeEvent.REOPENED:
                        continue
                incident = Incident(
                    alert=to_alert(raw),
                    episode_id=observation.episode.id,
                    journal_id=entry.id,
                    received_at=entry.received_at,
                    truncated_alerts=model.truncatedAlerts,
                    alertmanager_url=model.externalURL,
                )
                if event is EpisodeEvent.REOPENED and decided:  # flapping: the incident goes on
                    decisions.append(self._pipeline.reopened(incident))
                elif event in (EpisodeEvent.CLOSED, EpisodeEvent.RESOLVED_UNSEEN):
                    decisions.append(self._pipeline.resolved(incident))
                else:
                    episode_open = observation.episode.is_open
                    decisions.append(await self._pipeline.decide(incident, episode_open))
        finally:
            # Also when an alert failed: what was decided before it is committed, so deciding
            # the chunk again skips it (a claim was committed with its decision already).
            await self._pipeline.commit(decisions)

    async def _give_way_after_a_slice(self) -> None:
        if time.perf_counter() - self._slice_from > SLICE_S:
            await self._give_way()

    async def _give_way(self) -> None:
        """Let the event loop take what arrived, and the acks in flight finish first (for
        ``worker_yield_s`` at most, so decisions go on under constant load)."""
        await asyncio.sleep(0)
        await self._gate.quiet(self._settings.worker_yield_s)
        self._slice_from = time.perf_counter()

    async def _arm_undos(self, observations: list[Observation]) -> None:
        closed = [o.episode.id for o in observations if o.event is EpisodeEvent.CLOSED]
        reopened = [o.episode.id for o in observations if o.event is EpisodeEvent.REOPENED]
        if closed:
            await self._store.undo_arm(closed, self._clock.now())
        if reopened:
            await self._store.undo_disarm(reopened)

    def _sighting(self, raw: WebhookAlert) -> Sighting:
        """The alert under the fingerprint of its labels; a sender's other one is counted."""
        ours = of_alert(raw.fingerprint, raw.labels)
        if raw.fingerprint != ours:
            self._metrics.fingerprint_mismatches.inc()
        return Sighting(ours, STATUSES[raw.status], raw.labels.get("alertname", ""))

    def _count_received(self, sightings: list[Sighting]) -> None:
        firing = sum(1 for s in sightings if s.status is AlertStatus.FIRING)
        self._metrics.alerts_received.labels(AlertStatus.FIRING.value).inc(firing)
        self._metrics.alerts_received.labels(AlertStatus.RESOLVED.value).inc(
            len(sightings) - firing
        )


def _error_text(exc: BaseException) -> str:
    """The error as an audit record can hold it: printable, bounded, one line."""
    text = f"{type(exc).__name__}: {exc}"
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\x00", "\\x00").replace("\n", " ")[:ERROR_CHARS]
