"""The ``Store`` contract, on both backends (SQLite and a real PostgreSQL): journal, the
episode state machine, claims with their guards and intents, the storm window and the
outbox; on PostgreSQL also two replicas on one database, and the lease takeover."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from remediator.core import dedup_keys
from remediator.core.errors import StoreUnavailable
from remediator.core.model import (
    AlertStatus,
    AuditRecord,
    EpisodeEvent,
    Outcome,
    Step,
    StopReason,
)
from remediator.guards.claim import ClaimRequest, Limit
from remediator.store.contract import (
    AuditQuery,
    HumanAck,
    IncidentUpdate,
    OutboxItem,
    Settlement,
    Sighting,
    Store,
    TakenOver,
)
from remediator.store.postgres import PostgresStore
from tests.conftest import postgres_store
from tests.support.service import fixture_bytes
from tests.support.stores import mark_decided

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


FIRING = Sighting("fp1", AlertStatus.FIRING, "HighCPUUsage")
RESOLVED = Sighting("fp1", AlertStatus.RESOLVED, "HighCPUUsage")


async def events(store: Store, *steps: tuple[Sighting, float]) -> list[tuple[str, int]]:
    out = []
    for sighting, seconds in steps:
        [obs] = await store.observe([sighting], at(seconds), grace_s=60)
        out.append((obs.event.value, obs.episode.id))
    return out


async def test_journal_entries_stay_pending_until_marked_done(store: Store) -> None:
    first = await store.journal_append(b'{"a": 1}', at(0))
    second = await store.journal_append(b'{"b": 2}', at(1))
    assert await store.journal_pending() == [first, second]
    await store.journal_done(first, at(2))
    assert await store.journal_pending() == [second]
    pending = await store.journal_entry(second)
    assert (pending.id, pending.body, pending.received_at) == (second, b'{"b": 2}', at(1))


async def test_episodes_open_join_close_reopen_within_grace_and_renew_after_it(
    store: Store,
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
    store: Store,
) -> None:
    [obs] = await store.observe([RESOLVED], at(0), grace_s=60)
    assert obs.event is EpisodeEvent.RESOLVED_UNSEEN and not obs.episode.is_open


async def test_only_the_first_decider_of_an_episode_wins(store: Store) -> None:
    [obs] = await store.observe([FIRING], at(0), grace_s=60)
    assert await mark_decided(store, obs.episode.id, at(1))
    assert not await mark_decided(store, obs.episode.id, at(2))
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


async def open_episodes(store: Store, count: int) -> list[int]:
    sightings = [Sighting(f"fp{i}", AlertStatus.FIRING, "X") for i in range(count)]
    return [o.episode.id for o in await store.observe(sightings, at(0), grace_s=60)]


async def test_claims_are_unique_per_episode_and_respect_cooldown_and_rate_limit(
    store: Store,
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


async def test_a_claim_preview_gives_the_claims_verdict_and_takes_nothing(store: Store) -> None:
    e1, e2 = await open_episodes(store, 2)
    assert (await store.claim_preview(claim_request(e1), at(0))).allowed
    assert (await store.claim_preview(claim_request(e1), at(0))).allowed  # nothing was taken
    assert (await store.claim(claim_request(e1), at(0))).verdict.allowed
    cooling = await store.claim_preview(claim_request(e2), at(10))
    assert cooling.reason is StopReason.COOLDOWN
    assert (await store.claim(claim_request(e2), at(10))).verdict == cooling  # the same words
    assert (await store.claim_preview(claim_request(e2), at(700))).allowed


async def test_dry_run_claims_do_not_count_against_live_cooldowns(store: Store) -> None:
    e1, e2 = await open_episodes(store, 2)
    assert (await store.claim(claim_request(e1, dry_run=True), at(0))).verdict.allowed
    assert (await store.claim(claim_request(e2), at(1))).verdict.allowed


async def test_recent_claims_are_those_after_the_time_in_one_mode_newest_first(
    store: Store,
) -> None:
    e1, e2, e3, e4 = await open_episodes(store, 4)
    for episode, seconds, target, dry in ((e1, 0, "ns/Deployment/a", False),
                                          (e2, 10, "ns/Deployment/b", False),
                                          (e3, 20, "ns/Deployment/c", True),
                                          (e4, 30, "ns/Deployment/d", False)):  # fmt: skip
        request = claim_request(episode, target=target, dry_run=dry, rule_limit=None)
        assert (await store.claim(request, at(seconds))).verdict.allowed
    live = await store.recent_claims(at(0), dry_run=False, limit=10)  # after 0: not at it
    assert [(c.episode_id, c.target, c.claimed_at, c.outcome) for c in live] == [
        (e4, "ns/Deployment/d", at(30), None), (e2, "ns/Deployment/b", at(10), None),
    ]  # fmt: skip
    assert [c.target for c in await store.recent_claims(at(-1), False, limit=2)] == [
        "ns/Deployment/d", "ns/Deployment/b",
    ]  # fmt: skip
    [dry] = await store.recent_claims(at(-1), dry_run=True, limit=10)
    assert (dry.episode_id, dry.action_kind, dry.destructive) == (e3, "log_only", False)


async def test_claims_without_an_outcome_are_listed_until_one_is_recorded(
    store: Store,
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
    await store.settle(Settlement(result.claim_id, "succeeded"), at(1))
    assert await store.unfinished_claims() == []


async def test_the_journal_keeps_bodies_byte_for_byte_and_prunes_only_old_finished_ones(
    store: Store,
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


def outbox_item(episode_id: int, tier: int = 0, due: float = 0) -> OutboxItem:
    return OutboxItem(
        episode_id=episode_id,
        dedup_key=f"remediator-fp-{episode_id}",
        sink="pager",
        event="trigger",
        tier=tier,
        severity="SEV-1",
        policy="ladder",
        summary="down",
        details={"rule": "r"},
        due_at=at(due),
    )


async def test_the_outbox_queues_once_delivers_due_items_and_resolves_what_was_sent(
    store: Store,
) -> None:
    [e1] = await open_episodes(store, 1)
    items = [outbox_item(e1, 0, 0), outbox_item(e1, 1, 1800)]
    await store.audit([], now=at(0), outbox=items)
    await store.audit([], now=at(1), outbox=items)  # queued once, whatever is said twice
    [due] = await store.outbox_due(at(10), 10)
    assert (due.tier, due.details, due.attempts) == (0, {"rule": "r"}, 0)
    assert due.id is not None
    await store.outbox_retry(due.id, at(20), "503")
    assert await store.outbox_due(at(10), 10) == []
    [again] = await store.outbox_due(at(20), 10)
    assert again.attempts == 1
    await store.outbox_done(again.id or 0, at(21), delivered=True, reference={"ts": "1.2"})
    page = await store.outbox_trigger_state(due.dedup_key, "pager")
    assert page is not None and (page.delivered, page.dropped, page.reference) == (
        True, False, {"ts": "1.2"})  # fmt: skip
    assert await store.outbox_trigger_state(due.dedup_key, "chat") is None
    await store.audit([], now=at(30), resolved_episodes=[e1])
    why = "the incident resolved first"
    assert await store.outbox_drop_pending_triggers(due.dedup_key, at(31), why) == 1  # tier 1
    [resolve] = await store.outbox_due(at(40), 10)
    assert (resolve.event, resolve.sink) == ("resolve", "pager")


async def test_a_held_resolve_falls_due_after_the_grace_and_a_withdrawn_one_can_be_queued_again(
    store: Store,
) -> None:
    [e1] = await open_episodes(store, 1)
    await store.audit([], now=at(0), outbox=[outbox_item(e1)])
    [trigger] = await store.outbox_due(at(0), 10)
    await store.outbox_done(trigger.id or 0, at(1), delivered=True)
    await store.audit([], now=at(10), resolved_episodes=[e1], resolve_after_s=300)
    assert await store.outbox_due(at(309), 10) == []  # held for the grace
    [held] = await store.outbox_due(at(310), 10)
    assert (held.event, held.due_at) == ("resolve", at(310))
    await store.outbox_withdraw(held.id or 0)  # the episode fired again within it
    assert await store.outbox_due(at(1000), 10) == []
    await store.audit([], now=at(500), resolved_episodes=[e1], resolve_after_s=300)
    [again] = await store.outbox_due(at(800), 10)  # the next close queues its resolve anew
    assert (again.event, again.due_at) == ("resolve", at(800))


def page(episode_id: int, key: str, sink: str = "pager", tier: int = 0) -> OutboxItem:
    return replace(outbox_item(episode_id, tier), dedup_key=key, sink=sink)


async def close(store: Store, fingerprint: str, seconds: float) -> None:
    await store.observe([Sighting(fingerprint, AlertStatus.RESOLVED, "X")], at(seconds), 60)


async def test_an_incident_of_several_episodes_is_open_while_any_fires_and_resolves_once(
    store: Store,
) -> None:
    e1, e2 = await open_episodes(store, 2)
    await store.audit([], now=at(0), outbox=[page(e1, "group-1"), page(e2, "group-1")])
    [trigger] = await store.outbox_due(at(0), 10)  # one page for both
    assert await store.incident_episodes("group-1") == [e1, e2]
    await store.outbox_done(trigger.id or 0, at(1), delivered=True)
    await close(store, "fp0", 10)
    assert await store.incident_is_open("group-1")  # fp1 still fires
    await close(store, "fp1", 20)
    assert not await store.incident_is_open("group-1")
    await store.audit([], now=at(20), resolved_episodes=[e1, e2])
    [resolve] = await store.outbox_due(at(20), 10)
    assert (resolve.event, resolve.dedup_key) == ("resolve", "group-1")


async def test_news_of_an_episode_reaches_every_sink_its_incident_paged_once_per_topic(
    store: Store,
) -> None:
    [e1] = await open_episodes(store, 1)
    pages = [page(e1, "inc", "pager"), page(e1, "inc", "chat"), page(e1, "inc", "lead", tier=1)]
    news = IncidentUpdate(e1, "acted@1", "scaled out api from 3 to 6")
    # News in the transaction that pages tells nothing new: the page says it.
    await store.audit([], now=at(0), outbox=pages, updates=[news])
    assert {i.event for i in await store.outbox_due(at(0), 10)} == {"trigger"}
    for again in range(2):  # queued once, however often it is said
        await store.audit([], now=at(1 + again), updates=[news])
    updates = [i for i in await store.outbox_due(at(5), 10) if i.event == "update"]
    assert sorted((u.sink, u.topic, u.note) for u in updates) == [
        ("chat", "acted@1", "scaled out api from 3 to 6"),
        ("pager", "acted@1", "scaled out api from 3 to 6"),
    ]  # the later tier's sink is not paged yet: news goes to those that were
    later = IncidentUpdate(e1, "verified@2", "verified")
    await store.audit([], now=at(3), updates=[later])
    await store.outbox_defer_updates("inc", "pager", at(10))  # waiting for the pager's page
    due = [(i.sink, i.topic) for i in await store.outbox_due(at(10), 10) if i.event == "update"]
    assert due == [("chat", "acted@1"), ("chat", "verified@2"),
                   ("pager", "acted@1"), ("pager", "verified@2")]  # fmt: skip
    assert not any(i.sink == "pager" for i in await store.outbox_due(at(9), 10) if i.topic)


async def test_a_storm_that_goes_on_keeps_its_incident_across_the_hour_and_a_later_one_opens_anew(
    store: Store,
) -> None:
    episodes = await open_episodes(store, 3)
    first, going_on = dedup_keys.storm("fleet", at(3590)), dedup_keys.storm("fleet", at(3610))
    await store.audit([], now=at(3590), outbox=[page(episodes[0], first)])
    await store.audit([], now=at(3610), outbox=[page(episodes[1], going_on)])
    assert await store.incident_episodes(first) == episodes[:2]
    assert await store.incident_episodes(going_on) == []
    quiet = 3610 + dedup_keys.STORM_QUIET_S + 1
    later = dedup_keys.storm("fleet", at(quiet))
    await store.audit([], now=at(quiet), outbox=[page(episodes[2], later)])
    assert await store.incident_episodes(later) == episodes[2:]
    assert {i.dedup_key for i in await store.outbox_due(at(quiet), 10)} == {first, later}


async def test_an_acknowledgement_drops_the_later_tiers_and_tells_the_other_sinks(
    store: Store,
) -> None:
    [e1] = await open_episodes(store, 1)
    pages = [page(e1, "inc", "pager"), page(e1, "inc", "chat"), page(e1, "inc", "lead", tier=1)]
    await store.audit([], now=at(0), outbox=pages)
    for item in await store.outbox_due(at(0), 10):
        if item.tier == 0:
            await store.outbox_done(item.id or 0, at(1), delivered=True)
    ack = HumanAck("inc", "acknowledged", "Jane Doe", "pager", "https://pd.example/i/1", at(60))
    assert await store.incident_ack("inc", at(0)) is None
    await store.incident_acknowledge(ack, [], "Acknowledged by Jane Doe on pager.")
    assert await store.incident_ack("inc", at(0)) == ack
    assert await store.incident_ack("inc", at(61)) is None  # pages queued after it: a new wave
    due = await store.outbox_due(at(4000), 10)
    assert [(i.sink, i.event, i.note) for i in due] == [
        ("chat", "update", "Acknowledged by Jane Doe on pager.")
    ]  # the lead's tier is dropped; the sink it came from is not told
    resolved = replace(ack, kind="resolved", at=at(120))
    await store.incident_acknowledge(resolved, [], "Resolved by Jane Doe on pager.")
    assert ("chat", "resolve") in [(i.sink, i.event) for i in await store.outbox_due(at(4000), 10)]


async def test_undos_wait_for_the_close_and_followups_fall_due(store: Store) -> None:
    [e1] = await open_episodes(store, 1)
    result = await store.claim(claim_request(e1), at(0))
    assert result.claim_id is not None
    undo = Settlement(result.claim_id, "succeeded", "ns/Deployment/api", {"restore_to": 3}, 60)
    assert await store.settle(replace(undo, followup_at=at(300)), at(1))
    assert not await store.settle(undo, at(2))  # settled once: the undo is planned once
    assert await store.undo_due(at(10_000)) == []  # not armed: the episode is open
    await store.undo_arm([e1], at(100))
    await store.undo_disarm([e1])
    assert await store.undo_due(at(10_000)) == []
    await store.undo_arm([e1], at(200))
    [undo] = await store.undo_due(at(260))
    assert (undo.episode_id, undo.state, undo.target) == (
        e1,
        {"restore_to": 3},
        "ns/Deployment/api",
    )
    await store.undo_next(undo.id, None, None)
    assert await store.undo_due(at(10_000)) == []
    [followup] = await store.followup_due(at(300))
    await store.followup_done(followup.id, at(301))
    assert await store.followup_due(at(10_000)) == []
    assert await store.episode_is_open(e1)


async def test_of_the_replicas_that_read_an_undo_or_follow_up_due_one_takes_it(
    store: Store,
) -> None:
    """Both read the item due; the first take wins, the second (with what it read) is
    refused; the taken item is due again once the taker's time is up, and taken anew."""
    [e1] = await open_episodes(store, 1)
    result = await store.claim(claim_request(e1), at(0))
    assert result.claim_id is not None
    undo = Settlement(result.claim_id, "succeeded", "ns/Deployment/api", {"restore_to": 3}, 60)
    assert await store.settle(replace(undo, followup_at=at(300.123456789)), at(1))
    await store.undo_arm([e1], at(200.987654321))  # due at an instant no datetime holds
    [seen_a] = await store.undo_due(at(300))
    [seen_b] = await store.undo_due(at(300))
    assert await store.undo_take(seen_a, at(420))
    assert not await store.undo_take(seen_b, at(420))
    assert await store.undo_due(at(419)) == []
    [again] = await store.undo_due(at(420))  # the taker died: due again, for one taker
    assert not await store.undo_take(seen_a, at(540))
    assert await store.undo_take(again, at(540))
    await store.undo_next(again.id, None, None)
    assert not await store.undo_take(again, at(660))  # done: nothing to take
    [f_a] = await store.followup_due(at(301))
    [f_b] = await store.followup_due(at(301))
    assert await store.followup_take(f_b, at(421))
    assert not await store.followup_take(f_a, at(421))
    assert await store.followup_due(at(420)) == []
    await store.followup_done(f_b.id, at(302))
    assert await store.followup_due(at(10_000)) == []
    assert not await store.followup_take(f_b, at(10_001))


