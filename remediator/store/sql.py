"""Every statement of the state store, written once, with named parameters (``:name``).

SQLite takes the text as it is; PostgreSQL gets it numbered (``$1``, ``$2`` …, the first
use of a name numbering it) with the arguments in that order. Both speak the text here:
``ON CONFLICT DO NOTHING``, ``RETURNING``, ``CAST(… AS DOUBLE PRECISION)`` where a parameter
has no column to take its type from, and ``IN`` lists spelt out one parameter a value.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from remediator.core import dedup_keys
from remediator.store import contract

PARAMETER = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


@dataclass(frozen=True, slots=True)
class Statement:
    text: str

    def numbered(self) -> tuple[str, tuple[str, ...]]:
        """The text with ``$n`` placeholders, and the parameter name of each ``n``."""
        return _numbered(self.text)

    def positional(self, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        text, names = self.numbered()
        return text, [params[name] for name in names]


@functools.lru_cache(maxsize=1024)
def _numbered(text: str) -> tuple[str, tuple[str, ...]]:
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match[1] not in names:
            names.append(match[1])
        return f"${names.index(match[1]) + 1}"

    return PARAMETER.sub(number, text), tuple(names)


def in_list(name: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """``(:name0, :name1, …)`` for an ``IN`` condition, and its parameters."""
    params = {f"{name}{i}": value for i, value in enumerate(values)}
    return f"({', '.join(f':{key}' for key in params)})", params


# ----- journal: the ack path's write and the worker's reads

PING = Statement("SELECT 1")
JOURNAL_APPEND = Statement(
    "INSERT INTO journal (owner, received_at, body) VALUES (:owner, :received_at, :body)"
    " RETURNING id"
)
JOURNAL_PENDING = Statement(
    "SELECT id FROM journal WHERE owner = :owner AND done_at IS NULL ORDER BY id"
)
JOURNAL_ENTRY = Statement("SELECT id, received_at, body FROM journal WHERE id = :id")
JOURNAL_SINCE = Statement(
    "SELECT id, received_at, body FROM journal WHERE received_at >= :since AND id > :after"
    " ORDER BY id LIMIT :limit"
)
JOURNAL_DONE = Statement("UPDATE journal SET done_at = :now WHERE id = :id")
JOURNAL_PRUNE = Statement(
    "DELETE FROM journal WHERE done_at IS NOT NULL AND done_at < :before AND id <= :up_to"
)

# ----- episodes


def latest_episodes(fingerprints: Sequence[str]) -> tuple[Statement, dict[str, Any]]:
    """The newest episode of each fingerprint."""
    marks, params = in_list("fp", fingerprints)
    text = (
        "SELECT id, fingerprint, opened_at, closed_at, decided_at, last_seen_at FROM episodes"
        " WHERE id IN"
        f" (SELECT MAX(id) FROM episodes WHERE fingerprint IN {marks} GROUP BY fingerprint)"
    )
    return Statement(text), params


EPISODE_OPEN = Statement(
    "INSERT INTO episodes (fingerprint, alertname, opened_at, last_seen_at, closed_at)"
    " VALUES (:fingerprint, :alertname, :now, :now, :closed_at) RETURNING id"
)
EPISODE_CLOSE_OR_REOPEN = Statement(
    "UPDATE episodes SET closed_at = :closed_at, last_seen_at = :now WHERE id = :id"
)
EPISODE_SEEN = Statement("UPDATE episodes SET last_seen_at = :now WHERE id = :id")
EPISODE_DECIDE = Statement(
    "UPDATE episodes SET decided_at = :now WHERE id = :id AND decided_at IS NULL"
)
#: Undone in the transaction that took it, when the claim guards refuse.
EPISODE_UNDECIDE = Statement("UPDATE episodes SET decided_at = NULL WHERE id = :id")


def decide_episodes(episode_ids: Sequence[int]) -> tuple[Statement, dict[str, Any]]:
    """Mark the episodes not decided yet decided at ``:now``; the ids it marked. Another
    replica's transaction deciding one of them holds its row until it commits, so each
    episode is decided by one transaction only."""
    marks, params = in_list("episode", sorted(set(episode_ids)))
    text = (
        f"UPDATE episodes SET decided_at = :now WHERE id IN {marks} AND decided_at IS NULL"
        " RETURNING id"
    )
    return Statement(text), params


EPISODE_IS_OPEN = Statement("SELECT closed_at IS NULL FROM episodes WHERE id = :id")

# ----- claims

CLAIM_EXISTS = Statement(
    "SELECT 1 FROM claims WHERE episode_id = :episode_id AND rule = :rule AND action = :action"
)
#: Claims that sent nothing (``contract.SENT_NOTHING``), as SQL.
SENT_NOTHING = "(" + ", ".join(f"'{outcome}'" for outcome in contract.SENT_NOTHING) + ")"
#: When ``:target`` was last acted on, by a claim other than ``:self`` (0 when claiming: no
#: claim has id 0): a claim that sent nothing starts no cooldown.
CLAIM_LAST_ON_TARGET = Statement(
    "SELECT MAX(claimed_at) FROM claims WHERE target = :target AND dry_run = :dry_run"
    f" AND id <> :self AND (outcome IS NULL OR outcome NOT IN {SENT_NOTHING})"
)


def claims_since(where: str) -> Statement:
    """How many claims other than ``:self`` match ``where`` (a condition of
    ``rows.claim_windows``) since ``:since``."""
    return Statement(
        f"SELECT COUNT(*) FROM claims WHERE {where} AND claimed_at > :since AND id <> :self"
    )


RECENT_CLAIMS = Statement(
    "SELECT episode_id, rule, action_kind, target, destructive, claimed_at, outcome FROM claims"
    " WHERE claimed_at > :since AND dry_run = :mode ORDER BY claimed_at DESC, id DESC"
    " LIMIT :limit"
)
CLAIM_INSERT = Statement(
    "INSERT INTO claims (episode_id, rule, action, action_kind, target, destructive, dry_run,"
    " claimed_at, owner, job) VALUES (:episode_id, :rule, :action, :action_kind, :target,"
    " :destructive, :dry_run, :now, :owner, :job) RETURNING id"
)
#: A claim still to run: this replica's, without an outcome and without an intent.
CLAIM_TO_RUN = Statement(
    "SELECT 1 FROM claims WHERE id = :id AND owner = :owner AND outcome IS NULL AND intent IS NULL"
)
CLAIM_INTENT = Statement(
    "UPDATE claims SET intent = :intent WHERE id = :id AND outcome IS NULL AND owner = :owner"
)
CLAIM_INTENT_WITHDRAWN = Statement("UPDATE claims SET intent = NULL WHERE id = :id")
INFLIGHT_HOLD = Statement(
    "INSERT INTO inflight (key, claim_id) VALUES (:key, :id) ON CONFLICT DO NOTHING"
)
INFLIGHT_HOLDER = Statement("SELECT claim_id FROM inflight WHERE key = :key")
INFLIGHT_RELEASE = Statement("DELETE FROM inflight WHERE claim_id = :id")
#: The outcome of a claim this replica owns, once.
CLAIM_OUTCOME = Statement(
    "UPDATE claims SET outcome = :outcome, outcome_at = :now WHERE id = :id"
    " AND outcome IS NULL AND owner = :owner"
)
#: A claim waiting for its approval is not unfinished work: its approval decides it first.
CLAIM_SELECT = (
    "SELECT c.id, c.episode_id, e.fingerprint, e.alertname, c.rule, c.action, c.target,"
    " c.claimed_at, c.intent, c.job, a.state, a.on_timeout, a.decided_at, a.decided_by"
    " FROM claims c JOIN episodes e ON e.id = c.episode_id"
    " LEFT JOIN approvals a ON a.claim_id = c.id"
)
UNFINISHED_SELECT = (
    f"{CLAIM_SELECT} WHERE c.outcome IS NULL AND c.owner = :owner"
    " AND (a.state IS NULL OR a.state <> 'pending')"
)
UNFINISHED = Statement(f"{UNFINISHED_SELECT} ORDER BY c.id")

# ----- approvals

APPROVAL_INSERT = Statement(
    "INSERT INTO approvals (claim_id, requested_at, due_at, needed, approvers, initiator,"
    " on_timeout, state) VALUES (:id, :now, :due_at, :needed, :approvers, :initiator,"
    " :on_timeout, 'pending')"
)
APPROVAL_SELECT = (
    "SELECT a.claim_id, c.episode_id, e.fingerprint, e.alertname, c.rule, c.action, c.target,"
    " a.requested_at, a.due_at, a.needed, a.approvers, a.initiator, a.on_timeout, a.state,"
    " a.decided_at, a.decided_by, e.closed_at IS NULL FROM approvals a"
    " JOIN claims c ON c.id = a.claim_id JOIN episodes e ON e.id = c.episode_id"
)
APPROVAL = Statement(f"{APPROVAL_SELECT} WHERE a.claim_id = :id")
APPROVALS_IN = Statement(
    f"{APPROVAL_SELECT} WHERE a.state = :state ORDER BY a.claim_id DESC LIMIT :limit"
)
APPROVALS_ANY = Statement(f"{APPROVAL_SELECT} ORDER BY a.claim_id DESC LIMIT :limit")


def votes_of(claim_ids: Sequence[int]) -> tuple[Statement, dict[str, Any]]:
    """The votes of the approvals of ``claim_ids``, each approval's in ``VOTES``' order."""
    marks, params = in_list("claim", claim_ids)
    text = (
        "SELECT claim_id, by_whom, vote, source, at, reason FROM approval_votes"
        f" WHERE claim_id IN {marks} ORDER BY claim_id, at, by_whom"
    )
    return Statement(text), params


VOTE_INSERT = Statement(
    "INSERT INTO approval_votes (claim_id, by_whom, vote, source, reason, at)"
    " VALUES (:id, :by, :vote, :source, :reason, :at) ON CONFLICT DO NOTHING"
)
#: The one move out of ``pending``: of two replicas deciding one approval, one counts a row.
APPROVAL_DECIDE = Statement(
    "UPDATE approvals SET state = :state, decided_at = :now, decided_by = :by"
    " WHERE claim_id = :id AND state = 'pending'"
)
#: A decided approval's claim becomes the deciding replica's, to run or to settle.
CLAIM_ADOPT = Statement("UPDATE claims SET owner = :owner WHERE id = :id AND outcome IS NULL")
CLAIM_OF = Statement(f"{CLAIM_SELECT} WHERE c.id = :id AND c.outcome IS NULL")

# ----- the lease: replicas sharing one database

HEARTBEAT = Statement(
    "INSERT INTO instances (id, heartbeat_at) VALUES (:owner, :now)"
    " ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at"
)
#: Owners of unfinished work whose lease ran out, or who never held one.
EXPIRED_OWNERS = Statement(
    "SELECT owner FROM journal WHERE done_at IS NULL"
    " UNION SELECT owner FROM claims WHERE outcome IS NULL"
    " EXCEPT SELECT id FROM instances WHERE heartbeat_at >= :since"
    " EXCEPT SELECT :owner"
)


def take_over(owners: Sequence[str]) -> tuple[dict[str, Statement], dict[str, Any]]:
    """The statements that move ``owners``' unfinished work to ``:owner``."""
    marks, params = in_list("gone", owners)
    return {
        "journal": Statement(
            f"UPDATE journal SET owner = :owner WHERE owner IN {marks} AND done_at IS NULL"
            " RETURNING id"
        ),
        "claims": Statement(
            f"UPDATE claims SET owner = :owner WHERE owner IN {marks} AND outcome IS NULL"
            " RETURNING id"
        ),
        "instances": Statement(f"DELETE FROM instances WHERE id IN {marks}"),
    }, params


