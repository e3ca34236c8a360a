"""The decision pipeline for one alert of one episode, assembled so it reads like the flow:

    received → classify → fresh? → plan? → target → scope → storm → claim → act (queued)

A claim is written with the decision that led to it and the job that runs it, in one
transaction; every other decision is written by ``commit``, in one batch per chunk.

Each stage returns the incident, stopped or not; the first stop ends the run. Every step
is audited, and a stop that is not quiet (see ``QUIET_STOPS``) is escalated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from remediator.act import jobs
from remediator.act.runner import ActionRunner
from remediator.audit import records as audit
from remediator.audit.recorder import Recorder
from remediator.config import Settings
from remediator.core import failpoints
from remediator.core.clock import Clock
from remediator.core.metrics import Metrics
from remediator.core.model import QUIET_STOPS, AuditRecord, Incident, Severity, StopReason, refuse
from remediator.decide.classify import Classifier
from remediator.escalate.plan import NO_EPISODE
from remediator.guards import freshness, scope, storm
from remediator.ruleset.rules import Rule
from remediator.store.contract import Store


@dataclass(frozen=True, slots=True)
class Decision:
    """What deciding one alert left for the batch to write: its audit records (none when
    its claim wrote them, or another replica decided the episode first)."""

    episode_id: int
    records: list[AuditRecord]
    decided: bool = True


class Pipeline:
    def __init__(
        self,
        classifier: Classifier,
        store: Store,
        runner: ActionRunner,
        recorder: Recorder,
        metrics: Metrics,
        clock: Clock,
        settings: Settings,
    ) -> None:
        self._classifier = classifier
        self._policy = classifier.ruleset.policy
        self._store = store
        self._runner = runner
        self._recorder = recorder
        self._metrics = metrics
        self._clock = clock
        self._settings = settings

    async def commit(self, decisions: Sequence[Decision]) -> None:
        """Record a batch of decisions in one transaction. An episode another replica
        decided meanwhile keeps its decision; the one here is counted as a resend."""
        records: list[AuditRecord] = []
        decided: list[int] = []
        for decision in decisions:
            if decision.decided and decision.records:
                if decision.episode_id in decided:  # one payload naming an alert twice
                    self._metrics.alerts_resent.inc()
                    continue
                decided.append(decision.episode_id)
            records.extend(decision.records)
        lost = await self._recorder.write(records, decided_episodes=decided)
        if lost:
            self._metrics.alerts_resent.inc(len(lost))

    async def decide(self, incident: Incident, episode_open: bool) -> Decision:
        """This episode's one decision; the caller has checked it is not decided yet.

        A claim is written with the decision and the job, atomically with its guards and
        only if no one decided the episode meanwhile; its action is queued at once. Any
        other decision is left to ``commit``.
        """
        rule = self._classifier.classify(incident.alert.labels)
        incident = replace(incident, rule=rule.name, severity=rule.severity)
        stamp = self._recorder.stamp()
        records = [audit.received(stamp, incident), audit.classified(stamp, incident, rule)]
        incident = await self._guard(self._plan(self._fresh(incident, episode_open), rule))
        if incident.stopped is None:
            claimed = await self._claim(incident, rule, records)
            if claimed is None:  # decided by another replica first: a resend here
                self._metrics.alerts_resent.inc()
                return Decision(incident.episode_id, [], decided=False)
            incident = claimed
        if incident.stopped is not None:
            records.extend(self._stopped_records(incident, rule))
            return Decision(incident.episode_id, records)
        return Decision(incident.episode_id, [], decided=False)

    def _fresh(self, incident: Incident, episode_open: bool) -> Incident:
        verdict = freshness.decide(
            incident.alert.status,
            episode_open,
            incident.received_at,
            self._clock.now(),
            self._settings.stale_after_s,
        )
        return incident if verdict.allowed else incident.stop(verdict)

    def _plan(self, incident: Incident, rule: Rule) -> Incident:
        if incident.stopped is not None:
            return incident
        if rule.plan is None:
            return incident.stop(
                refuse(
                    StopReason.ESCALATE_ONLY,
                    f"Rule {rule.name!r} calls for a human, not an action.",
                )
            )
        incident = replace(incident, action=rule.plan.name)
        try:
            target = rule.plan.target.render(incident.alert.labels)
        except LookupError as exc:
            return incident.stop(
                refuse(StopReason.TARGET_UNRESOLVED, f"No target for {rule.plan.kind}: {exc}.")
            )
        return replace(incident, target=target)

    async def _guard(self, incident: Incident) -> Incident:
        target = incident.target
        if incident.stopped is not None or target is None:
            return incident
        verdict = scope.decide(target, self._policy.namespaces)
        if verdict.allowed:
            window_s = self._policy.storm.window_s
            distinct = await self._store.storm_add(target.key, self._clock.now(), window_s)
            verdict = storm.decide(
                distinct, self._policy.storm.max_targets, incident.truncated_alerts
            )
        return incident if verdict.allowed else incident.stop(verdict)

    async def _claim(
        self, incident: Incident, rule: Rule, records: list[AuditRecord]
    ) -> Incident | None:
        """Claim the action with the decision so far; the incident stopped by a guard, or
        claimed (its action queued); None when the episode was decided elsewhere first."""
        assert rule.plan is not None
        request = jobs.claim_request(incident, rule, self._policy, self._runner.dry_run)

        def decision(claim_id: int) -> list[AuditRecord]:
            claimed = replace(incident, details={"claim_id": claim_id})
            return [*records, audit.claimed(self._recorder.stamp(), claimed)]

        result = await self._recorder.claim(request, decision, jobs.stored(incident, rule))
        if result.already_decided:
            return None
        if not result.verdict.allowed:
            return incident.stop(result.verdict)
        assert result.claim_id is not None
        failpoints.hit("after_claim")
        incident = replace(incident, details={"claim_id": result.claim_id})
        job = jobs.ActionJob(
            incident, rule.plan, result.claim_id, rule.escalation, rule.verify_within_s
        )
        self._runner.submit(job)
        return incident

    def _stopped_records(self, incident: Incident, rule: Rule) -> list[AuditRecord]:
        assert incident.stopped is not None and incident.stopped.reason is not None
        reason = incident.stopped.reason
        self._metrics.guard_refusals.labels(reason.value).inc()
        stamp = self._recorder.stamp()
        records = [audit.refused(stamp, incident)]
        if reason not in QUIET_STOPS:
            policy = self._classifier.ruleset.escalations[rule.escalation]
            records.append(audit.escalated(stamp, incident, rule, policy))
        return records

    def unprocessable(self, incident: Incident, what: str, error: str) -> Decision:
        """``what`` (an alert, or a whole journal entry) could not be decided because of
        ``error``: recorded and escalated, so a bug or a value no store can keep costs a page,
        never the alert. The rule it matches names the policy; when matching fails too, the
        first SEV-1 rule does. Episode ``NO_EPISODE`` (none could be had): the records name
        none and nothing is marked decided."""
        rule = self._rule_or_fallback(incident.alert.labels)
        incident = replace(incident, rule=rule.name, severity=rule.severity).stop(
            refuse(
                StopReason.UNPROCESSABLE,
                f"{what} of journal entry {incident.journal_id} could not be processed"
                f" ({error}); nothing was done, a human must look.",
            )
        )
        records = self._stopped_records(incident, rule)
        if incident.episode_id == NO_EPISODE:
            records = [replace(r, episode_id=None) for r in records]
        decided = incident.episode_id != NO_EPISODE
        return Decision(incident.episode_id, records, decided=decided)

    def _rule_or_fallback(self, labels: Mapping[str, str]) -> Rule:
        try:
            return self._classifier.classify(labels)
        except Exception:  # the failure being handled may be in matching itself
            rules = self._classifier.ruleset.rules
            return next((r for r in rules if r.severity is Severity.SEV1), rules[-1])

    def resolved(self, incident: Incident) -> Decision:
        """The episode closed: record it (the incident, if any, resolves with it)."""
        rule = self._classifier.classify(incident.alert.labels)
        incident = replace(incident, rule=rule.name, severity=rule.severity)
        record = audit.resolved(self._recorder.stamp(), incident)
        return Decision(incident.episode_id, [record], decided=False)