async def test_two_replicas_on_one_postgres_store_share_episodes_and_take_one_claim() -> None:
    async with postgres_store() as first:
        second = PostgresStore(first.dsn, "replica-b")
        await second.open()
        try:
            sightings = [Sighting(f"fp{i}", AlertStatus.FIRING, "X") for i in range(50)]
            a, b = await asyncio.gather(
                first.observe(sightings, at(0), 60), second.observe(sightings, at(0), 60)
            )
            assert [o.episode.id for o in a] == [o.episode.id for o in b]
            claims = await asyncio.gather(
                *(s.claim(claim_request(o.episode.id, target=f"t{n}", rule_limit=None), at(1))
                  for n, o in enumerate(a) for s in (first, second))
            )  # fmt: skip
            assert sum(c.claim_id is not None for c in claims) == 50  # one per episode
            assert {c.verdict.reason for c in claims if c.claim_id is None} == {
                StopReason.DUPLICATE
            }
            # A shared budget: the rule may act twice per window, across both replicas.
            more = [Sighting(f"more{i}", AlertStatus.FIRING, "X") for i in range(10)]
            fresh = await first.observe(more, at(2), 60)
            limited = await asyncio.gather(
                *(s.claim(claim_request(o.episode.id, target=f"m{n}", rule="other"), at(3))
                  for n, o in enumerate(fresh) for s in (first, second))
            )  # fmt: skip
            assert sum(c.claim_id is not None for c in limited) == 2
        finally:
            await second.close()


