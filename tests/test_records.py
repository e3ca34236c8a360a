"""The audit's vocabulary and its one door: every word is the string stored before, every
record of every stage (decide, act, reconcile, aftercare, delivery) goes through the
recorder, so it is counted in ``decisions_total`` and logged, and every reason is a member
of ``StopReason``."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import re
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from remediator.act import aftercare
from remediator.act.aftercare import Aftercare
from remediator.act.reconcile import reconcile_claims
from remediator.actions.registry import default_registry
from remediator.audit import records
from remediator.audit.recorder import Recorder, _by_alerts
from remediator.core.metrics import Metrics
from remediator.core.model import Alert, AuditRecord, Incident, Target, refuse
from remediator.core.vocab import AlertStatus, ClaimOutcome, Event, Outcome, Step, StopReason
from remediator.escalate import plan as escalate
from remediator.guards.claim import ClaimRequest
from remediator.ruleset.load import load_rules
from remediator.ruleset.rules import Rule, RuleSet
from remediator.runtime.app import REGISTRY
from remediator.store.contract import AuditQuery, Settlement, Sighting, Store
from tests.support.clock import FakeClock
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.service import EXAMPLE_RULES, ServiceUnderTest, serve, settings_for
from tests.support.sinks import WebhookStub
from tests.support.stores import runner_for

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
TARGET = Target("Deployment", "llm-research", "api")
README = Path(__file__).parent.parent / "README.md"

#: Each set's words as the audit, claims and outbox held them before the sets were enums,
#: and the words added since.
STORED_BEFORE: list[tuple[type[StrEnum], set[str], set[str]]] = [
    (Step, {"received", "classified", "refused", "claimed", "dry_run", "acted", "verified",
            "escalated", "resolved", "reconciled", "undone", "notified"},
     {"shadow", "reopened", "acknowledged", "approval"}),
    (Outcome, {"received", "classified", "refused", "claimed", "succeeded", "failed", "dry_run",
               "escalated", "resolved"}, {"notified", "unknown", "acknowledged",
                                          "pending_approval", "approved", "denied"}),
    (StopReason, {"resolved", "stale", "duplicate", "escalate_only", "target_unresolved",
                  "out_of_scope", "storm", "cooldown", "ineffective_remediation", "ineffective",
                  "target_rate_limit", "rule_rate_limit", "action_rate_limit", "global_budget",
                  "dry_run", "precheck_failed", "not_opted_in", "blast_radius", "target_gone",
                  "api_error", "shutting_down", "outcome_unknown", "not_applied", "taken_over",
                  "unprocessable"},
     {"verify_failed", "rule_changed", "silenced", "silence_unknown", "muted", "owned_elsewhere",
      "outside_active_time", "approval_denied", "approval_timeout"}),
    (ClaimOutcome, {"succeeded", "failed", "dry_run", "refused", "not_run", "not_applied",
                    "unknown"}, set()),
    (Event, {"trigger", "resolve"}, {"update"}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("words", "before", "added"), STORED_BEFORE, ids=[words.__name__ for words, *_ in STORED_BEFORE]
)
def test_every_word_is_the_string_stored_before_so_old_rows_read_back(
    words: type[StrEnum], before: set[str], added: set[str]
) -> None:
    assert {w.value for w in words} == before | added
    for text in before:
        assert words(text) == text and str(words(text)) == text


def test_the_reason_aftercare_always_wrote_is_a_member() -> None:
    assert StopReason("ineffective") is StopReason.STILL_FIRING
    assert StopReason.STILL_FIRING is not StopReason.INEFFECTIVE


def test_the_readme_lists_exactly_the_audit_steps() -> None:
    text = README.read_text()
    listed = re.search(r"^- `step` \((.*?)\);$", text, re.MULTILINE | re.DOTALL)
    assert listed is not None, "the README's record fields list no steps"
    assert re.findall(r"`([a-z_]+)`", listed.group(1)) == [s.value for s in Step]


def test_the_readme_lists_exactly_the_outcomes() -> None:
    text = README.read_text()
    listed = re.search(r"^- `outcome` \((.*?)\);$", text, re.MULTILINE | re.DOTALL)
    assert listed is not None, "the README's filters list no outcomes"
    assert re.findall(r"`([a-z_]+)`", listed.group(1)) == [o.value for o in Outcome]


async def test_every_step_and_reason_reads_back_from_the_store_as_the_member_written(
    store: Store,
) -> None:
    written = [
        AuditRecord(T0, step, Outcome.REFUSED, f"{step} {reason}", reason=reason)
        for step in Step
        for reason in (*StopReason, None)
    ]
    await store.audit(written)
    read = await store.decisions(AuditQuery(limit=1000))
    assert [(r.step, r.reason) for r in read] == [(w.step, w.reason) for w in written]
    assert all(type(r.step) is Step for r in read)
    assert all(r.reason is None or type(r.reason) is StopReason for r in read)


def counted(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    """``decisions_total`` by (severity, outcome), the series above zero."""
    return {
        (s.labels["severity"], s.labels["outcome"]): s.value
        for metric in registry.collect()
        if metric.name == "remediator_decisions"
        for s in metric.samples
        if s.name.endswith("_total") and s.value
    }


def by_severity_and_outcome(decisions: list[AuditRecord]) -> dict[tuple[str, str], float]:
    counts: dict[tuple[str, str], float] = {}
    for r in decisions:
        if r.severity is not None:
            key = (r.severity.value, r.outcome.value)
            counts[key] = counts.get(key, 0) + 1
    return counts


@pytest.fixture
def ruleset() -> RuleSet:
    return load_rules(EXAMPLE_RULES, default_registry())


def acting_rule(ruleset: RuleSet) -> Rule:
    rule = next(r for r in ruleset.rules if r.plan is not None and r.plan.kind == "scale_out")
    assert rule.plan is not None
    return rule


async def claimed(
    store: Store, rule: Rule, action: str, firing: bool = True, fp: str = "fp"
) -> tuple[int, int]:
    """(episode, claim) of a claim on a scale-out target, the alert firing or resolved."""
    [obs] = await store.observe([Sighting(fp, AlertStatus.FIRING, "HighCPUUsage")], T0, 0)
    if not firing:
        await store.observe([Sighting(fp, AlertStatus.RESOLVED, "HighCPUUsage")], T0, 0)
    request = ClaimRequest(
        episode_id=obs.episode.id, rule=rule.name, action=action, action_kind="scale_out",
        target="llm-research/Deployment/api", destructive=False, dry_run=False, cooldown_s=0,
        rule_limit=None, kind_limit=None, global_budget=None,
    )  # fmt: skip
    result = await store.claim(request, T0)
    assert result.claim_id is not None
    return obs.episode.id, result.claim_id


async def test_reconcile_writes_through_the_recorder_so_its_records_are_counted(
    store: Store, ruleset: RuleSet
) -> None:
    registry, clock = CollectorRegistry(), FakeClock(T0)
    recorder = Recorder(store, Metrics(registry, []), clock, ruleset, escalate.plan)
    rule = acting_rule(ruleset)
    assert rule.plan is not None
    await claimed(store, rule, rule.plan.name)  # no intent: nothing was sent
    unfinished = await store.unfinished_claims()
    runner = runner_for(store, recorder, clock)
    assert await reconcile_claims(unfinished, recorder, clock, runner) == {"settled": 1}
    decisions = await store.decisions(AuditQuery(limit=100))
    assert [(r.step, r.outcome, r.reason) for r in decisions] == [
        (Step.RECONCILED, Outcome.FAILED, StopReason.NOT_APPLIED),
        (Step.ESCALATED, Outcome.ESCALATED, StopReason.NOT_APPLIED),
    ]
    sev = rule.severity.value
    assert counted(registry) == {(sev, "failed"): 1, (sev, "escalated"): 1}


async def test_aftercare_writes_through_the_recorder_and_its_reason_is_a_member(
    store: Store, ruleset: RuleSet
) -> None:
    registry, clock = CollectorRegistry(), FakeClock(T0)
    recorder = Recorder(store, Metrics(registry, []), clock, ruleset, escalate.plan)
    rule = acting_rule(ruleset)
    assert rule.plan is not None
    _, followed = await claimed(store, rule, rule.plan.name)  # the alert still fires
    await store.settle(Settlement(followed, "succeeded", followup_at=T0), T0)
    await Aftercare(store, recorder, clock, 0.01).run_due()
    decisions = await store.decisions(AuditQuery(limit=100))
    assert [(r.step, r.outcome, r.reason) for r in decisions] == [
        (Step.VERIFIED, Outcome.FAILED, None),
        (Step.ESCALATED, Outcome.ESCALATED, StopReason.STILL_FIRING),
    ]
    assert counted(registry) == by_severity_and_outcome(decisions)
    assert sum(counted(registry).values()) == 2


async def test_two_replicas_aftercare_at_once_pages_a_follow_up_once_and_steps_an_undo_once(
    store: Store, ruleset: RuleSet
) -> None:
    """Every replica runs the aftercare loop: both read the same follow-up and undo due at
    once; one of them takes each (seen once on two replicas under load: every ineffective
    fix paged twice)."""
    registry, clock = CollectorRegistry(), FakeClock(T0)
    recorder = Recorder(store, Metrics(registry, []), clock, ruleset, escalate.plan)
    rule = acting_rule(ruleset)
    assert rule.plan is not None
    _, followed = await claimed(store, rule, rule.plan.name)  # the alert still fires
    await store.settle(Settlement(followed, "succeeded", followup_at=T0), T0)
    episode, undone = await claimed(store, rule, "an-action-since-renamed", False, "fp2")
    await store.settle(
        Settlement(undone, "succeeded", "llm-research/Deployment/api", {"replicas": 3}, 0), T0
    )
    await store.undo_arm([episode], T0 - timedelta(seconds=1))
    clock.advance(1)
    replicas = [Aftercare(store, recorder, clock, 0.01) for _ in range(2)]
    await asyncio.gather(*(replica.run_due() for replica in replicas))
    steps = Counter(r.step for r in await store.decisions(AuditQuery(limit=100)))
    assert steps == {Step.VERIFIED: 1, Step.ESCALATED: 1, Step.UNDONE: 1}
    clock.advance(aftercare.TAKE_S + 1)  # nothing was left taken and due again
    await asyncio.gather(*(replica.run_due() for replica in replicas))
    assert len(await store.decisions(AuditQuery(limit=100))) == 3


async def test_an_undo_step_is_written_through_the_recorder(store: Store, ruleset: RuleSet) -> None:
    registry, clock = CollectorRegistry(), FakeClock(T0)
    recorder = Recorder(store, Metrics(registry, []), clock, ruleset, escalate.plan)
    rule = acting_rule(ruleset)
    episode, claim_id = await claimed(store, rule, "an-action-since-renamed", firing=False)
    await store.settle(
        Settlement(claim_id, "succeeded", "llm-research/Deployment/api", {"replicas": 3}, 0), T0
    )
    await store.undo_arm([episode], T0 - timedelta(seconds=1))
    clock.advance(1)
    await Aftercare(store, recorder, clock, 0.01).run_due()
    [undone] = await store.decisions(AuditQuery(limit=100))
    assert (undone.step, undone.outcome, undone.severity) == (
        Step.UNDONE, Outcome.FAILED, rule.severity,
    )  # fmt: skip
    assert "no longer has action" in undone.sentence
    assert counted(registry) == {(rule.severity.value, "failed"): 1}


HOOK_RULES = """
policy:
  namespaces: [llm-research]
