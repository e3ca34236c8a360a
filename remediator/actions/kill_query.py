"""``kill_query``: cancel, then after a grace terminate, long-running PostgreSQL queries.

Only what the rule selects and nothing the invariant exclusions protect (see
``clients.postgres``): client backends, not superusers', not parallel workers, not
remediator's own. At most ``max_per_run`` sessions, oldest first. Each signal re-checks the
session's ``pid``, ``backend_start`` and ``query_start`` in the same statement. Evidence,
the chosen rows with their query text truncated and literals redacted, and the result of
every signal go into the audit. Verified when the chosen sessions no longer run those
queries.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)

from remediator.actions.base import (
    Action,
    ActionRequest,
    ActionResult,
    Checked,
    Nothing,
    Permission,
    Reconciled,
    Stored,
    VerifyResult,
)
from remediator.clients.postgres import DatabaseHandle, PostgresTarget, Session
from remediator.core.model import ALLOW, StopReason, refuse
from remediator.core.regex import Regex

EVIDENCE_QUERY_CHARS = 200
MAX_PER_RUN = 100
PID_MAX = 2**31 - 1
"""PostgreSQL backend pids are int4."""
_STRING_LITERAL = re.compile(r"'(?:[^']|'')*'")
_NUMBER = re.compile(r"\b\d+(?:\.\d+)?\b")


class KillQueryParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    min_duration_s: float = Field(gt=0, le=86_400)
    """Only queries running at least this long, seconds, at most a day (a query running
    longer is a human's to judge). Required. It goes into PostgreSQL's make_interval."""
    max_per_run: int = Field(ge=1, le=MAX_PER_RUN)
    """At most this many sessions per run, 1 to 100: the blast radius of one run. Required."""
    states: list[str] = Field(default_factory=lambda: ["active"], min_length=1)
    """pg_stat_activity states to consider: active, idle in transaction, …"""
    databases: list[str] = Field(default_factory=list)
    """Allow-list of databases; empty: any."""
    users: list[str] = Field(default_factory=list)
    applications: list[str] = Field(default_factory=list)
    deny_databases: list[str] = Field(default_factory=list)
    deny_users: list[str] = Field(default_factory=list)
    deny_applications: list[str] = Field(default_factory=list)
    query_pattern: str | None = None
    """An RE2 regular expression the query text must match (search). RE2: any database
    client writes query text, and none can make the match backtrack."""
    grace_s: float = Field(default=10.0, ge=0, le=300)
    """Seconds between cancel and terminate, at most 5 minutes."""
    terminate: bool = False
    """Terminate the session when cancelling did not stop its query within grace_s."""
    redact_literals: bool = True
    """Replace string and number literals in the audited query text with ``?``."""

    @field_validator("query_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                Regex(value)
            except ValueError as exc:
                raise ValueError(f"is not usable: {exc}") from None
        return value


def _instant(value: object) -> datetime:
    """An ISO 8601 time as the evidence has always held it; no number of seconds."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):  # Python's message quotes the (maybe huge) text
            return datetime.fromisoformat(value)
    raise ValueError("must be an ISO 8601 time")


Instant = Annotated[datetime, PlainValidator(_instant), PlainSerializer(datetime.isoformat)]
"""A datetime written as ``isoformat()`` (``+00:00``, not pydantic's ``Z``), as before."""


class QueryEvidence(Stored):
    """One chosen session, its query text truncated and redacted; ``cancelled`` and
    ``terminated`` are present once that signal was sent."""

    pid: int = Field(ge=1, le=PID_MAX)
    user: str
    database: str
    application: str
    state: str
    age_s: float = Field(ge=0)
    backend_start: Instant
    query_start: Instant
    query: str = Field(max_length=EVIDENCE_QUERY_CHARS)
    cancelled: bool | None = None
    terminated: bool | None = None

    @model_serializer(mode="wrap")
    def _signals_sent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        row: dict[str, Any] = handler(self)
        for signal in ("cancelled", "terminated"):
            if row.get(signal) is None:
                row.pop(signal, None)
        return row

    def session(self) -> Session:
        """Enough of the session to re-check it is the one chosen (pid and both starts)."""
        return Session(
            pid=self.pid, user=self.user, database=self.database,
            application=self.application, state=self.state,
            backend_start=self.backend_start, query_start=self.query_start,
            query="", age_s=self.age_s,
        )  # fmt: skip


class KillQueryFacts(BaseModel):
    """The sessions precheck chose, oldest query first."""

    model_config = ConfigDict(frozen=True)

    sessions: tuple[Session, ...] = Field(min_length=1)


class KillQueryIntent(Stored):
    """The sessions about to be cancelled (and perhaps terminated)."""

    sessions: list[QueryEvidence] = Field(min_length=1, max_length=MAX_PER_RUN)
    """A list, as JSON holds it (a strict tuple would refuse what the store reads back)."""


Request = ActionRequest[KillQueryParams, KillQueryIntent]
Result = ActionResult[Nothing]


def _allowed(value: str, allow: Sequence[str], deny: Sequence[str]) -> bool:
    return (not allow or value in allow) and value not in deny


def select(sessions: Sequence[Session], params: KillQueryParams) -> list[Session]:
    """The sessions the rule may signal, oldest query first, at most ``max_per_run``."""
    pattern = Regex(params.query_pattern) if params.query_pattern else None
    chosen = [
        s
        for s in sessions
        if s.age_s >= params.min_duration_s
        and s.state in params.states
        and _allowed(s.database, params.databases, params.deny_databases)
        and _allowed(s.user, params.users, params.deny_users)
        and _allowed(s.application, params.applications, params.deny_applications)
        and (pattern is None or pattern.search(s.query))
    ]
    return sorted(chosen, key=lambda s: s.query_start)[: params.max_per_run]


def evidence(session: Session, redact: bool) -> QueryEvidence:
    query = session.query
    if redact:
        query = _NUMBER.sub("?", _STRING_LITERAL.sub("'?'", query))
    return QueryEvidence(
        pid=session.pid,
        user=session.user,
        database=session.database,
        application=session.application,
        state=session.state,
        age_s=round(session.age_s, 1),
        backend_start=session.backend_start,
        query_start=session.query_start,
        query=query[:EVIDENCE_QUERY_CHARS],
    )


class KillQuery(Action[KillQueryParams, KillQueryFacts, KillQueryIntent, Nothing]):
    kind: ClassVar[str] = "kill_query"
    params_model: ClassVar[type[KillQueryParams]] = KillQueryParams
    intent_model: ClassVar[type[KillQueryIntent]] = KillQueryIntent
    undo_model: ClassVar[type[Nothing]] = Nothing
    target_kinds: ClassVar[frozenset[str]] = frozenset({"Database"})
    destructive: ClassVar[bool] = True

    def __init__(self, handle: DatabaseHandle) -> None:
        self._handle = handle

    def available(self) -> bool:
        return bool(self._handle.targets)

    def permissions(self) -> Sequence[Permission]:
        return ()  # database privileges: a login role with pg_signal_backend, pg_read_all_stats

    def _target(self, request: Request) -> PostgresTarget | None:
        return self._handle.targets.get(request.target.name)

    async def precheck(self, request: Request) -> Checked[KillQueryFacts]:
        name = request.target.name
        target = self._target(request)
        if target is None:
            known = ", ".join(sorted(self._handle.targets)) or "none"
            return Checked(
                refuse(
                    StopReason.TARGET_GONE,
                    f"No database target named {name!r} is configured (configured: {known}).",
                )
            )
        problems = self._handle.problems.get(name) or await target.privilege_problems()
        if problems:
            return Checked(
                refuse(
                    StopReason.PRECHECK_FAILED, f"Database target {name!r}: {'; '.join(problems)}."
                )
            )
        params = request.params
        chosen = select(await target.sessions(params.min_duration_s, params.states), params)
        if not chosen:
            return Checked(
                refuse(
                    StopReason.PRECHECK_FAILED,
                    f"No session on {name!r} matches the rule (at least {params.min_duration_s:g} s"
                    f" in {', '.join(params.states)}); nothing to cancel.",
                )
            )
        return Checked(ALLOW, KillQueryFacts(sessions=tuple(chosen)))

    async def run(self, request: Request, facts: KillQueryFacts) -> Result:
        target = self._target(request)
        assert target is not None, "kill_query run without the target precheck found"
        params, chosen = request.params, facts.sessions
        rows = {s.pid: evidence(s, params.redact_literals) for s in chosen}
        await request.intend(KillQueryIntent(sessions=list(rows.values())), None)
        for session in chosen:
            cancelled = await target.signal(session, "cancel")
            rows[session.pid] = rows[session.pid].model_copy(update={"cancelled": cancelled})
        if params.terminate:
            await asyncio.sleep(params.grace_s)
            for session in chosen:
                if await target.still_running(session):
                    terminated = await target.signal(session, "terminate")
                    rows[session.pid] = rows[session.pid].model_copy(
                        update={"terminated": terminated}
                    )
        cancelled_n = sum(1 for r in rows.values() if r.cancelled)
        terminated_n = sum(1 for r in rows.values() if r.terminated)
        return ActionResult(
            True,
            f"On {request.target.name!r}: cancelled {cancelled_n} and terminated {terminated_n}"
            f" of {len(chosen)} sessions chosen (max {params.max_per_run}).",
            {"sessions": [r.model_dump(mode="json") for r in rows.values()]},
        )

    async def verify(self, request: Request, result: Result) -> VerifyResult:
        target = self._target(request)
        rows = result.details.get("sessions")
        if target is None or not isinstance(rows, list):
            return VerifyResult.UNKNOWN
        sessions = [QueryEvidence.model_validate(row).session() for row in rows]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + request.verify_within_s
        while True:
            running = [await target.still_running(session) for session in sessions]
            if not any(running):
                return VerifyResult.VERIFIED
            if loop.time() + 1.0 > deadline:
                return VerifyResult.INEFFECTIVE
            await asyncio.sleep(1.0)

    async def undo(self, request: Request, state: Nothing) -> Result:
        return ActionResult(True, "kill_query leaves nothing to undo.")

    async def reconcile(self, request: Request, intent: KillQueryIntent) -> Reconciled[Nothing]:
        """A chosen query no longer running (same pid, backend and query start) counts as
        signalled: a query that ended by itself meanwhile looks the same, and is as gone."""
        target = self._target(request)
        if target is None:
            return Reconciled(None, f"Database target {request.target.name!r} is not configured.")
        running = [await target.still_running(row.session()) for row in intent.sessions]
        gone = len(running) - sum(running)
        sentence = (
            f"On {request.target.name!r}, {gone} of the {len(running)} queries chosen no longer run"
        )
        if gone == 0:
            return Reconciled(False, f"{sentence}: none was cancelled.")
        details = intent.model_dump(mode="json")
        return Reconciled(True, f"{sentence}.", ActionResult(True, f"{sentence}.", details))