def unfinished_among(claim_ids: Sequence[int]) -> tuple[Statement, dict[str, Any]]:
    marks, params = in_list("claim", claim_ids)
    return Statement(f"{UNFINISHED_SELECT} AND c.id IN {marks} ORDER BY c.id"), params


STORM_FORGET = Statement("DELETE FROM storm_targets WHERE seen_at < :since")
STORM_SEEN = Statement(
    "INSERT INTO storm_targets (target, seen_at) VALUES (:target, :now)"
    " ON CONFLICT (target) DO UPDATE SET seen_at = excluded.seen_at"
)
STORM_COUNT = Statement("SELECT COUNT(*) FROM storm_targets")
STORM_OTHERS = Statement(
    "SELECT COUNT(*) FROM storm_targets WHERE seen_at >= :since AND target <> :target"
)

# ----- aftercare: undos and follow-ups

#: Once per claim; armed at once when its episode closed before the plan was written.
UNDO_PLAN = Statement(
    "INSERT INTO undos (claim_id, target, state, after_s, due_at)"
    " SELECT c.id, :target, :state, CAST(:after_s AS DOUBLE PRECISION),"
    " e.closed_at + CAST(:after_s AS DOUBLE PRECISION)"
    " FROM claims c JOIN episodes e ON e.id = c.episode_id"
    " WHERE c.id = :id AND NOT EXISTS (SELECT 1 FROM undos WHERE claim_id = :id)"
)
#: The undos of an episode's claims.
OF_EPISODE = "claim_id IN (SELECT id FROM claims WHERE episode_id = :episode_id)"
UNDO_ARM = Statement(
    "UPDATE undos SET due_at = :closed_at + after_s WHERE done_at IS NULL AND due_at IS NULL"
    f" AND {OF_EPISODE}"
)
UNDO_DISARM = Statement(f"UPDATE undos SET due_at = NULL WHERE done_at IS NULL AND {OF_EPISODE}")
UNDO_DUE = Statement(
    "SELECT u.id, c.episode_id, e.fingerprint, c.rule, c.action, u.target, u.state, u.due_at"
    " FROM undos u JOIN claims c ON c.id = u.claim_id JOIN episodes e ON e.id = c.episode_id"
    " WHERE u.done_at IS NULL AND u.due_at <= :now ORDER BY u.due_at"
)
#: Of the replicas that read an undo or follow-up due, the one whose update counts a row.
UNDO_TAKE = Statement(
    "UPDATE undos SET due_at = :until WHERE id = :id AND due_at = :due_at AND done_at IS NULL"
)
UNDO_DONE = Statement("UPDATE undos SET done_at = due_at WHERE id = :id")
UNDO_NEXT = Statement("UPDATE undos SET state = :state, due_at = :due_at WHERE id = :id")
FOLLOWUP_PLAN = Statement(
    "INSERT INTO followups (claim_id, due_at) VALUES (:id, :due_at) ON CONFLICT DO NOTHING"
)
FOLLOWUP_DUE = Statement(
    "SELECT f.id, c.episode_id, e.fingerprint, c.rule, c.action, c.target, NULL, f.due_at"
    " FROM followups f JOIN claims c ON c.id = f.claim_id JOIN episodes e ON e.id = c.episode_id"
    " WHERE f.done_at IS NULL AND f.due_at <= :now ORDER BY f.due_at"
)
FOLLOWUP_TAKE = Statement(
    "UPDATE followups SET due_at = :until WHERE id = :id AND due_at = :due_at AND done_at IS NULL"
)
FOLLOWUP_DONE = Statement("UPDATE followups SET done_at = :now WHERE id = :id")

