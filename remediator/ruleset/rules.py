"""A compiled rule set: what ``load`` produces and ``classify`` reads. Immutable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from remediator.actions.base import AnyAction
from remediator.core.model import Severity, Target
from remediator.guards.claim import Limit
from remediator.ruleset.matchers import Matcher
from remediator.ruleset.schema import EscalationPolicySpec, PolicySpec
from remediator.ruleset.template import Template


@dataclass(frozen=True, slots=True)
class TargetTemplate:
    kind: str
    namespace: Template
    name: Template

    def render(self, labels: Mapping[str, str]) -> Target:
        """The target the alert names; ``LookupError`` when a label is missing or unsafe."""
        namespace = self.namespace.render(labels) if self.namespace.text else ""
        return Target(kind=self.kind, namespace=namespace, name=self.name.render(labels))


@dataclass(frozen=True, slots=True)
class PlannedAction:
    name: str
    action: AnyAction
    params: BaseModel
    target: TargetTemplate

    @property
    def kind(self) -> str:
        return self.action.kind


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    file: str
    position: int
    matchers: tuple[Matcher, ...]
    severity: Severity
    plan: PlannedAction | None
    cooldown_s: float
    rate_limit: Limit | None
    target_rate_limit: Limit | None
    ineffective_after: Limit | None
    verify_within_s: float
    escalation: str
    description: str = ""
    digest: str = ""
    """What the rule says once defaults are applied, hashed: a claim resumed after a restart
    runs only under the rule it was claimed under."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: Sequence[Rule]
    policy: PolicySpec
    escalations: Mapping[str, EscalationPolicySpec]
    hash: str
    files: Sequence[str]
    sinks: Mapping[str, Any] = field(default_factory=dict)
    """Escalation sinks by name (their specs; secrets are read when the service starts)."""
    _by_name: Mapping[str, Rule] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {rule.name: rule for rule in self.rules})

    def rule(self, name: str) -> Rule | None:
        """The rule named ``name`` (claims, undos and follow-ups name theirs); None if gone."""
        return self._by_name.get(name)