async def test_an_intent_is_kept_with_its_claim_and_an_exclusive_key_is_held_until_outcome(
    store: Store,
) -> None:
    e1, e2 = await open_episodes(store, 2)
    first = await store.claim(claim_request(e1, target="ns/Pod/a", rule_limit=None), at(0))
    second = await store.claim(claim_request(e2, target="ns/Pod/b", rule_limit=None), at(1))
    assert first.claim_id is not None and second.claim_id is not None
    [before, _] = await store.unfinished_claims()
    assert before.intent is None  # nothing announced: nothing can have been sent
    intent = {"pod": "a", "uid": "u-1"}
    assert await store.claim_intent(first.claim_id, intent, "ns/Deployment/w") == "recorded"
    assert await store.claim_intent(second.claim_id, {"pod": "b"}, "ns/Deployment/w") == "busy"
    kept = {c.claim_id: c.intent for c in await store.unfinished_claims()}
    assert kept == {first.claim_id: intent, second.claim_id: None}
    assert await store.settle(Settlement(first.claim_id, "succeeded"), at(2))
    assert not await store.settle(Settlement(first.claim_id, "unknown"), at(3))  # settled once
    assert await store.claim_intent(second.claim_id, {"pod": "b"}, "ns/Deployment/w") == (
        "recorded"
    )
    assert await store.claim_intent(first.claim_id, intent, None) == "lost"  # finished


