"""The ``Store`` contract over SQL, once for both backends.

Every operation is a ``program`` of ``sql`` statements; a backend (``sqlite``,
``postgres``) only runs programs: its connection, transactions, placeholders and locks.
Rows are this replica's (``owner``): a PostgreSQL replica's instance id; on SQLite, where
one process owns the file, always ``''``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Literal, TypeVar

import lz4.frame

from remediator.core import dedup_keys
from remediator.core.episodes import next_event
from remediator.core.errors import StoreUnavailable
from remediator.core.model import ALLOW, AuditRecord, Episode, EpisodeEvent, Observation, Verdict
from remediator.core.outage import Outage
from remediator.core.vocab import ApprovalState
from remediator.guards import claim as claim_guards
from remediator.guards.claim import ClaimFacts, ClaimRequest
from remediator.store import sql
from remediator.store.contract import (
    ACKNOWLEDGED_TOPIC,
    ArchiveCursor,
    AuditQuery,
    ClaimedDecision,
    ClaimResult,
    HumanAck,
    IncidentUpdate,
    IntentAnswer,
    JournalEntry,
    OutboxItem,
    PendingApproval,
    Planned,
    QueuedEvidence,
    RecentClaim,
    Settlement,
    Sighting,
    TriggerState,
    Undo,
    UnfinishedClaim,
    Vote,
    VoteAnswer,
    VoteResult,
)
from remediator.store.migrations import migrate
from remediator.store.program import (
    LOCK_CLAIMS,
    LOCK_EPISODES,
    Program,
    count,
    lock,
    many,
    row,
    rows,
    value,
)
from remediator.store.rows import (
    audit_conditions,
    audit_record,
    audit_row,
    claim_windows,
    dt,
    outbox_item,
    outbox_row,
    pending_approval,
    recent_claim,
    ts,
    unfinished_claim,
)
from remediator.store.rows import vote as vote_of
from remediator.store.schema import Dialect

T = TypeVar("T")
#: How stale an open episode's ``last_seen_at`` may get: a resend within this writes nothing
#: (a storm's resends would otherwise cost a row write each, read by no decision).
SEEN_EVERY_S = 60.0
#: Above any row id: ``journal_prune`` without an archive to wait for.
MAX_ROW_ID = 2**63 - 1
#: Which connection a program wants: SQLite gives the ack path's journal writes their own.
Lane = Literal["journal", "work"]


def _observe(
    sightings: Sequence[Sighting], now: float, grace_s: float
) -> Program[list[Observation]]:
    """Apply ``episodes.next_event`` to each sighting in order; joins are written in bulk."""
    if not sightings:
        return []
    yield from lock(LOCK_EPISODES)
    statement, params = sql.latest_episodes(sorted({s.fingerprint for s in sightings}))
    found = yield from rows(statement, params)
    latest = {r[1]: Episode(int(r[0]), r[1], r[2], r[3], r[4] is not None) for r in found}
    seen_at = {int(r[0]): float(r[5]) for r in found}
    joined: list[Mapping[str, Any]] = []
    observed = []
    for s in sightings:
        episode = latest.get(s.fingerprint)
        event = next_event(episode, s.status, now, grace_s)
        if event is EpisodeEvent.JOINED:
            assert episode is not None
            if now - seen_at.get(episode.id, now) >= SEEN_EVERY_S:
                joined.append({"now": now, "id": episode.id})
                seen_at[episode.id] = now
        else:
            episode = yield from _episode_moves(s, episode, event, now)
        assert episode is not None
        latest[s.fingerprint] = episode
        observed.append(Observation(episode, event))
    yield from many(sql.EPISODE_SEEN, joined)
    return observed


def _archive_cursor(stream: str) -> Program[ArchiveCursor]:
    found = yield from row(sql.ARCHIVE_CURSOR, {"stream": stream})
    if found is None:
        return ArchiveCursor(0)
    archived_to, first, last = found
    pending = None if first is None else (int(first), int(last))
    return ArchiveCursor(int(archived_to), pending)


def _archive_begin(params: Mapping[str, Any]) -> Program[ArchiveCursor]:
    yield from count(sql.ARCHIVE_CURSOR_ADD, {"stream": params["stream"]})
    yield from count(sql.ARCHIVE_BEGIN, params)
    return (yield from _archive_cursor(params["stream"]))


def _episode_moves(
    s: Sighting, episode: Episode | None, event: EpisodeEvent, now: float
) -> Program[Episode | None]:
    """Write an episode's opening, closing or reopening; any other event writes nothing."""
    if event in (EpisodeEvent.OPENED, EpisodeEvent.RESOLVED_UNSEEN):
        closed_at = now if event is EpisodeEvent.RESOLVED_UNSEEN else None
        params = {"fingerprint": s.fingerprint, "alertname": s.alertname, "now": now}
        new_id = yield from value(sql.EPISODE_OPEN, {**params, "closed_at": closed_at})
        return Episode(int(new_id), s.fingerprint, now, closed_at, False)
    if event in (EpisodeEvent.REOPENED, EpisodeEvent.CLOSED):
        assert episode is not None
        closed_at = now if event is EpisodeEvent.CLOSED else None
        params = {"closed_at": closed_at, "now": now, "id": episode.id}
        yield from count(sql.EPISODE_CLOSE_OR_REOPEN, params)
        return replace(episode, closed_at_s=closed_at)
    return episode


