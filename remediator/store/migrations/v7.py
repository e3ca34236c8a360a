"""Version 7: approvals.

``approvals`` holds the approval a claim waits for (``approve``): one row per claim that
asks one, written in the claim's transaction, its ``state`` moved once from ``pending`` by
the vote, the timeout or the resolve that decides it. ``approval_votes`` keeps every
approver's answer, one per approver and claim (so two approvals are two people). Nothing
existing changes: a claim without a row asked no approval.
"""

from __future__ import annotations

_TABLES = """
    CREATE TABLE approvals (
        claim_id {ref} PRIMARY KEY REFERENCES claims (id),
        requested_at {real} NOT NULL,
        due_at {real} NOT NULL,
        needed INTEGER NOT NULL,
        approvers TEXT NOT NULL,
        initiator TEXT NOT NULL DEFAULT '',
        on_timeout TEXT NOT NULL,
        state TEXT NOT NULL,
        decided_at {real},
        decided_by TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX approvals_pending ON approvals (due_at) WHERE state = 'pending';
    CREATE TABLE approval_votes (
        claim_id {ref} NOT NULL REFERENCES approvals (claim_id),
        by_whom TEXT NOT NULL,
        vote TEXT NOT NULL,
        source TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        at {real} NOT NULL,
        PRIMARY KEY (claim_id, by_whom)
    )
"""
SCRIPTS = {
    "sqlite": _TABLES.format(ref="INTEGER", real="REAL"),
    "postgres": _TABLES.format(ref="BIGINT", real="DOUBLE PRECISION"),
}
