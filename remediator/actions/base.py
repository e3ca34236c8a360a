"""The ``Action`` protocol every remediation implements, and the values it exchanges.

An action declares its parameters (a pydantic model checked when rules load), the target
kinds it accepts, whether it is destructive (it then spends the global budget), and the
permissions it needs. ``precheck`` may refuse; ``run`` does the one side effect;
``verify`` says whether the effect holds.

Before its side effect, ``run`` records what it is about to do (``request.intend``): its
intent is durable with the claim, so a process that dies mid-action leaves enough behind
for ``reconcile`` to observe, after a restart, whether the effect happened.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel

from remediator.core.model import Target, Verdict


@dataclass(frozen=True, slots=True)
class Permission:
    """A Kubernetes RBAC rule or a database privilege the action needs."""

    api_group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]


class IntentRefused(Exception):
    """``intend`` said no: the claim is no longer this process's, or what it needs alone
    (a workload being recycled) is held by another claim. Nothing was sent."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.sentence)
        self.verdict = verdict


Intend = Callable[[Mapping[str, Any], str | None], Awaitable[None]]
"""Record an intent durably before the side effect, optionally holding an exclusive key
until the outcome is written; raises ``IntentRefused``."""


async def intend_nothing(intent: Mapping[str, Any], exclusive: str | None = None) -> None:
    """For requests that never act (undo steps, reconcile): nothing to record."""


@dataclass(frozen=True, slots=True)
class ActionRequest:
    target: Target
    params: BaseModel
    rule: str
    episode_id: int
    labels: Mapping[str, str]
    verify_within_s: float = 300.0
    require_opt_in: bool = True
    """Whether the live object must carry the opt-in annotation (policy.require_opt_in)."""
    intend: Intend = intend_nothing


@dataclass(frozen=True, slots=True)
class Checked:
    """A precheck's answer, and what it observed for ``run`` (a pod's UID, the replicas)."""

    verdict: Verdict
    facts: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ActionResult:
    succeeded: bool
    sentence: str
    details: Mapping[str, Any] = field(default_factory=dict)
    undo: Mapping[str, Any] | None = None
    """What to put back once the episode has stayed resolved for ``undo_after_s``."""
    undo_after_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Reconciled:
    """What ``reconcile`` observed of an intent whose outcome was never recorded."""

    applied: bool | None
    """True: the effect is in place; False: it is not; None: the world cannot tell."""
    sentence: str
    result: ActionResult | None = None
    """When applied: what ``run`` would have answered (its undo, its details)."""


class VerifyResult(StrEnum):
    VERIFIED = "verified"
    INEFFECTIVE = "ineffective"
    UNKNOWN = "unknown"


class Action(Protocol):
    kind: ClassVar[str]
    params_model: ClassVar[type[BaseModel]]
    target_kinds: ClassVar[frozenset[str]]
    """Target kinds accepted; empty means any."""
    destructive: ClassVar[bool]

    def available(self) -> bool:
        """Whether what it acts on is configured; if not, it is planned as dry-run."""
        ...

    def permissions(self) -> Sequence[Permission]: ...

    async def precheck(self, request: ActionRequest) -> Checked: ...

    async def run(self, request: ActionRequest, facts: Mapping[str, Any]) -> ActionResult: ...

    async def verify(self, request: ActionRequest, result: ActionResult) -> VerifyResult: ...

    async def undo(self, request: ActionRequest, state: Mapping[str, Any]) -> ActionResult:
        """One bounded step back toward ``state``; its ``undo`` says if another step is due."""
        ...

    async def reconcile(self, request: ActionRequest, intent: Mapping[str, Any]) -> Reconciled:
        """Observe, never act: did the side effect ``intent`` announced take place?"""
        ...
