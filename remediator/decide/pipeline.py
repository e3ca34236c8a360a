"""The decision pipeline for one alert of one episode, assembled so it reads like the flow:

    received → classify → fresh? → plan? → target → scope → window? → silenced? → storm
        → claim → act (or, where the rule asks an approval, held: ``approve``)

A claim is written with the decision that led to it and the job that runs it, in one
transaction; every other decision is written by ``commit``, in one batch per chunk.

Each stage returns the incident, stopped or not; the first stop ends the run. Every step
is audited, and a stop that is not quiet (see ``QUIET_STOPS``) is escalated.

One decision reads the active rule set once (``ActiveRules.current``) and decides under
that snapshot to the end: a reload between two of its steps changes nothing in it.

A shadow rule that would take the alert, were it live, decides first, under the same guards
read without writing (``storm_peek``, ``claim_preview``): one ``shadow`` record, never a
claim, an action or a page. The live rules then decide as if it were not there.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from remediator.act import jobs
from remediator.act.runner import ActionRunner
from remediator.act.witness import Pending, noted
from remediator.audit import records as audit
from remediator.audit.recorder import Recorder
from remediator.config import Settings
from remediator.core import failpoints
from remediator.core.clock import Clock
from remediator.core.errors import StoreUnavailable
from remediator.core.metrics import Metrics
from remediator.core.model import QUIET_STOPS, AuditRecord, Incident, Severity, StopReason, refuse
from remediator.escalate.plan import NO_EPISODE
from remediator.guards import freshness, plan, scope, storm, windows
from remediator.ruleset.active import ActiveRules
from remediator.ruleset.rules import Rule, RuleSet
from remediator.silences.watch import SilenceWatch
from remediator.store.contract import ApprovalAsked, Store

log = logging.getLogger(__name__)
StormCount = Callable[[str, datetime, float], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class Decision:
    """What deciding one alert left for the batch to write: its audit records (none when
    its claim wrote them, or another replica decided the episode first)."""

    episode_id: int
    records: list[AuditRecord]
    decided: bool = True
    evidence: Pending | None = None
    """The refusal's bundle, captured once the records are written (``act/witness.py``)."""


