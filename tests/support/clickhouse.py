"""A real, throwaway ClickHouse server for tests, and real client queries to point at it.

The server is Debian's ``clickhouse-server`` (18.16 on bookworm), started on a free
``127.0.0.1`` HTTP port with a ``config.xml`` and a ``users.xml`` this module writes into a
fresh temporary directory (data, logs and temporary files all inside it; no TCP port, no
interserver port, nothing of ``/etc/clickhouse-server`` or ``/var/lib/clickhouse`` used).
It runs as whoever runs the tests, root included: ClickHouse does not refuse root.

Users (``USERS``): ``default`` (no password) is the harness's own, for looking and cleaning
up; ``remediator``, the one the remediator's DSN names; ``app`` and ``etl``, applications;
``system``, a user of that name, as a server's own work may run under (protected). Every
user's profile may kill others' queries (it is not ``readonly``), but ``readonly``'s.

Typical use::

    async with ClickHouseServer() as ch:
        query = ch.long_query("app")
        await query.started()
        ...  # the remediator reads system.processes and kills query.query_id
        assert await query.finished() == Outcome.CANCELLED

:meth:`ClickHouseServer.stop` kills what still runs and stops the server, even when the test
failed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import enum
import itertools
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

import aiohttp

from tests.support.lifecycle import StartStop
from tests.support.ports import free_port

SERVER = Path("/usr/sbin/clickhouse-server")
HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
WAIT_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.02
START_ATTEMPTS = 3

USERS = {
    "default": "",
    "remediator": "remediator-secret",
    "app": "app-secret",
    "etl": "etl-secret",
    "system": "system-secret",
    "readonly_remediator": "readonly-secret",
}
READONLY_USERS = frozenset({"readonly_remediator"})

CONFIG = """<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{dir}/server.log</log><errorlog>{dir}/error.log</errorlog>
    <console>0</console></logger>
  <http_port>{http_port}</http_port>
  <listen_host>{host}</listen_host>
  <path>{dir}/data/</path>
  <tmp_path>{dir}/tmp/</tmp_path>
  <user_files_path>{dir}/user_files/</user_files_path>
  <format_schema_path>{dir}/format_schemas/</format_schema_path>
  <users_config>{dir}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>5368709</mark_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  <mlock_executable>false</mlock_executable>
</yandex>
"""
USER = """    <{name}><password>{password}</password><networks><ip>{host}</ip></networks>
      <profile>{profile}</profile><quota>default</quota></{name}>
"""
USERS_XML = """<?xml version="1.0"?>
<yandex>
  <profiles>
    <default><max_memory_usage>1000000000</max_memory_usage></default>
    <readonly><readonly>1</readonly></readonly>
  </profiles>
  <users>
{users}  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
  </interval></default></quotas>
