"""The values passed from stage to stage: alerts, targets, verdicts and the incident.

All frozen: a stage returns a new value rather than mutating the one it was given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any


class Severity(StrEnum):
    """The seed's severities: SEV-1 respond in 15 min, SEV-2 in 30 min, SEV-3 in 2 h."""

    SEV1 = "SEV-1"
    SEV2 = "SEV-2"
    SEV3 = "SEV-3"


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class StopReason(StrEnum):
    """Why the pipeline stopped short of acting. A closed set: these are metric labels."""

    RESOLVED = "resolved"
    STALE = "stale"
    DUPLICATE = "duplicate"
    ESCALATE_ONLY = "escalate_only"
    TARGET_UNRESOLVED = "target_unresolved"
    OUT_OF_SCOPE = "out_of_scope"
    STORM = "storm"
    COOLDOWN = "cooldown"
    INEFFECTIVE = "ineffective_remediation"
    TARGET_RATE_LIMIT = "target_rate_limit"
    RULE_RATE_LIMIT = "rule_rate_limit"
    ACTION_RATE_LIMIT = "action_rate_limit"
    GLOBAL_BUDGET = "global_budget"
    DRY_RUN = "dry_run"
    PRECHECK_FAILED = "precheck_failed"
    NOT_OPTED_IN = "not_opted_in"
    BLAST_RADIUS = "blast_radius"
    TARGET_GONE = "target_gone"
    API_ERROR = "api_error"
    SHUTTING_DOWN = "shutting_down"
    OUTCOME_UNKNOWN = "outcome_unknown"
    NOT_APPLIED = "not_applied"
    TAKEN_OVER = "taken_over"
    UNPROCESSABLE = "unprocessable"


#: Stop reasons that end quietly: the episode is already handled, or nothing is wrong.
QUIET_STOPS = frozenset({StopReason.RESOLVED, StopReason.DUPLICATE, StopReason.DRY_RUN})


class Outcome(StrEnum):
    """What a decision came to. The ``outcome`` column of the audit and a metric label."""

    RECEIVED = "received"
    CLASSIFIED = "classified"
    REFUSED = "refused"
    CLAIMED = "claimed"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DRY_RUN = "dry_run"
    ESCALATED = "escalated"
    RESOLVED = "resolved"


def frozen_mapping(values: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(values))


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert of a webhook payload, as Alertmanager sent it, under the fingerprint its
    labels give (see ``fingerprint``)."""

    fingerprint: str
    status: AlertStatus
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime | None
    generator_url: str = ""
    sent_fingerprint: str = ""
    """The sender's ``fingerprint`` when it disagrees with the labels': recorded, never used."""

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")


@dataclass(frozen=True, slots=True)
class Target:
    """The object an action touches. Cooldowns and single-flight key on ``key``."""

    kind: str
    namespace: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.kind}/{self.name}"

    @classmethod
    def from_key(cls, key: str) -> Target:
        namespace, kind, name = key.split("/", 2)
        return cls(kind=kind, namespace=namespace, name=name)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A guard's answer: go on, or stop with a reason from the closed set and a sentence."""

    reason: StopReason | None = None
    sentence: str = ""

    @property
    def allowed(self) -> bool:
        return self.reason is None


ALLOW = Verdict()


def refuse(reason: StopReason, sentence: str) -> Verdict:
    return Verdict(reason=reason, sentence=sentence)


@dataclass(frozen=True, slots=True)
class Episode:
    """One firing period of a fingerprint, as the store knows it."""

    id: int
    fingerprint: str
    opened_at_s: float
    """When it opened, seconds since the epoch."""
    closed_at_s: float | None
    """When it closed (None while open), seconds since the epoch."""
    decided: bool

    @property
    def is_open(self) -> bool:
        return self.closed_at_s is None


class EpisodeEvent(StrEnum):
    """What observing an alert did to its episode."""

    OPENED = "opened"
    JOINED = "joined"
    REOPENED = "reopened"
    CLOSED = "closed"
    ALREADY_CLOSED = "already_closed"
    RESOLVED_UNSEEN = "resolved_unseen"


@dataclass(frozen=True, slots=True)
class Observation:
    episode: Episode
    event: EpisodeEvent


@dataclass(frozen=True, slots=True)
class Incident:
    """The value a pipeline stage receives and returns for one alert of one episode."""

    alert: Alert
    episode_id: int
    journal_id: int
    received_at: datetime
    truncated_alerts: int = 0
    rule: str = ""
    severity: Severity = Severity.SEV3
    action: str = ""
    target: Target | None = None
    stopped: Verdict | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def stop(self, verdict: Verdict) -> Incident:
        return replace(self, stopped=verdict)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One decision, as stored and served by ``GET /api/v1/decisions``."""

    at: datetime
    step: str
    outcome: Outcome
    sentence: str
    journal_id: int | None = None
    episode_id: int | None = None
    fingerprint: str = ""
    alertname: str = ""
    rule: str = ""
    ruleset_hash: str = ""
    severity: str = ""
    reason: str = ""
    target: str = ""
    action: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    id: int | None = None
