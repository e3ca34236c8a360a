"""The ``Store`` contract every state backend implements.

Journal (payloads accepted but not yet processed), episodes, claims (with the guards that
must hold atomically when one is taken) and the audit trail. Times are passed in by the
caller: the store never reads a clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from remediator.guards.claim import ClaimRequest
from remediator.model import AlertStatus, AuditRecord, Observation, Verdict


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
class ClaimResult:
    verdict: Verdict
    claim_id: int | None


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


class Store(Protocol):
    async def open(self) -> None:
        """Create or migrate the schema and get ready to serve."""
        ...

    async def close(self) -> None: ...

    async def ping(self) -> bool:
        """True when the store answers a trivial read."""
        ...

    async def journal_append(self, body: bytes, received_at: datetime) -> int:
        """Durably record an accepted payload; the webhook acks only after this returns."""
        ...

    async def journal_pending(self) -> list[int]:
        """Ids of accepted payloads not yet processed, oldest first."""
        ...

    async def journal_entry(self, journal_id: int) -> JournalEntry: ...

    async def journal_done(self, journal_id: int, now: datetime) -> None: ...

    async def journal_prune(self, done_before: datetime) -> int:
        """Forget processed payloads finished before ``done_before``; how many went."""
        ...

    async def observe(
        self, sightings: Sequence[Sighting], now: datetime, grace_s: float
    ) -> list[Observation]:
        """Open, join, reopen or close the episode of each sighting, in order, atomically."""
        ...

    async def mark_decided(self, episode_id: int, now: datetime) -> bool:
        """Take the right to decide an episode; False when someone already did."""
        ...

    async def claim(self, request: ClaimRequest, now: datetime) -> ClaimResult:
        """Check the claim guards and record the claim in one transaction."""
        ...

    async def record_outcome(self, claim_id: int, outcome: str, now: datetime) -> None: ...

    async def unfinished_claims(self) -> list[UnfinishedClaim]:
        """Claims without an outcome, oldest first."""
        ...

    async def undo_plan(
        self, claim_id: int, target: str, state: Mapping[str, Any], after_s: float
    ) -> None:
        """Remember an undo for the claim's episode; armed when the episode closes."""
        ...

    async def undo_arm(self, episode_ids: Sequence[int], closed_at: datetime) -> None:
        """The episodes closed: their undos fall due ``after_s`` later."""
        ...

    async def undo_disarm(self, episode_ids: Sequence[int]) -> None:
        """The episodes fire again: their undos wait for the next close."""
        ...

    async def undo_due(self, now: datetime) -> list[Undo]: ...

    async def undo_next(
        self, undo_id: int, state: Mapping[str, Any] | None, due_at: datetime | None
    ) -> None:
        """Another step at ``due_at`` with ``state``; or, with None, the undo is done."""
        ...

    async def audit(
        self,
        records: Sequence[AuditRecord],
        decided_episodes: Sequence[int] = (),
        now: datetime | None = None,
    ) -> None:
        """Append ``records``; mark ``decided_episodes`` decided at ``now``. One transaction."""
        ...

    async def decisions(self, query: AuditQuery) -> list[AuditRecord]: ...
