"""The pure guards, as tables: facts and clock reading in, verdict out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from remediator.core.model import AlertStatus, StopReason, Target
from remediator.guards import claim, freshness, scope, storm
from remediator.guards.claim import ClaimFacts, ClaimRequest, Limit

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "episode_open", "waited_s", "expected"),
    [
        (AlertStatus.FIRING, True, 0, None),
        (AlertStatus.FIRING, True, 899, None),
        (AlertStatus.FIRING, True, 901, StopReason.STALE),
        (AlertStatus.RESOLVED, True, 0, StopReason.RESOLVED),
        (AlertStatus.FIRING, False, 0, StopReason.RESOLVED),
    ],
    ids=["fresh", "just-in-time", "stale", "resolved", "episode-closed-meanwhile"],
)
def test_freshness_refuses_resolved_and_stale_alerts(
    status: AlertStatus, episode_open: bool, waited_s: float, expected: StopReason | None
) -> None:
    received = NOW - timedelta(seconds=waited_s)
    verdict = freshness.decide(status, episode_open, received, NOW, stale_after_s=900)
    assert verdict.reason is expected


@pytest.mark.parametrize(
    ("namespace", "allowed", "expected"),
    [
        ("llm-research", ["llm-research"], None),
        ("kube-system", ["llm-research"], StopReason.OUT_OF_SCOPE),
        ("llm-research", [], StopReason.OUT_OF_SCOPE),
        ("", ["llm-research"], StopReason.OUT_OF_SCOPE),
    ],
    ids=["allowed", "other-namespace", "empty-allow-list", "cluster-scoped"],
)
def test_scope_acts_only_inside_the_allow_list(
    namespace: str, allowed: list[str], expected: StopReason | None
) -> None:
    verdict = scope.decide(Target("Deployment", namespace, "api"), allowed)
    assert verdict.reason is expected


def test_a_configured_database_target_is_in_scope_without_a_namespace() -> None:
    assert scope.decide(Target("Database", "", "primary"), ["llm-research"]).allowed


@pytest.mark.parametrize(
    ("distinct", "truncated", "expected"),
    [(1, 0, None), (10, 0, None), (11, 0, StopReason.STORM), (1, 3, StopReason.STORM)],
    ids=["one", "at-limit", "over-limit", "truncated-payload"],
)
def test_storm_brake_engages_above_the_limit_or_on_truncation(
    distinct: int, truncated: int, expected: StopReason | None
) -> None:
    assert storm.decide(distinct, 10, truncated).reason is expected


REQUEST = ClaimRequest(
    episode_id=1,
    rule="cpu",
    action="scale",
    action_kind="scale_out",
    target="ns/Deployment/api",
    destructive=True,
    dry_run=False,
    cooldown_s=600,
    rule_limit=Limit(4, 3600),
    kind_limit=Limit(10, 3600),
    global_budget=Limit(20, 3600),
    target_limit=Limit(3, 3600),
)
CLEAR = ClaimFacts(False, None, 0, 0, 0)


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (CLEAR, None),
        (ClaimFacts(True, 5, 1, 1, 1), StopReason.DUPLICATE),
        (ClaimFacts(False, 599, 0, 0, 0), StopReason.COOLDOWN),
        (ClaimFacts(False, 600, 0, 0, 0), None),
        (ClaimFacts(False, None, 4, 0, 0), StopReason.RULE_RATE_LIMIT),
        (ClaimFacts(False, None, 3, 10, 0), StopReason.ACTION_RATE_LIMIT),
        (ClaimFacts(False, None, 3, 9, 20), StopReason.GLOBAL_BUDGET),
        (ClaimFacts(False, None, 3, 9, 19), None),
        (ClaimFacts(False, 700, 0, 0, 0, target_claims=3), StopReason.TARGET_RATE_LIMIT),
    ],
    ids=[
        "clear",
        "duplicate-first",
        "in-cooldown",
        "cooldown-over",
        "rule-limit",
        "kind-limit",
        "budget-spent",
        "just-under-every-limit",
        "target-limit",
    ],
)
def test_claim_guards_check_duplicate_cooldown_and_limits_in_order(
    facts: ClaimFacts, expected: StopReason | None
) -> None:
    assert claim.decide(REQUEST, facts).reason is expected


def test_a_non_destructive_action_does_not_spend_the_global_budget() -> None:
    from dataclasses import replace

    gentle = replace(REQUEST, destructive=False)
    assert claim.decide(gentle, ClaimFacts(False, None, 0, 0, 500)).allowed
