"""``kill_query`` on ClickHouse: ``KILL QUERY`` the long-running queries a rule selects.

A rule's ``kill_query`` with ``engine: clickhouse`` is this action (``kill_query`` picks it
by that parameter when the rules load); its target is a database whose DSN is
``clickhouse+http(s)://``. Only what the rule selects from ``system.processes`` (running at
least ``min_duration_s``, its user, its kind, its text) and nothing the invariant exclusions
protect (``clients.clickhouse``: the ``system`` user, remediator's own queries, a distributed
query's shard parts). A query's kind is read from its text (ClickHouse 18.16 has no
``query_kind`` column); a query that writes (an ``INSERT``, or any query that has written
rows) is only chosen when the rule says ``allow_insert: true``. At most ``max_per_run``,
longest running first. Each ``KILL QUERY`` re-checks, in its own ``WHERE``, that the chosen
query still runs; one that ended between the look and the kill is audited as not hit.
Intent (the query ids) before the first kill; after a crash, a chosen query no longer running
counts as killed. Verified when the chosen queries no longer run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar, Literal

import re2
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

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
    verified_within,
)
from remediator.clients.clickhouse import MAX_ELAPSED_S, PROTECTED_USERS, ClickHouseTarget, Process
from remediator.clients.postgres import DatabaseHandle
from remediator.core.model import ALLOW, StopReason, refuse
from remediator.core.regex import Regex

EVIDENCE_QUERY_CHARS = 200
MAX_PER_RUN = 100
QUERY_ID_CHARS = 256
"""A query id longer than this (a client chooses it) is not chosen: it could not be stored."""
QUERY_KINDS = ("Select", "Insert", "Alter", "Create", "Drop", "Optimize", "System", "Other")
"""The kinds a rule may name, as current ClickHouse's ``query_kind`` spells them."""
_KIND_WORDS = {
    "SELECT": "Select", "WITH": "Select", "SHOW": "Select", "DESC": "Select",
    "DESCRIBE": "Select", "EXISTS": "Select", "EXPLAIN": "Select",
    "INSERT": "Insert", "ALTER": "Alter", "CREATE": "Create", "ATTACH": "Create",
    "DROP": "Drop", "DETACH": "Drop", "TRUNCATE": "Drop", "OPTIMIZE": "Optimize",
    "SYSTEM": "System",
}  # fmt: skip
_LEAD = re2.compile(r"^(?:\s|\(|--[^\n]*(?:\n|$)|/\*(?:[^*]|\*+[^*/])*\*+/)*([A-Za-z]+)")
"""Whitespace, parentheses and comments before a query's first word (RE2: any client's text)."""
_STRING_LITERAL = re2.compile(r"'(?:[^'\\]|\\.|'')*'")
"""A ClickHouse string literal: backslash escapes, doubled quotes."""
_NUMBER = re2.compile(r"\b\d+(?:\.\d+)?\b")


def query_kind(query: str) -> str:
    """The kind of ``query`` from its first word: ``Other`` when it names none we know."""
    found = _LEAD.search(query)
    return _KIND_WORDS.get(found.group(1).upper(), "Other") if found else "Other"


def without_literals(query: str) -> str:
    """``query`` with its string literals replaced with ``'?'``, its numbers with ``?``."""
    return str(_NUMBER.sub("?", _STRING_LITERAL.sub("'?'", query)))


def _writes(process: Process) -> bool:
    return query_kind(process.query) == "Insert" or process.written_rows > 0


class ClickHouseKillParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    engine: Literal["clickhouse"]
    """Which server the target is: this model is kill_query's for ClickHouse."""
    min_duration_s: float = Field(gt=0, le=86_400)
    """Only queries running at least this long, seconds, at most a day. Required."""
    max_per_run: int = Field(ge=1, le=MAX_PER_RUN)
    """At most this many queries per run, 1 to 100: the blast radius of one run. Required."""
    users: list[str] = Field(default_factory=list)
    """Allow-list of users; empty: any but the protected ones."""
    deny_users: list[str] = Field(default_factory=list)
    allow_insert: bool = False
    """Whether a query that writes (an INSERT, or one that has written rows) may be killed:
    an interrupted INSERT may leave part of its rows written."""
    query_kinds: list[str] = Field(default_factory=lambda: ["Select"], min_length=1)
    """Kinds of query to consider: Select, Insert, Alter, Create, Drop, Optimize, System,
    Other; read from the query's first word."""
    query_pattern: str | None = None
    """An RE2 regular expression the query text must match (search)."""
    sync: bool = False
    """``KILL QUERY … SYNC`` (wait, up to 15 s a query, until it stopped) instead of ASYNC."""
    redact_literals: bool = True
    """Replace string and number literals in the audited query text with ``?``."""

    @field_validator("users")
    @classmethod
    def _not_protected(cls, users: list[str]) -> list[str]:
        for user in users:
            if user in PROTECTED_USERS:
                raise ValueError(
                    f'names "{user}", whose queries kill_query never kills on ClickHouse'
                    f" (protected: {', '.join(sorted(PROTECTED_USERS))})"
                )
        return users

    @field_validator("query_kinds")
    @classmethod
    def _known_kinds(cls, kinds: list[str], info: ValidationInfo) -> list[str]:
        for kind in kinds:
            if kind not in QUERY_KINDS:
                shown = kind[:64].encode("unicode_escape").decode("ascii")
                raise ValueError(
                    f'holds "{shown}", which is not a query kind kill_query acts on'
                    f" ({', '.join(QUERY_KINDS)})"
                )
        if "Insert" in kinds and not info.data.get("allow_insert"):
            raise ValueError(
                'holds "Insert", which needs allow_insert: true (an interrupted INSERT may'
                " leave part of its rows written)"
            )
        return kinds

    @field_validator("query_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                Regex(value)
            except ValueError as exc:
                raise ValueError(f"is not usable: {exc}") from None
        return value


class ClickHouseQueryEvidence(Stored):
    """One chosen query, its text truncated and redacted; ``killed`` is present once its
    ``KILL QUERY`` was sent (true: the re-check found it still running)."""

    query_id: str = Field(min_length=1, max_length=QUERY_ID_CHARS)
    user: str
    address: str
    kind: str
    elapsed_s: float = Field(ge=0, le=MAX_ELAPSED_S)
    """Seconds it had run when chosen, rounded down to the millisecond: the re-check's
    lower bound."""
    query_hash: int = Field(ge=0, le=2**64 - 1)
    read_rows: int = Field(ge=0, le=2**64 - 1)
    written_rows: int = Field(ge=0, le=2**64 - 1)
    memory_bytes: int = Field(ge=-(2**63), le=2**63 - 1)
    query: str = Field(max_length=EVIDENCE_QUERY_CHARS)
    killed: bool | None = None
    kill_status: str | None = None

    def process(self) -> Process:
        """Enough of the query to re-check it is the one chosen (``Process.identity``)."""
        return Process(
            query_id=self.query_id, user=self.user, address=self.address,
            elapsed_s=self.elapsed_s, query="", query_hash=self.query_hash,
            read_rows=self.read_rows, written_rows=self.written_rows,
            memory_bytes=self.memory_bytes,
        )  # fmt: skip


class ClickHouseKillFacts(BaseModel):
    """The queries precheck chose, longest running first."""

    model_config = ConfigDict(frozen=True)

    processes: tuple[Process, ...] = Field(min_length=1)


class ClickHouseKillIntent(Stored):
    """The queries about to be killed."""

    queries: list[ClickHouseQueryEvidence] = Field(min_length=1, max_length=MAX_PER_RUN)


Request = ActionRequest[ClickHouseKillParams, ClickHouseKillIntent]
Result = ActionResult[Nothing]


def _allowed(value: str, allow: Sequence[str], deny: Sequence[str]) -> bool:
    return (not allow or value in allow) and value not in deny


def select(processes: Sequence[Process], params: ClickHouseKillParams) -> list[Process]:
    """The queries the rule may kill, longest running first, at most ``max_per_run``."""
    pattern = Regex(params.query_pattern) if params.query_pattern else None
    chosen = [
        p
        for p in processes
        if p.elapsed_s >= params.min_duration_s
        and len(p.query_id) <= QUERY_ID_CHARS
        and p.user not in PROTECTED_USERS
        and _allowed(p.user, params.users, params.deny_users)
        and query_kind(p.query) in params.query_kinds
        and (params.allow_insert or not _writes(p))
        and (pattern is None or pattern.search(p.query))
    ]
    return sorted(chosen, key=lambda p: -p.elapsed_s)[: params.max_per_run]


def evidence(process: Process, redact: bool) -> ClickHouseQueryEvidence:
    query = without_literals(process.query) if redact else process.query
    return ClickHouseQueryEvidence(
        query_id=process.query_id,
        user=process.user,
        address=process.address,
        kind=query_kind(process.query),
        elapsed_s=math.floor(process.elapsed_s * 1000) / 1000,
        query_hash=process.query_hash,
        read_rows=process.read_rows,
        written_rows=process.written_rows,
        memory_bytes=process.memory_bytes,
        query=query[:EVIDENCE_QUERY_CHARS],
    )


def _sentence(
    name: str, rows: Sequence[ClickHouseQueryEvidence], params: ClickHouseKillParams
) -> str:
    killed = sum(1 for r in rows if r.killed)
    mode = "SYNC" if params.sync else "ASYNC"
    sentence = (
        f"On {name!r}: killed {killed} of {len(rows)} queries chosen (max {params.max_per_run},"
        f" KILL QUERY {mode})."
    )
    if killed < len(rows):
        sentence += (
            f" {len(rows) - killed} had ended, or its id named another query, by the kill:"
            " the re-check let it alone."
        )
    return sentence


class ClickHouseKillQuery(
    Action[ClickHouseKillParams, ClickHouseKillFacts, ClickHouseKillIntent, Nothing]
):
    kind: ClassVar[str] = "kill_query"
    params_model: ClassVar[type[ClickHouseKillParams]] = ClickHouseKillParams
    intent_model: ClassVar[type[ClickHouseKillIntent]] = ClickHouseKillIntent
    undo_model: ClassVar[type[Nothing]] = Nothing
    target_kinds: ClassVar[frozenset[str]] = frozenset({"Database"})
    destructive: ClassVar[bool] = True

    def __init__(self, handle: DatabaseHandle) -> None:
        self._handle = handle

    def available(self) -> bool:
        """Always, as on PostgreSQL: a name not configured is precheck's refusal."""
        return True

    def permissions(self, params: ClickHouseKillParams) -> Sequence[Permission]:
        return ()  # a ClickHouse user whose profile is not readonly (it kills others' queries)

    def _target(self, request: Request) -> ClickHouseTarget | None:
        return self._handle.clickhouse.get(request.target.name)

    async def precheck(self, request: Request) -> Checked[ClickHouseKillFacts]:
        name = request.target.name
        target = self._target(request)
        if target is None:
            if self._handle.engine_of(name) == "postgresql":
                return Checked(
                    refuse(
                        StopReason.PRECHECK_FAILED,
                        f"Database target {name!r} is PostgreSQL, but the rule's kill_query"
                        " has engine: clickhouse; nothing was killed.",
                    )
                )
            known = ", ".join(sorted(self._handle.clickhouse)) or "none"
            return Checked(
                refuse(
                    StopReason.TARGET_GONE,
                    f"No ClickHouse database target named {name!r} is configured"
                    f" (configured: {known}).",
                )
            )
        params = request.params
        chosen = select(await target.processes(params.min_duration_s), params)
        if not chosen:
            return Checked(
                refuse(
                    StopReason.PRECHECK_FAILED,
                    f"No query on {name!r} matches the rule (at least {params.min_duration_s:g} s,"
                    f" {', '.join(params.query_kinds)}); nothing to kill.",
                )
            )
        return Checked(ALLOW, ClickHouseKillFacts(processes=tuple(chosen)))

    async def run(self, request: Request, facts: ClickHouseKillFacts) -> Result:
        target = self._target(request)
        assert target is not None, "kill_query run without the target precheck found"
        params = request.params
        rows = [evidence(p, params.redact_literals) for p in facts.processes]
        await request.intend(ClickHouseKillIntent(queries=rows), None)
        mode: Literal["SYNC", "ASYNC"] = "SYNC" if params.sync else "ASYNC"
        for i, row in enumerate(list(rows)):  # the stored identity is what the kill re-checks
            killed = await target.kill(row.process(), mode)
            status = killed.status if killed else None
            rows[i] = row.model_copy(update={"killed": killed is not None, "kill_status": status})
        details = {"queries": [r.model_dump(mode="json", exclude_none=True) for r in rows]}
        return ActionResult(True, _sentence(request.target.name, rows, params), details)

    async def verify(self, request: Request, result: Result) -> VerifyResult:
        target = self._target(request)
        rows = result.details.get("queries")
        if target is None or not isinstance(rows, list):
            return VerifyResult.UNKNOWN
        processes = [ClickHouseQueryEvidence.model_validate(row).process() for row in rows]

        async def gone() -> bool:
            return not await target.still_running(processes)

        return await verified_within(request.verify_within_s, gone)

    async def undo(self, request: Request, state: Nothing) -> Result:
        return ActionResult(True, "kill_query leaves nothing to undo.")

    async def reconcile(
        self, request: Request, intent: ClickHouseKillIntent
    ) -> Reconciled[Nothing]:
        """A chosen query no longer running (same id, user, text, and no younger) counts as
        killed: one that ended by itself meanwhile looks the same, and is as gone."""
        target = self._target(request)
        if target is None:
            return Reconciled(None, f"Database target {request.target.name!r} is not configured.")
        running = await target.still_running([row.process() for row in intent.queries])
        gone = sum(1 for row in intent.queries if row.query_id not in running)
        sentence = (
            f"On {request.target.name!r}, {gone} of the {len(intent.queries)} queries chosen"
            " no longer run"
        )
        if gone == 0:
            return Reconciled(False, f"{sentence}: none was killed.")
        details = intent.model_dump(mode="json")
        return Reconciled(True, f"{sentence}.", ActionResult(True, f"{sentence}.", details))
