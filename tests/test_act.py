"""The action runner: one action at a time per target, at most N at once overall, and a
failing action reaches a human instead of crashing the service."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from remediator.act.runner import ActionJob, ActionRunner
from remediator.actions.base import (
    ActionRequest,
    ActionResult,
    Checked,
    Permission,
    VerifyResult,
)
from remediator.actions.log_only import LogOnlyParams
from remediator.audit.recorder import Recorder
from remediator.core.metrics import Metrics
from remediator.core.model import ALLOW, Alert, AlertStatus, Incident, Target
from remediator.escalate import plan as escalate
from remediator.guards.claim import ClaimRequest
from remediator.ruleset.rules import PlannedAction, RuleSet, TargetTemplate
from remediator.ruleset.schema import PolicySpec
from remediator.ruleset.template import Template
from remediator.store.contract import AuditQuery, Sighting, Store
from tests.support.clock import FakeClock


class SlowAction:
    """An action plugin for the test: it sleeps and records how many run at once."""

    kind: ClassVar[str] = "slow"
    params_model: ClassVar[type[BaseModel]] = LogOnlyParams
    target_kinds: ClassVar[frozenset[str]] = frozenset()
    destructive: ClassVar[bool] = False

    def __init__(self, fail_on: str = "") -> None:
        self.running: Counter[str] = Counter()
        self.most_per_target = 0
        self.most_overall = 0
        self.fail_on = fail_on

    def available(self) -> bool:
        return True

    def permissions(self) -> Sequence[Permission]:
        return ()

    async def precheck(self, request: ActionRequest) -> Checked:
        return Checked(ALLOW)

    async def run(self, request: ActionRequest, facts: Mapping[str, Any]) -> ActionResult:
        key = request.target.key
        self.running[key] += 1
        self.most_per_target = max(self.most_per_target, self.running[key])
        self.most_overall = max(self.most_overall, sum(self.running.values()))
        await asyncio.sleep(0.02)
        self.running[key] -= 1
        if key == self.fail_on:
            raise RuntimeError("the far side said no")
        return ActionResult(True, f"ran on {key}")

    async def verify(self, request: ActionRequest, result: ActionResult) -> VerifyResult:
        return VerifyResult.VERIFIED


async def submit_jobs(
    store: Store, runner: ActionRunner, action: SlowAction, targets: list[str]
) -> None:
    now = datetime(2026, 11, 28, tzinfo=UTC)
    sightings = [Sighting(f"fp{i}", AlertStatus.FIRING, "X") for i in range(len(targets))]
    observations = await store.observe(sightings, now, 60)
    plan = PlannedAction(
        "slow", action, LogOnlyParams(), TargetTemplate("Deployment", Template(""), Template("x"))
    )
    for obs, name in zip(observations, targets, strict=True):
        target = Target("Deployment", "ns", name)
        claim = await store.claim(
            ClaimRequest(obs.episode.id, "r", "slow", "slow", f"{target.key}#{obs.episode.id}",
                         False, False, 0, None, None, None),
            now,
        )  # fmt: skip
        assert claim.claim_id is not None
        alert = Alert(obs.episode.fingerprint, AlertStatus.FIRING, {}, {}, now, None)
        incident = Incident(alert, obs.episode.id, 1, now, rule="r", action="slow", target=target)
        runner.submit(ActionJob(incident, plan, claim.claim_id, "oncall"))


def make_runner(store: Store, max_concurrent: int) -> ActionRunner:
    metrics = Metrics(CollectorRegistry(), ["slow"])
    clock = FakeClock()
    ruleset = RuleSet(rules=(), policy=PolicySpec(), escalations={}, hash="hash", files=())
    recorder = Recorder(store, metrics, clock, ruleset, plan=escalate.plan)
    return ActionRunner(
        store, recorder, metrics, clock, dry_run=False, max_concurrent=max_concurrent
    )


async def test_actions_run_one_at_a_time_per_target_and_within_the_global_cap(
    store: Store,
) -> None:
    action = SlowAction()
    runner = make_runner(store, max_concurrent=2)
    await submit_jobs(store, runner, action, ["a", "a", "a", "b", "b", "c", "d"])
    await runner.drain(10)
    assert action.most_per_target == 1
    assert action.most_overall == 2
    assert await store.unfinished_claims() == []


async def test_an_action_that_raises_is_recorded_failed_and_escalated(store: Store) -> None:
    action = SlowAction(fail_on="ns/Deployment/bad")
    runner = make_runner(store, max_concurrent=4)
    await submit_jobs(store, runner, action, ["bad", "good"])
    await runner.drain(10)
    records = await store.decisions(AuditQuery())
    steps = sorted((r.target, r.step, r.outcome.value) for r in records)
    assert steps == [
        ("ns/Deployment/bad", "acted", "failed"),
        ("ns/Deployment/bad", "escalated", "escalated"),
        ("ns/Deployment/good", "acted", "succeeded"),
        ("ns/Deployment/good", "verified", "succeeded"),
    ]
    failed = next(r for r in records if r.outcome.value == "failed")
    assert failed.sentence == "slow raised RuntimeError: the far side said no"


async def test_an_action_whose_alert_resolves_while_it_waits_is_cancelled_unpaged(
    store: Store,
) -> None:
    action = SlowAction()
    runner = make_runner(store, max_concurrent=1)
    await submit_jobs(store, runner, action, ["first", "second"])  # one slot: second waits
    await store.observe(
        [Sighting("fp1", AlertStatus.RESOLVED, "X")], datetime(2026, 11, 28, tzinfo=UTC), 60
    )
    await runner.drain(10)
    records = await store.decisions(AuditQuery())
    assert sorted((r.target, r.step, r.outcome.value) for r in records) == [
        ("ns/Deployment/first", "acted", "succeeded"),
        ("ns/Deployment/first", "verified", "succeeded"),
        ("ns/Deployment/second", "refused", "resolved"),
    ]
    assert action.most_overall == 1
    assert await store.unfinished_claims() == []