async def test_the_storm_window_counts_distinct_targets_and_forgets_old_ones(
    store: Store,
) -> None:
    seen = [await store.storm_add(key, at(t), 60) for key, t in [("a", 0), ("b", 10), ("a", 20)]]
    assert seen == [1, 2, 2]
    assert await store.storm_add("c", at(71), 60) == 2  # b (10) is gone, a (20) and c remain
    assert await store.storm_add("d", at(200), 60) == 1


async def test_a_storm_peek_counts_as_storm_add_would_and_notes_nothing(store: Store) -> None:
    assert await store.storm_add("a", at(0), 60) == 1
    assert [await store.storm_peek(key, at(10), 60) for key in ("a", "b", "b")] == [1, 2, 2]
    assert await store.storm_add("c", at(20), 60) == 2  # b was never noted
    assert await store.storm_peek("d", at(70), 60) == 2  # a (0) has left the window: c and d


async def test_a_replica_whose_lease_ran_out_leaves_its_work_to_a_live_one() -> None:
    async with postgres_store() as gone:
        live = PostgresStore(gone.dsn, "replica-live")
        await live.open()
        try:
            await gone.heartbeat(at(0))
            await live.heartbeat(at(0))
            accepted = await gone.journal_append(b"{}", at(0))
            [e1] = await open_episodes(gone, 1)
            claim = await gone.claim(claim_request(e1), at(1))
            assert claim.claim_id is not None
            await gone.claim_intent(claim.claim_id, {"from": 3, "to": 5}, None)
            assert await live.take_over(at(20), lease_s=30) == TakenOver([], [])
            await live.heartbeat(at(40))
            taken = await live.take_over(at(40), lease_s=30)  # gone: silent for 40 s
            assert taken.journal_ids == [accepted]
            [adopted] = taken.claims
            assert (adopted.claim_id, adopted.intent) == (claim.claim_id, {"from": 3, "to": 5})
            assert await live.journal_pending() == [accepted]
            assert await gone.journal_pending() == []
            # The old owner can no longer act on it: its intent is refused as lost.
            assert await gone.claim_intent(claim.claim_id, {"again": 1}, None) == "lost"
            assert await live.take_over(at(41), lease_s=30) == TakenOver([], [])
        finally:
            await live.close()