# ----- audit and outbox

AUDIT_COLUMNS = (
    "at", "step", "outcome", "sentence", "journal_id", "episode_id", "fingerprint", "alertname",
    "rule", "ruleset_hash", "severity", "reason", "target", "action", "details",
)  # fmt: skip
OUTBOX_COLUMNS = (
    "episode_id", "dedup_key", "sink", "event", "tier", "severity", "policy", "summary",
    "details", "due_at", "created_at", "topic", "note",
)  # fmt: skip


def _insert(table: str, columns: Sequence[str], tail: str = "") -> Statement:
    names, marks = ", ".join(columns), ", ".join(f":{c}" for c in columns)
    return Statement(f"INSERT INTO {table} ({names}) VALUES ({marks}){tail}")


AUDIT_INSERT = _insert("audit", AUDIT_COLUMNS)
OUTBOX_INSERT = _insert("outbox", OUTBOX_COLUMNS, " ON CONFLICT DO NOTHING")
#: Every episode an incident pages for: the alerts of one notification share one.
MEMBER_INSERT = _insert(
    "incident_members", ("dedup_key", "episode_id", "joined_at"), " ON CONFLICT DO NOTHING"
)
#: The storm incident of a policy (its keys start with ``:prefix``) an episode joined at or
#: after ``:since``: a storm that goes on keeps its incident, however long.
STORM_GOING_ON = Statement(
    "SELECT dedup_key FROM incident_members WHERE substr(dedup_key, 1, :length) = :prefix"
    " AND joined_at >= :since ORDER BY joined_at DESC LIMIT 1"
)

