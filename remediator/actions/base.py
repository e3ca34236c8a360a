"""The ``Action`` protocol every remediation implements, and the values it exchanges.

An action declares its parameters (a pydantic model checked when rules load), the target
kinds it accepts, whether it is destructive (it then spends the global budget), and the
permissions it needs. ``precheck`` may refuse; ``run`` does the one side effect;
``verify`` says whether the effect holds.

Before its side effect, ``run`` records what it is about to do (``request.intend``): its
intent is durable with the claim, so a process that dies mid-action leaves enough behind
for ``reconcile`` to observe, after a restart, whether the effect happened.

The protocol is generic over four types each action names: its **params** (from the rule),
its **facts** (what ``precheck`` observed, handed to ``run``; never stored), its **intent**
(stored with the claim) and its **undo state** (stored with the undo). What is stored is a
``Stored`` model: written as its JSON dump, read back strictly by ``read_stored``, since a
row may come from another version or a hand edit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Generic, Protocol, TypeAlias, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError

from remediator.core.errors import PermanentActionError
from remediator.core.model import Target, Verdict

ParamsT = TypeVar("ParamsT", bound=BaseModel)
FactsT = TypeVar("FactsT")
IntentT = TypeVar("IntentT", bound=BaseModel)
UndoT = TypeVar("UndoT", bound=BaseModel)
ModelT = TypeVar("ModelT", bound=BaseModel)

MAX_LISTED_PROBLEMS = 5
"""A malformed stored value names at most this many of its problems."""
VERIFY_POLLS_S = (0.25, 0.5, 1.0, 2.0, 5.0)
"""The waits between two looks at an effect, the last repeated: a fix that holds within a
second or two (a Ready pod) is seen at once, one that takes minutes costs a read per 5 s."""


class Stored(BaseModel):
    """Base of what an action writes to the store: strict (no "5" for 5, no extra keys,
    no NaN), frozen, and dumped under the JSON keys the store has always held."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        allow_inf_nan=False,
        validate_by_alias=True,
        validate_by_name=True,
        serialize_by_alias=True,
    )


class Nothing(Stored):
    """The intent or undo state of an action that never records one."""


class MalformedState(PermanentActionError):
    """A value read back from the store does not fit the action's model: nothing is done
    with it, and retrying cannot help."""