async def test_journal_since_reads_every_entry_from_a_time_on_by_id_in_batches(
    store: Store,
) -> None:
    ids = [await store.journal_append(f'{{"n": {i}}}'.encode(), at(i * 10)) for i in range(5)]
    await store.journal_done(ids[0], at(100))  # processed entries are exported too
    first = await store.journal_since(at(10), 0, 2)
    assert [(e.id, e.body) for e in first] == [(ids[1], b'{"n": 1}'), (ids[2], b'{"n": 2}')]
    rest = await store.journal_since(at(10), first[-1].id, 2)
    assert [e.id for e in rest] == ids[3:]
    assert await store.journal_since(at(10), ids[-1], 2) == []
    assert [e.received_at for e in await store.journal_since(at(0), 0, 9)] == [
        at(i * 10) for i in range(5)
    ]


# -- the evidence queue ------------------------------------------------------------------


async def test_an_evidence_bundle_waits_in_the_queue_until_it_is_sent(store: Store) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB, every byte value: a blob, not a text
    await store.evidence_put("p/evidence/a-before.json", body, at(0))
    assert await store.evidence_waiting() == (1, at(0))
    [queued] = await store.evidence_due(at(0), 10)
    assert (queued.key, queued.body, queued.queued_at, queued.attempts) == (
        "p/evidence/a-before.json", body, at(0), 0
    )  # fmt: skip
    await store.evidence_sent(queued)
    assert await store.evidence_due(at(1), 10) == []
    assert await store.evidence_waiting() == (0, None)


