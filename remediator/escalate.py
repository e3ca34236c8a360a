"""Escalate: the decisions that need a human become notifications in the outbox, and a
delivery loop sends them.

Planning happens in the same transaction as the audit record that says "escalated", so a
crash cannot lose a page. Every tier of the rule's escalation policy is queued at once,
due ``after_s`` later; a tier is sent only while the episode is still open. One incident
per episode and sink: the dedup key is stable, and each (episode, sink, event, tier) is
queued once. When the episode resolves, every sink that was paged gets a resolve, and
tiers not yet sent are dropped. Failed sends are retried with backoff, honouring
``Retry-After``, until ``max_age_s``; each sink is paced to its documented rate limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import timedelta

import aiohttp

from remediator.clock import Clock
from remediator.metrics import Metrics
from remediator.model import AuditRecord, Outcome, StopReason
from remediator.ruleset.rules import RuleSet
from remediator.sinks.base import Event, Notification, PermanentSinkError, Sink, SinkError
from remediator.store.base import OutboxItem, Store

log = logging.getLogger(__name__)

BACKOFF_S = (1.0, 2.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0)
BATCH = 100


STORM_PREFIX = "remediator-storm-"
#: The outbox's episode for a page about no episode (an unreadable journal entry): the
#: first tier is sent, later tiers are dropped, since no resolve can ever stop them.
NO_EPISODE = 0


def dedup_key(record: AuditRecord) -> str:
    """One incident per episode; during a storm, one incident for the storm (per policy and
    hour), so a fleet-wide alert pages once, not once per target."""
    if record.reason == "storm":
        return f"{STORM_PREFIX}{record.details.get('policy', '')}-{record.at:%Y%m%d%H}"
    if record.reason == "ineffective_remediation":
        return f"remediator-ineffective-{record.target}-{record.action}"
    if record.episode_id is None:  # a journal entry that could not be read: no episode
        return f"remediator-unprocessable-journal-{record.journal_id}"
    return f"remediator-{record.fingerprint}-{record.episode_id}"


def _summary(record: AuditRecord, why: str) -> str:
    if record.reason == "storm":
        return (
            f"[{record.severity}] Alert storm: remediator escalates instead of acting. First:"
            f" {record.alertname or record.rule} on {record.target or 'its target'}."
            f" Every alert of the storm is in the decisions API (reason=storm)."
        )
    what = record.alertname or record.rule or "alert"
    where = f" on {record.target}" if record.target else ""
    return f"[{record.severity}] {what}{where}: {why or record.sentence}"


def plan(records: Sequence[AuditRecord], ruleset: RuleSet) -> tuple[list[OutboxItem], list[int]]:
    """The notifications ``records`` call for, and the episodes they resolve."""
    if not ruleset.sinks:
        return [], []
    queued: list[OutboxItem] = []
    resolved: list[int] = []
    previous: AuditRecord | None = None
    for record in records:
        if record.episode_id is None and record.reason != StopReason.UNPROCESSABLE.value:
            continue
        if record.step == "resolved" and record.episode_id is not None:
            resolved.append(record.episode_id)
        elif record.step == "escalated":
            # The record before says why: the refusal, the failed action, the verification.
            same = previous is not None and previous.episode_id == record.episode_id
            queued.extend(_tiers(record, ruleset, previous.sentence if same and previous else ""))
        previous = record
    return queued, resolved


def _tiers(record: AuditRecord, ruleset: RuleSet, why: str) -> list[OutboxItem]:
    name = str(record.details.get("policy", ""))
    policy = ruleset.escalations.get(name)
    if policy is None:
        log.error("escalation policy %r is not defined; nothing queued", name)
        return []
    details = {
        "rule": record.rule,
        "reason": record.reason,
        "target": record.target,
        "action": record.action,
        "episode": record.episode_id,
        "fingerprint": record.fingerprint,
        "decisions": f"/api/v1/decisions?episode={record.episode_id}"
        if record.episode_id is not None
        else "/api/v1/decisions",
    }
    return [
        OutboxItem(
            episode_id=record.episode_id or NO_EPISODE,
            dedup_key=dedup_key(record),
            sink=sink,
            event=Event.TRIGGER.value,
            tier=index,
            severity=record.severity,
            policy=name,
            summary=_summary(record, why),
            details=details,
            due_at=record.at + timedelta(seconds=tier.after_s),
        )
        for index, tier in enumerate(policy.tiers)
        for sink in tier.notify
    ]


class Delivery:
    """Sends what the outbox holds, when it is due, to the sinks by name."""

    def __init__(
        self,
        store: Store,
        sinks: Mapping[str, Sink],
        session: aiohttp.ClientSession,
        metrics: Metrics,
        clock: Clock,
        *,
        poll_s: float,
        max_age_s: float,
    ) -> None:
        self._store = store
        self._sinks = sinks
        self._session = session
        self._metrics = metrics
        self._clock = clock
        self._poll_s = poll_s
        self._max_age_s = max_age_s
        self._last_sent: dict[str, float] = {}

    async def run(self) -> None:
        while True:
            try:
                await self.deliver_due()
            except Exception:  # the loop must outlive any one failure
                log.exception("escalation delivery failed; trying again")
            await asyncio.sleep(self._poll_s)

    async def deliver_due(self) -> None:
        for item in await self._store.outbox_due(self._clock.now(), BATCH):
            await self._deliver(item)

    async def _deliver(self, item: OutboxItem) -> None:
        assert item.id is not None
        sink = self._sinks.get(item.sink)
        if sink is None:
            await self._drop(item, f"sink {item.sink!r} is not configured")
            return
        why_not = await self._still_wanted(item)
        if why_not:
            await self._drop(item, why_not, count=False)
            return
        if self._clock.monotonic() - self._last_sent.get(sink.name, -1e9) < sink.min_interval_s:
            return  # paced: the next poll sends it
        self._last_sent[sink.name] = self._clock.monotonic()
        try:
            await sink.send(self._session, _notification(item))
        except PermanentSinkError as exc:
            await self._drop(item, str(exc))
        except (SinkError, aiohttp.ClientError, TimeoutError) as exc:
            await self._retry(item, exc)
        else:
            await self._store.outbox_done(item.id, self._clock.now(), delivered=True)
            self._metrics.escalations.labels(item.sink, "delivered").inc()
            await self._audit(item, Outcome.ESCALATED, f"{item.sink} was notified ({item.event}).")

    async def _still_wanted(self, item: OutboxItem) -> str:
        if item.event == Event.RESOLVE.value:
            await self._store.outbox_drop_pending_triggers(item.episode_id, self._clock.now())
            if not await self._store.outbox_was_triggered(item.dedup_key, item.sink):
                return "nothing was sent to resolve"
            return ""
        if item.tier > 0 and not await self._store.episode_is_open(item.episode_id):
            return "the episode resolved before this tier was due"
        return ""

    async def _retry(self, item: OutboxItem, exc: BaseException) -> None:
        assert item.id is not None and item.created_at is not None
        now = self._clock.now()
        if (now - item.created_at).total_seconds() > self._max_age_s:
            await self._drop(item, f"gave up after {item.attempts + 1} attempts: {exc}")
            return
        delay = (
            getattr(exc, "retry_after_s", None) or BACKOFF_S[min(item.attempts, len(BACKOFF_S) - 1)]
        )
        await self._store.outbox_retry(item.id, now + timedelta(seconds=delay), str(exc)[:500])
        self._metrics.escalations.labels(item.sink, "retried").inc()

    async def _drop(self, item: OutboxItem, why: str, count: bool = True) -> None:
        assert item.id is not None
        await self._store.outbox_done(item.id, self._clock.now(), delivered=False, error=why)
        if count:
            self._metrics.escalations.labels(item.sink, "dropped").inc()
            log.error("notification to %s dropped: %s", item.sink, why)
            await self._audit(item, Outcome.FAILED, f"Notifying {item.sink} failed: {why}")

    async def _audit(self, item: OutboxItem, outcome: Outcome, sentence: str) -> None:
        record = AuditRecord(
            at=self._clock.now(),
            step="notified",
            outcome=outcome,
            sentence=sentence,
            episode_id=item.episode_id,
            fingerprint=str(item.details.get("fingerprint", "")),
            rule=str(item.details.get("rule", "")),
            severity=item.severity,
            target=str(item.details.get("target", "")),
            details={"sink": item.sink, "event": item.event, "tier": item.tier,
                     "dedup_key": item.dedup_key},
        )  # fmt: skip
        await self._store.audit([record])


def _notification(item: OutboxItem) -> Notification:
    return Notification(
        event=Event(item.event),
        dedup_key=item.dedup_key,
        severity=item.severity,
        summary=item.summary,
        tier=item.tier,
        policy=item.policy,
        details=item.details,
    )
