"""The archive as ``remediator serve`` runs it, against a real S3 endpoint (moto in server
mode): a crash between an upload and its cursor write leaves no row archived twice; and
what the bucket holds is what ``remediator audit export`` writes, and replays as the
journal export does."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from remediator.audit import archive
from remediator.core.failpoints import EXIT_CODE
from tests.support import s3
from tests.support.process import RemediatorProcess, start_remediator
from tests.support.service import EXAMPLE_RULES, REPO, fixture_bytes

BUCKET = "remediator-archive"
PREFIX = "prod/remediator"
WAIT_S = 20.0


@pytest.fixture
async def moto() -> AsyncIterator[s3.MotoS3]:
    async with s3.MotoS3() as server:
        await s3.create_bucket(server.url, BUCKET)
        yield server


async def serve(workdir: Path, moto: s3.MotoS3, failpoints: str = "") -> RemediatorProcess:
    flags = ("--s3-bucket", BUCKET, "--s3-prefix", PREFIX, "--s3-endpoint-url", moto.url,
             "--s3-region", s3.REGION, "--archive-every-seconds", "0.2",
             "--archive-settle-seconds", "0", "--dry-run")  # fmt: skip
    return await start_remediator(
        workdir, rules=EXAMPLE_RULES, failpoints=failpoints, extra_args=flags,
        env=s3.env(moto.url),
    )  # fmt: skip


async def download(moto: s3.MotoS3, into: Path) -> None:
    """The bucket's prefix, as ``aws s3 sync s3://BUCKET/PREFIX DIR`` copies it."""
    for key in await s3.list_keys(moto.url, BUCKET, PREFIX + "/"):
        path = into / key.removeprefix(PREFIX + "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(await s3.get_object(moto.url, BUCKET, key))


def archived(directory: Path, stream: archive.Stream) -> list[dict[str, object]]:
    return [json.loads(line) for _, line in archive.lines(directory, stream)]


async def until_archived(service: RemediatorProcess, moto: s3.MotoS3, into: Path) -> None:
    """Until the bucket holds every decision the service has recorded (and they stay)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while loop.time() < deadline:
        await asyncio.sleep(0.5)
        ids = [d["id"] for d in await service.decisions()]
        await download(moto, into)
        shipped = (into / "decisions").exists() and archived(into, "decisions")
        if ids and shipped and [d["id"] for d in shipped] == ids:
            return
    raise AssertionError(f"the archive did not catch up:\n{service.log_tail()}")


async def remediator(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "remediator", *argv, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_a_crash_between_upload_and_cursor_write_archives_no_row_twice(
    tmp_path: Path, moto: s3.MotoS3
) -> None:
    service = await serve(tmp_path, moto, failpoints="after_archive_upload")
    assert await service.post(fixture_bytes("firing-2-alerts.json")) == 200
    assert await service.wait_exit(WAIT_S) == EXIT_CODE  # the first object is up
    first = await s3.list_keys(moto.url, BUCKET, PREFIX + "/")
    assert len(first) == 2 and first[0].startswith(f"{PREFIX}/journal/")  # object, manifest
    before = await s3.get_object(moto.url, BUCKET, first[0])
    service = await serve(tmp_path, moto)
    try:
        await until_archived(service, moto, tmp_path / "bucket")
    finally:
        await service.stop()
    journal = [k for k in await s3.list_keys(moto.url, BUCKET, PREFIX + "/journal/")]
    assert journal == first  # the same batch, uploaded again under its key
    assert await s3.get_object(moto.url, BUCKET, first[0]) == before
    rows = archived(tmp_path / "bucket", "decisions")
    assert len({r["id"] for r in rows}) == len(rows)


async def test_the_bucket_holds_what_audit_export_writes_and_replays_as_the_journal_does(
    tmp_path: Path, moto: s3.MotoS3
) -> None:
    service = await serve(tmp_path, moto)
    try:
        for name in ("firing-2-alerts.json", "truncated-10-of-many.json"):
            assert await service.post(fixture_bytes(name)) == 200
        await until_archived(service, moto, tmp_path / "bucket")
    finally:
        await service.stop()
    state = f"sqlite:///{tmp_path / 'state.db'}"
    await remediator("audit", "export", "--state", state, "--out", str(tmp_path / "export"))
    for stream in archive.STREAMS:
        assert archived(tmp_path / "export", stream) == archived(tmp_path / "bucket", stream)
    (tmp_path / "stream.jsonl").write_text(await remediator("journal", "export", "--state", state))
    replays = [
        await remediator("replay", str(tmp_path / source), "--rules", str(EXAMPLE_RULES))
        for source in ("bucket", "stream.jsonl")
    ]
    from_bucket, from_stream = (text.split("\n", 1) for text in replays)
    assert from_bucket[0].startswith("replayed 12 alerts in 2 bodies from ")
    assert from_bucket[1] == from_stream[1]
