"""The guards a claim must pass, evaluated by the store inside the claim's transaction.

Duplicate (this episode already claimed this rule's action), cooldown per target, and
rate limits per target, per rule, per action kind and for the global budget of destructive
actions.
"""

from __future__ import annotations

from dataclasses import dataclass

from remediator.core.model import ALLOW, Verdict, refuse
from remediator.core.vocab import StopReason


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``max_actions`` claims within ``window_s`` seconds."""

    max_actions: int
    window_s: float


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    episode_id: int
    rule: str
    action: str
    action_kind: str
    target: str
    destructive: bool
    dry_run: bool
    cooldown_s: float
    rule_limit: Limit | None
    kind_limit: Limit | None
    global_budget: Limit | None
    target_limit: Limit | None = None
    repeat_limit: Limit | None = None
    """The same action on the same target this often means it does not help."""


@dataclass(frozen=True, slots=True)
class ClaimFacts:
    """What the store read, in the claim's transaction, for one ``ClaimRequest``."""

    already_claimed: bool
    seconds_since_target_claim: float | None
    rule_claims: int
    kind_claims: int
    destructive_claims: int
    target_claims: int = 0
    same_fix_claims: int = 0


def _over(count: int, limit: Limit | None) -> bool:
    return limit is not None and count >= limit.max_actions


def decide(request: ClaimRequest, facts: ClaimFacts) -> Verdict:
    if facts.already_claimed:
        return refuse(
            StopReason.DUPLICATE,
            f"This episode already claimed action {request.action!r} of rule {request.rule!r}.",
        )
    since = facts.seconds_since_target_claim
    if since is not None and since < request.cooldown_s:
        return refuse(
            StopReason.COOLDOWN,
            f"{request.target} was acted on {since:.0f} s ago; its cooldown is"
            f" {request.cooldown_s:.0f} s.",
        )
    if _over(facts.same_fix_claims, request.repeat_limit):
        assert request.repeat_limit is not None
        return refuse(
            StopReason.INEFFECTIVE,
            f"{request.target} needed {request.action_kind} {facts.same_fix_claims} times within"
            f" {request.repeat_limit.window_s:.0f} s; it does not help, so remediator stops"
            " acting on it.",
        )
    if _over(facts.target_claims, request.target_limit):
        return refuse(
            StopReason.TARGET_RATE_LIMIT,
            f"{request.target} was acted on {facts.target_claims} times in its window.",
        )
    if _over(facts.rule_claims, request.rule_limit):
        return refuse(
            StopReason.RULE_RATE_LIMIT,
            f"Rule {request.rule!r} already acted {facts.rule_claims} times in its window.",
        )
    if _over(facts.kind_claims, request.kind_limit):
        return refuse(
            StopReason.ACTION_RATE_LIMIT,
            f"Action kind {request.action_kind!r} already ran {facts.kind_claims} times in its"
            " window.",
        )
    if request.destructive and _over(facts.destructive_claims, request.global_budget):
        return refuse(
            StopReason.GLOBAL_BUDGET,
            f"The global budget of destructive actions is spent ({facts.destructive_claims}"
            " in the window).",
        )
    return ALLOW