class Pipeline:
    def __init__(
        self,
        rules: ActiveRules,
        store: Store,
        runner: ActionRunner,
        recorder: Recorder,
        metrics: Metrics,
        clock: Clock,
        settings: Settings,
        silences: SilenceWatch | None = None,
    ) -> None:
        self._silences = silences
        self._rules = rules
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
        evidence: list[Pending] = []
        for decision in decisions:
            if decision.decided and decision.records:
                if decision.episode_id in decided:  # one payload naming an alert twice
                    self._metrics.alerts_resent.inc()
                    continue
                decided.append(decision.episode_id)
                if decision.evidence is not None:
                    evidence.append(decision.evidence)
            records.extend(decision.records)
        lost = await self._recorder.write(records, decided_episodes=decided)
        if lost:
            self._metrics.alerts_resent.inc(len(lost))
        for pending in evidence:
            if pending.subject.episode_id not in lost:
                self._runner.witness.start(pending)

    async def decide(self, incident: Incident, episode_open: bool) -> Decision:
        """This episode's one decision; the caller has checked it is not decided yet.

        A claim is written with the decision and the job, atomically with its guards and
        only if no one decided the episode meanwhile; its action is queued at once. Any
        other decision is left to ``commit``.
        """
        ruleset = self._rules.current
        rule = ruleset.classify(incident.alert.labels)
        shadow = await self._shadow_or_none(incident, episode_open, rule, ruleset)
        incident = replace(incident, rule=rule.name, severity=rule.severity)
        stamp = self._recorder.stamp(ruleset)
        records = [audit.received(stamp, incident), audit.classified(stamp, incident, rule)]
        incident = self._plan(self._fresh(incident, episode_open), rule)
        incident = await self._guard(incident, rule, ruleset, self._store.storm_add)
        if incident.stopped is None:
            claimed = await self._claim(incident, rule, records, ruleset)
            if claimed is None:  # decided by another replica first: a resend here
                self._metrics.alerts_resent.inc()
                return Decision(incident.episode_id, [], decided=False)
            incident = claimed
        if incident.stopped is not None:
            records.extend(self._stopped_records(incident, rule, ruleset))
            evidence = None
            if rule.plan is not None:
                evidence = self._runner.witness.planned(incident, rule.plan.kind)
            if evidence is not None:
                records = noted(records, evidence.note())
            return Decision(incident.episode_id, records + shadow, evidence=evidence)
        return Decision(incident.episode_id, shadow, decided=False)

    async def _shadow_or_none(
        self, incident: Incident, episode_open: bool, live: Rule, ruleset: RuleSet
    ) -> list[AuditRecord]:
        """``_shadow``, whose failure never touches the live decision: a bug there is logged
        and the shadow record is missing (the store being away stops the live one too)."""
        try:
            return await self._shadow(incident, episode_open, live, ruleset)
        except StoreUnavailable:
            raise
        except Exception:
            log.exception("the shadow decision for journal entry %s failed", incident.journal_id)
            return []

    async def _shadow(
        self, incident: Incident, episode_open: bool, live: Rule, ruleset: RuleSet
    ) -> list[AuditRecord]:
        """The record of the shadow rule that would take ``incident`` if it were live
        (none when no shadow rule would): the live guards, read without writing."""
        rule = ruleset.shadow_of(incident.alert.labels)
        if rule is None:
            return []
        incident = replace(incident, rule=rule.name, severity=rule.severity)
        incident = self._plan(self._fresh(incident, episode_open), rule)
        incident = await self._guard(incident, rule, ruleset, self._store.storm_peek)
        if incident.stopped is None:
            assert rule.plan is not None
            request = jobs.claim_request(incident, rule, ruleset.policy, self._runner.dry_run)
            verdict = await self._store.claim_preview(request, self._clock.now())
            incident = incident if verdict.allowed else incident.stop(verdict)
        if incident.stopped is None and rule.plan is not None and rule.plan.action.available():
            # Its precheck reads the cluster or the database: off the decision's path.
            self._runner.preview(
                jobs.ShadowJob(incident, rule.plan, live.name, rule.escalation, ruleset)
            )
            return []
        stamp = self._recorder.stamp(ruleset)
        return [audit.shadow(stamp, incident, rule.plan, live.name, rule.escalation)]

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
            return incident.stop(plan.escalate_only(rule.name))
        incident = replace(incident, action=rule.plan.name)
        try:
            target = rule.plan.target.render(incident.alert.labels)
        except LookupError as exc:
            return incident.stop(plan.unresolved(rule.plan.kind, exc))
        return replace(incident, target=target)

    async def _guard(
        self, incident: Incident, rule: Rule, ruleset: RuleSet, storm_count: StormCount
    ) -> Incident:
        """Scope, the time intervals, the silences, then the storm brake, whose window
        ``storm_count`` notes the target in (``storm_add``) or only reads (``storm_peek``,
        for a shadow decision): a muted or silenced alert never counts towards a storm."""
        target, policy = incident.target, ruleset.policy
        if incident.stopped is not None or target is None:
            return incident
        verdict = scope.decide(target, policy.namespaces)
        if verdict.allowed:
            now = self._clock.now()
            verdict = windows.decide(rule.mute_time_intervals, rule.active_time_intervals, now)
        if verdict.allowed and self._silences is not None:
            verdict = self._silences.verdict(incident.alert.labels, rule.on_silence_check_error)
        if verdict.allowed:
            window_s = policy.storm.window_s
            distinct = await storm_count(target.key, self._clock.now(), window_s)
            verdict = storm.decide(distinct, policy.storm.max_targets, incident.truncated_alerts)
        return incident if verdict.allowed else incident.stop(verdict)

    async def _claim(
        self, incident: Incident, rule: Rule, records: list[AuditRecord], ruleset: RuleSet
    ) -> Incident | None:
        """Claim the action with the decision so far; the incident stopped by a guard, or
        claimed (its action queued); None when the episode was decided elsewhere first."""
        assert rule.plan is not None
        request = jobs.claim_request(incident, rule, ruleset.policy, self._runner.dry_run)
        approval, asked = rule.approval, self._asked(incident, rule)

        def decision(claim_id: int) -> list[AuditRecord]:
            claimed = replace(incident, details={"claim_id": claim_id})
            stamp = self._recorder.stamp(ruleset)
            made = [*records, audit.claimed(stamp, claimed)]
            if rule.page_before_acting or asked is not None:  # paged with the claim
                policy = ruleset.escalations[rule.escalation]
                paged = audit.escalated(stamp, claimed, rule, policy)
                if approval is not None and asked is not None:  # with approve and deny
                    due_at, initiator = asked.due_at, asked.initiator
                    made.append(audit.approval_asked(stamp, claimed, approval, due_at, initiator))
                    held = audit.approval_of(claim_id, approval, due_at, initiator)
                    paged = replace(paged, details={**paged.details, "approval": held})
                made.append(paged)
            return made

        stored = jobs.stored(incident, rule)
        result = await self._recorder.claim(request, decision, stored, asked)
        if result.already_decided:
            return None
        if not result.verdict.allowed:
            return incident.stop(result.verdict)
        assert result.claim_id is not None
        failpoints.hit("after_claim")
        incident = replace(incident, details={"claim_id": result.claim_id})
        if asked is not None:  # held: its approval decides whether and when it runs
            self._metrics.approvals.labels("requested").inc()
            return incident
        job = jobs.ActionJob(
            incident, rule.plan, result.claim_id, rule.escalation, rule.verify_within_s
        )
        self._runner.submit(job)
        return incident

    def _asked(self, incident: Incident, rule: Rule) -> ApprovalAsked | None:
        """The approval ``rule`` holds the claim for: due ``timeout_s`` from now; who may
        not give it, when the alert names its initiator."""
        approval = rule.approval
        if approval is None:
            return None
        initiator = ""
        if (label := approval.initiator_label) is not None:
            alert = incident.alert
            initiator = alert.labels.get(label) or alert.annotations.get(label) or ""
        due_at = self._clock.now() + timedelta(seconds=approval.timeout_s)
        return ApprovalAsked(due_at, approval.needed, approval.approvers, approval.on_timeout,
                             initiator)  # fmt: skip

    def _stopped_records(
        self, incident: Incident, rule: Rule, ruleset: RuleSet
    ) -> list[AuditRecord]:
        assert incident.stopped is not None and incident.stopped.reason is not None
        reason = incident.stopped.reason
        self._metrics.guard_refusals.labels(reason.value).inc()
        stamp = self._recorder.stamp(ruleset)
        records = [audit.refused(stamp, incident)]
        if reason not in QUIET_STOPS:
            policy = ruleset.escalations[rule.escalation]
            records.append(audit.escalated(stamp, incident, rule, policy))
        return records

    def unprocessable(self, incident: Incident, what: str, error: str) -> Decision:
        """``what`` (an alert, or a whole journal entry) could not be decided because of
        ``error``: recorded and escalated, so a bug or a value no store can keep costs a page,
        never the alert. The rule it matches names the policy; when matching fails too, the
        first SEV-1 rule does. Episode ``NO_EPISODE`` (none could be had): the records name
        none and nothing is marked decided."""
        ruleset = self._rules.current
        rule = self._rule_or_fallback(incident.alert.labels, ruleset)
        incident = replace(incident, rule=rule.name, severity=rule.severity).stop(
            refuse(
                StopReason.UNPROCESSABLE,
                f"{what} of journal entry {incident.journal_id} could not be processed"
                f" ({error}); nothing was done, a human must look.",
            )
        )
        records = self._stopped_records(incident, rule, ruleset)
        if incident.episode_id == NO_EPISODE:
            records = [replace(r, episode_id=None) for r in records]
        decided = incident.episode_id != NO_EPISODE
        return Decision(incident.episode_id, records, decided=decided)

    @staticmethod
    def _rule_or_fallback(labels: Mapping[str, str], ruleset: RuleSet) -> Rule:
        try:
            return ruleset.classify(labels)
        except Exception:  # the failure being handled may be in matching itself
            rules = [rule for rule in ruleset.rules if not rule.shadow]
            return next((r for r in rules if r.severity is Severity.SEV1), rules[-1])

    def reopened(self, incident: Incident) -> Decision:
        """The decided episode's alert fired again within the grace: recorded; the same
        decision and incident go on (a held resolve is withdrawn when it falls due)."""
        ruleset = self._rules.current
        rule = ruleset.classify(incident.alert.labels)
        incident = replace(incident, rule=rule.name, severity=rule.severity)
        grace_s = self._settings.episode_grace_s
        record = audit.reopened(self._recorder.stamp(ruleset), incident, grace_s)
        return Decision(incident.episode_id, [record], decided=False)

    def resolved(self, incident: Incident) -> Decision:
        """The episode closed: record it (the incident, if any, resolves with it)."""
        ruleset = self._rules.current
        rule = ruleset.classify(incident.alert.labels)
        incident = replace(incident, rule=rule.name, severity=rule.severity)
        record = audit.resolved(self._recorder.stamp(ruleset), incident)
        return Decision(incident.episode_id, [record], decided=False)