_NOT_SPANNING = "".join(
    f" AND o.dedup_key NOT LIKE :spanning{i}" for i in range(len(dedup_keys.SPANNING_PREFIXES))
)
RESOLVE_SPANNING = {f"spanning{i}": f"{p}%" for i, p in enumerate(dedup_keys.SPANNING_PREFIXES)}
_OF_EPISODE = (
    " FROM outbox o JOIN incident_members m ON m.dedup_key = o.dedup_key"
    " WHERE m.episode_id = :episode_id AND o.event = 'trigger'" + _NOT_SPANNING
)
_QUEUE = f"INSERT INTO outbox ({', '.join(OUTBOX_COLUMNS)}) SELECT DISTINCT"
_TIMES = "CAST(:due AS DOUBLE PRECISION), CAST(:now AS DOUBLE PRECISION)"
_NEWS = "CAST(:topic AS TEXT), CAST(:note AS TEXT)"

#: A resolve for every sink the incidents of an episode paged, due once the episode grace
#: has passed (``:due``: a re-fire within it withdraws the resolve), queued once per
#: incident and sink. Incidents that span episodes (``dedup_keys.SPANNING_PREFIXES``) wait
#: for a human; an incident other alerts of which still fire waits for the last.
RESOLVE = Statement(
    f"{_QUEUE} m.episode_id, o.dedup_key, o.sink, 'resolve', 0, o.severity, o.policy,"
    f" o.summary, o.details, {_TIMES}, '', ''{_OF_EPISODE} ON CONFLICT DO NOTHING"
)
#: An update (``:topic``, ``:note``) for every sink the incidents of an episode paged
#: before (run ahead of the transaction's own pages, which already say it).
UPDATE = Statement(
    f"{_QUEUE} m.episode_id, o.dedup_key, o.sink, 'update', 0, o.severity, o.policy,"
    f" o.summary, o.details, {_TIMES}, {_NEWS}{_OF_EPISODE}"
    " AND o.tier = 0 ON CONFLICT DO NOTHING"
)
#: What a human did on one sink, told to every other sink the incident paged.
QUEUE_FOR_OTHERS = Statement(
    f"{_QUEUE} o.episode_id, o.dedup_key, o.sink, CAST(:event AS TEXT), 0, o.severity,"
    f" o.policy, o.summary, o.details, {_TIMES}, {_NEWS} FROM outbox o"
    " WHERE o.dedup_key = :dedup_key AND o.event = 'trigger' AND o.sink <> :sink"
    " AND o.delivered_at IS NOT NULL ON CONFLICT DO NOTHING"
)

