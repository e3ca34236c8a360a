"""The archive's format: what the robot saw (the journal's webhook bodies) and what it
decided (the audit records), as gzipped JSON lines, one object per batch, each with a
manifest. Pure: ``shipper`` uploads these objects, ``remediator audit export`` writes them to
a directory, ``remediator replay`` reads them back.

Layout under the prefix, a batch never spanning two UTC hours (the hour of its rows)::

    <prefix>/journal/2026/12/02/09/000000000101-000000000180.jsonl.gz
    <prefix>/journal/2026/12/02/09/000000000101-000000000180.manifest.json
    <prefix>/decisions/2026/12/02/09/000000004001-000000009000.jsonl.gz
    …

A journal line is what ``remediator journal export`` writes (``{"received_at", "body"}``,
the body as received); a decision line is the decisions API's record. The key is the rows'
ids, and the bytes depend on the rows alone (gzip without a time stamp): a batch uploaded
twice is the same object twice. The manifest names the object, its row ids, times and count,
and its SHA-256, which ``read`` checks.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from remediator.audit.api import record_json
from remediator.core.errors import ConfigError
from remediator.core.model import AuditRecord
from remediator.store.contract import JournalEntry

FORMAT = "remediator-archive/1"
Stream = Literal["journal", "decisions"]
STREAMS: tuple[Stream, ...] = ("journal", "decisions")
OBJECT_TYPE = "application/x-ndjson"
MANIFEST_TYPE = "application/json"
ID_DIGITS = 12


@dataclass(frozen=True, slots=True)
class Row:
    """One archived row: its id, its time, and its JSON line (without the newline)."""

    id: int
    at: datetime
    line: bytes


@dataclass(frozen=True, slots=True)
class Batch:
    stream: Stream
    rows: Sequence[Row]

    @property
    def first_id(self) -> int:
        return self.rows[0].id

    @property
    def last_id(self) -> int:
        return self.rows[-1].id

    def key(self, prefix: str) -> str:
        return f"{self._stem(prefix)}.jsonl.gz"

    def manifest_key(self, prefix: str) -> str:
        return f"{self._stem(prefix)}.manifest.json"

    def _stem(self, prefix: str) -> str:
        hour = self.rows[0].at.astimezone(UTC).strftime("%Y/%m/%d/%H")
        ids = f"{self.first_id:0{ID_DIGITS}d}-{self.last_id:0{ID_DIGITS}d}"
        return "/".join(part for part in (prefix.strip("/"), self.stream, hour, ids) if part)

    def body(self) -> bytes:
        return gzip.compress(b"".join(row.line + b"\n" for row in self.rows), mtime=0)

    def manifest(self, prefix: str, body: bytes) -> bytes:
        doc = {
            "format": FORMAT,
            "stream": self.stream,
            "object": self.key(prefix),
            "first_id": self.first_id,
            "last_id": self.last_id,
            "rows": len(self.rows),
            "first_at": _stamp(self.rows[0].at),
            "last_at": _stamp(self.rows[-1].at),
            "bytes": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
        }
        return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def journal_row(entry: JournalEntry) -> Row:
    """``entry`` as ``journal export`` writes it: the body as it was received (UTF-8
    JSON, checked when it was accepted) on one line. A line break in JSON can only be
    whitespace between tokens (a string holds it escaped), so it becomes a space."""
    at = json.dumps(_stamp(entry.received_at)).encode()
    body = entry.body.strip().replace(b"\r", b" ").replace(b"\n", b" ")
    return Row(entry.id, entry.received_at, b'{"received_at": ' + at + b', "body": ' + body + b"}")


def decision_row(record: AuditRecord) -> Row:
    assert record.id is not None, "an archived record was read from the store"
    line = json.dumps(record_json(record), sort_keys=True, default=str).encode()
    return Row(record.id, record.at, line)


def one_hour(rows: Sequence[Row]) -> Sequence[Row]:
    """The leading rows that share the first one's UTC hour: one batch's rows."""
    hour = _hour(rows[0].at)
    for i, row in enumerate(rows):
        if _hour(row.at) != hour:
            return rows[:i]
    return rows


def _hour(at: datetime) -> tuple[int, int, int, int]:
    at = at.astimezone(UTC)
    return at.year, at.month, at.day, at.hour


# ----- reading an archive back (a directory: an export, or a copy of the bucket's prefix)


def manifests(directory: Path, stream: Stream) -> list[dict[str, Any]]:
    """The manifests of ``stream`` under ``directory``, by first row id; ``ConfigError``
    naming a manifest that is not one."""
    found = []
    for path in sorted((directory / stream).rglob("*.manifest.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            ok = doc.get("format") == FORMAT and isinstance(doc.get("first_id"), int)
        except (OSError, ValueError, AttributeError) as exc:
            raise ConfigError(f"{path}: is not an archive manifest ({exc}).") from None
        if not ok:
            raise ConfigError(f"{path}: is not a {FORMAT} manifest.")
        found.append({**doc, "path": path})
    return sorted(found, key=lambda doc: int(doc["first_id"]))


def lines(directory: Path, stream: Stream) -> Iterator[tuple[Path, bytes]]:
    """Every line of ``stream``'s objects under ``directory``, in row order, each object
    checked against its manifest (its SHA-256), and each row only once (the objects of two
    replicas' uploads, or of an export beside a bucket copy, may overlap)."""
    done_to = 0
    for doc in manifests(directory, stream):
        path = doc["path"].with_name(doc["path"].name.replace(".manifest.json", ".jsonl.gz"))
        try:
            body = path.read_bytes()
        except OSError as exc:
            why = f"the object its manifest names cannot be read ({exc})"
            raise ConfigError(f"{path}: {why}.") from None
        if hashlib.sha256(body).hexdigest() != doc.get("sha256"):
            raise ConfigError(f"{path}: does not match its manifest's sha256.")
        first = int(doc["first_id"])
        if first <= done_to:
            continue  # the same rows again
        for line in gzip.decompress(body).splitlines():
            yield path, line
        done_to = int(doc["last_id"])
