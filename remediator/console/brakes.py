"""The console's "Brakes": how close each bound is to stopping the next action. The global
budget of destructive actions and each action kind's window (used, limit, when a slot
frees), the cooldowns in force per target, the storm brake's distinct targets against its
limit, and whether the service runs dry.

Where it sits: ``runtime.console`` reads the claims of the longest window from the store
(``Store.recent_claims``) and the storm count, and hands them here with the active rule set;
the counting is the store's claim guards' (``store.rows.claim_windows``): every claim in a
window counts, and a claim that sent nothing starts no cooldown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from remediator.ruleset.rules import RuleSet
from remediator.ruleset.schema import LimitSpec
from remediator.store.contract import SENT_NOTHING, RecentClaim

MAX_CLAIMS = 10_000
"""Claims read for the brakes; more in the longest window is said, not hidden."""


@dataclass(frozen=True, slots=True)
class Window:
    name: str
    used: int
    limit: int
    window_s: float
    frees_at: datetime | None
    """When the oldest claim counted leaves the window (None: none counted)."""

    @property
    def spent(self) -> bool:
        return self.used >= self.limit


@dataclass(frozen=True, slots=True)
class Cooldown:
    target: str
    rule: str
    since: datetime
    ends_at: datetime


@dataclass(frozen=True, slots=True)
class Brakes:
    dry_run: bool
    budget: Window
    kinds: list[Window]
    cooldowns: list[Cooldown]
    storm_targets: int
    storm_limit: int
    storm_window_s: float
    claims_read: int
    truncated: bool
    """More claims than ``MAX_CLAIMS`` in the longest window: counts are at least these."""

    @property
    def storm_engaged(self) -> bool:
        return self.storm_targets > self.storm_limit


def lookback_s(ruleset: RuleSet) -> float:
    """The longest window or cooldown any brake counts over."""
    policy = ruleset.policy
    spans = [policy.global_budget.window_s, *(s.window_s for s in policy.action_limits.values())]
    spans += [rule.cooldown_s for rule in ruleset.rules if rule.plan is not None]
    return max(spans)


def brakes(
    ruleset: RuleSet,
    claims: Sequence[RecentClaim],
    storm_targets: int,
    now: datetime,
    dry_run: bool,
) -> Brakes:
    """The brakes at ``now`` from ``claims`` (newest first, since ``lookback_s`` ago)."""
    policy = ruleset.policy
    destructive = [c for c in claims if c.destructive]
    kinds = [
        _window(kind, [c for c in claims if c.action_kind == kind], spec, now)
        for kind, spec in sorted(policy.action_limits.items())
    ]
    return Brakes(
        dry_run=dry_run,
        budget=_window("destructive actions", destructive, policy.global_budget, now),
        kinds=kinds,
        cooldowns=_cooldowns(ruleset, claims, now),
        storm_targets=storm_targets,
        storm_limit=policy.storm.max_targets,
        storm_window_s=policy.storm.window_s,
        claims_read=len(claims),
        truncated=len(claims) >= MAX_CLAIMS,
    )


def _window(name: str, claims: Sequence[RecentClaim], spec: LimitSpec, now: datetime) -> Window:
    since = now - timedelta(seconds=spec.window_s)
    counted = [c for c in claims if c.claimed_at > since]
    oldest = min((c.claimed_at for c in counted), default=None)
    frees_at = oldest + timedelta(seconds=spec.window_s) if oldest else None
    return Window(name, len(counted), spec.max_actions, spec.window_s, frees_at)


def _cooldowns(ruleset: RuleSet, claims: Sequence[RecentClaim], now: datetime) -> list[Cooldown]:
    """Each target's latest claim that sent something, while its rule's cooldown holds.
    The store holds a new claim to the cooldown of the rule that claims it: this is the
    cooldown a new alert of the same rule meets. A rule no longer in the set is left out."""
    latest: dict[str, RecentClaim] = {}
    for claim in claims:
        if claim.outcome not in SENT_NOTHING and claim.target not in latest:
            latest[claim.target] = claim
    cooling = []
    for target, claim in latest.items():
        rule = ruleset.rule(claim.rule)
        if rule is None:
            continue
        ends_at = claim.claimed_at + timedelta(seconds=rule.cooldown_s)
        if ends_at > now:
            cooling.append(Cooldown(target, claim.rule, claim.claimed_at, ends_at))
    return sorted(cooling, key=lambda c: c.ends_at, reverse=True)
