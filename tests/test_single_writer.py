"""One SQLite file has one writer: a second store, or a second ``serve``, on a file another
process writes is refused, naming the file and the holder's pid; a lock left by a killed
process blocks no one; and reading the audit (``remediator decisions``) works beside a
running ``serve``."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from asyncio.subprocess import PIPE
from pathlib import Path

import aiohttp
import pytest

from remediator.store.contract import AuditQuery
from remediator.store.file_lock import FileInUse
from remediator.store.sqlite import SqliteStore
from tests.support.process import RemediatorProcess, start_remediator
from tests.support.service import REPO, fixture_bytes

#: How long a refused second ``serve`` may take to exit: no pool, no loop starts before.
REFUSED_WITHIN_S = 10.0


def in_use(path: Path, pid: int) -> str:
    return (
        f"remediator: the state file {path} is in use by another remediator (pid {pid}); "
        "one SQLite file has one writer: stop it, or use another --state"
    )


async def ready(service: RemediatorProcess) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{service.url}/readyz") as resp:
        return resp.status


# --- the store ---------------------------------------------------------------------------


async def test_a_second_store_on_one_file_is_refused_until_the_first_closes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    first, second = SqliteStore(path), SqliteStore(path)
    await first.open()
    try:
        with pytest.raises(FileInUse) as refused:
            await second.open()
        assert (refused.value.path, refused.value.pid) == (path, os.getpid())
        assert path.with_name("state.db.lock").read_text() == f"{os.getpid()}\n"
    finally:
        await first.close()
    await second.open()
    await second.close()


async def test_a_store_that_reads_only_opens_beside_a_writer_and_never_holds_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    writer = SqliteStore(path)
    await writer.open()
    beside = SqliteStore(path, reads_only=True)
    try:
        await beside.open()
        assert await beside.decisions(AuditQuery()) == []
    finally:
        await beside.close()
        await writer.close()
    alone = SqliteStore(path, reads_only=True)
    await alone.open()  # no writer: it migrates, under the lock, then lets it go
    try:
        writer = SqliteStore(path)
        await writer.open()
        await writer.close()
    finally:
        await alone.close()


#: A process that opens a store on ``argv[1]`` and keeps it open until it is killed.
HOLDER = """
import asyncio, sys
from pathlib import Path
from remediator.store.sqlite import SqliteStore
asyncio.run(SqliteStore(Path(sys.argv[1])).open())
print("open", flush=True)
sys.stdin.read()
"""


async def test_a_lock_left_by_a_killed_process_blocks_no_one(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, str(path), cwd=REPO, stdin=PIPE, stdout=PIPE
    )
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 20) == b"open\n"
        with pytest.raises(FileInUse) as refused:
            await SqliteStore(path).open()
        assert refused.value.pid == holder.pid
    finally:
        holder.kill()
        await holder.wait()
    assert path.with_name("state.db.lock").read_text() == f"{holder.pid}\n"  # stale, harmless
    store = SqliteStore(path)
    await store.open()
    await store.close()


# --- two serve processes -----------------------------------------------------------------


async def test_a_second_serve_on_one_file_exits_2_naming_it_and_the_first_keeps_serving(
    tmp_path: Path,
) -> None:
    path = tmp_path / "first" / "state.db"
    first = await start_remediator(tmp_path / "first")
    try:
        second = await start_remediator(
            tmp_path / "second", extra_args=("--state", f"sqlite:///{path}"), wait_ready=False
        )
        try:
            status = await second.wait_exit(REFUSED_WITHIN_S)
        finally:
            await second.stop()
        log = second.log_path.read_text()
        assert status == 2, log
        assert in_use(path, first.proc.pid) in log.splitlines()
        assert "Traceback" not in log
        assert await ready(first) == 200
        assert await first.post(fixture_bytes("firing-2-alerts.json")) == 200
    finally:
        assert await first.stop() == 0
    after = await start_remediator(tmp_path / "first")
    try:
        assert await ready(after) == 200
    finally:
        assert await after.stop() == 0


async def test_a_serve_killed_with_sigkill_leaves_a_lock_that_blocks_no_restart(
    tmp_path: Path,
) -> None:
    killed = await start_remediator(tmp_path)
    try:
        killed.proc.send_signal(signal.SIGKILL)
        assert await killed.wait_exit() == -signal.SIGKILL
    finally:
        await killed.stop()
    assert (tmp_path / "state.db.lock").read_text() == f"{killed.proc.pid}\n"
    restarted = await start_remediator(tmp_path)
    try:
        assert await ready(restarted) == 200
    finally:
        assert await restarted.stop() == 0


async def test_decisions_reads_the_file_while_serve_writes_it(tmp_path: Path) -> None:
    service = await start_remediator(tmp_path)
    try:
        assert await service.post(fixture_bytes("firing-2-alerts.json")) == 200
        command = (sys.executable, "-m", "remediator", "decisions",
                   "--state", f"sqlite:///{tmp_path / 'state.db'}")  # fmt: skip
        reading = await asyncio.create_subprocess_exec(*command, cwd=REPO, stdout=PIPE, stderr=PIPE)
        out, err = await asyncio.wait_for(reading.communicate(), 30)
        assert (reading.returncode, err) == (0, b"")
        assert b"received" in out
        assert await ready(service) == 200
    finally:
        assert await service.stop() == 0
