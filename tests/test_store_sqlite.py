"""The SQLite store: journal, the episode state machine, and claims with their guards."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from remediator.errors import StoreUnavailable
from remediator.guards.claim import ClaimRequest, Limit
from remediator.model import AlertStatus, EpisodeEvent, StopReason
from remediator.store.base import Sighting
from remediator.store.sqlite import SqliteStore
from tests.support.service import fixture_bytes

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


FIRING = Sighting("fp1", AlertStatus.FIRING, "HighCPUUsage")
RESOLVED = Sighting("fp1", AlertStatus.RESOLVED, "HighCPUUsage")


async def events(store: SqliteStore, *steps: tuple[Sighting, float]) -> list[tuple[str, int]]:
    out = []
    for sighting, seconds in steps:
        [obs] = await store.observe([sighting], at(seconds), grace_s=60)
        out.append((obs.event.value, obs.episode.id))
    return out


async def test_journal_entries_stay_pending_until_marked_done(store: SqliteStore) -> None:
    first = await store.journal_append(b'{"a": 1}', at(0))
    second = await store.journal_append(b'{"b": 2}', at(1))
    assert await store.journal_pending() == [first, second]
    await store.journal_done(first, at(2))
    assert await store.journal_pending() == [second]
    pending = await store.journal_entry(second)
    assert (pending.id, pending.body, pending.received_at) == (second, b'{"b": 2}', at(1))


async def test_episodes_open_join_close_reopen_within_grace_and_renew_after_it(
    store: SqliteStore,
) -> None:
    seen = await events(
        store,
        (FIRING, 0),
        (FIRING, 30),
        (RESOLVED, 60),
        (RESOLVED, 61),
        (FIRING, 100),
        (RESOLVED, 120),
        (FIRING, 500),
    )
    assert [e for e, _ in seen] == [
        EpisodeEvent.OPENED,
        EpisodeEvent.JOINED,
        EpisodeEvent.CLOSED,
        EpisodeEvent.ALREADY_CLOSED,
        EpisodeEvent.REOPENED,
        EpisodeEvent.CLOSED,
        EpisodeEvent.OPENED,
    ]
    ids = [i for _, i in seen]
    assert len(set(ids[:6])) == 1 and ids[6] != ids[0]


async def test_a_resolve_for_an_unseen_fingerprint_records_a_closed_episode(
    store: SqliteStore,
) -> None:
    [obs] = await store.observe([RESOLVED], at(0), grace_s=60)
    assert obs.event is EpisodeEvent.RESOLVED_UNSEEN and not obs.episode.is_open


async def test_only_the_first_decider_of_an_episode_wins(store: SqliteStore) -> None:
    [obs] = await store.observe([FIRING], at(0), grace_s=60)
    assert await store.mark_decided(obs.episode.id, at(1))
    assert not await store.mark_decided(obs.episode.id, at(2))
    [again] = await store.observe([FIRING], at(3), grace_s=60)
    assert again.episode.decided


def claim_request(episode_id: int, target: str = "ns/Deployment/api", **kw: object) -> ClaimRequest:
    base = ClaimRequest(
        episode_id=episode_id,
        rule="cpu",
        action="scale",
        action_kind="log_only",
        target=target,
        destructive=False,
        dry_run=False,
        cooldown_s=600,
        rule_limit=Limit(2, 3600),
        kind_limit=None,
        global_budget=None,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


async def open_episodes(store: SqliteStore, count: int) -> list[int]:
    sightings = [Sighting(f"fp{i}", AlertStatus.FIRING, "X") for i in range(count)]
    return [o.episode.id for o in await store.observe(sightings, at(0), grace_s=60)]


async def test_claims_are_unique_per_episode_and_respect_cooldown_and_rate_limit(
    store: SqliteStore,
) -> None:
    e1, e2, e3, e4 = await open_episodes(store, 4)
    first = await store.claim(claim_request(e1), at(0))
    assert first.verdict.allowed and first.claim_id is not None
    again = await store.claim(claim_request(e1), at(1))
    assert again.verdict.reason is StopReason.DUPLICATE
    cooling = await store.claim(claim_request(e2), at(10))
    assert cooling.verdict.reason is StopReason.COOLDOWN
    assert (await store.claim(claim_request(e2), at(700))).verdict.allowed
    limited = await store.claim(claim_request(e3, target="ns/Deployment/other"), at(800))
    assert limited.verdict.reason is StopReason.RULE_RATE_LIMIT
    later = await store.claim(claim_request(e4, target="ns/Deployment/other"), at(3700))
    assert later.verdict.allowed


async def test_dry_run_claims_do_not_count_against_live_cooldowns(store: SqliteStore) -> None:
    e1, e2 = await open_episodes(store, 2)
    assert (await store.claim(claim_request(e1, dry_run=True), at(0))).verdict.allowed
    assert (await store.claim(claim_request(e2), at(1))).verdict.allowed


async def test_claims_without_an_outcome_are_listed_until_one_is_recorded(
    store: SqliteStore,
) -> None:
    [e1] = await open_episodes(store, 1)
    result = await store.claim(claim_request(e1), at(0))
    assert result.claim_id is not None
    [unfinished] = await store.unfinished_claims()
    assert (unfinished.claim_id, unfinished.fingerprint, unfinished.target) == (
        result.claim_id,
        "fp0",
        "ns/Deployment/api",
    )
    await store.record_outcome(result.claim_id, "succeeded", at(1))
    assert await store.unfinished_claims() == []


async def test_the_journal_keeps_bodies_byte_for_byte_and_prunes_only_old_finished_ones(
    store: SqliteStore,
) -> None:
    body = fixture_bytes("mixed-1002-alerts-one-resolved.json")
    old = await store.journal_append(body, at(0))
    recent = await store.journal_append(body, at(1))
    pending = await store.journal_append(body, at(2))
    await store.journal_done(old, at(10))
    await store.journal_done(recent, at(500))
    assert await store.journal_prune(at(100)) == 1
    assert (await store.journal_entry(recent)).body == body
    assert await store.journal_pending() == [pending]
    with pytest.raises(StoreUnavailable):
        await store.journal_entry(old)
