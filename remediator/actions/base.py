"""The ``Action`` protocol every remediation implements, and the values it exchanges.

An action declares its parameters (a pydantic model checked when rules load), the target
kinds it accepts, whether it is destructive (it then spends the global budget), and the
permissions it needs. ``precheck`` may refuse; ``run`` does the one side effect;
``verify`` says whether the effect holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel

from remediator.model import Target, Verdict


@dataclass(frozen=True, slots=True)
class Permission:
    """A Kubernetes RBAC rule or a database privilege the action needs."""

    api_group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]


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