def read_stored(model: type[ModelT], value: object, what: str) -> ModelT:
    """``value`` as ``model``, or ``MalformedState`` with a sentence naming its problems
    (never its content: a hostile row may be huge). Only the stored keys are read: the
    Python names (``from_replicas`` for ``from``) are for code that builds the models."""
    try:
        return model.model_validate(value, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise MalformedState(f"{what} is malformed: {problems(exc)}") from None


def problems(exc: ValidationError) -> str:
    """A validation error as a sentence: at most :data:`MAX_LISTED_PROBLEMS` of its
    problems, each by where it is and what is wrong (never the value itself)."""
    errors = exc.errors(include_input=False, include_url=False)
    listed = [
        f"{'.'.join(str(part) for part in e['loc']) or 'the value'}: {e['msg']}"
        for e in errors[:MAX_LISTED_PROBLEMS]
    ]
    more = len(errors) - len(listed)
    return "; ".join(listed) + (f"; and {more} more" if more else "")


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


Intend: TypeAlias = Callable[[IntentT, str | None], Awaitable[None]]
"""Record an intent durably before the side effect, optionally holding an exclusive key
until the outcome is written; raises ``IntentRefused``."""


async def intend_nothing(intent: BaseModel, exclusive: str | None = None) -> None:
    """For requests that never act (undo steps, reconcile): nothing to record."""


@dataclass(frozen=True, slots=True)
class ActionRequest(Generic[ParamsT, IntentT]):
    target: Target
    params: ParamsT
    rule: str
    episode_id: int
    labels: Mapping[str, str]
    verify_within_s: float = 300.0
    require_opt_in: bool = True
    """Whether the live object must carry the opt-in annotation (policy.require_opt_in)."""
    intend: Intend[IntentT] = intend_nothing
    alert_started_at: datetime | None = None
    """When the alert began firing (its ``startsAt``); None where no alert is at hand
    (an undo step, a reconcile)."""


@dataclass(frozen=True, slots=True)
class Checked(Generic[FactsT]):
    """A precheck's answer, and what it observed for ``run`` (a pod's UID, the replicas)."""

    verdict: Verdict
    facts: FactsT | None = None
    """Set whenever the verdict allows: ``run`` is handed it."""
    touches: tuple[Target, ...] = ()
    """What the action will write besides its target (the pod a recycle of a Deployment
    chose): its evidence is captured too."""


@dataclass(frozen=True, slots=True)
class ActionResult(Generic[UndoT]):
    succeeded: bool
    sentence: str
    details: Mapping[str, Any] = field(default_factory=dict)
    """What the audit record of the step carries, as JSON values."""
    undo: UndoT | None = None
    """What to put back once the episode has stayed resolved for ``undo_after_s``."""
    undo_after_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Reconciled(Generic[UndoT]):
    """What ``reconcile`` observed of an intent whose outcome was never recorded."""

    applied: bool | None
    """True: the effect is in place; False: it is not; None: the world cannot tell."""
    sentence: str
    result: ActionResult[UndoT] | None = None
    """When applied: what ``run`` would have answered (its undo, its details)."""


class VerifyResult(StrEnum):
    VERIFIED = "verified"
    INEFFECTIVE = "ineffective"
    UNKNOWN = "unknown"


async def verified_within(within_s: float, holds: Callable[[], Awaitable[bool]]) -> VerifyResult:
    """``VERIFIED`` as soon as ``holds()`` is true, looked at after each of
    :data:`VERIFY_POLLS_S` and last at ``within_s``; ``INEFFECTIVE`` if it never was."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    looks = 0
    while not await holds():
        left_s = deadline - loop.time()
        if left_s <= 0:
            return VerifyResult.INEFFECTIVE
        await asyncio.sleep(min(VERIFY_POLLS_S[min(looks, len(VERIFY_POLLS_S) - 1)], left_s))
        looks += 1
    return VerifyResult.VERIFIED


class Action(Protocol[ParamsT, FactsT, IntentT, UndoT]):
    kind: ClassVar[str]
    target_kinds: ClassVar[frozenset[str]]
    """Target kinds accepted; empty means any."""
    destructive: ClassVar[bool]

    @property
    def params_model(self) -> type[ParamsT]:
        """The rule's ``params``, validated when the rules load."""
        ...

    @property
    def intent_model(self) -> type[IntentT]:
        """What ``run`` stores before its side effect; ``reconcile`` reads it back."""
        ...

    @property
    def undo_model(self) -> type[UndoT]:
        """What a result stores to be put back later; ``undo`` reads it back."""
        ...

    def available(self) -> bool:
        """Whether what it acts on is configured; if not, it is planned as dry-run."""
        ...

    def permissions(self, params: ParamsT) -> Sequence[Permission]:
        """The Kubernetes RBAC this action needs under ``params`` (and no more): what
        ``remediator rbac`` grants for the rules that use it."""
        ...

    async def precheck(self, request: ActionRequest[ParamsT, IntentT]) -> Checked[FactsT]: ...

    async def run(
        self, request: ActionRequest[ParamsT, IntentT], facts: FactsT
    ) -> ActionResult[UndoT]: ...

    async def verify(
        self, request: ActionRequest[ParamsT, IntentT], result: ActionResult[UndoT]
    ) -> VerifyResult: ...

    async def undo(
        self, request: ActionRequest[ParamsT, IntentT], state: UndoT
    ) -> ActionResult[UndoT]:
        """One bounded step back toward ``state``; its ``undo`` says if another step is due."""
        ...

    async def reconcile(
        self, request: ActionRequest[ParamsT, IntentT], intent: IntentT
    ) -> Reconciled[UndoT]:
        """Observe, never act: did the side effect ``intent`` announced take place?"""
        ...


AnyAction: TypeAlias = Action[Any, Any, Any, Any]
"""An action of any kind, as rule sets and the act stage hold it. Each pairing of an action
with its params is made, and validated by its ``params_model``, when the rules load."""


@runtime_checkable
class Variants(Protocol):
    """An action kind whose rules choose one of several actions by one parameter: the
    ``engine`` of ``kill_query`` (PostgreSQL, ClickHouse). The rule loader picks the variant
    before checking the rule's ``params`` against it; the variant is what the rule runs."""

    variant_param: ClassVar[str]
    default_variant: ClassVar[str]
    """The variant of a rule whose params do not name one."""

    def variants(self) -> Mapping[str, AnyAction]: ...