def _claim_facts(r: ClaimRequest, now: float, self_id: int = 0) -> Program[ClaimFacts]:
    """What the guards count for ``r``: every claim but ``self_id`` (a claim rechecked)."""
    key = {"episode_id": r.episode_id, "rule": r.rule, "action": r.action}
    already = None if self_id else (yield from row(sql.CLAIM_EXISTS, key))
    on_target = {"target": r.target, "dry_run": int(r.dry_run), "self": self_id}
    last = yield from value(sql.CLAIM_LAST_ON_TARGET, on_target)
    counts = {}
    for name, where, params, limit in claim_windows(r):
        counts[name] = 0
        if limit is not None:
            since = {**params, "since": now - limit.window_s, "self": self_id}
            counts[name] = int((yield from value(sql.claims_since(where), since)))
    return ClaimFacts(
        already_claimed=already is not None,
        seconds_since_target_claim=None if last is None else now - last,
        **counts,
    )


def _claim(
    r: ClaimRequest, now: float, owner: str, decision: ClaimedDecision | None
) -> Program[ClaimResult]:
    yield from lock(LOCK_CLAIMS)
    episode = {"now": now, "id": r.episode_id}
    if decision is not None and (yield from count(sql.EPISODE_DECIDE, episode)) != 1:
        return ClaimResult(ALLOW, None, already_decided=True)
    verdict = claim_guards.decide(r, (yield from _claim_facts(r, now)))
    if not verdict.allowed:
        if decision is not None:  # the refusal is decided with the batch it joins
            yield from count(sql.EPISODE_UNDECIDE, {"id": r.episode_id})
        return ClaimResult(verdict, None)
    job = None if decision is None else json.dumps(dict(decision.job), default=str)
    params = {
        "episode_id": r.episode_id, "rule": r.rule, "action": r.action,
        "action_kind": r.action_kind, "target": r.target, "destructive": int(r.destructive),
        "dry_run": int(r.dry_run), "now": now, "owner": owner, "job": job,
    }  # fmt: skip
    claim_id = int((yield from value(sql.CLAIM_INSERT, params)))
    if decision is not None and (asked := decision.approval) is not None:
        held = {"id": claim_id, "now": now, "due_at": ts(asked.due_at), "needed": asked.needed,
                "approvers": json.dumps(list(asked.approvers)), "initiator": asked.initiator,
                "on_timeout": asked.on_timeout}  # fmt: skip
        yield from count(sql.APPROVAL_INSERT, held)
    records = [] if decision is None else list(decision.records(claim_id))
    yield from many(sql.AUDIT_INSERT, [audit_row(record) for record in records])
    if decision is not None and decision.plan is not None:
        yield from _queue(decision.plan(records), now)
    return ClaimResult(verdict, claim_id, records=records)


def _approval(claim_id: int) -> Program[PendingApproval | None]:
    found = yield from row(sql.APPROVAL, {"id": claim_id})
    if found is None:
        return None
    statement, params = sql.votes_of([claim_id])
    return pending_approval(found, [vote_of(r) for r in (yield from rows(statement, params))])


