"""The ``Store`` contract every state backend implements, one protocol per concern.

Journal (payloads accepted but not yet processed), episodes, claims (with the guards that
must hold atomically when one is taken), the lease, aftercare, the audit trail and the
outbox; ``Store`` is their union. A stage depends on the concerns it uses. Times are
passed in by the caller: the store never reads a clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from remediator.core.model import AlertStatus, AuditRecord, Observation, Verdict
from remediator.core.outage import Outage
from remediator.guards.claim import ClaimRequest


@dataclass(frozen=True, slots=True)
class JournalEntry:
    id: int
    received_at: datetime
    body: bytes


@dataclass(frozen=True, slots=True)
class Sighting:
    """One alert of a payload, as episode bookkeeping needs it."""

    fingerprint: str
    status: AlertStatus
    alertname: str


@dataclass(frozen=True, slots=True)
class ClaimedDecision:
    """What a claim writes with it, in its transaction: the episode's decision (the records
    of the claim id it gets) and the job its run needs (``act.jobs``)."""

    records: Callable[[int], Sequence[AuditRecord]]
    job: Mapping[str, Any]
    plan: Callable[[Sequence[AuditRecord]], Sequence[OutboxItem]] | None = None
    """The notifications those records call for (a rule that pages before acting), queued
    in the claim's transaction."""
    approval: ApprovalAsked | None = None
    """The claim is held for this approval (``ApprovalStore``), not run at once."""


@dataclass(frozen=True, slots=True)
class ApprovalAsked:
    """The approval a claim waits for, written with it: ``needed`` distinct approvers of
    ``approvers`` (names or teams; empty: any) by ``due_at``, else ``on_timeout``."""

    due_at: datetime
    needed: int
    approvers: tuple[str, ...]
    on_timeout: str
    initiator: str = ""
    """Who may not approve it: the person whose change raised the alert, where known."""


@dataclass(frozen=True, slots=True)
class Vote:
    """An approver's answer to a claim's approval."""

    claim_id: int
    by: str
    vote: Literal["approve", "deny"]
    source: str
    """Where it came from: ``api``, ``cli`` or ``slack:<sink>``."""
    at: datetime
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PendingApproval:
    """A claim's approval as it stands, with its votes and what the claim is about."""

    claim_id: int
    episode_id: int
    fingerprint: str
    alertname: str
    rule: str
    action: str
    target: str
    requested_at: datetime
    due_at: datetime
    needed: int
    approvers: tuple[str, ...]
    initiator: str
    on_timeout: str
    state: str
    decided_at: datetime | None
    decided_by: str
    episode_open: bool
    votes: tuple[Vote, ...] = ()

    @property
    def approvals(self) -> int:
        return sum(1 for v in self.votes if v.vote == "approve")


VoteAnswer = Literal["counted", "approved", "denied", "closed", "voted_already", "unknown"]
"""``approval_vote``: ``counted`` (more approvals are needed), ``approved`` or ``denied``
(this vote decided it), ``closed`` (it was decided before), ``voted_already`` (this
approver answered before), ``unknown`` (no such approval)."""


@dataclass(frozen=True, slots=True)
class VoteResult:
    answer: VoteAnswer
    approval: PendingApproval | None = None
    """The approval after the vote (before it, when the vote changed nothing)."""
    claim: UnfinishedClaim | None = None
    """Approved or denied: the claim, now this replica's to run or to settle."""


@dataclass(frozen=True, slots=True)
class ClaimResult:
    verdict: Verdict
    claim_id: int | None
    already_decided: bool = False
    """Another transaction (a replica given the same notification) decided the episode
    first: nothing was written, and nothing is to be."""
    records: Sequence[AuditRecord] = ()
    """The decision written with the claim."""


@dataclass(frozen=True, slots=True)
class UnfinishedClaim:
    """A claim with no outcome: the process stopped between claiming and recording."""

    claim_id: int
    episode_id: int
    fingerprint: str
    alertname: str
    rule: str
    action: str
    target: str
    claimed_at: datetime
    intent: Mapping[str, Any] | None = None
    """What the action announced before its side effect; None: it never got that far."""
    job: Mapping[str, Any] | None = None
    """What running it needs (``act.jobs``); None for claims made before claims kept it."""
    approval: str | None = None
    """Where the approval it asked stands (``ApprovalState``, never pending: a pending claim
    is not unfinished work); None: it asked none."""
    approval_on_timeout: str = ""
    approval_at: datetime | None = None
    """When the approval was decided (approved, denied, timed out, withdrawn)."""
    approval_by: str = ""
    """Who decided it: the approvers' names, or what did (the timeout, the resolve)."""


