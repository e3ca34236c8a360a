"""The archive's format (``audit/archive.py``): keys by stream, hour and row ids; bytes that
depend on the rows alone; one line per row whatever the body held; manifests that name and
check their object; and reading an archive back refusing what is not one."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from remediator.audit import archive
from remediator.audit.archive import Batch, Row
from remediator.core.errors import ConfigError
from remediator.core.model import AuditRecord, Outcome, Severity, Step, StopReason
from remediator.store.contract import JournalEntry

T0 = datetime(2026, 12, 2, 9, 59, 58, tzinfo=UTC)


def rows(*ids_and_seconds: tuple[int, float]) -> list[Row]:
    return [Row(i, T0 + timedelta(seconds=s), b'{"n": %d}' % i) for i, s in ids_and_seconds]


def test_an_object_s_key_names_its_stream_the_hour_of_its_first_row_and_its_row_ids() -> None:
    batch = Batch("decisions", rows((7, 0), (12, 1)))
    assert batch.key("team/remediator/") == (
        "team/remediator/decisions/2026/12/02/09/000000000007-000000000012.jsonl.gz"
    )
    assert batch.manifest_key("") == (
        "decisions/2026/12/02/09/000000000007-000000000012.manifest.json"
    )


def test_a_batch_holds_the_rows_of_one_utc_hour() -> None:
    found = rows((1, 0), (2, 1.9), (3, 2.1), (4, 3))  # 09:59:58, 09:59:59.9, 10:00:00.1
    assert [r.id for r in archive.one_hour(found)] == [1, 2]
    assert [r.id for r in archive.one_hour(found[2:])] == [3, 4]


def test_the_same_rows_make_the_same_bytes_so_a_retried_upload_is_the_same_object() -> None:
    first, again = Batch("journal", rows((1, 0), (2, 1))), Batch("journal", rows((1, 0), (2, 1)))
    assert first.body() == again.body()
    assert gzip.decompress(first.body()) == b'{"n": 1}\n{"n": 2}\n'
    assert first.manifest("p", first.body()) == again.manifest("p", again.body())


def test_a_manifest_names_its_object_rows_times_and_checksum() -> None:
    batch = Batch("journal", rows((1, 0), (2, 1)))
    body = batch.body()
    doc = json.loads(batch.manifest("p", body))
    assert doc == {
        "format": "remediator-archive/1", "stream": "journal", "object": batch.key("p"),
        "first_id": 1, "last_id": 2, "rows": 2, "first_at": "2026-12-02T09:59:58Z",
        "last_at": "2026-12-02T09:59:59Z", "bytes": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }  # fmt: skip


@pytest.mark.parametrize(
    "body",
    [
        b'{"version": "4", "alerts": []}',
        b'{\n  "version": "4",\r\n  "alerts": []\n}\n',  # pretty-printed by another sender
        '{"alerts": [], "note": "line\\nbreak \u2028 \u00e9 \U0001f525"}'.encode(),
    ],
)
def test_a_journal_entry_is_one_line_that_reads_back_as_the_body_it_was(body: bytes) -> None:
    row = archive.journal_row(JournalEntry(3, T0, body))
    assert b"\n" not in row.line and b"\r" not in row.line
    doc = json.loads(row.line)
    assert doc["received_at"] == "2026-12-02T09:59:58Z"
    assert doc["body"] == json.loads(body)


def test_a_decision_line_is_the_decisions_api_record() -> None:
    record = AuditRecord(
        T0, Step.REFUSED, Outcome.REFUSED, "Refused: \u202e odd text", id=41, episode_id=3,
        severity=Severity.SEV1, reason=StopReason.STORM, details={"big": 10**30},
    )  # fmt: skip
    doc = json.loads(archive.decision_row(record).line)
    assert (doc["id"], doc["episode"], doc["reason"], doc["severity"]) == (41, 3, "storm", "SEV-1")
    assert doc["sentence"] == "Refused: \u202e odd text" and doc["details"] == {"big": 10**30}


def write(directory: Path, batch: Batch) -> None:
    body = batch.body()
    for key, data in ((batch.key(""), body), (batch.manifest_key(""), batch.manifest("", body))):
        (directory / key).parent.mkdir(parents=True, exist_ok=True)
        (directory / key).write_bytes(data)


def test_an_archive_reads_back_in_row_order_each_row_once(tmp_path: Path) -> None:
    write(tmp_path, Batch("journal", rows((5, 0), (6, 1))))
    write(tmp_path, Batch("journal", rows((1, 0), (2, 1))))
    write(tmp_path, Batch("journal", rows((1, 0), (2, 1))))  # the same object again: one file
    write(tmp_path, Batch("decisions", rows((1, 0))))
    assert [line for _, line in archive.lines(tmp_path, "journal")] == [
        b'{"n": 1}', b'{"n": 2}', b'{"n": 5}', b'{"n": 6}'
    ]  # fmt: skip


def test_an_object_that_does_not_match_its_manifest_is_refused(tmp_path: Path) -> None:
    batch = Batch("journal", rows((1, 0)))
    write(tmp_path, batch)
    (tmp_path / batch.key("")).write_bytes(gzip.compress(b'{"n": 666}\n'))
    with pytest.raises(ConfigError, match="does not match its manifest's sha256"):
        list(archive.lines(tmp_path, "journal"))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "is not an archive manifest"),
        ("[1, 2]", "is not an archive manifest"),
        ('{"format": "other/9", "first_id": 1}', "is not a remediator-archive/1 manifest"),
        ('{"format": "remediator-archive/1", "first_id": "1"}', "is not a remediator-archive/1"),
    ],
)
def test_a_manifest_that_is_not_one_is_refused_naming_its_file(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "journal/2026/12/02/09/1-1.manifest.json"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(ConfigError, match=problem) as caught:
        list(archive.lines(tmp_path, "journal"))
    assert str(path) in str(caught.value)


def test_a_manifest_whose_object_is_missing_is_refused(tmp_path: Path) -> None:
    batch = Batch("journal", rows((1, 0)))
    write(tmp_path, batch)
    (tmp_path / batch.key("")).unlink()
    with pytest.raises(ConfigError, match="the object its manifest names cannot be read"):
        list(archive.lines(tmp_path, "journal"))