</yandex>
"""

#: A query that runs about ``seconds`` (a block of one row every half second, so a kill
#: lands within half a second), using no CPU: sleepEachRow between blocks.
LONG_SELECT = "SELECT count() FROM (SELECT sleepEachRow(0.5) FROM numbers({rows}))"
LONG_INSERT = "INSERT INTO default.sink SELECT toUInt8(sleepEachRow(0.5)) FROM numbers({rows})"
CANCELLED_CODE = 394
"""QUERY_WAS_CANCELLED: how a killed query ends for its client."""


class ClickHouseHarnessError(RuntimeError):
    """The test server or one of its queries did not do what the harness needed."""


class Outcome(enum.StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


@dataclasses.dataclass
class RunningQuery:
    """A client's query running in a task, under a query id of the harness's choosing."""

    server: ClickHouseServer
    query_id: str
    user: str
    sql: str
    task: asyncio.Task[tuple[Outcome, str]]

    async def started(self) -> None:
        """Wait until ``system.processes`` shows the query."""
        await self.server.wait_for(lambda ids: self.query_id in ids, f"{self.query_id} to start")

    async def finished(self, timeout_s: float = WAIT_TIMEOUT_S) -> Outcome:
        return (await asyncio.wait_for(asyncio.shield(self.task), timeout_s))[0]

    @property
    def outcome(self) -> Outcome:
        return self.task.result()[0] if self.task.done() else Outcome.RUNNING


class ClickHouseServer(StartStop):
    """One ``clickhouse-server`` in a temporary directory; see the module docstring."""

    def __init__(self) -> None:
        self.host = HOST
        self.port = 0
        self.dir: Path | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None
        self._queries: list[RunningQuery] = []
        self._ids = itertools.count(1)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def dsn(self, user: str = "remediator", port: int | None = None) -> str:
        password = quote(USERS[user], safe="")
        where = f"{self.host}:{port or self.port}"
        return f"clickhouse+http://{quote(user, safe='')}:{password}@{where}"

    @property
    def log_path(self) -> Path:
        assert self.dir is not None
        return self.dir / "error.log"

    async def start(self) -> str:
        if not SERVER.exists():
            raise ClickHouseHarnessError(f"{SERVER} is missing: run scripts/install-system-deps")
        self._session = aiohttp.ClientSession()
        for attempt in range(START_ATTEMPTS):
            try:
                await self._start_once()
                return self.url
            except ClickHouseHarnessError:
                await self._stop_process()
                if attempt == START_ATTEMPTS - 1:
                    await self.stop()
                    raise
        raise AssertionError("unreachable")

    async def _start_once(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="clickhouse-test-"))
        self.port = free_port()
        (self.dir / "config.xml").write_text(
            CONFIG.format(dir=self.dir, http_port=self.port, host=self.host)
        )
        users = "".join(
            USER.format(
                name=name,
                password=escape(password),
                host=self.host,
                profile="readonly" if name in READONLY_USERS else "default",
            )
            for name, password in USERS.items()
        )
        (self.dir / "users.xml").write_text(USERS_XML.format(users=users))
        with (self.dir / "stderr.log").open("wb") as stderr:
            self._proc = await asyncio.create_subprocess_exec(
                str(SERVER),
                f"--config-file={self.dir / 'config.xml'}",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd=self.dir,
                start_new_session=True,
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        while loop.time() < deadline:
            if self._proc.returncode is not None:
                raise ClickHouseHarnessError(f"clickhouse-server exited: {self._errors()}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                assert self._session is not None
                async with self._session.get(f"{self.url}ping") as response:
                    if response.status == 200:
                        await self.execute("CREATE TABLE default.sink (x UInt8) ENGINE = Memory")
                        return
            await asyncio.sleep(0.05)
        raise ClickHouseHarnessError(f"clickhouse-server did not answer: {self._errors()}")

    def _errors(self) -> str:
        assert self.dir is not None
        texts = [
            (self.dir / name).read_text(errors="replace")[-2000:]
            for name in ("stderr.log", "error.log")
            if (self.dir / name).exists()
        ]
        return " | ".join(texts)

    async def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(aiohttp.ClientError, OSError, ClickHouseHarnessError):
                await self.execute("KILL QUERY WHERE user != 'default' SYNC")
        for query in self._queries:
            if not query.task.done():
                query.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await query.task
        await self._stop_process()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    async def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            # SIGKILL: its data is thrown away, and 18.16 takes 10 s to stop on SIGTERM.
            proc.kill()
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)

    # ---------------------------------------------------------------------------- queries

    async def _post(self, sql: str, user: str = "default", **settings: str) -> tuple[int, str]:
        assert self._session is not None, "the server is not started"
        credentials = base64.b64encode(f"{user}:{USERS[user]}".encode()).decode()
        headers = {"Authorization": f"Basic {credentials}"}
        async with self._session.post(
            self.url, params=settings, data=sql.encode(), headers=headers
        ) as response:
            return response.status, await response.text(errors="replace")

    async def execute(self, sql: str, user: str = "default", **settings: str) -> str:
        """Run ``sql`` as ``user``; its answer's text, or ``ClickHouseHarnessError``."""
        status, text = await self._post(sql, user, **settings)
        if status != 200:
            raise ClickHouseHarnessError(f"{sql[:80]!r} as {user}: {status} {text[:300]}")
        return text

    def query(self, sql: str, user: str = "app", query_id: str | None = None) -> RunningQuery:
        """Start ``sql`` as ``user`` in a task, one row per block (so it can be killed
        between rows); ``query_id`` defaults to a fresh ``test-N``."""
        chosen = query_id or f"test-{next(self._ids)}"

        async def run() -> tuple[Outcome, str]:
            status, text = await self._post(sql, user, query_id=chosen, max_block_size="1")
            if status == 200:
                return Outcome.COMPLETED, text
            if f"Code: {CANCELLED_CODE}" in text:
                return Outcome.CANCELLED, text
            return Outcome.FAILED, text

        running = RunningQuery(self, chosen, user, sql, asyncio.create_task(run()))
        self._queries.append(running)
        return running

    def long_query(
        self, user: str = "app", seconds: float = 60, query_id: str | None = None
    ) -> RunningQuery:
        return self.query(LONG_SELECT.format(rows=int(seconds * 2)), user, query_id)

    def long_insert(self, user: str = "etl", seconds: float = 60) -> RunningQuery:
        return self.query(LONG_INSERT.format(rows=int(seconds * 2)), user)

    async def running_ids(self) -> set[str]:
        text = await self.execute("SELECT query_id FROM system.processes FORMAT TSV")
        return set(text.split("\n")) - {""}

    async def wait_for(self, done: Any, what: str, timeout_s: float = WAIT_TIMEOUT_S) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not done(await self.running_ids()):
            if loop.time() > deadline:
                raise ClickHouseHarnessError(f"timed out waiting for {what}")
            await asyncio.sleep(POLL_INTERVAL_S)

    async def version(self) -> str:
        return (await self.execute("SELECT version()")).strip()