OUTBOX_SELECT = f"SELECT id, attempts, created_at, {', '.join(OUTBOX_COLUMNS)} FROM outbox"
#: A held resolve the episode's re-fire made moot: gone, so the next close can queue one.
OUTBOX_WITHDRAW = Statement("DELETE FROM outbox WHERE id = :id AND delivered_at IS NULL")
OUTBOX_DUE = Statement(
    f"{OUTBOX_SELECT} WHERE delivered_at IS NULL AND dropped_at IS NULL AND due_at <= :now"
    " ORDER BY due_at, id LIMIT :limit"
)
OUTBOX_DELIVERED = Statement(
    "UPDATE outbox SET delivered_at = :now, attempts = attempts + 1, last_error = :error,"
    " reference = :reference WHERE id = :id"
)
OUTBOX_DROPPED = Statement(
    "UPDATE outbox SET dropped_at = :now, attempts = attempts + 1, last_error = :error"
    " WHERE id = :id"
)
OUTBOX_RETRY = Statement(
    "UPDATE outbox SET due_at = :due_at, attempts = attempts + 1, last_error = :error"
    " WHERE id = :id"
)
#: Every update of an incident to a sink not sent yet, due at ``:due_at``: just after the
#: page they wait for, and in the order they were queued (by id).
OUTBOX_DEFER_UPDATES = Statement(
    "UPDATE outbox SET due_at = :due_at WHERE dedup_key = :dedup_key AND sink = :sink"
    " AND event = 'update' AND delivered_at IS NULL AND dropped_at IS NULL"
)
#: An incident's triggers not sent yet (later tiers), dropped: it resolved, or a human has
#: it (``:why``).
OUTBOX_DROP_TRIGGERS = Statement(
    "UPDATE outbox SET dropped_at = :now, last_error = :why"
    " WHERE dedup_key = :dedup_key AND event = 'trigger' AND tier > :above"
    " AND delivered_at IS NULL AND dropped_at IS NULL"
)
#: Where an incident's first trigger on a sink stands: (delivered_at, dropped_at, reference,
#: due_at) of the earliest tier that sink has, and whether a resolve reached it; or no row.
OUTBOX_TRIGGER_STATE = Statement(
    "SELECT o.delivered_at, o.dropped_at, o.reference, o.due_at, EXISTS (SELECT 1 FROM outbox r"
    " WHERE r.dedup_key = o.dedup_key AND r.sink = o.sink AND r.event = 'resolve'"
    " AND r.delivered_at IS NOT NULL) FROM outbox o WHERE o.dedup_key = :dedup_key"
    " AND o.sink = :sink AND o.event = 'trigger' ORDER BY o.tier, o.id LIMIT 1"
)
#: The newest trigger of this tier an incident delivered to a sink: a storm's pages fold
#: into the incident the last one opened while they keep coming.
OUTBOX_LAST_DELIVERED = Statement(
    "SELECT MAX(delivered_at) FROM outbox WHERE dedup_key = :dedup_key AND sink = :sink"
    " AND event = 'trigger' AND tier = :tier AND delivered_at IS NOT NULL AND id <> :id"
)
#: Whether an episode of the incident still fires.
INCIDENT_OPEN = Statement(
    "SELECT 1 FROM incident_members m JOIN episodes e ON e.id = m.episode_id"
    " WHERE m.dedup_key = :dedup_key AND e.closed_at IS NULL LIMIT 1"
)
INCIDENT_EPISODES = Statement(
    "SELECT episode_id FROM incident_members WHERE dedup_key = :dedup_key ORDER BY episode_id"
)
ACK_INSERT = _insert("acks", ("dedup_key", "kind", "by_whom", "source", "url", "at"))
#: The first acknowledgement or resolve (``:kind``; '': either) a human gave an incident
#: at or after ``:since``.
ACK_SINCE = Statement(
    "SELECT kind, by_whom, source, url, at FROM acks WHERE dedup_key = :dedup_key"
    " AND at >= :since AND (CAST(:kind AS TEXT) = '' OR kind = :kind) ORDER BY at, id LIMIT 1"
)