def _decide_approval(
    before: PendingApproval, state: str, by: str, now: float, owner: str
) -> Program[tuple[PendingApproval, UnfinishedClaim | None]]:
    """Move ``before`` out of pending (the caller holds the claims lock and saw it pending)
    and make its claim ``owner``'s; the approval after, and the claim."""
    params = {"state": state, "now": now, "by": by, "id": before.claim_id}
    yield from count(sql.APPROVAL_DECIDE, params)
    yield from count(sql.CLAIM_ADOPT, {"owner": owner, "id": before.claim_id})
    found = yield from row(sql.CLAIM_OF, {"id": before.claim_id})
    after = replace(before, state=state, decided_at=dt(now), decided_by=by)
    return after, None if found is None else unfinished_claim(found)


def _append(made: Sequence[AuditRecord], planned: Planned, now: float) -> Program[None]:
    yield from many(sql.AUDIT_INSERT, [audit_row(r) for r in made])
    yield from _queue(planned.outbox, now, planned.updates)


def _vote(
    v: Vote,
    owner: str,
    records: Callable[[VoteAnswer, PendingApproval], Sequence[AuditRecord]],
    plan: Callable[[Sequence[AuditRecord]], Planned],
) -> Program[VoteResult]:
    """Under the claims lock, so that two approvers answering at once are counted in turn."""
    yield from lock(LOCK_CLAIMS)
    before = yield from _approval(v.claim_id)
    if before is None:
        return VoteResult("unknown")
    if before.state != ApprovalState.PENDING:
        return VoteResult("closed", before)
    if any(earlier.by == v.by for earlier in before.votes):
        return VoteResult("voted_already", before)
    now = ts(v.at)
    cast = {"id": v.claim_id, "by": v.by, "vote": v.vote, "source": v.source,
            "reason": v.reason, "at": now}  # fmt: skip
    yield from count(sql.VOTE_INSERT, cast)
    after = replace(before, votes=(*before.votes, v))
    answer: VoteAnswer = "counted"
    claim = None
    if v.vote == "deny":
        answer = "denied"
        after, claim = yield from _decide_approval(after, ApprovalState.DENIED, v.by, now, owner)
    elif after.approvals >= after.needed:
        answer = "approved"
        names = ", ".join(x.by for x in after.votes if x.vote == "approve")
        after, claim = yield from _decide_approval(after, ApprovalState.APPROVED, names, now, owner)
    made = records(answer, after)
    yield from _append(made, plan(made), now)
    return VoteResult(answer, after, claim)


def _close_approval(
    claim_id: int,
    state: str,
    by: str,
    now: float,
    owner: str,
    records: Callable[[PendingApproval], Sequence[AuditRecord]],
    plan: Callable[[Sequence[AuditRecord]], Planned],
) -> Program[UnfinishedClaim | None]:
    yield from lock(LOCK_CLAIMS)
    before = yield from _approval(claim_id)
    if before is None or before.state != ApprovalState.PENDING:
        return None
    after, claim = yield from _decide_approval(before, state, by, now, owner)
    made = records(after)
    yield from _append(made, plan(made), now)
    return claim


def _approvals(state: str | None, limit: int) -> Program[list[PendingApproval]]:
    if state is None:
        found = yield from rows(sql.APPROVALS_ANY, {"limit": limit})
    else:
        found = yield from rows(sql.APPROVALS_IN, {"state": state, "limit": limit})
    if not found:
        return []
    statement, params = sql.votes_of([int(r[0]) for r in found])
    votes: dict[int, list[Vote]] = {}
    for v in (yield from rows(statement, params)):  # one read for every approval listed
        votes.setdefault(int(v[0]), []).append(vote_of(v))
    return [pending_approval(r, votes.get(int(r[0]), [])) for r in found]


def _claim_preview(r: ClaimRequest, now: float) -> Program[Verdict]:
    """Reads only, so without the claims lock: a verdict as of now, which a claim taken
    meanwhile may change (a shadow decision is a forecast, not a right to act)."""
    return claim_guards.decide(r, (yield from _claim_facts(r, now)))


def _claim_recheck(
    claim_id: int, r: ClaimRequest, now: float, owner: str
) -> Program[Verdict | None]:
    yield from lock(LOCK_CLAIMS)
    if (yield from row(sql.CLAIM_TO_RUN, {"id": claim_id, "owner": owner})) is None:
        return None
    return claim_guards.decide(r, (yield from _claim_facts(r, now, self_id=claim_id)))


