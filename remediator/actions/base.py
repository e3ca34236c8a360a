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


@dataclass(frozen=True, slots=True)
class ActionResult:
    succeeded: bool
    sentence: str
    details: Mapping[str, Any] = field(default_factory=dict)


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

    def permissions(self) -> Sequence[Permission]: ...

    async def precheck(self, request: ActionRequest) -> Verdict: ...

    async def run(self, request: ActionRequest) -> ActionResult: ...

    async def verify(self, request: ActionRequest, result: ActionResult) -> VerifyResult: ...