#: ``AuditQuery`` fields an audit query matches exactly, by column.
AUDIT_EQUALS = (
    "episode_id", "fingerprint", "rule", "severity", "outcome", "step", "alertname", "reason",
)  # fmt: skip


def decisions(conditions: Sequence[str], newest_first: bool = False) -> Statement:
    """Audit records matching every condition, oldest (or newest) first, ``:limit`` of
    them."""
    where = " AND ".join(["id > :after_id", *conditions])
    columns = ", ".join(AUDIT_COLUMNS)
    order = "id DESC" if newest_first else "id"
    return Statement(f"SELECT id, {columns} FROM audit WHERE {where} ORDER BY {order} LIMIT :limit")


# ----- the archive's cursors

ARCHIVE_CURSOR = Statement(
    "SELECT archived_to, pending_from, pending_to FROM archive_cursors WHERE stream = :stream"
)
ARCHIVE_CURSOR_ADD = Statement(
    "INSERT INTO archive_cursors (stream, archived_to) VALUES (:stream, 0) ON CONFLICT DO NOTHING"
)
#: A batch is begun only where none is pending: a second replica uploads the one pending.
ARCHIVE_BEGIN = Statement(
    "UPDATE archive_cursors SET pending_from = :first, pending_to = :last"
    " WHERE stream = :stream AND pending_from IS NULL AND archived_to < :first"
)
ARCHIVE_DONE = Statement(
    "UPDATE archive_cursors SET archived_to = :last, pending_from = NULL, pending_to = NULL"
    " WHERE stream = :stream AND pending_to = :last"
)
#: Decisions archived (ids up to ``:up_to``) and older than ``:before``, ``:limit`` at a time
#: (one SQLite file has one writer: a long delete would hold the acks' journal writes).
AUDIT_PRUNE = Statement(
    "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE id <= :up_to AND at < :before"
    " ORDER BY id LIMIT :limit)"
)


# ----- the evidence queue

#: A bundle captured again (a claim resumed after a crash) replaces the one queued.
EVIDENCE_PUT = Statement(
    "INSERT INTO evidence_queue (key, body, queued_at, due_at) VALUES (:key, :body, :now, :now)"
    " ON CONFLICT (key) DO UPDATE SET body = excluded.body, queued_at = excluded.queued_at,"
    " due_at = excluded.due_at, attempts = 0, last_error = ''"
)
EVIDENCE_DUE = Statement(
    "SELECT key, body, queued_at, attempts FROM evidence_queue WHERE due_at <= :now"
    " ORDER BY due_at, key LIMIT :limit"
)
#: Only the version uploaded: one queued again meanwhile waits for its own upload.
EVIDENCE_SENT = Statement("DELETE FROM evidence_queue WHERE key = :key AND queued_at = :queued_at")
EVIDENCE_RETRY = Statement(
    "UPDATE evidence_queue SET due_at = :due_at, attempts = attempts + 1, last_error = :error"
    " WHERE key = :key AND queued_at = :queued_at"
)
EVIDENCE_WAITING = Statement("SELECT COUNT(*), MIN(queued_at) FROM evidence_queue")