def _claim_intent(
    claim_id: int, intent: Mapping[str, Any], exclusive: str | None, owner: str
) -> Program[IntentAnswer]:
    """Idempotent: written again after a lost answer, it answers ``recorded`` again."""
    text = json.dumps(dict(intent), default=str)
    params = {"intent": text, "id": claim_id, "owner": owner}
    if (yield from count(sql.CLAIM_INTENT, params)) != 1:
        return "lost"
    if exclusive is None:
        return "recorded"
    hold = {"key": exclusive, "id": claim_id}
    yield from count(sql.INFLIGHT_HOLD, hold)
    if (yield from value(sql.INFLIGHT_HOLDER, hold)) != claim_id:
        yield from count(sql.CLAIM_INTENT_WITHDRAWN, {"id": claim_id})
        return "busy"
    return "recorded"


def _settle(
    s: Settlement,
    now: float,
    owner: str,
    records: Sequence[Mapping[str, Any]],
    queued: Sequence[OutboxItem],
    updates: Sequence[IncidentUpdate],
) -> Program[bool]:
    params = {"outcome": s.outcome, "now": now, "id": s.claim_id, "owner": owner}
    if (yield from count(sql.CLAIM_OUTCOME, params)) != 1:
        return False
    yield from count(sql.INFLIGHT_RELEASE, {"id": s.claim_id})
    if s.undo_state is not None:
        state = json.dumps(dict(s.undo_state))
        undo = {"id": s.claim_id, "target": s.undo_target, "state": state,
                "after_s": s.undo_after_s}  # fmt: skip
        yield from count(sql.UNDO_PLAN, undo)
    if s.followup_at is not None:
        yield from count(sql.FOLLOWUP_PLAN, {"id": s.claim_id, "due_at": ts(s.followup_at)})
    yield from many(sql.AUDIT_INSERT, records)
    yield from _queue(queued, now, updates)
    return True


def _queue(
    queued: Sequence[OutboxItem], now: float, updates: Sequence[IncidentUpdate] = ()
) -> Program[None]:
    """Updates of what paged before first (a page queued here already tells its news),
    then the notifications, each episode a member of its incident; a storm's pages join
    the storm incident still going on."""
    yield from many(sql.UPDATE, [_update_row(u, now) for u in updates])
    queued = yield from _into_ongoing_storms(queued, now)
    yield from many(sql.OUTBOX_INSERT, [outbox_row(item, now) for item in queued])
    members = {(item.dedup_key, item.episode_id) for item in queued if item.event == "trigger"}
    batch = [{"dedup_key": k, "episode_id": e, "joined_at": now} for k, e in sorted(members)]
    yield from many(sql.MEMBER_INSERT, batch)


def _into_ongoing_storms(queued: Sequence[OutboxItem], now: float) -> Program[list[OutboxItem]]:
    """Each storm page renamed to its policy's storm incident an alert joined within
    ``dedup_keys.STORM_QUIET_S``, or else to the first of its policy's keys here: a
    sliding window, not a clock hour."""
    keys: dict[str, list[str]] = {}
    for key in sorted({i.dedup_key for i in queued}):
        if key.startswith(dedup_keys.STORM_PREFIX):
            keys.setdefault(dedup_keys.storm_prefix(key), []).append(key)
    renamed: dict[str, str] = {}
    for prefix, named in keys.items():
        params = {"prefix": prefix, "length": len(prefix), "since": now - dedup_keys.STORM_QUIET_S}
        ongoing = yield from value(sql.STORM_GOING_ON, params)
        renamed.update((key, str(ongoing) if ongoing is not None else named[0]) for key in named)
    if not renamed:
        return list(queued)
    return [replace(i, dedup_key=renamed.get(i.dedup_key, i.dedup_key)) for i in queued]


def _update_row(update: IncidentUpdate, now: float) -> dict[str, Any]:
    return {"episode_id": update.episode_id, "topic": update.topic, "note": update.note,
            "now": now, "due": now, **sql.RESOLVE_SPANNING}  # fmt: skip