IntentAnswer = Literal["recorded", "busy", "lost"]
"""``claim_intent``: recorded; ``busy``, another unfinished claim holds the exclusive key;
``lost``, the claim is finished or another replica took it over."""


SENT_NOTHING = ("refused", "not_run", "not_applied")
"""Outcomes of a claim that sent nothing (refused before acting, or closed unsent by a
crash): it starts no cooldown."""


@dataclass(frozen=True, slots=True)
class RecentClaim:
    """A claim as the brakes count it: what it was on, of which kind, when, and how it
    ended (None while it runs)."""

    episode_id: int
    rule: str
    action_kind: str
    target: str
    destructive: bool
    claimed_at: datetime
    outcome: str | None


@dataclass(frozen=True, slots=True)
class Settlement:
    """How a claim ended, and the aftercare its effect needs, written with its records."""

    claim_id: int
    outcome: str
    undo_target: str = ""
    undo_state: Mapping[str, Any] | None = None
    """What to put back once the episode stays resolved; None: nothing."""
    undo_after_s: float = 0.0
    followup_at: datetime | None = None
    """When to check that the episode resolved after the fix; None: no check."""


@dataclass(frozen=True, slots=True)
class TakenOver:
    """What a replica whose lease ran out left behind, now this replica's."""

    journal_ids: list[int]
    claims: list[UnfinishedClaim]


@dataclass(frozen=True, slots=True)
class Undo:
    """What an action changed and will put back once its episode stays resolved."""

    id: int
    episode_id: int
    fingerprint: str
    rule: str
    action: str
    target: str
    state: Mapping[str, Any]
    due_as_stored: float = 0.0
    """When it fell due, exactly as the store holds it: what ``undo_take`` and
    ``followup_take`` compare, so that of the replicas that saw it due, one takes it."""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A notification to deliver: planned with the decision, sent by the delivery loop."""

    episode_id: int
    dedup_key: str
    sink: str
    event: str
    tier: int
    severity: str
    policy: str
    summary: str
    details: Mapping[str, Any]
    due_at: datetime
    id: int | None = None
    attempts: int = 0
    created_at: datetime | None = None
    topic: str = ""
    """What an update is about (one update per topic, incident and sink); '' otherwise."""
    note: str = ""
    """An update's news, one sentence."""


ACKNOWLEDGED_TOPIC = "acknowledged@"
"""How the topic of an update that tells of a human's acknowledgement begins."""


@dataclass(frozen=True, slots=True)
class IncidentUpdate:
    """News of an episode (what remediator did, how it verified) for the incidents that
    paged for it: queued for every sink they reached, once per ``topic``."""

    episode_id: int
    topic: str
    note: str


@dataclass(frozen=True, slots=True)
class Planned:
    """What a batch of records calls for (``escalate.plan``): pages, the episodes they
    resolve, and news for incidents paged before; the store queues them in the records'
    transaction."""

    outbox: list[OutboxItem] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    updates: list[IncidentUpdate] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class HumanAck:
    """A human acknowledged (``kind`` "acknowledged") or resolved ("resolved") an incident
    on a sink (``source``), as that sink's signed webhook said."""

    dedup_key: str
    kind: str
    by: str
    source: str
    url: str
    at: datetime


@dataclass(frozen=True, slots=True)
class TriggerState:
    """Where an incident's first trigger on a sink stands, and what the sink answered."""

    delivered: bool
    dropped: bool
    reference: Mapping[str, Any]
    due_at: datetime
    """When it is due (again, after a failed send)."""
    resolved: bool = False
    """A resolve of the incident reached the sink (an update would reopen it on some)."""


@dataclass(frozen=True, slots=True)
class AuditQuery:
    episode_id: int | None = None
    fingerprint: str | None = None
    rule: str | None = None
    severity: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after_id: int = 0
    limit: int = 100
    step: str | None = None
    alertname: str | None = None
    reason: str | None = None
    newest_first: bool = False
    """Newest first (the console's and ``decisions``' order), from ``before_id`` down."""
    before_id: int | None = None


class StoreLifecycle(Protocol):
    """Opening (which migrates the schema), closing, and a health probe."""

    async def open(self) -> None:
        """Create or migrate the schema and get ready to serve."""
        ...

    async def close(self) -> None: ...

    async def ping(self) -> bool:
        """True when the store answers a trivial read."""
        ...

    def watch(self, outage: Outage) -> None:
        """Tell ``outage`` of every call that fails because the store is away, and of the
        first that answers after: the store's callers retry without logging each try."""
        ...


