"""The values passed from stage to stage: alerts, targets, verdicts and the incident.

All frozen: a stage returns a new value rather than mutating the one it was given. The
words they carry (severities, reasons, steps, outcomes) are the closed sets of ``vocab``,
re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any

from remediator.core.vocab import (
    QUIET_STOPS,
    AlertStatus,
    EpisodeEvent,
    Outcome,
    Severity,
    Step,
    StopReason,
)

__all__ = [
    "ALLOW",
    "QUIET_STOPS",
    "Alert",
    "AlertStatus",
    "AuditRecord",
    "Episode",
    "EpisodeEvent",
    "Incident",
    "Observation",
    "Outcome",
    "Severity",
    "Step",
    "StopReason",
    "Target",
    "Verdict",
    "frozen_mapping",
    "refuse",
]


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
    alertmanager_url: str = ""
    """The sending Alertmanager's ``externalURL``: where a page's silence link points."""
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
    """One decision, as stored and served by ``GET /api/v1/decisions``. Built by
    ``audit.records``, written by ``audit.recorder``; ``severity`` is None when no rule
    classified the alert, ``reason`` when nothing stopped it."""

    at: datetime
    step: Step
    outcome: Outcome
    sentence: str
    journal_id: int | None = None
    episode_id: int | None = None
    fingerprint: str = ""
    alertname: str = ""
    rule: str = ""
    ruleset_hash: str = ""
    severity: Severity | None = None
    reason: StopReason | None = None
    target: str = ""
    action: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    id: int | None = None