def _acknowledge(ack: HumanAck, records: Sequence[Mapping[str, Any]], note: str) -> Program[None]:
    """A human has the incident: keep who, stop the tiers not sent, tell the other sinks."""
    at = ts(ack.at)
    params = {"dedup_key": ack.dedup_key, "kind": ack.kind, "by_whom": ack.by,
              "source": ack.source, "url": ack.url, "at": at}  # fmt: skip
    yield from count(sql.ACK_INSERT, params)
    yield from many(sql.AUDIT_INSERT, records)
    resolved = ack.kind == "resolved"
    why = f"{ack.kind} by {ack.by} on {ack.source}"
    drop = {"now": at, "dedup_key": ack.dedup_key, "why": why, "above": -1 if resolved else 0}
    yield from count(sql.OUTBOX_DROP_TRIGGERS, drop)
    event = "resolve" if resolved else "update"
    # A resolve is one per incident and sink; an acknowledgement's topic says it is one.
    topic = "" if resolved else f"{ACKNOWLEDGED_TOPIC}{at}"
    others = {"dedup_key": ack.dedup_key, "sink": ack.source, "event": event, "due": at,
              "now": at, "topic": topic, "note": note}  # fmt: skip
    yield from count(sql.QUEUE_FOR_OTHERS, others)


def _audit(
    records: Sequence[AuditRecord],
    decided: Sequence[int],
    now: float,
    queued: Sequence[OutboxItem],
    resolved: Sequence[Mapping[str, Any]],
    updates: Sequence[IncidentUpdate] = (),
) -> Program[set[int]]:
    """Decide the episodes first: the rows they lock wait for any other transaction
    deciding them, and those it decided first are left out of the rest."""
    taken: set[int] = set()
    if decided:
        statement, params = sql.decide_episodes(decided)
        taken = {int(r[0]) for r in (yield from rows(statement, {**params, "now": now}))}
    lost = set(decided) - taken
    kept = [r for r in records if r.episode_id not in lost] if lost else records
    yield from many(sql.AUDIT_INSERT, [audit_row(r) for r in kept])
    sent = [item for item in queued if item.episode_id not in lost] if lost else queued
    news = [u for u in updates if u.episode_id not in lost] if lost else updates
    yield from _queue(sent, now, news)
    yield from many(sql.RESOLVE, resolved)
    return lost


def _undo(r: Sequence[Any]) -> Undo:
    state = json.loads(r[6]) if r[6] else {}
    return Undo(int(r[0]), int(r[1]), r[2], r[3], r[4], r[5], state, float(r[7]))