async def test_a_failed_upload_is_due_again_at_its_backoff_and_counts_its_attempts(
    store: Store,
) -> None:
    await store.evidence_put("k1", b"{}", at(0))
    await store.evidence_put("k2", b"[]", at(1))
    [first, _] = await store.evidence_due(at(1), 10)
    await store.evidence_retry(first, at(30), "S3 put k1 failed: 500" + "x" * 5000)
    assert [q.key for q in await store.evidence_due(at(29), 10)] == ["k2"]
    [_, again] = await store.evidence_due(at(30), 10)  # by when each is due
    assert (again.key, again.attempts) == ("k1", 1)
    assert await store.evidence_waiting() == (2, at(0))
    assert [q.key for q in await store.evidence_due(at(60), 1)] == ["k2"]  # due first


async def test_a_bundle_queued_again_while_uploading_is_not_lost_by_the_older_upload(
    store: Store,
) -> None:
    """A claim resumed after a crash captures its bundle again while the first version is
    in flight: the first upload's ``sent`` leaves the new version queued, under one key."""
    await store.evidence_put("k", b'{"v": 1}', at(0))
    [old] = await store.evidence_due(at(0), 10)
    await store.evidence_put("k", b'{"v": 2}', at(5))
    await store.evidence_retry(old, at(100), "late")  # nor does its failure touch the new
    await store.evidence_sent(old)
    [new] = await store.evidence_due(at(5), 10)
    assert (new.body, new.queued_at, new.attempts) == (b'{"v": 2}', at(5), 0)
    assert await store.evidence_waiting() == (1, at(5))


async def test_decisions_filter_by_step_alertname_and_reason_and_read_newest_first(
    store: Store,
) -> None:
    def record(n: int, step: Step, alertname: str, reason: StopReason | None) -> AuditRecord:
        return AuditRecord(at(n), step, Outcome.REFUSED if reason else Outcome.RECEIVED,
                           f"decision {n}", alertname=alertname, reason=reason)  # fmt: skip

    await store.audit(
        [
            record(1, Step.RECEIVED, "HighCPUUsage", None),
            record(2, Step.REFUSED, "HighCPUUsage", StopReason.COOLDOWN),
            record(3, Step.REFUSED, "PodCrashLooping", StopReason.STORM),
            record(4, Step.REFUSED, "HighCPUUsage", StopReason.STORM),
            record(5, Step.RECEIVED, "HighCPUUsage", None),
        ]
    )

    async def sentences(**query: Any) -> list[str]:
        return [r.sentence for r in await store.decisions(AuditQuery(**query))]

    assert await sentences(step="refused", alertname="HighCPUUsage") == [
        "decision 2", "decision 4",
    ]  # fmt: skip
    assert await sentences(reason="storm") == ["decision 3", "decision 4"]
    assert await sentences(alertname="highcpuusage") == []  # exact, as the labels are
    assert await sentences(newest_first=True, limit=2) == ["decision 5", "decision 4"]
    fourth, _ = await store.decisions(AuditQuery(newest_first=True, reason="storm"))
    older = await sentences(newest_first=True, before_id=fourth.id, limit=2)
    assert older == ["decision 3", "decision 2"]
    assert await sentences(newest_first=True, before_id=1) == []
