"""Version 6: the evidence queue.

``evidence_queue`` holds each evidence bundle (``evidence``) from its capture until the
object store has it: the outbox of the evidence, so a bundle captured while S3 is away, or
before a crash, is uploaded later rather than lost. Its key is the object's key, so a bundle
captured again after a crash replaces the queued one, and an upload retried after a crash
overwrites the same object. Nothing existing changes.
"""

from __future__ import annotations

_TABLE = """
    CREATE TABLE evidence_queue (
        key TEXT PRIMARY KEY,
        body {bytes} NOT NULL,
        queued_at {real} NOT NULL,
        due_at {real} NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX evidence_queue_due ON evidence_queue (due_at)
"""
SCRIPTS = {
    "sqlite": _TABLE.format(bytes="BLOB", real="REAL"),
    "postgres": _TABLE.format(bytes="BYTEA", real="DOUBLE PRECISION"),
}