class JournalStore(Protocol):
    """Accepted payloads, durable before the ack, until the worker processed them."""

    async def journal_append(self, body: bytes, received_at: datetime) -> int:
        """Durably record an accepted payload; the webhook acks only after this returns."""
        ...

    async def journal_pending(self) -> list[int]:
        """Ids of accepted payloads not yet processed, oldest first."""
        ...

    async def journal_entry(self, journal_id: int) -> JournalEntry: ...

    async def journal_since(self, since: datetime, after_id: int, limit: int) -> list[JournalEntry]:
        """Up to ``limit`` entries received at ``since`` or later with an id above
        ``after_id``, by id, processed or not (kept until pruned): what ``journal export``
        writes for ``replay``."""
        ...

    async def journal_done(self, journal_id: int, now: datetime) -> None: ...

    async def journal_prune(self, done_before: datetime, up_to_id: int | None = None) -> int:
        """Forget processed payloads finished before ``done_before`` (and, when given, with
        ids up to ``up_to_id``: those archived); how many went."""
        ...


class EpisodeStore(Protocol):
    """One episode per firing of a fingerprint: opened, joined, closed, reopened."""

    async def observe(
        self, sightings: Sequence[Sighting], now: datetime, grace_s: float
    ) -> list[Observation]:
        """Open, join, reopen or close the episode of each sighting, in order, atomically."""
        ...

    async def episode_is_open(self, episode_id: int) -> bool: ...


class ClaimStore(Protocol):
    """The right to act, taken under the claim guards, with the intent before the effect and
    the outcome after it; and the storm window the guards count."""

    async def claim(
        self, request: ClaimRequest, now: datetime, decision: ClaimedDecision | None = None
    ) -> ClaimResult:
        """Check the claim guards and record the claim in one transaction; with
        ``decision``, only if the episode is not decided yet, and then the decision and the
        job with it (the episode decided)."""
        ...

    async def claim_recheck(
        self, claim_id: int, request: ClaimRequest, now: datetime
    ) -> Verdict | None:
        """The claim guards again, for a claim about to run late (resumed after a restart
        or a takeover), counting every claim but itself; None when it is no longer this
        replica's to run (settled, taken over, or its intent already written)."""
        ...

    async def claim_intent(
        self, claim_id: int, intent: Mapping[str, Any], exclusive: str | None
    ) -> IntentAnswer:
        """Durably record what the claim's action is about to do, before it does it; and
        hold ``exclusive`` (if given) for this claim until its outcome is recorded."""
        ...

    async def settle(
        self,
        settlement: Settlement,
        now: datetime,
        records: Sequence[AuditRecord] = (),
        outbox: Sequence[OutboxItem] = (),
        updates: Sequence[IncidentUpdate] = (),
    ) -> bool:
        """In one transaction: record the outcome of this replica's unfinished claim,
        release what it held, plan its undo and follow-up, append ``records`` and queue
        ``outbox`` and ``updates``. False, writing nothing, when the claim already had an
        outcome or is no longer this replica's: so a settlement retried after a lost answer
        is written once."""
        ...

    async def unfinished_claims(self) -> list[UnfinishedClaim]:
        """This replica's claims without an outcome, oldest first."""
        ...

    async def recent_claims(self, since: datetime, dry_run: bool, limit: int) -> list[RecentClaim]:
        """Every replica's claims made after ``since`` in ``dry_run``'s mode, newest first,
        at most ``limit``: what the budgets, rate limits and cooldowns count."""
        ...

    async def storm_add(self, target: str, now: datetime, window_s: float) -> int:
        """Note that ``target`` needs action now; how many distinct targets did, across
        replicas, within the last ``window_s`` seconds."""
        ...

    async def storm_peek(self, target: str, now: datetime, window_s: float) -> int:
        """What ``storm_add`` would answer for ``target`` now, noting nothing: for a shadow
        rule's decision, which must leave the live brake as it is."""
        ...

    async def claim_preview(self, request: ClaimRequest, now: datetime) -> Verdict:
        """The claim guards' verdict on ``request`` now, against the live claims, taking
        nothing: for a shadow rule's decision."""
        ...