defaults:
  escalation: {{SEV-1: hook, SEV-2: hook, SEV-3: hook}}
escalations:
  hook:
    tiers: [{{after_s: 0, notify: [hook]}}]
sinks:
  hook: {{type: webhook, url: "{hook}/remediator", secret_file: {secret}}}
rules:
  - name: cpu
    match: ['alertname="HighCPUUsage"']
    severity: SEV-3
    action: {{kind: log_only}}
    target: {{kind: Deployment, namespace: "{{namespace}}", name: "{{deployment}}"}}
    cooldown_s: 0
  - name: default
    match: []
    severity: SEV-2
"""


@pytest.fixture
async def hooked(tmp_path: Path) -> AsyncIterator[tuple[ServiceUnderTest, WebhookStub]]:
    clock = FakeClock()
    async with WebhookStub(clock=clock.monotonic) as hook:
        (tmp_path / "secret").write_text("s3cret\n")
        rules = tmp_path / "rules"
        rules.mkdir()
        text = HOOK_RULES.format(hook=hook.url, secret=tmp_path / "secret")
        (rules / "rules.yaml").write_text(text)
        # No episode grace: the resolve is sent at once (a held one is test_escalation's).
        settings = settings_for(tmp_path, rules_dir=rules, delivery_poll_s=0.02,
                                episode_grace_s=0)  # fmt: skip
        async with serve(settings, clock=clock) as service:
            yield service, hook


async def eventually_sent(hook: WebhookStub, count: int) -> None:
    for _ in range(250):
        if len(hook.received) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the webhook received {len(hook.received)}, not {count}")


def firing(status: str = "firing", **labels: str) -> dict[str, Any]:
    return webhook_alert(status=status, labels=labels)


async def test_a_whole_run_is_counted_logged_and_reasoned_in_the_closed_sets(
    hooked: tuple[ServiceUnderTest, WebhookStub], caplog: pytest.LogCaptureFixture
) -> None:
    """Decide, act, escalate, deliver a page and its resolve: every record with a severity
    is counted once, every record is logged once, every reason is a ``StopReason``."""
    service, hook = hooked
    caplog.set_level(logging.DEBUG, logger="remediator.audit.recorder")
    down = firing(alertname="APIUnavailable")
    cpu = firing(alertname="HighCPUUsage", namespace="llm-research", deployment="api")
    outside = firing(alertname="HighCPUUsage", namespace="kube-system", deployment="dns")
    assert (await service.post(webhook_payload(down, cpu, outside)))[0] == 200
    await service.settle()
    await eventually_sent(hook, 2)  # the two escalations
    resolved = firing("resolved", alertname="APIUnavailable")
    assert (await service.post(webhook_payload(resolved)))[0] == 200
    await service.settle()
    await eventually_sent(hook, 3)  # the resolve
    for _ in range(50):  # the resolve's record follows its delivery
        decisions = await service.decisions()
        if sum(d["step"] == "notified" for d in decisions) == 3:
            break
        await asyncio.sleep(0.02)
    notified = [(d["details"]["event"], d["outcome"]) for d in decisions if d["step"] == "notified"]
    assert sorted(notified) == [("resolve", "notified"), ("trigger", "escalated"),
                                ("trigger", "escalated")]  # fmt: skip
    assert {d["step"] for d in decisions} <= {s.value for s in Step}
    assert {d["outcome"] for d in decisions} <= {o.value for o in Outcome}
    reasons = {d["reason"] for d in decisions if d["reason"] is not None}
    assert reasons and reasons <= {r.value for r in StopReason}
    expected: dict[tuple[str, str], float] = {}
    for d in decisions:
        key = (d["severity"], d["outcome"])
        expected[key] = expected.get(key, 0) + 1
    assert counted(service.server.app[REGISTRY]) == expected
    logged = [r for r in caplog.records if r.getMessage() == "decision"]
    assert len(logged) == len(decisions)
    info = [r.fields for r in logged if r.levelno == logging.INFO]  # type: ignore[attr-defined]
    assert info and all(f["step"] not in ("received", "classified") for f in info)
    decided = {(d["episode"], d["step"]) for d in decisions if d["step"] == "escalated"}
    assert decided <= {(f["episode"], f["step"]) for f in info}  # each decision has its line
    fields = logged[-1].fields  # type: ignore[attr-defined]
    assert set(fields) == {"episode", "fingerprint", "alertname", "rule", "severity", "step",
                           "outcome", "reason", "target", "action", "journal_id"}  # fmt: skip
    assert fields["step"] == "notified" and fields["outcome"] == "notified"


def test_a_refusal_builder_takes_its_reason_from_the_verdict_and_nothing_else() -> None:
    alert = Alert("fp", AlertStatus.FIRING, {"alertname": "X"}, {}, T0, None)
    incident = Incident(alert, 1, 1, T0, rule="r").stop(refuse(StopReason.STORM, "A storm."))
    record = records.refused(records.Stamp(T0, "hash"), incident)
    assert (record.step, record.outcome, record.reason, record.sentence) == (
        Step.REFUSED, Outcome.REFUSED, StopReason.STORM, "A storm.",
    )  # fmt: skip
    resolved = incident.stop(refuse(StopReason.RESOLVED, "Gone."))
    assert records.refused(records.Stamp(T0, "hash"), resolved).outcome is Outcome.RESOLVED


@pytest.mark.parametrize(
    ("alertmanager_url", "labels", "silence_url"),
    [
        ("", {"alertname": "X"}, ""),
        ("http://am:9093/", {"b": "2", "alertname": "X"},
         "http://am:9093/#/silences/new?filter=%7Balertname%3D%22X%22%2Cb%3D%222%22%7D"),
        ("https://am.example/prefix", {"alertname": 'say "hi" & <go>'},
         "https://am.example/prefix/#/silences/new?filter="
         "%7Balertname%3D%22say%20%5C%22hi%5C%22%20%26%20%3Cgo%3E%22%7D"),
    ],
    ids=["no Alertmanager named", "sorted and quoted", "a value with quotes and markup"],
)  # fmt: skip
def test_a_page_silences_the_alert_by_its_own_labels_in_the_alertmanager_that_sent_it(
    alertmanager_url: str, labels: dict[str, str], silence_url: str
) -> None:
    alert = Alert("fp", AlertStatus.FIRING, labels, {"summary": "s"}, T0, None, "http://gen")
    incident = Incident(alert, 1, 1, T0, alertmanager_url=alertmanager_url)
    content = records.alert_content(incident)
    assert content["silence_url"] == silence_url
    assert (content["labels"], content["annotations"], content["generator_url"]) == (
        labels, {"summary": "s"}, "http://gen",
    )  # fmt: skip


async def test_a_big_batch_is_logged_in_pieces_with_one_info_line_per_alert(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """300 alerts decided in one chunk: their records are counted and logged in pieces (so
    acks are answered between them), and no piece splits an alert: still one info line each."""
    caplog.set_level(logging.INFO, logger="remediator.audit.recorder")
    alerts = [firing(alertname="NodeDiskPressure", node=f"n{i}") for i in range(300)]
    async with serve(settings_for(tmp_path, rules_dir=EXAMPLE_RULES)) as service:
        assert (await service.post(webhook_payload(*alerts)))[0] == 200
        await service.settle()
        counted_decisions = counted(service.server.app[REGISTRY])
    info = [r for r in caplog.records if r.getMessage() == "decision" and r.levelno == logging.INFO]
    episodes = [r.fields["episode"] for r in info]  # type: ignore[attr-defined]
    assert len(episodes) == len(set(episodes)) == 300
    assert counted_decisions[("SEV-3", "escalated")] == 300  # every record still counted


@pytest.mark.parametrize("size", [1, 3, 7, 256])
def test_pieces_of_a_batch_hold_every_record_in_order_and_never_split_an_alert(size: int) -> None:
    rng = random.Random(size)
    alert = Alert("fp", AlertStatus.FIRING, {"alertname": "X"}, {}, T0, None)
    batch: list[AuditRecord] = []
    for episode in range(200):
        incident = Incident(alert, episode, 1, T0, rule="r")
        for _ in range(rng.randint(1, 5)):
            batch.append(records.claimed(records.Stamp(T0, "h"), replace(incident, target=TARGET)))
    pieces = list(_by_alerts(batch, size))
    assert [record for piece in pieces for record in piece] == batch
    for before, after in itertools.pairwise(pieces):
        assert before[-1].episode_id != after[0].episode_id
    assert len(pieces) > 1
