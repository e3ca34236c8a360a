"""Every metric remediator exports, on an injected registry, label values pre-created.

Label values come from closed sets (``StopReason``, ``Outcome``, ``Severity``, rejection
codes), so series exist at zero from the first scrape and cardinality is bounded.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from remediator.core.model import AlertStatus, Outcome, Severity, StopReason

APPROVAL_RESULTS = ("requested", "approved", "denied", "timed_out", "acted_on_timeout",
                    "withdrawn")  # fmt: skip
REJECTION_CODES = (
    "unauthorized",
    "unsupported_media_type",
    "body_too_large",
    "read_timeout",
    "invalid_utf8",
    "invalid_json",
    "duplicate_key",
    "non_finite_number",
    "too_deep",
    "invalid_payload",
    "invalid_string",
    "invalid_label_name",
    "unsupported_version",
    "too_many_alerts",
    "too_many_labels",
    "label_too_long",
    "annotation_too_long",
    "unsupported_encoding",
    "invalid_request",
    "unsupported_http_version",
    "headers_too_large",
    "expectation_failed",
    "header_timeout",
    "internal_error",
    "overloaded",
    "journal_unavailable",
    "validation_unavailable",
    "shutting_down",
)
ACTION_RESULTS = ("succeeded", "failed", "dry_run", "refused", "unknown")
QUARANTINED = ("entry", "alert")
ESCALATION_RESULTS = ("delivered", "retried", "dropped")
RELOAD_RESULTS = ("success", "failure")
SHADOW_OUTCOMES = ("dry_run", "refused")
#: The supervised background loops (``runtime/tasks.py``), as the app starts them.
LOOPS = ("lease", "worker", "spool", "aftercare", "delivery")
#: Loops a setting turns on (``--rules-watch-seconds``); their series exist at zero anyway.
OPTIONAL_LOOPS = ("rules_watch", "archive", "evidence")
#: What remediator retries until it answers (``core/outage.py``).
DEPENDENCIES = ("state_store", "object_store")
#: What the archive ships (``audit/archive.py``).
ARCHIVE_STREAMS = ("journal", "decisions")
#: The phases of an evidence bundle (``evidence/bundle.py``) and how its capture went:
#: every part read, some not (``partial``), or not queued at all (``lost``: the store away).
EVIDENCE_PHASES = ("before", "after", "refused")
EVIDENCE_CAPTURES = ("complete", "partial", "lost")

# ``*_created`` series double the scrape for no operational use.
disable_created_metrics()  # type: ignore[no-untyped-call]


def _init(metric: Counter, *values: Iterable[str]) -> None:
    if len(values) == 1:
        for value in values[0]:
            metric.labels(value)
        return
    first, second = values
    seconds = list(second)
    for a in first:
        for b in seconds:
            metric.labels(a, b)


class Metrics:
    def __init__(
        self,
        registry: CollectorRegistry,
        action_kinds: Iterable[str],
        sinks: Iterable[str] = (),
    ) -> None:
        ns = "remediator"
        self.alerts_received = Counter(
            "alerts_received",
            "Alerts received in accepted webhooks, by alert status.",
            ["status"],
            namespace=ns,
            registry=registry,
        )
        self.alerts_resent = Counter(
            "alerts_resent",
            "Alerts that joined an episode already decided (resends, HA duplicates).",
            namespace=ns,
            registry=registry,
        )
        self.fingerprint_mismatches = Counter(
            "fingerprint_mismatches",
            "Alerts whose sender's fingerprint disagrees with their labels' (ignored).",
            namespace=ns,
            registry=registry,
        )
        self.quarantined = Counter(
            "quarantined",
            "Journal entries and alerts that could not be processed: audited, escalated.",
            ["what"],
            namespace=ns,
            registry=registry,
        )
        self.truncated_alerts = Counter(
            "truncated_alerts",
            "Alerts Alertmanager reported as truncated (max_alerts).",
            namespace=ns,
            registry=registry,
        )
        self.payloads_rejected = Counter(
            "payloads_rejected",
            "Webhook requests refused, by error code.",
            ["reason"],
            namespace=ns,
            registry=registry,
        )
        self.decisions = Counter(
            "decisions",
            "Audited decisions, by severity and outcome.",
            ["severity", "outcome"],
            namespace=ns,
            registry=registry,
        )
        self.guard_refusals = Counter(
            "guard_refusals",
            "Pipeline stops, by reason.",
            ["reason"],
            namespace=ns,
            registry=registry,
        )
        self.silences = Gauge(
            "silences",
            "Alertmanager silences in force when they were last read (--alertmanager-url).",
            namespace=ns,
            registry=registry,
        )
        self.silence_reads = Counter(
            "silence_reads",
            "Reads of one Alertmanager's silences, by result (ok, failed).",
            ["result"],
            namespace=ns,
            registry=registry,
        )
        _init(self.silence_reads, ["ok", "failed"])
        self.actions = Counter(
            "actions",
            "Actions by kind and result.",
            ["kind", "result"],
            namespace=ns,
            registry=registry,
        )
        self.webhook_seconds = Histogram(
            "webhook_duration_seconds",
            "Time to answer a webhook request.",
            namespace=ns,
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        self.journal_write_seconds = Histogram(
            "journal_write_duration_seconds",
            "Time to write an accepted payload durably.",
            namespace=ns,
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.spooled_payloads = Counter(
            "spooled_payloads",
            "Webhook payloads journaled in the local spool while the state database was away.",
            namespace=ns,
            registry=registry,
        )
        self.journal_backlog = Gauge(
            "journal_backlog",
            "Accepted payloads not yet processed.",
            namespace=ns,
            registry=registry,
        )
        self.decision_backlog = Gauge(
            "decision_backlog_alerts",
            "Alerts accepted and not yet decided; above --max-backlog-alerts webhooks get 503.",
            namespace=ns,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "action_queue_depth",
            "Actions waiting for or holding a target's queue.",
            namespace=ns,
            registry=registry,
        )
        _init(self.alerts_received, [s.value for s in AlertStatus])
        _init(self.quarantined, QUARANTINED)
        _init(self.payloads_rejected, REJECTION_CODES)
        _init(self.decisions, [s.value for s in Severity], [o.value for o in Outcome])
        _init(self.guard_refusals, [r.value for r in StopReason])
        _init(self.actions, list(action_kinds), ACTION_RESULTS)
        self.escalations = Counter(
            "escalations",
            "Notifications to sinks, by sink and result (delivered, retried, dropped).",
            ["sink", "result"],
            namespace=ns,
            registry=registry,
        )
        self.sinks_configured(sinks)
        self.loop_failures = Counter(
            "loop_failures",
            "Unexpected failures of a background loop, each followed by a restart, by loop.",
            ["loop"],
            namespace=ns,
            registry=registry,
        )
        _init(self.loop_failures, LOOPS + OPTIONAL_LOOPS)
        self.dependency_failures = Counter(
            "dependency_failures",
            "Failed calls to a dependency remediator retries until it answers, by dependency.",
            ["dependency"],
            namespace=ns,
            registry=registry,
        )
        _init(self.dependency_failures, DEPENDENCIES)
        self.dependency_up = Gauge(
            "dependency_up",
            "1 while a dependency answers, 0 from its first failure until it answers again.",
            ["dependency"],
            namespace=ns,
            registry=registry,
        )
        for dependency in DEPENDENCIES:
            self.dependency_up.labels(dependency).set(1)
        self.shadow_decisions = Counter(
            "shadow_decisions",
            "Decisions of shadow rules (none acts or pages), by what a live rule would have"
            " come to: dry_run (its action would run) or refused.",
            ["outcome"],
            namespace=ns,
            registry=registry,
        )
        _init(self.shadow_decisions, SHADOW_OUTCOMES)
        self.reload_successful = Gauge(
            "config_last_reload_successful",
            "1 when the last rule reload succeeded (or none was tried), 0 when it failed and"
            " the rules loaded before it still decide.",
            namespace=ns,
            registry=registry,
        )
        self.reload_successful.set(1)
        self.reload_success_at = Gauge(
            "config_last_reload_success_timestamp_seconds",
            "When the active rules were loaded (at the start or by the last good reload).",
            namespace=ns,
            registry=registry,
        )
        self.reloads = Counter(
            "config_reloads",
            "Rule reloads tried, by result (success, failure).",
            ["result"],
            namespace=ns,
            registry=registry,
        )
        _init(self.reloads, RELOAD_RESULTS)
        self.archive_objects = Counter(
            "archive_objects",
            "Archive objects (a batch of rows with its manifest) written to the object store,"
            " by stream (journal, decisions).",
            ["stream"],
            namespace=ns,
            registry=registry,
        )
        _init(self.archive_objects, ARCHIVE_STREAMS)
        self.archive_rows = Counter(
            "archive_rows",
            "Rows written to the archive, by stream.",
            ["stream"],
            namespace=ns,
            registry=registry,
        )
        _init(self.archive_rows, ARCHIVE_STREAMS)
        self.archive_caught_up_at = Gauge(
            "archive_last_success_timestamp_seconds",
            "When the archive of a stream last held every row old enough to ship (0: not yet"
            " since the start); alert on its age.",
            ["stream"],
            namespace=ns,
            registry=registry,
        )
        for stream in ARCHIVE_STREAMS:
            self.archive_caught_up_at.labels(stream).set(0)
        self.evidence_captured = Counter(
            "evidence_bundles",
            "Evidence bundles captured, by phase (before, after, refused) and result (complete;"
            " partial: some part could not be read in time; lost: the state store did not"
            " take it).",
            ["phase", "result"],
            namespace=ns,
            registry=registry,
        )
        _init(self.evidence_captured, EVIDENCE_PHASES, EVIDENCE_CAPTURES)
        self.evidence_uploaded = Counter(
            "evidence_uploads",
            "Evidence bundles written to the object store.",
            namespace=ns,
            registry=registry,
        )
        self.evidence_waiting = Gauge(
            "evidence_queue_bundles",
            "Evidence bundles waiting in the state store for the object store.",
            namespace=ns,
            registry=registry,
        )
        self.evidence_oldest = Gauge(
            "evidence_queue_oldest_age_seconds",
            "Age of the oldest evidence bundle waiting for the object store (0: none waits).",
            namespace=ns,
            registry=registry,
        )
        self.claims_resumed = Counter(
            "claims_resumed",
            "Claims that had sent nothing, run after a restart or by the replica that took"
            " them over.",
            namespace=ns,
            registry=registry,
        )
        self.approvals = Counter(
            "approvals",
            "Approvals asked (requested) and how they ended: approved, denied, timed_out,"
            " acted_on_timeout, withdrawn (the alert resolved while it waited).",
            ["result"],
            namespace=ns,
            registry=registry,
        )
        _init(self.approvals, list(APPROVAL_RESULTS))
        self.approvals_pending = Gauge(
            "approvals_pending",
            "Claims waiting for a human's approval, as the approvals loop last counted them.",
            namespace=ns,
            registry=registry,
        )

    def sinks_configured(self, sinks: Iterable[str]) -> None:
        """The series of ``sinks`` at zero (at the start, and for a sink a reload added)."""
        _init(self.escalations, list(sinks), ESCALATION_RESULTS)