class SqlStore:
    """What both backends share; a backend supplies ``_run`` (and may override the lease
    and the storm window, where one process owning the file needs neither)."""

    dialect: Dialect
    owner: str = ""
    outage: Outage | None = None

    async def run(self, program: Program[T], lane: Lane = "work", atomic: bool = False) -> T:
        """Run ``program`` on the database; ``atomic``: in one write transaction (PostgreSQL
        runs every program in one). The store being away is told to ``outage``, as is the
        first answer after: the callers retry quietly."""
        try:
            answer = await self._run(program, lane, atomic)
        except StoreUnavailable as exc:
            if self.outage is not None:
                self.outage.failed(exc)
            raise
        if self.outage is not None:
            self.outage.answered()
        return answer

    async def _run(self, program: Program[T], lane: Lane, atomic: bool) -> T:
        """The backend's ``run``."""
        raise NotImplementedError

    def watch(self, outage: Outage) -> None:
        self.outage = outage

    async def migrate(self) -> int:
        """Bring the schema to this code's version; the version it was at."""
        return await self.run(migrate(self.dialect), atomic=True)

    async def ping(self) -> bool:
        try:
            await self.run(value(sql.PING, {}))
        except StoreUnavailable:
            return False
        return True

    # ----- journal

    async def journal_append(self, body: bytes, received_at: datetime) -> int:
        body = lz4.frame.compress(body)
        params = {"owner": self.owner, "received_at": ts(received_at), "body": body}
        return int(await self.run(value(sql.JOURNAL_APPEND, params), lane="journal"))

    async def journal_pending(self) -> list[int]:
        found = await self.run(rows(sql.JOURNAL_PENDING, {"owner": self.owner}))
        return [int(r[0]) for r in found]

    async def journal_entry(self, journal_id: int) -> JournalEntry:
        found = await self.run(row(sql.JOURNAL_ENTRY, {"id": journal_id}))
        if found is None:
            raise StoreUnavailable(f"journal entry {journal_id} is missing")
        return JournalEntry(int(found[0]), dt(found[1]), lz4.frame.decompress(found[2]))

    async def journal_since(self, since: datetime, after_id: int, limit: int) -> list[JournalEntry]:
        params = {"since": ts(since), "after": after_id, "limit": limit}
        found = await self.run(rows(sql.JOURNAL_SINCE, params))
        return [JournalEntry(int(r[0]), dt(r[1]), lz4.frame.decompress(r[2])) for r in found]

    async def journal_done(self, journal_id: int, now: datetime) -> None:
        await self.run(count(sql.JOURNAL_DONE, {"now": ts(now), "id": journal_id}))

    async def journal_prune(self, done_before: datetime, up_to_id: int | None = None) -> int:
        up_to = MAX_ROW_ID if up_to_id is None else up_to_id
        return await self.run(count(sql.JOURNAL_PRUNE, {"before": ts(done_before), "up_to": up_to}))

    # ----- the archive's cursors

    async def archive_cursor(self, stream: str) -> ArchiveCursor:
        return await self.run(_archive_cursor(stream))

    async def archive_begin(self, stream: str, first_id: int, last_id: int) -> ArchiveCursor:
        params = {"stream": stream, "first": first_id, "last": last_id}
        return await self.run(_archive_begin(params), atomic=True)

    async def archive_done(self, stream: str, last_id: int) -> None:
        await self.run(count(sql.ARCHIVE_DONE, {"stream": stream, "last": last_id}))

    async def audit_prune(self, before: datetime, up_to_id: int, limit: int) -> int:
        params = {"before": ts(before), "up_to": up_to_id, "limit": limit}
        return await self.run(count(sql.AUDIT_PRUNE, params))

    # ----- the evidence queue

    async def evidence_put(self, key: str, body: bytes, now: datetime) -> None:
        await self.run(count(sql.EVIDENCE_PUT, {"key": key, "body": body, "now": ts(now)}))

    async def evidence_due(self, now: datetime, limit: int) -> list[QueuedEvidence]:
        found = await self.run(rows(sql.EVIDENCE_DUE, {"now": ts(now), "limit": limit}))
        return [QueuedEvidence(str(r[0]), bytes(r[1]), dt(r[2]), int(r[3])) for r in found]

    async def evidence_sent(self, bundle: QueuedEvidence) -> None:
        params = {"key": bundle.key, "queued_at": ts(bundle.queued_at)}
        await self.run(count(sql.EVIDENCE_SENT, params))

    async def evidence_retry(self, bundle: QueuedEvidence, due_at: datetime, error: str) -> None:
        params = {"key": bundle.key, "queued_at": ts(bundle.queued_at), "due_at": ts(due_at),
                  "error": error[:1000]}  # fmt: skip
        await self.run(count(sql.EVIDENCE_RETRY, params))

    async def evidence_waiting(self) -> tuple[int, datetime | None]:
        found = await self.run(row(sql.EVIDENCE_WAITING, {}))
        waiting, oldest = found if found is not None else (0, None)
        return int(waiting or 0), None if oldest is None else dt(oldest)

    # ----- episodes

    async def observe(
        self, sightings: Sequence[Sighting], now: datetime, grace_s: float
    ) -> list[Observation]:
        return await self.run(_observe(sightings, ts(now), grace_s), atomic=True)

    async def episode_is_open(self, episode_id: int) -> bool:
        return bool(await self.run(value(sql.EPISODE_IS_OPEN, {"id": episode_id})))

    # ----- claims

    async def claim(
        self, request: ClaimRequest, now: datetime, decision: ClaimedDecision | None = None
    ) -> ClaimResult:
        return await self.run(_claim(request, ts(now), self.owner, decision), atomic=True)

    async def claim_preview(self, request: ClaimRequest, now: datetime) -> Verdict:
        return await self.run(_claim_preview(request, ts(now)))

    async def claim_recheck(
        self, claim_id: int, request: ClaimRequest, now: datetime
    ) -> Verdict | None:
        return await self.run(_claim_recheck(claim_id, request, ts(now), self.owner))

    async def claim_intent(
        self, claim_id: int, intent: Mapping[str, Any], exclusive: str | None
    ) -> IntentAnswer:
        program = _claim_intent(claim_id, intent, exclusive, self.owner)
        return await self.run(program, atomic=True)

    async def settle(
        self,
        settlement: Settlement,
        now: datetime,
        records: Sequence[AuditRecord] = (),
        outbox: Sequence[OutboxItem] = (),
        updates: Sequence[IncidentUpdate] = (),
    ) -> bool:
        at = ts(now)
        written = [audit_row(r) for r in records]
        program = _settle(settlement, at, self.owner, written, outbox, updates)
        return await self.run(program, atomic=True)

    async def unfinished_claims(self) -> list[UnfinishedClaim]:
        found = await self.run(rows(sql.UNFINISHED, {"owner": self.owner}))
        return [unfinished_claim(r) for r in found]

    async def recent_claims(self, since: datetime, dry_run: bool, limit: int) -> list[RecentClaim]:
        params = {"since": ts(since), "mode": int(dry_run), "limit": limit}
        found = await self.run(rows(sql.RECENT_CLAIMS, params))
        return [recent_claim(r) for r in found]

    # ----- approvals

    async def approval(self, claim_id: int) -> PendingApproval | None:
        return await self.run(_approval(claim_id))

    async def approvals(self, state: str | None, limit: int) -> list[PendingApproval]:
        return await self.run(_approvals(state, limit))

    async def approval_vote(
        self,
        vote: Vote,
        records: Callable[[VoteAnswer, PendingApproval], Sequence[AuditRecord]],
        plan: Callable[[Sequence[AuditRecord]], Planned],
    ) -> VoteResult:
        return await self.run(_vote(vote, self.owner, records, plan), atomic=True)

    async def approval_close(
        self,
        claim_id: int,
        state: str,
        by: str,
        now: datetime,
        records: Callable[[PendingApproval], Sequence[AuditRecord]],
        plan: Callable[[Sequence[AuditRecord]], Planned],
    ) -> UnfinishedClaim | None:
        program = _close_approval(claim_id, state, by, ts(now), self.owner, records, plan)
        return await self.run(program, atomic=True)

    # ----- aftercare

    async def undo_arm(self, episode_ids: Sequence[int], closed_at: datetime) -> None:
        batch = [{"closed_at": ts(closed_at), "episode_id": e} for e in episode_ids]
        await self.run(many(sql.UNDO_ARM, batch), atomic=True)

    async def undo_disarm(self, episode_ids: Sequence[int]) -> None:
        batch = [{"episode_id": e} for e in episode_ids]
        await self.run(many(sql.UNDO_DISARM, batch), atomic=True)

    async def undo_due(self, now: datetime) -> list[Undo]:
        return [_undo(r) for r in await self.run(rows(sql.UNDO_DUE, {"now": ts(now)}))]

    async def undo_take(self, undo: Undo, until: datetime) -> bool:
        params = {"id": undo.id, "due_at": undo.due_as_stored, "until": ts(until)}
        return await self.run(count(sql.UNDO_TAKE, params)) == 1

    async def undo_next(
        self, undo_id: int, state: Mapping[str, Any] | None, due_at: datetime | None
    ) -> None:
        if state is None or due_at is None:
            await self.run(count(sql.UNDO_DONE, {"id": undo_id}))
            return
        params = {"state": json.dumps(dict(state)), "due_at": ts(due_at), "id": undo_id}
        await self.run(count(sql.UNDO_NEXT, params))

    async def followup_due(self, now: datetime) -> list[Undo]:
        return [_undo(r) for r in await self.run(rows(sql.FOLLOWUP_DUE, {"now": ts(now)}))]

    async def followup_take(self, followup: Undo, until: datetime) -> bool:
        params = {"id": followup.id, "due_at": followup.due_as_stored, "until": ts(until)}
        return await self.run(count(sql.FOLLOWUP_TAKE, params)) == 1

    async def followup_done(self, followup_id: int, now: datetime) -> None:
        await self.run(count(sql.FOLLOWUP_DONE, {"now": ts(now), "id": followup_id}))

    # ----- audit and outbox

    async def audit(
        self,
        records: Sequence[AuditRecord],
        decided_episodes: Sequence[int] = (),
        now: datetime | None = None,
        outbox: Sequence[OutboxItem] = (),
        resolved_episodes: Sequence[int] = (),
        resolve_after_s: float = 0.0,
        updates: Sequence[IncidentUpdate] = (),
    ) -> set[int]:
        at = ts(now) if now else 0.0
        decided = list(decided_episodes) if now else []
        due = at + resolve_after_s
        resolve = [
            {"now": at, "due": due, "episode_id": e, **sql.RESOLVE_SPANNING}
            for e in resolved_episodes
        ]
        if not (records or decided or outbox or resolve or updates):
            return set()
        program = _audit(records, decided, at, outbox, resolve, updates)
        return await self.run(program, atomic=True)

    async def decisions(self, query: AuditQuery) -> list[AuditRecord]:
        conditions, params = audit_conditions(query)
        found = await self.run(rows(sql.decisions(conditions, query.newest_first), params))
        return [audit_record(r) for r in found]

    async def outbox_due(self, now: datetime, limit: int) -> list[OutboxItem]:
        found = await self.run(rows(sql.OUTBOX_DUE, {"now": ts(now), "limit": limit}))
        return [outbox_item(r) for r in found]

    async def outbox_done(
        self,
        item_id: int,
        now: datetime,
        delivered: bool,
        error: str = "",
        reference: Mapping[str, Any] | None = None,
    ) -> None:
        if delivered:
            answer = json.dumps(dict(reference), sort_keys=True) if reference else None
            params = {"now": ts(now), "error": error, "id": item_id, "reference": answer}
            await self.run(count(sql.OUTBOX_DELIVERED, params))
        else:
            params = {"now": ts(now), "error": error, "id": item_id}
            await self.run(count(sql.OUTBOX_DROPPED, params))

    async def outbox_withdraw(self, item_id: int) -> None:
        await self.run(count(sql.OUTBOX_WITHDRAW, {"id": item_id}))

    async def outbox_retry(self, item_id: int, due_at: datetime, error: str) -> None:
        params = {"due_at": ts(due_at), "error": error, "id": item_id}
        await self.run(count(sql.OUTBOX_RETRY, params))

    async def outbox_drop_pending_triggers(
        self, dedup_key: str, now: datetime, why: str, above_tier: int = -1
    ) -> int:
        params = {"now": ts(now), "dedup_key": dedup_key, "why": why, "above": above_tier}
        return await self.run(count(sql.OUTBOX_DROP_TRIGGERS, params))

    async def outbox_defer_updates(self, dedup_key: str, sink: str, due_at: datetime) -> None:
        params = {"dedup_key": dedup_key, "sink": sink, "due_at": ts(due_at)}
        await self.run(count(sql.OUTBOX_DEFER_UPDATES, params))

    async def outbox_trigger_state(self, dedup_key: str, sink: str) -> TriggerState | None:
        found = await self.run(
            row(sql.OUTBOX_TRIGGER_STATE, {"dedup_key": dedup_key, "sink": sink})
        )
        if found is None:
            return None
        delivered_at, dropped_at, reference, due_at, resolved = found
        answer = json.loads(reference) if reference else {}
        delivered, dropped = delivered_at is not None, dropped_at is not None
        return TriggerState(delivered, dropped, answer, dt(due_at), bool(resolved))

    async def outbox_last_delivered(
        self, dedup_key: str, sink: str, tier: int, other_than: int
    ) -> datetime | None:
        params = {"dedup_key": dedup_key, "sink": sink, "tier": tier, "id": other_than}
        at = await self.run(value(sql.OUTBOX_LAST_DELIVERED, params))
        return None if at is None else dt(at)

    async def incident_is_open(self, dedup_key: str) -> bool:
        found = await self.run(value(sql.INCIDENT_OPEN, {"dedup_key": dedup_key}))
        return found is not None

    async def incident_episodes(self, dedup_key: str) -> list[int]:
        found = await self.run(rows(sql.INCIDENT_EPISODES, {"dedup_key": dedup_key}))
        return [int(r[0]) for r in found]

    async def incident_acknowledge(
        self, ack: HumanAck, records: Sequence[AuditRecord], note: str
    ) -> None:
        await self.run(_acknowledge(ack, [audit_row(r) for r in records], note), atomic=True)

    async def incident_ack(
        self, dedup_key: str, since: datetime | None = None, kind: str = ""
    ) -> HumanAck | None:
        params = {"dedup_key": dedup_key, "since": ts(since) if since else 0.0, "kind": kind}
        found = await self.run(row(sql.ACK_SINCE, params))
        if found is None:
            return None
        kind, by, source, url, at = found
        return HumanAck(dedup_key, kind, by, source, url, dt(at))
