"""A compiled rule set: what ``load`` produces and ``classify`` reads. Immutable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from remediator.actions.base import AnyAction
from remediator.core.model import Severity, Target
from remediator.guards.claim import Limit
from remediator.guards.windows import TimeInterval
from remediator.ruleset.index import RuleIndex
from remediator.ruleset.matchers import Matcher
from remediator.ruleset.schema import ApprovalSpec, EscalationPolicySpec, PolicySpec
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
class Approval:
    """What a rule's action waits for before it runs: ``needed`` distinct approvers among
    ``approvers`` (names or teams; empty: anyone in the approvers file), within
    ``timeout_s``, after which ``on_timeout`` decides. ``source`` says where it was asked:
    the rule itself or an entry of ``policy.approvals``."""

    timeout_s: float
    approvers: tuple[str, ...]
    on_timeout: Literal["escalate", "act"]
    needed: int
    initiator_label: str | None
    source: str

    @classmethod
    def of(cls, spec: ApprovalSpec, source: str) -> Approval:
        return cls(spec.timeout_s, tuple(spec.approvers), spec.on_timeout, spec.approvals,
                   spec.initiator_label, source)  # fmt: skip

    def said(self) -> dict[str, Any]:
        """As a rule's digest, the API and the approval's record show it."""
        return {"timeout_s": self.timeout_s, "approvers": list(self.approvers),
                "on_timeout": self.on_timeout, "approvals": self.needed,
                "initiator_label": self.initiator_label, "source": self.source}  # fmt: skip


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
    shadow: bool = False
    """Decides as if live, acts and pages never (``RuleSet.shadow_of``)."""
    page_before_acting: bool = False
    """Pages its escalation when the action is claimed (``page: before_acting``)."""
    on_silence_check_error: Literal["refuse", "act"] = "refuse"
    """When whether a silence covers the alert is unknown: refuse (and page), or act."""
    mute_time_intervals: tuple[TimeInterval, ...] = ()
    """The policy's mute intervals, then the rule's: no action inside any of them."""
    active_time_intervals: tuple[TimeInterval, ...] = ()
    """When given, no action outside all of them."""
    approval: Approval | None = None
    """A human approves the action before it runs (the rule's own, or the policy's)."""
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
    _index: RuleIndex = field(init=False, repr=False, compare=False)
    _with_shadows: RuleIndex | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {rule.name: rule for rule in self.rules})
        live = [rule for rule in self.rules if not rule.shadow]
        object.__setattr__(self, "_index", RuleIndex(live))
        shadows = len(live) < len(self.rules)
        object.__setattr__(self, "_with_shadows", RuleIndex(self.rules) if shadows else None)

    def classify(self, labels: Mapping[str, str]) -> Rule:
        """The first live rule that matches ``labels``: shadow rules take nothing."""
        rule = self._index.first_match(labels)
        # load_rules guarantees a live catch-all, so a miss is a bug, not an input problem.
        assert rule is not None, "rule set without a catch-all"
        return rule

    def shadow_of(self, labels: Mapping[str, str]) -> Rule | None:
        """The shadow rule that would take ``labels`` if it were live: the first rule of the
        whole table that matches, when that one is a shadow rule."""
        if self._with_shadows is None:
            return None
        rule = self._with_shadows.first_match(labels)
        return rule if rule is not None and rule.shadow else None

    def candidates(self, labels: Mapping[str, str]) -> list[int]:
        """Positions, among the live rules, of those ``classify`` tests for ``labels``."""
        return self._index.candidates(labels)

    def rule(self, name: str) -> Rule | None:
        """The rule named ``name`` (claims, undos and follow-ups name theirs); None if gone."""
        return self._by_name.get(name)
