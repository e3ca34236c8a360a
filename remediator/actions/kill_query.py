"""``kill_query``: cancel, then after a grace terminate, long-running PostgreSQL queries.

Only what the rule selects and nothing the invariant exclusions protect (see
``clients.postgres``): client backends, not superusers', not parallel workers, not
remediator's own. At most ``max_per_run`` sessions, longest in their state first; a session
idle in a transaction is as old as its idling, not as its last query. ``precheck`` reads the
sessions twice, ``CHURN_CHECK_S`` apart, and leaves alone any whose query changed meanwhile:
a session turning its queries over that fast is where a cancel can reach the next query.
Each signal re-checks, in the same statement, that the session still runs the chosen query
in the chosen state; after the cancels, a session whose ``query_start`` moved is audited as
one the cancel may have missed for its next query (the README's residual risk). Evidence,
the chosen rows with their query text truncated and literals redacted, and the result of
every signal go into the audit. Verified when the chosen sessions no longer run those
queries.

A rule's ``params`` may say ``engine: clickhouse``: its kill_query is then ClickHouse's
(``kill_query_clickhouse``), chosen when the rules load (``variants``); no ``engine``, or
``engine: postgresql``, is this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

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
    AnyAction,
    Checked,
    Nothing,
    Permission,
    Reconciled,
    Stored,
    VerifyResult,
)
from remediator.actions.kill_query_clickhouse import ClickHouseKillQuery
from remediator.clients.postgres import DatabaseHandle, PostgresTarget, Session, Signalled
from remediator.core.model import ALLOW, StopReason, refuse
from remediator.core.regex import Regex

EVIDENCE_QUERY_CHARS = 200
MAX_PER_RUN = 100
CHURN_CHECK_S = 0.25
"""Seconds between precheck's two reads: a chosen session whose query changed in between
is not signalled. Over 30 times the longest window between re-check and signal measured,
2 000 times the median (README, ``kill_query``)."""
LANDING_S = 0.05
"""Seconds after the cancels before looking where they landed: a signal is delivered, and
acted on by the backend, a little after the statement that sent it returns."""
STATES = (
    "active",
    "idle in transaction",
    "idle in transaction (aborted)",
    "fastpath function call",
)
"""The ``pg_stat_activity`` states a rule may name: a plain ``idle`` session runs nothing."""
PID_MAX = 2**31 - 1
"""PostgreSQL backend pids are int4."""
_STRING_LITERAL = re.compile(r"'(?:[^']|'')*'")
_NUMBER = re.compile(r"\b\d+(?:\.\d+)?\b")


class KillQueryParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    engine: Literal["postgresql"] = "postgresql"
    """Which server the target is: this model is kill_query's for PostgreSQL. Left out of
    the stored parameters, so a rule hashes as it did before the key existed (a claim made
    under it still runs after an upgrade)."""
    min_duration_s: float = Field(gt=0, le=86_400)
    """Only queries running at least this long, or sessions idle in a transaction this long,
    seconds, at most a day (longer is a human's to judge). Required. It goes into
    PostgreSQL's make_interval."""
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

    @model_serializer(mode="wrap")
    def _without_the_default_engine(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        dumped: dict[str, Any] = handler(self)
        if dumped.get("engine") == "postgresql":
            del dumped["engine"]
        return dumped

    @field_validator("states")
    @classmethod
    def _known_states(cls, states: list[str]) -> list[str]:
        for state in states:
            if state not in STATES:
                shown = json.dumps(state[:64], ensure_ascii=False)
                raise ValueError(
                    f"holds {shown}, which is not a state kill_query acts on ({', '.join(STATES)})"
                )
        return states

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
    ``terminated`` are present once that signal was tried (true: the re-check let it go)."""

    pid: int = Field(ge=1, le=PID_MAX)
    user: str
    database: str
    application: str
    state: str
    age_s: float = Field(ge=0)
    backend_start: Instant
    query_start: Instant
    query: str = Field(max_length=EVIDENCE_QUERY_CHARS)
    state_change: Instant | None = None
    """When the session entered ``state``: what identifies an idling (absent in rows
    written before it was kept)."""
    cancelled: bool | None = None
    terminated: bool | None = None
    moved_on: bool | None = None
    """True when, just after the cancel, the session showed another query: the chosen one
    ended near the signal, and the cancel may have reached the next."""
    next_query_after_s: float | None = None
    """With ``moved_on``: seconds from the cancel to the start of the query seen after it,
    for a human to weigh, not a verdict: a query begun before the cancel may have taken it,
    and so may one begun just after (PostgreSQL holds a cancel back while it reads a query);
    and a client retrying at once may seem to start before it (the clock is read just after
    the signal went, and the backend signalling can be the slower)."""

    @model_serializer(mode="wrap")
    def _signals_sent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        row: dict[str, Any] = handler(self)
        optional_keys = (
            "state_change",
            "cancelled",
            "terminated",
            "moved_on",
            "next_query_after_s",
        )
        for optional in optional_keys:
            if row.get(optional) is None:
                row.pop(optional, None)
        return row

    def session(self) -> Session:
        """Enough of the session to re-check it is the one chosen (``Session.identity``)."""
        return Session(
            pid=self.pid, user=self.user, database=self.database,
            application=self.application, state=self.state,
            backend_start=self.backend_start, query_start=self.query_start,
            query="", age_s=self.age_s, state_change=self.state_change,
        )  # fmt: skip


class KillQueryFacts(BaseModel):
    """The sessions precheck chose, longest in their state first, and how many more it
    left alone because their query changed between its two reads."""

    model_config = ConfigDict(frozen=True)

    sessions: tuple[Session, ...] = Field(min_length=1)
    churning: int = 0


class KillQueryIntent(Stored):
    """The sessions about to be cancelled (and perhaps terminated)."""

    sessions: list[QueryEvidence] = Field(min_length=1, max_length=MAX_PER_RUN)
    """A list, as JSON holds it (a strict tuple would refuse what the store reads back)."""


Request = ActionRequest[KillQueryParams, KillQueryIntent]
Result = ActionResult[Nothing]


def _allowed(value: str, allow: Sequence[str], deny: Sequence[str]) -> bool:
    return (not allow or value in allow) and value not in deny


def select(sessions: Sequence[Session], params: KillQueryParams) -> list[Session]:
    """The sessions the rule may signal, longest in their state first, at most
    ``max_per_run``."""
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
    return sorted(chosen, key=lambda s: -s.age_s)[: params.max_per_run]


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
        state_change=session.state_change,
    )


async def _steady(
    target: PostgresTarget, params: KillQueryParams, chosen: Sequence[Session]
) -> list[Session]:
    """Those of ``chosen`` a second read ``CHURN_CHECK_S`` later still shows as chosen (its
    fresh rows): a session whose query changed in between turns them over too fast."""
    await asyncio.sleep(CHURN_CHECK_S)
    again = {s.identity(): s for s in await target.sessions(params.min_duration_s, params.states)}
    return [again[s.identity()] for s in chosen if s.identity() in again]


def _landing(
    sent: Mapping[int, Signalled], moved: Mapping[int, datetime], pid: int
) -> dict[str, Any]:
    if pid not in moved:
        return {}
    after_s = (moved[pid] - sent[pid].at).total_seconds()
    return {"moved_on": True, "next_query_after_s": round(after_s, 4)}


def _sentence(name: str, rows: Sequence[QueryEvidence], max_per_run: int, churning: int) -> str:
    cancelled = sum(1 for r in rows if r.cancelled)
    terminated = sum(1 for r in rows if r.terminated)
    sentence = (
        f"On {name!r}: cancelled {cancelled} and terminated {terminated} of {len(rows)}"
        f" sessions chosen (max {max_per_run})."
    )
    moved = [f"{r.pid} ({r.next_query_after_s:+g} s)" for r in rows if r.moved_on]
    if moved:
        sentence += (
            f" {len(moved)} cancelled session(s) showed another query {LANDING_S:g} s later"
            f" (pid, and when it started after the cancel: {', '.join(moved)}): the chosen"
            " query ended near the signal, and the cancel may have reached the next one."
        )
    if churning:
        sentence += (
            f" {churning} more matched, but their query changed within {CHURN_CHECK_S:g} s;"
            " they were left alone."
        )
    return sentence


class KillQuery(Action[KillQueryParams, KillQueryFacts, KillQueryIntent, Nothing]):
    kind: ClassVar[str] = "kill_query"
    params_model: ClassVar[type[KillQueryParams]] = KillQueryParams
    intent_model: ClassVar[type[KillQueryIntent]] = KillQueryIntent
    undo_model: ClassVar[type[Nothing]] = Nothing
    target_kinds: ClassVar[frozenset[str]] = frozenset({"Database"})
    destructive: ClassVar[bool] = True
    variant_param: ClassVar[str] = "engine"
    default_variant: ClassVar[str] = "postgresql"

    def __init__(self, handle: DatabaseHandle) -> None:
        self._handle = handle
        self._clickhouse = ClickHouseKillQuery(handle)

    def variants(self) -> Mapping[str, AnyAction]:
        """The engine a rule's ``params`` name → its kill_query (``actions.base.Variants``)."""
        return {"postgresql": self, "clickhouse": self._clickhouse}

    def available(self) -> bool:
        """Always: a rule names its database target, and a name not configured (none at
        all included) is precheck's refusal, not a dry run."""
        return True

    def permissions(self, params: KillQueryParams) -> Sequence[Permission]:
        return ()  # database privileges: a login role with pg_signal_backend, pg_read_all_stats

    def _target(self, request: Request) -> PostgresTarget | None:
        return self._handle.targets.get(request.target.name)

    async def precheck(self, request: Request) -> Checked[KillQueryFacts]:
        name = request.target.name
        target = self._target(request)
        if target is None:
            if self._handle.engine_of(name) == "clickhouse":
                return Checked(
                    refuse(
                        StopReason.PRECHECK_FAILED,
                        f"Database target {name!r} is ClickHouse, but the rule's kill_query is"
                        " PostgreSQL's (give it engine: clickhouse); nothing was signalled.",
                    )
                )
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
        steady = await _steady(target, params, chosen)
        if not steady:
            return Checked(
                refuse(
                    StopReason.PRECHECK_FAILED,
                    f"{len(chosen)} session(s) on {name!r} matched the rule, but each one's query"
                    f" changed within {CHURN_CHECK_S:g} s: a session turning its queries over"
                    " that fast is not signalled (a cancel could reach its next query).",
                )
            )
        facts = KillQueryFacts(sessions=tuple(steady), churning=len(chosen) - len(steady))
        return Checked(ALLOW, facts)

    async def run(self, request: Request, facts: KillQueryFacts) -> Result:
        target = self._target(request)
        assert target is not None, "kill_query run without the target precheck found"
        params, chosen = request.params, facts.sessions
        rows = {s.pid: evidence(s, params.redact_literals) for s in chosen}
        await request.intend(KillQueryIntent(sessions=list(rows.values())), None)
        sent = {s.pid: signal for s in chosen if (signal := await target.send(s, "cancel"))}
        await asyncio.sleep(LANDING_S)
        moved = await target.moved_on([s for s in chosen if s.pid in sent])
        for session in chosen:
            rows[session.pid] = rows[session.pid].model_copy(
                update={"cancelled": session.pid in sent, **_landing(sent, moved, session.pid)}
            )
        if params.terminate:
            await asyncio.sleep(params.grace_s)
            for session in chosen:  # the statement re-checks: a cancelled query is not chosen
                terminated = await target.signal(session, "terminate")
                rows[session.pid] = rows[session.pid].model_copy(update={"terminated": terminated})
        sentence = _sentence(
            request.target.name, list(rows.values()), params.max_per_run, facts.churning
        )
        details = {"sessions": [r.model_dump(mode="json") for r in rows.values()]}
        return ActionResult(True, sentence, details)

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
