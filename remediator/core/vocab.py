"""The vocabulary: every closed set of words remediator stores, serves or counts.

Each set is a ``StrEnum`` whose values are the strings the audit, the claims and the
outbox have always held, and the label values of the metrics: a stored row reads back as
a member, and a member is written as the same string. Stages below ``core`` import their
words from here; ``model`` re-exports the ones its values carry.
"""

from __future__ import annotations

from enum import StrEnum


class Severity(StrEnum):
    """The seed's severities: SEV-1 respond in 15 min, SEV-2 in 30 min, SEV-3 in 2 h."""

    SEV1 = "SEV-1"
    SEV2 = "SEV-2"
    SEV3 = "SEV-3"


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class EpisodeEvent(StrEnum):
    """What observing an alert did to its episode."""

    OPENED = "opened"
    JOINED = "joined"
    REOPENED = "reopened"
    CLOSED = "closed"
    ALREADY_CLOSED = "already_closed"
    RESOLVED_UNSEEN = "resolved_unseen"


class StopReason(StrEnum):
    """Why a decision stopped short of a fix: a guard refused, the action could not run,
    or the fix did not help. The ``reason`` of the audit and a metric label."""

    RESOLVED = "resolved"
    STALE = "stale"
    DUPLICATE = "duplicate"
    ESCALATE_ONLY = "escalate_only"
    TARGET_UNRESOLVED = "target_unresolved"
    OUT_OF_SCOPE = "out_of_scope"
    STORM = "storm"
    COOLDOWN = "cooldown"
    INEFFECTIVE = "ineffective_remediation"
    """The same fix was needed on the same target too often: it does not help."""
    STILL_FIRING = "ineffective"
    """The fix took effect, but the alert still fired when the rule's verification window
    ended. (The value is the word records have always carried.)"""
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
    VERIFY_FAILED = "verify_failed"
    """The action ran; checking its effect raised, so whether it holds is unknown."""
    SILENCED = "silenced"
    """An Alertmanager silence covers the alert: a human is on it (not paged)."""
    SILENCE_UNKNOWN = "silence_unknown"
    """Whether a silence covers the alert could not be known, and the rule acts only when
    it knows (``on_silence_check_error: refuse``)."""
    OWNED_ELSEWHERE = "owned_elsewhere"
    """Another controller writes the replicas (a KEDA ScaledObject, an HPA, Argo CD or
    Flux owning ``spec.replicas``): the sentence names it; a scale would be undone."""
    MUTED = "muted"
    """A mute time interval of the rule or the policy holds now (a maintenance window):
    no action, escalated as usual."""
    OUTSIDE_ACTIVE_TIME = "outside_active_time"
    """The rule acts only inside its active time intervals, and now is outside them."""
    RULE_CHANGED = "rule_changed"
    """A claim resumed after a restart or a takeover names a rule that changed since (or is
    gone): what it was claimed under no longer holds."""
    APPROVAL_DENIED = "approval_denied"
    """The rule asks a human's approval before acting, and an approver denied it (the
    incident was paged with the request: told, not paged again)."""
    APPROVAL_TIMEOUT = "approval_timeout"
    """No approval came within the rule's ``timeout_s`` and its ``on_timeout`` is
    ``escalate``: no action, the incident goes on up its ladder."""


#: Stop reasons that end quietly: the episode is already handled, or nothing is wrong.
QUIET_STOPS = frozenset(
    {
        StopReason.RESOLVED,
        StopReason.DUPLICATE,
        StopReason.DRY_RUN,
        StopReason.SILENCED,
        StopReason.APPROVAL_DENIED,
    }
)


class Step(StrEnum):
    """Where in the flow an audit record was written. The ``step`` column of the audit."""

    RECEIVED = "received"
    CLASSIFIED = "classified"
    REFUSED = "refused"
    CLAIMED = "claimed"
    DRY_RUN = "dry_run"
    ACTED = "acted"
    VERIFIED = "verified"
    ESCALATED = "escalated"
    RESOLVED = "resolved"
    RECONCILED = "reconciled"
    UNDONE = "undone"
    NOTIFIED = "notified"
    SHADOW = "shadow"
    """A shadow rule's decision: what it would have done, live; it does nothing."""
    REOPENED = "reopened"
    """A decided episode's alert fired again within the grace: the same incident goes on."""
    ACKNOWLEDGED = "acknowledged"
    """A human acknowledged or resolved the episode's incident on a sink (its webhook)."""
    APPROVAL = "approval"
    """A claim waits for a human's approval, or a human approved or denied it."""


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
    NOTIFIED = "notified"
    """A sink was told the incident resolved: no one is paged by it."""
    RESOLVED = "resolved"
    ACKNOWLEDGED = "acknowledged"
    """A human has the incident: later tiers are not sent."""
    UNKNOWN = "unknown"
    """Whether the effect holds cannot be known (its verification failed)."""
    PENDING_APPROVAL = "pending_approval"
    """The claim is held until approvers approve it, deny it, or its time runs out."""
    APPROVED = "approved"
    """The approvals it needs are in (or its time ran out and the rule acts then)."""
    DENIED = "denied"


class ApprovalState(StrEnum):
    """Where a claim's approval stands: the ``state`` column of the approvals."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    TIMED_OUT = "timed_out"
    """Its time ran out: the rule's ``on_timeout`` (kept with it) says what follows."""
    WITHDRAWN = "withdrawn"
    """The alert resolved while it waited: nothing is left to approve."""


class ClaimOutcome(StrEnum):
    """How a claim ended: the ``outcome`` column of the claims. The first four are also
    the ``result`` label of ``actions_total``; the others are written by reconcile."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DRY_RUN = "dry_run"
    REFUSED = "refused"
    NOT_RUN = "not_run"
    """A crash came after the claim and before the action recorded any intent."""
    NOT_APPLIED = "not_applied"
    """A crash came after the intent; the effect is observed not in place."""
    UNKNOWN = "unknown"
    """Whether the effect is in place cannot be known: a crash came after the intent and
    observing failed, or the action ran and its verification raised."""


class Event(StrEnum):
    """What a notification asks of a sink: open an incident (a later tier pages further),
    add what happened since to it, or resolve it."""

    TRIGGER = "trigger"
    UPDATE = "update"
    RESOLVE = "resolve"
