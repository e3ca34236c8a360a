"""The approvals of the ``Store`` contract, on both backends: a claim held for approval is
no unfinished work; votes are one per approver; a deny or the last approval needed moves the
approval out of pending once, with its records, and gives its claim to the replica that
moved it; a close (timeout, resolve) is a compare-and-set; on PostgreSQL, two replicas
answering at once are counted in turn, and a takeover does not run a held claim."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

from remediator.core.model import AuditRecord
from remediator.core.vocab import Outcome, Step
from remediator.store.contract import (
    ApprovalAsked,
    AuditQuery,
    ClaimedDecision,
    PendingApproval,
    Planned,
    Store,
    TakenOver,
    UnfinishedClaim,
    Vote,
    VoteAnswer,
)
from remediator.store.postgres import PostgresStore
from tests.conftest import postgres_store
from tests.test_store_contract import at, claim_request, open_episodes


def asked(needed: int = 1, approvers: tuple[str, ...] = ("sre",)) -> ApprovalAsked:
    return ApprovalAsked(at(600), needed, approvers, "escalate", initiator="dev")


def record(episode_id: int, sentence: str) -> AuditRecord:
    return AuditRecord(
        at=at(0), step=Step.APPROVAL, outcome=Outcome.PENDING_APPROVAL, sentence=sentence,
        episode_id=episode_id, fingerprint="fp0", rule="cpu", ruleset_hash="h",
    )  # fmt: skip


async def held_claim(
    store: Store, approval: ApprovalAsked | None = None, n: int = 0
) -> tuple[int, int]:
    """A claim held for ``approval`` (episode ``fp<n>``, target ``t<n>``); its episode and
    claim ids."""
    [episode] = (await open_episodes(store, n + 1))[n:]
    decision = ClaimedDecision(lambda _: [], {"version": 1}, approval=approval or asked())
    request = claim_request(episode, target=f"t{n}", rule_limit=None)
    result = await store.claim(request, at(1), decision)
    assert result.claim_id is not None
    return episode, result.claim_id


def nothing_planned(_: Sequence[AuditRecord]) -> Planned:
    return Planned()


async def vote(
    store: Store, claim_id: int, by: str, how: str = "approve"
) -> tuple[str, UnfinishedClaim | None]:
    seen: list[tuple[VoteAnswer, PendingApproval]] = []

    def records(answer: VoteAnswer, after: PendingApproval) -> list[AuditRecord]:
        seen.append((answer, after))
        return [record(after.episode_id, f"{by}: {answer}")]

    cast = Vote(claim_id, by, how, "api", at(10), "because")  # type: ignore[arg-type]
    result = await store.approval_vote(cast, records, nothing_planned)
    if seen:
        assert seen[-1][0] == result.answer
    return result.answer, result.claim


async def test_a_held_claim_waits_for_its_approvals_one_vote_per_approver(store: Store) -> None:
    episode, claim_id = await held_claim(store, asked(needed=2))
    assert await store.unfinished_claims() == []  # held: nothing to resume at a restart
    pending = await store.approval(claim_id)
    assert pending is not None
    assert (pending.state, pending.needed, pending.approvers, pending.initiator) == (
        "pending", 2, ("sre",), "dev"
    )  # fmt: skip
    assert (pending.due_at, pending.episode_open, pending.votes) == (at(600), True, ())
    assert await vote(store, claim_id, "alice") == ("counted", None)
    assert await vote(store, claim_id, "alice") == ("voted_already", None)
    answer, claim = await vote(store, claim_id, "bob")
    assert answer == "approved"
    assert claim is not None and claim.approval == "approved"
    assert (claim.approval_by, claim.approval_at) == ("alice, bob", at(10))
    [unfinished] = await store.unfinished_claims()  # approved: now work to run
    assert unfinished.claim_id == claim_id and unfinished.approval == "approved"
    assert await vote(store, claim_id, "carol", "deny") == ("closed", None)
    after = await store.approval(claim_id)
    assert after is not None and [v.by for v in after.votes] == ["alice", "bob"]
    said = await store.decisions(AuditQuery(episode_id=episode))
    assert [r.sentence for r in said] == ["alice: counted", "bob: approved"]
    [listed] = await store.approvals("approved", 10)
    assert listed.claim_id == claim_id and [v.by for v in listed.votes] == ["alice", "bob"]
    assert await store.approvals("pending", 10) == []
    _, other = await held_claim(store, n=1)
    newest = (await store.approvals(None, 10))[0]  # newest first
    assert (newest.claim_id, newest.votes) == (other, ())


async def test_one_deny_decides_however_many_approvals_are_needed(store: Store) -> None:
    _, claim_id = await held_claim(store, asked(needed=2))
    assert (await vote(store, claim_id, "alice"))[0] == "counted"
    answer, claim = await vote(store, claim_id, "bob", "deny")
    assert answer == "denied"
    assert claim is not None and (claim.approval, claim.approval_by) == ("denied", "bob")
    assert await vote(store, 10_000, "bob") == ("unknown", None)


async def test_a_close_moves_a_pending_approval_once(store: Store) -> None:
    _, claim_id = await held_claim(store)
    first = await store.approval_close(
        claim_id, "timed_out", "the timeout", at(700), lambda a: [], nothing_planned
    )
    assert first is not None and (first.approval, first.approval_on_timeout) == (
        "timed_out", "escalate"
    )  # fmt: skip
    again = await store.approval_close(
        claim_id, "withdrawn", "the resolve", at(701), lambda a: [], nothing_planned
    )
    assert again is None
    assert await vote(store, claim_id, "alice") == ("closed", None)
    closed = await store.approval(claim_id)
    assert closed is not None and (closed.state, closed.decided_by) == ("timed_out", "the timeout")


async def test_two_replicas_answering_at_once_are_counted_in_turn() -> None:
    async with postgres_store() as first:
        second = PostgresStore(first.dsn, "replica-b")
        await second.open()
        try:
            for n in range(5):
                _, claim_id = await held_claim(first, asked(needed=2), n)
                answers = await asyncio.gather(
                    vote(first, claim_id, "alice"), vote(second, claim_id, "bob")
                )
                assert sorted(a for a, _ in answers) == ["approved", "counted"]
                [_] = [c for _, c in answers if c is not None]
                owner, other = (first, second) if answers[0][0] == "approved" else (second, first)
                assert claim_id in [c.claim_id for c in await owner.unfinished_claims()]
                assert claim_id not in [c.claim_id for c in await other.unfinished_claims()]
                closes = await asyncio.gather(
                    *(s.approval_close(claim_id, "timed_out", "t", at(700), lambda a: [],
                                       nothing_planned) for s in (first, second))
                )  # fmt: skip
                assert closes == [None, None]  # decided already
        finally:
            await second.close()


async def test_a_takeover_moves_a_held_claim_but_runs_nothing_until_it_is_approved() -> None:
    async with postgres_store() as gone:
        live = PostgresStore(gone.dsn, "replica-live")
        await live.open()
        try:
            await gone.heartbeat(at(0))
            _, claim_id = await held_claim(gone)
            await live.heartbeat(at(40))
            assert await live.take_over(at(40) + timedelta(seconds=1), lease_s=30) == TakenOver(
                [], []
            )
            assert await live.unfinished_claims() == []
            answer, claim = await vote(live, claim_id, "alice")
            assert answer == "approved" and claim is not None
            assert [c.claim_id for c in await live.unfinished_claims()] == [claim_id]
        finally:
            await live.close()
