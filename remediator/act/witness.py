"""The evidence of a refusal decided before any claim: a guard of the decision (cooldown, a
rate limit or budget, the blast radius, scope, the storm brake) stopped an action a rule
planned, and the stop pages.

Where it sits: the decide stage (``decide/pipeline.py``) asks ``planned`` when it stops such
an incident, and notes the bundle's key on the refusal and the page, so the page links to
it; once the decision is written (and only if it was: another replica may have decided the
episode first), ``start`` captures the bundle in the background, off the decision path,
bounded by the capture's timeout. The key is the episode's, since an episode is decided
once (``evidence/bundle.py``).

The target is read unless the refusal says reading it is wrong: out of the policy's
namespaces (outside what remediator may touch), or a storm (a read of each of the many
targets would add to it); then the bundle holds the alert and the refusal. A bundle the
state store does not take is counted (``result="lost"``) and logged: its decision is
already written, so the record names the key of a bundle that may not come.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from remediator.audit import records as audit
from remediator.core.model import QUIET_STOPS, AuditRecord, Incident, StopReason, Target
from remediator.core.vocab import Step
from remediator.evidence.bundle import Phase, Subject
from remediator.evidence.capture import Capture

log = logging.getLogger(__name__)

NOT_READ = frozenset({StopReason.OUT_OF_SCOPE, StopReason.STORM})
"""Refusals whose bundle does not read the target."""


def subject(incident: Incident, claim_id: int | None, action: str, kind: str) -> Subject:
    """Whose evidence a bundle of ``incident`` is."""
    target = incident.target.key if incident.target is not None else ""
    return Subject(
        episode_id=incident.episode_id, claim_id=claim_id, rule=incident.rule, action=action,
        kind=kind, target=target, received_at=incident.received_at,
        alert=audit.alert_content(incident),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Pending:
    """A refusal's bundle to capture once its decision is written."""

    subject: Subject
    targets: tuple[Target, ...]
    outcome: dict[str, Any]
    key: str

    def note(self) -> dict[str, Any]:
        """What the refusal's records say of the bundle: its key (its parts are not known
        when they are written)."""
        return {"refused": {"key": self.key}}


def noted(records: list[AuditRecord], notes: Mapping[str, Any]) -> list[AuditRecord]:
    """``records`` with the evidence of a claim or of a refusal before one (its bundles'
    keys, by phase) on those a reviewer reads: what the action did or why it was refused,
    and the page. The runner's and the pipeline's records both."""
    if not notes:
        return records
    steps = (Step.ACTED, Step.REFUSED, Step.ESCALATED)
    return [
        replace(r, details={**r.details, "evidence": notes}) if r.step in steps else r
        for r in records
    ]


class Witness:
    def __init__(self, capture: Capture | None) -> None:
        self._capture = capture
        self.tasks: set[asyncio.Task[None]] = set()

    def planned(self, incident: Incident, kind: str) -> Pending | None:
        """The bundle of ``incident``'s stop, if it refuses a planned action and pages."""
        stopped = incident.stopped
        if self._capture is None or stopped is None or not incident.action:
            return None
        if stopped.reason is None or stopped.reason in QUIET_STOPS:
            return None
        about = subject(incident, None, incident.action, kind)
        target = incident.target
        targets = (target,) if target is not None and stopped.reason not in NOT_READ else ()
        outcome = {"reason": stopped.reason.value, "sentence": stopped.sentence}
        key = self._capture.key(about, Phase.REFUSED)
        return Pending(about, targets, outcome, key)

    def start(self, pending: Pending) -> None:
        """Capture ``pending`` in the background (its decision is written)."""
        task = asyncio.create_task(self._take(pending), name=f"witness:{pending.key}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _take(self, pending: Pending) -> None:
        assert self._capture is not None
        try:
            await self._capture.take(pending.subject, Phase.REFUSED, pending.targets,
                                     pending.outcome)  # fmt: skip
        except Exception:  # a bug of ours in the capture: the decision stands
            log.exception("evidence of the refusal %s failed", pending.key)