class ApprovalStore(Protocol):
    """Claims held for a human's approval (asked with the claim: ``ClaimedDecision``): the
    votes, and the one move of each out of ``pending`` (approved, denied, timed out,
    withdrawn), which also makes the claim this replica's to run or settle."""

    async def approval(self, claim_id: int) -> PendingApproval | None: ...

    async def approvals(self, state: str | None, limit: int) -> list[PendingApproval]:
        """Approvals in ``state`` (None: any), the newest first, ``limit`` at most."""
        ...

    async def approval_vote(
        self,
        vote: Vote,
        records: Callable[[VoteAnswer, PendingApproval], Sequence[AuditRecord]],
        plan: Callable[[Sequence[AuditRecord]], Planned],
    ) -> VoteResult:
        """In one transaction: keep ``vote`` unless the approval is decided or the approver
        answered before; a deny, or the last approval needed, decides it (and the claim
        becomes this replica's); ``records`` of what it came to (for the approval after it)
        are appended with what they ``plan``."""
        ...

    async def approval_close(
        self,
        claim_id: int,
        state: str,
        by: str,
        now: datetime,
        records: Callable[[PendingApproval], Sequence[AuditRecord]],
        plan: Callable[[Sequence[AuditRecord]], Planned],
    ) -> UnfinishedClaim | None:
        """Move a pending approval to ``state`` (timed out, withdrawn) by ``by`` at ``now``,
        with ``records``, making its claim this replica's; None when it was not pending
        (another replica or a vote decided it first)."""
        ...


class LeaseStore(Protocol):
    """Replicas' leases on the work they own, and taking over a dead one's."""

    async def heartbeat(self, now: datetime) -> None:
        """Renew this replica's lease on the journal entries and claims it owns."""
        ...

    async def take_over(self, now: datetime, lease_s: float) -> TakenOver:
        """Make this replica the owner of the unprocessed journal entries and unfinished
        claims of every replica whose lease is older than ``lease_s``."""
        ...


class AftercareStore(Protocol):
    """After a fix: undos once the episode stays resolved, follow-ups that check it did.
    Both are planned with the claim's outcome (``ClaimStore.settle``)."""

    async def undo_arm(self, episode_ids: Sequence[int], closed_at: datetime) -> None:
        """The episodes closed: their undos fall due ``after_s`` later."""
        ...

    async def undo_disarm(self, episode_ids: Sequence[int]) -> None:
        """The episodes fire again: their undos wait for the next close."""
        ...

    async def undo_due(self, now: datetime) -> list[Undo]: ...

    async def undo_take(self, undo: Undo, until: datetime) -> bool:
        """Take the due ``undo`` for its step, which falls due again at ``until`` unless
        ``undo_next`` says otherwise first; False when another replica took it since it was
        read (or it is no longer due): leave it."""
        ...

    async def undo_next(
        self, undo_id: int, state: Mapping[str, Any] | None, due_at: datetime | None
    ) -> None:
        """Another step at ``due_at`` with ``state``; or, with None, the undo is done."""
        ...

    async def followup_due(self, now: datetime) -> list[Undo]:
        """Due follow-ups, as ``Undo`` values (their ``state`` is empty)."""
        ...

    async def followup_take(self, followup: Undo, until: datetime) -> bool:
        """Take the due ``followup``, as ``undo_take`` does an undo: of the replicas that
        read it due, one checks the episode and pages; a replica that dies after taking it
        leaves it due again at ``until``."""
        ...

    async def followup_done(self, followup_id: int, now: datetime) -> None: ...


class AuditStore(Protocol):
    """The decisions, appended in the transaction that plans their notifications."""

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
        """In one transaction: mark ``decided_episodes`` decided at ``now``, append
        ``records``, queue ``outbox`` (once per incident, sink, event, tier and topic; each
        item's episode becomes a member of its incident), queue a resolve, due
        ``resolve_after_s`` from now, for every sink an episode of ``resolved_episodes``
        was escalated to, and each of ``updates`` for the sinks its episode's incidents
        paged before. An
        episode of ``decided_episodes`` that another transaction decided first keeps that
        decision: its records and notifications here are not written. Those episodes."""
        ...

    async def decisions(self, query: AuditQuery) -> list[AuditRecord]: ...


class OutboxStore(Protocol):
    """Notifications planned with the decision, sent and retried by the delivery loop."""

    async def outbox_due(self, now: datetime, limit: int) -> list[OutboxItem]: ...

    async def outbox_done(
        self,
        item_id: int,
        now: datetime,
        delivered: bool,
        error: str = "",
        reference: Mapping[str, Any] | None = None,
    ) -> None:
        """Delivered (with what the sink answered, for a trigger), or dropped for good
        with ``error``."""
        ...

    async def outbox_retry(self, item_id: int, due_at: datetime, error: str) -> None: ...

    async def outbox_withdraw(self, item_id: int) -> None:
        """Forget a notification not sent (a held resolve whose episode fired again), so that
        the episode's next close queues its resolve anew."""
        ...

    async def outbox_drop_pending_triggers(
        self, dedup_key: str, now: datetime, why: str, above_tier: int = -1
    ) -> int:
        """Drop the incident's triggers above ``above_tier`` not sent yet; how many."""
        ...

    async def outbox_defer_updates(self, dedup_key: str, sink: str, due_at: datetime) -> None:
        """Every update of the incident to ``sink`` not sent yet falls due at ``due_at``
        (they keep the order they were queued in)."""
        ...

    async def outbox_trigger_state(self, dedup_key: str, sink: str) -> TriggerState | None:
        """Where the incident's first trigger on ``sink`` stands; None when it has none."""
        ...

    async def outbox_last_delivered(
        self, dedup_key: str, sink: str, tier: int, other_than: int
    ) -> datetime | None:
        """When a trigger of ``tier`` for the incident, other than item ``other_than``,
        last reached ``sink``."""
        ...

    async def incident_is_open(self, dedup_key: str) -> bool:
        """Whether an episode the incident pages for is still open."""
        ...

    async def incident_episodes(self, dedup_key: str) -> list[int]:
        """The episodes the incident pages for, oldest first."""
        ...

    async def incident_acknowledge(
        self, ack: HumanAck, records: Sequence[AuditRecord], note: str
    ) -> None:
        """In one transaction: keep ``ack`` and ``records``; drop the incident's later tiers
        not sent yet; tell every other sink it reached (an update saying ``note``, or, for
        a resolve, a resolve)."""
        ...

    async def incident_ack(
        self, dedup_key: str, since: datetime | None = None, kind: str = ""
    ) -> HumanAck | None:
        """The first acknowledgement or resolve of the incident (at or after ``since``,
        when given; only of ``kind``, "acknowledged" or "resolved", when given)."""
        ...


@dataclass(frozen=True, slots=True)
class ArchiveCursor:
    """Where the archive of one stream stands: every row up to ``archived_to`` is in the
    object store; ``pending`` is the batch begun and not yet known to have arrived."""

    archived_to: int
    pending: tuple[int, int] | None = None


class ArchiveStore(Protocol):
    """The archive's cursors: a batch is begun (its rows fixed) before its upload and done
    after it, so a crash between the two retries the same batch, never a new one."""

    async def archive_cursor(self, stream: str) -> ArchiveCursor: ...

    async def archive_begin(self, stream: str, first_id: int, last_id: int) -> ArchiveCursor:
        """Fix the next batch of ``stream`` as rows ``first_id``..``last_id``, unless a
        batch is pending already (begun by another replica, or before a crash); the
        cursor after it, whose ``pending`` batch is the one to upload."""
        ...

    async def archive_done(self, stream: str, last_id: int) -> None:
        """The batch up to ``last_id`` arrived: the cursor moves past it."""
        ...

    async def audit_prune(self, before: datetime, up_to_id: int, limit: int) -> int:
        """Delete up to ``limit`` of the decisions recorded before ``before`` with ids up to
        ``up_to_id`` (archived ones), oldest first; how many went."""
        ...


@dataclass(frozen=True, slots=True)
class QueuedEvidence:
    """A bundle waiting for the object store: its key, its bytes, and how often it failed."""

    key: str
    body: bytes
    queued_at: datetime
    attempts: int


class EvidenceStore(Protocol):
    """The evidence queue: a bundle is kept from its capture until the object store has it."""

    async def evidence_put(self, key: str, body: bytes, now: datetime) -> None:
        """Queue ``body`` under ``key``, replacing what is queued under it."""
        ...

    async def evidence_due(self, now: datetime, limit: int) -> list[QueuedEvidence]:
        """At most ``limit`` bundles due by ``now``, the longest due first."""
        ...

    async def evidence_sent(self, bundle: QueuedEvidence) -> None:
        """``bundle`` arrived: forget it (unless it was queued again since)."""
        ...

    async def evidence_retry(self, bundle: QueuedEvidence, due_at: datetime, error: str) -> None:
        """``bundle`` did not arrive: try again at ``due_at``."""
        ...

    async def evidence_waiting(self) -> tuple[int, datetime | None]:
        """How many bundles wait, and when the oldest was queued."""
        ...


class Store(
    StoreLifecycle,
    JournalStore,
    EpisodeStore,
    ClaimStore,
    ApprovalStore,
    LeaseStore,
    AftercareStore,
    AuditStore,
    OutboxStore,
    ArchiveStore,
    EvidenceStore,
    Protocol,
):
    """Every concern at once: what a backend implements and the service is given."""
