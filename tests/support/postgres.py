"""A real, throwaway PostgreSQL server for tests, and real client sessions to point at it.

The server is Debian's ``postgresql`` binaries (the newest ``/usr/lib/postgresql/*/bin``),
initialised into a fresh temporary directory, listening on ``127.0.0.1`` at a free port and
on a Unix socket inside that directory. PostgreSQL refuses to run as root, so when the tests
run as root every server program (``initdb``, ``pg_ctl`` and through it ``postgres``) is
started as the unprivileged ``postgres`` system user (``nobody`` when there is none), with the
temporary directory owned by that user; client programs (``pg_receivewal``) stay ours.

Authentication: ``trust`` on the Unix socket (the superuser uses it; the socket directory is
private to the server user and root), ``scram-sha-256`` on 127.0.0.1 for password roles, and
replication connections from 127.0.0.1 for the replication role.

Typical use::

    async with PostgresServer() as pg:
        roles = await pg.create_roles()
        query = await pg.long_query("app", roles.app.password, "appdb", seconds=30)
        await query.started()
        ...  # the remediator looks at pg_stat_activity and signals query.pid
        assert await query.finished() == Outcome.CANCELLED

Everything a server opened (sessions, ``pg_receivewal`` processes) is closed by
:meth:`PostgresServer.stop`, which the context manager calls even when the test failed.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import datetime as dt
import enum
import itertools
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import quote

import asyncpg

from tests.support.lifecycle import StartStop
from tests.support.ports import free_port

T = TypeVar("T")

POSTGRES_ROOT = Path("/usr/lib/postgresql")
SUPERUSER = "postgres"
HOST = "127.0.0.1"

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 10.0
WAIT_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 5.0
POLL_INTERVAL_S = 0.02
START_ATTEMPTS = 3

SHM_DIR = Path("/dev/shm")
SHM_MIN_FREE_BYTES = 1 << 30

SERVER_LOG = "server.log"
ADMIN_APPLICATION_NAME = "pg-harness-admin"

APP_ROLE = "app"
APP_DATABASE = "appdb"
REMEDIATOR_ROLE = "remediator"
REPLICATION_ROLE = "replicator"

_ACTIVITY_SQL = """
SELECT pid, usename, datname, application_name, state, backend_type,
       backend_start, query_start, state_change, wait_event_type, wait_event, query
FROM pg_stat_activity WHERE pid = $1
"""


class PostgresHarnessError(RuntimeError):
    """The test server or one of its sessions did not do what the harness needed."""


class Outcome(enum.StrEnum):
    """How a session's query (or the session itself) ended."""

    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    """The query failed with ``QueryCanceledError`` (pg_cancel_backend, a cancel request)."""
    TERMINATED = "terminated"
    """The backend went away: ``AdminShutdownError`` (pg_terminate_backend) or a lost
    connection."""
    CLOSED = "closed"
    """The harness closed the session itself."""
    FAILED = "failed"
    """Any other error; see the session's ``error``."""


def classify(error: BaseException) -> Outcome:
    """Map the error a running query ended with to an :class:`Outcome`."""
    if isinstance(error, asyncpg.QueryCanceledError):
        return Outcome.CANCELLED
    # pg_terminate_backend mid-query reaches asyncpg as ConnectionDoesNotExistError (a
    # PostgresConnectionError) carrying "terminating connection due to administrator command";
    # AdminShutdownError (57P01) is what it would raise if it read the FATAL first.
    if isinstance(error, asyncpg.AdminShutdownError | asyncpg.PostgresConnectionError | OSError):
        return Outcome.TERMINATED
    return Outcome.FAILED


@dataclasses.dataclass(frozen=True)
class Role:
    name: str
    password: str


@dataclasses.dataclass(frozen=True)
class Roles:
    """The roles a remediator test needs (see :meth:`PostgresServer.create_roles`)."""

    app: Role
    """Password login, owner of :attr:`app_database`."""
    remediator: Role
    """Member of ``pg_signal_backend`` and ``pg_read_all_stats``; not a superuser."""
    replicator: Role
    """``REPLICATION LOGIN``; allowed to stream WAL from 127.0.0.1."""
    app_database: str = APP_DATABASE


# --------------------------------------------------------------------------- locating things


def find_bindir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has ``initdb`` and ``pg_ctl``."""

    def version(bindir: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name))

    candidates = [
        p.parent for p in POSTGRES_ROOT.glob("*/bin/initdb") if (p.parent / "pg_ctl").exists()
    ]
    if not candidates:
        raise PostgresHarnessError(
            f"no PostgreSQL server binaries under {POSTGRES_ROOT}/*/bin"
            " (run scripts/install-system-deps)"
        )
    return max(candidates, key=version)


@dataclasses.dataclass(frozen=True)
class _ServerUser:
    """Who server programs run as: ``None`` ids mean "as ourselves" (we are not root)."""

    name: str
    uid: int | None
    gid: int | None

    @classmethod
    def pick(cls) -> _ServerUser:
        if os.geteuid() != 0:
            return cls(pwd.getpwuid(os.geteuid()).pw_name, None, None)
        for name in ("postgres", "nobody"):
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            return cls(name, entry.pw_uid, entry.pw_gid)
        raise PostgresHarnessError(
            "running as root, and there is neither a 'postgres' nor a 'nobody' user"
            " to run PostgreSQL as"
        )

    def popen_kwargs(self) -> dict[str, Any]:
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def can_traverse(self, directory: Path) -> bool:
        """Whether this user may reach ``directory`` through every ancestor (``o+x``)."""
        if self.uid is None:
            return True
        for part in (directory, *directory.parents):
            mode = part.stat().st_mode
            if not mode & stat.S_IXOTH and part.stat().st_uid != self.uid:
                return False
        return True

    def chown(self, path: Path) -> None:
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)


def _roomy_tmpfs() -> list[Path]:
    """``/dev/shm`` when it is a big tmpfs: a data directory (~40 MB) is written and copied
    there many times faster than on a slow disk. Docker's default 64 MB is not big enough."""
    try:
        fs = os.statvfs(SHM_DIR)
    except OSError:
        return []
    return [SHM_DIR] if fs.f_bavail * fs.f_frsize >= SHM_MIN_FREE_BYTES else []


def _make_base_dir(user: _ServerUser) -> Path:
    """A private temporary directory the server user owns, short enough for a socket path:
    on a roomy ``/dev/shm``, else in the temporary directory, else in ``/tmp``."""
    for parent in (*_roomy_tmpfs(), Path(tempfile.gettempdir()), Path("/tmp")):
        try:
            usable = (
                parent.is_dir()
                and os.access(parent, os.W_OK | os.X_OK)
                and user.can_traverse(parent)
                and len(str(parent)) < 60
            )
        except OSError:
            continue
        if usable:
            base = Path(tempfile.mkdtemp(prefix="pg-harness-", dir=parent))
            user.chown(base)
            return base
    raise PostgresHarnessError("no temporary directory the PostgreSQL user can reach")


def _clean_env(**extra: str) -> dict[str, str]:
    """Our environment minus ``PG*`` variables that would redirect the programs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env.update(extra)
    return env


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


async def _poll(
    check: Callable[[], Awaitable[T | None]],
    *,
    timeout_s: float,
    what: str,
    detail: Callable[[], str] = lambda: "",
) -> T:
    """Call ``check`` until it returns something other than ``None``; raise after a timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = await check()
        if result is not None:
            return result
        if loop.time() >= deadline:
            raise PostgresHarnessError(f"timed out after {timeout_s}s waiting for {what}{detail()}")
        await asyncio.sleep(POLL_INTERVAL_S)


async def _close_connection(conn: Any) -> None:
    """Close an asyncpg connection gracefully, or abort it when that does not work quickly."""
    if conn.is_closed():
        conn.terminate()  # releases the transport if the server hung up on us
        return
    try:
        await conn.close(timeout=CLOSE_TIMEOUT_S)
    except (Exception, asyncio.CancelledError):
        conn.terminate()
        raise


# Servers still running when the interpreter exits (a test run interrupted between start and
# stop): stopped with ``pg_ctl -m immediate`` so no postmaster outlives pytest.
_RUNNING: dict[int, PostgresServer] = {}

# One initdb per process and (binaries, server user): each server starts from a copy
# (~0.08 s on tmpfs against ~0.4 s for initdb). Removed at exit.
_TEMPLATES: dict[tuple[Path, int | None], Path] = {}


@atexit.register
def _stop_leftover_servers() -> None:
    for server in list(_RUNNING.values()):
        server._stop_sync()
    for template in _TEMPLATES.values():
        shutil.rmtree(template.parent, ignore_errors=True)
    _TEMPLATES.clear()


# --------------------------------------------------------------------------- the server


class PostgresServer(StartStop):
    """A PostgreSQL server in a temporary directory; an async context manager."""

    def __init__(
        self,
        *,
        max_connections: int = 50,
        max_wal_senders: int = 8,
        extra_settings: Mapping[str, str] | None = None,
        use_template: bool = True,
    ) -> None:
        """``use_template=False`` runs initdb for this server instead of copying the
        process-wide initdb output."""
        self.bindir = find_bindir()
        self.host = HOST
        self.port = 0
        self.superuser = SUPERUSER
        self.max_connections = max_connections
        self.max_wal_senders = max_wal_senders
        self.extra_settings = dict(extra_settings or {})
        self.use_template = use_template
        self._user = _ServerUser.pick()
        self._base: Path | None = None
        self._admin: Any = None  # asyncpg.Connection as the superuser
        self._admin_lock = asyncio.Lock()
        self._sessions: list[_Closable] = []
        self._names = itertools.count(1)

    # ----- paths

    @property
    def base_dir(self) -> Path:
        if self._base is None:
            raise PostgresHarnessError("the server has not been started")
        return self._base

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "sock"

    @property
    def log_path(self) -> Path:
        return self.base_dir / SERVER_LOG

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    def _log_detail(self) -> str:
        return f"\n--- {self.log_path} (tail) ---\n{self.log_tail()}" if self._base else ""

    def dsn(
        self, user: str, password: str, database: str = "postgres", *, port: int | None = None
    ) -> str:
        """A TCP DSN for a password role (what the remediator is configured with); through
        ``port`` (a proxy's, on this host) when given."""
        return (
            f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}"
            f"@{self.host}:{port or self.port}/{quote(database, safe='')}"
        )

    async def create_state_database(self, *, port: int | None = None) -> str:
        """Role ``state`` and a database ``state`` it owns, for remediator's state store, as
        a non-superuser; their DSN (through ``port`` when given)."""
        await self.execute("CREATE ROLE state LOGIN PASSWORD 'state-secret'")
        await self.execute("CREATE DATABASE state OWNER state")
        return self.dsn("state", "state-secret", "state", port=port)

    # ----- lifecycle

    async def start(self) -> None:
        """initdb (or copy this process's initdb output), configure, ``pg_ctl start -w`` and
        connect as the superuser."""
        if self._base is not None:
            raise PostgresHarnessError("the server was already started")
        self._base = _make_base_dir(self._user)
        _RUNNING[id(self)] = self
        try:
            self.socket_dir.mkdir(mode=0o700)
            self._user.chown(self.socket_dir)
            if self.use_template:
                template = await self._template_data_dir()
                await asyncio.to_thread(self._copy_template, template)
            else:
                await self._initdb(self.data_dir)
            self._write_hba()
            for attempt in range(START_ATTEMPTS):
                self.port = free_port()
                self._write_settings()
                try:
                    await self._run_as_server_user(
                        "pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_path),
                        "-w", "-t", str(int(START_TIMEOUT_S)), "-s",
                        timeout_s=START_TIMEOUT_S + 5,
                    )  # fmt: skip
                    break
                except PostgresHarnessError:
                    # Another process may have taken the port between free_port() and bind().
                    if attempt + 1 < START_ATTEMPTS and "could not bind" in self.log_tail():
                        await self._pg_ctl_stop("immediate")
                        continue
                    raise
            self._admin = await self.superuser_connect(application_name=ADMIN_APPLICATION_NAME)
        except BaseException:
            await self.stop()
            raise

    async def _initdb(self, data_dir: Path) -> None:
        await self._run_as_server_user(
            "initdb",
            "-D", str(data_dir),
            "-U", self.superuser,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
            timeout_s=START_TIMEOUT_S,
        )  # fmt: skip

    async def _template_data_dir(self) -> Path:
        """This process's pristine initdb output for our binaries and user, made once."""
        key = (self.bindir, self._user.uid)
        cached = _TEMPLATES.get(key)
        if cached is not None:
            if (cached / "PG_VERSION").exists():
                return cached
            del _TEMPLATES[key]  # someone cleaned the temporary directory under us
        holder = _make_base_dir(self._user)
        try:
            await self._initdb(holder / "data")
        except BaseException:
            shutil.rmtree(holder, ignore_errors=True)
            raise
        template = _TEMPLATES.setdefault(key, holder / "data")
        if template != holder / "data":  # another server made one meanwhile
            shutil.rmtree(holder, ignore_errors=True)
        return template

    def _copy_template(self, template: Path) -> None:
        shutil.copytree(template, self.data_dir, symlinks=True)
        for root, dirs, files in os.walk(self.data_dir):
            for name in (root, *(os.path.join(root, n) for n in (*dirs, *files))):
                self._user.chown(Path(name))

    async def stop(self) -> None:
        """Close every session, stop the server (fast shutdown) and remove its directory.

        Idempotent, and safe after a failed start."""
        if self._base is None:
            return
        try:
            for session in reversed(list(self._sessions)):
                with contextlib.suppress(Exception):
                    await session.close()
            self._sessions.clear()
            if self._admin is not None:
                admin, self._admin = self._admin, None
                with contextlib.suppress(Exception):
                    await _close_connection(admin)
            if self.data_dir.exists():
                await self._shutdown()
        finally:
            _RUNNING.pop(id(self), None)
            base, self._base = self._base, None
            await asyncio.to_thread(shutil.rmtree, base, True)

    async def crash(self) -> None:
        """Stop the server as a crash would (``pg_ctl stop -m immediate``: no checkpoint,
        every connection dropped), keeping its data directory and port for :meth:`restart`."""
        if self._admin is not None:
            admin, self._admin = self._admin, None
            admin.terminate()
        await self._pg_ctl_stop("immediate")

    async def restart(self) -> None:
        """Start the server again on the same data directory and port (crash recovery runs
        first) and reconnect as the superuser."""
        await self._run_as_server_user(
            "pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_path),
            "-w", "-t", str(int(START_TIMEOUT_S)), "-s",
            timeout_s=START_TIMEOUT_S + 5,
        )  # fmt: skip
        self._admin = await self.superuser_connect(application_name=ADMIN_APPLICATION_NAME)

    async def _shutdown(self) -> None:
        for mode in ("fast", "immediate"):
            with contextlib.suppress(PostgresHarnessError):
                await self._pg_ctl_stop(mode)
                return
        self._kill_postmaster()

    async def _pg_ctl_stop(self, mode: str) -> None:
        if not (self.data_dir / "postmaster.pid").exists():
            return
        await self._run_as_server_user(
            "pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode,
            "-w", "-t", str(int(STOP_TIMEOUT_S)), "-s",
            timeout_s=STOP_TIMEOUT_S + 5,
        )  # fmt: skip

    @property
    def postmaster_pid(self) -> int | None:
        """The postmaster's pid from ``postmaster.pid``, or ``None`` when there is none."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError, PostgresHarnessError):
            return None

    def _kill_postmaster(self) -> None:
        """SIGKILL the postmaster, if the pid in ``postmaster.pid`` still is our postgres
        (never a process that reused a stale pid)."""
        pid = self.postmaster_pid
        if pid is None:
            return
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/exe").resolve() == (self.bindir / "postgres").resolve():
                os.kill(pid, signal.SIGKILL)

    def _stop_sync(self) -> None:
        """Last-resort stop from ``atexit``: no event loop, no sessions, just the server."""
        base = self._base
        if base is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            try:
                subprocess.run(
                    [str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data_dir),
                     "-m", "immediate", "-w", "-t", "5", "-s"],
                    cwd=base, env=_clean_env(), timeout=10, check=True,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    **self._user.popen_kwargs(),
                )  # fmt: skip
            except (OSError, subprocess.SubprocessError):
                self._kill_postmaster()
        self._base = None
        _RUNNING.pop(id(self), None)
        shutil.rmtree(base, ignore_errors=True)

    async def _run_as_server_user(self, program: str, *args: str, timeout_s: float) -> str:
        """Run a server program to completion as the server user; raise with its output and
        the server log tail when it fails or overruns."""
        out_path = self.base_dir / f"{program}-{next(self._names)}.out"
        with out_path.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                str(self.bindir / program), *args,
                cwd=self.base_dir, env=_clean_env(),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                **self._user.popen_kwargs(),
            )  # fmt: skip
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except BaseException as exc:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            if not isinstance(exc, TimeoutError):
                raise
            raise PostgresHarnessError(
                f"{program} {' '.join(args)} did not finish within {timeout_s}s:\n"
                f"{_tail(out_path)}{self._log_detail()}"
            ) from None
        output = _tail(out_path)
        if proc.returncode != 0:
            raise PostgresHarnessError(
                f"{program} {' '.join(args)} exited {proc.returncode}:\n"
                f"{output}{self._log_detail()}"
            )
        return output

    def _write_settings(self) -> None:
        settings = {
            "listen_addresses": f"'{self.host}'",
            "port": str(self.port),
            "unix_socket_directories": _quote_literal(str(self.socket_dir)),
            "unix_socket_permissions": "0700",
            "max_connections": str(self.max_connections),
            "wal_level": "replica",
            "max_wal_senders": str(self.max_wal_senders),
            "max_replication_slots": str(self.max_wal_senders),
            "password_encryption": "'scram-sha-256'",
            "shared_buffers": "'16MB'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "autovacuum": "off",
            "jit": "off",
            "log_line_prefix": "'%m [%p] %q%u@%d/%a '",
            "log_connections": "on",
            "log_disconnections": "on",
            **self.extra_settings,
        }
        # postgresql.auto.conf is read last and rewritten whole, so a retry on another port
        # simply replaces it.
        path = self.data_dir / "postgresql.auto.conf"
        path.write_text(
            "# written by tests/support/postgres.py\n"
            + "".join(f"{key} = {value}\n" for key, value in settings.items())
        )
        self._user.chown(path)

    def _write_hba(self) -> None:
        path = self.data_dir / "pg_hba.conf"
        path.write_text(
            "# written by tests/support/postgres.py\n"
            "# TYPE  DATABASE     USER              ADDRESS        METHOD\n"
            "local   all          all                              trust\n"
            "local   replication  all                              trust\n"
            f"host    replication  {REPLICATION_ROLE:<17} 127.0.0.1/32   scram-sha-256\n"
            "host    all          all               127.0.0.1/32   scram-sha-256\n"
        )
        self._user.chown(path)

    # ----- superuser access

    async def superuser_connect(
        self, database: str = "postgres", *, application_name: str = "pg-harness"
    ) -> Any:
        """A new asyncpg connection as the superuser over the Unix socket (the caller closes
        it)."""
        return await asyncpg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=self.superuser,
            database=database,
            timeout=CONNECT_TIMEOUT_S,
            server_settings={"application_name": application_name},
        )

    async def _admin_call(self, method: str, sql: str, *args: Any) -> Any:
        if self._admin is None:
            raise PostgresHarnessError("the server is not running")
        async with self._admin_lock:
            return await getattr(self._admin, method)(sql, *args, timeout=COMMAND_TIMEOUT_S)

    async def execute(self, sql: str, *args: Any) -> str:
        """Run ``sql`` as the superuser; returns the command status."""
        status: str = await self._admin_call("execute", sql, *args)
        return status

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        rows = await self._admin_call("fetch", sql, *args)
        return [dict(row) for row in rows]

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        row = await self._admin_call("fetchrow", sql, *args)
        return None if row is None else dict(row)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._admin_call("fetchval", sql, *args)

    async def activity(self, pid: int) -> dict[str, Any] | None:
        """The ``pg_stat_activity`` row of ``pid`` as the superuser sees it, or ``None``."""
        return await self.fetchrow(_ACTIVITY_SQL, pid)

    async def wait_for_activity(
        self,
        pid: int,
        predicate: Callable[[dict[str, Any]], bool],
        *,
        what: str,
        timeout_s: float = WAIT_TIMEOUT_S,
    ) -> dict[str, Any]:
        """Poll ``pg_stat_activity`` until the row of ``pid`` satisfies ``predicate``."""
        last: list[dict[str, Any] | None] = [None]

        async def check() -> dict[str, Any] | None:
            row = last[0] = await self.activity(pid)
            return row if row is not None and predicate(row) else None

        return await _poll(
            check,
            timeout_s=timeout_s,
            what=f"pid {pid}: {what}",
            detail=lambda: f"; last pg_stat_activity row: {last[0]}{self._log_detail()}",
        )

    async def wait_gone(self, pid: int, *, timeout_s: float = WAIT_TIMEOUT_S) -> None:
        """Poll until ``pid`` is no longer in ``pg_stat_activity``."""

        async def check() -> bool | None:
            return True if await self.activity(pid) is None else None

        await _poll(check, timeout_s=timeout_s, what=f"pid {pid} to leave pg_stat_activity")

    # ----- roles

    async def create_role(self, name: str, password: str, options: str = "LOGIN") -> Role:
        await self.execute(
            f"CREATE ROLE {_quote_ident(name)} {options} PASSWORD {_quote_literal(password)}"
        )
        return Role(name, password)

    async def create_app_role(
        self, name: str = APP_ROLE, password: str = "app-secret", database: str = APP_DATABASE
    ) -> Role:
        """A password login role that owns ``database``."""
        role = await self.create_role(name, password, "LOGIN NOSUPERUSER")
        await self.execute(f"CREATE DATABASE {_quote_ident(database)} OWNER {_quote_ident(name)}")
        return role

    async def create_remediator_role(
        self, name: str = REMEDIATOR_ROLE, password: str = "remediator-secret"
    ) -> Role:
        """A non-superuser login role in ``pg_signal_backend`` and ``pg_read_all_stats``."""
        role = await self.create_role(name, password, "LOGIN NOSUPERUSER NOCREATEROLE")
        await self.execute(f"GRANT pg_signal_backend, pg_read_all_stats TO {_quote_ident(name)}")
        return role

    async def create_replication_role(
        self, name: str = REPLICATION_ROLE, password: str = "replicator-secret"
    ) -> Role:
        """A ``REPLICATION LOGIN`` role (pg_hba.conf lets ``replicator`` replicate)."""
        return await self.create_role(name, password, "LOGIN REPLICATION NOSUPERUSER")

    async def create_roles(self) -> Roles:
        """``app`` (owning ``appdb``), ``remediator`` and ``replicator``."""
        return Roles(
            app=await self.create_app_role(),
            remediator=await self.create_remediator_role(),
            replicator=await self.create_replication_role(),
        )

    async def connect(
        self, user: str, password: str, database: str = "postgres", **kwargs: Any
    ) -> Any:
        """A new asyncpg connection as a password role over TCP (the caller closes it)."""
        return await asyncpg.connect(
            self.dsn(user, password, database), timeout=CONNECT_TIMEOUT_S, **kwargs
        )

    # ----- sessions

    def _app_name(self, kind: str) -> str:
        return f"harness-{kind}-{next(self._names)}"

    async def _session_connection(
        self, user: str | None, password: str | None, database: str, application_name: str
    ) -> tuple[Any, int, dt.datetime]:
        """A client connection (TCP with a password, else the superuser's socket), its pid and
        backend_start."""
        settings = {"application_name": application_name}
        if user is None or password is None:
            conn = await self.superuser_connect(database, application_name=application_name)
        else:
            conn = await self.connect(user, password, database, server_settings=settings)
        try:
            backend_start = await conn.fetchval(
                "SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()",
                timeout=COMMAND_TIMEOUT_S,
            )
        except BaseException:
            conn.terminate()
            raise
        pid: int = conn.get_server_pid()
        return conn, pid, backend_start

    def _register(self, session: _Closable) -> None:
        self._sessions.append(session)

    def _forget(self, session: _Closable) -> None:
        with contextlib.suppress(ValueError):
            self._sessions.remove(session)

    async def long_query(
        self,
        user: str,
        password: str,
        db: str,
        seconds: float,
        application_name: str | None = None,
    ) -> LongQuery:
        """A client session running ``SELECT pg_sleep(seconds)`` in a background task."""
        application_name = application_name or self._app_name("long-query")
        conn, pid, started = await self._session_connection(user, password, db, application_name)
        session = LongQuery(self, conn, pid, started, application_name, seconds)
        self._register(session)
        return session

    async def superuser_long_query(
        self, seconds: float, db: str = "postgres", application_name: str | None = None
    ) -> LongQuery:
        """Like :meth:`long_query`, as the superuser over the Unix socket."""
        application_name = application_name or self._app_name("superuser-query")
        conn, pid, started = await self._session_connection(None, None, db, application_name)
        session = LongQuery(self, conn, pid, started, application_name, seconds)
        self._register(session)
        return session

    async def idle_in_transaction(
        self, user: str, password: str, db: str, application_name: str | None = None
    ) -> IdleInTransaction:
        """A client session that ran ``BEGIN; SELECT 1`` and then sits idle in transaction."""
        application_name = application_name or self._app_name("idle-in-tx")
        conn, pid, started = await self._session_connection(user, password, db, application_name)
        session = IdleInTransaction(self, conn, pid, started, application_name)
        self._register(session)
        try:
            await conn.execute("BEGIN", timeout=COMMAND_TIMEOUT_S)
            await conn.execute("SELECT 1", timeout=COMMAND_TIMEOUT_S)
        except BaseException:
            await session.close()
            raise
        return session

    async def query_then_new_query(
        self,
        user: str,
        password: str,
        db: str,
        seconds: float,
        application_name: str | None = None,
    ) -> QuerySwitcher:
        """A client session running a long query that :meth:`QuerySwitcher.switch` replaces
        with a different long query on the same backend."""
        application_name = application_name or self._app_name("switcher")
        conn, pid, started = await self._session_connection(user, password, db, application_name)
        session = QuerySwitcher(self, conn, pid, started, application_name, seconds)
        self._register(session)
        return session

    async def replication_stream(
        self, user: str, password: str, application_name: str | None = None
    ) -> ReplicationStream:
        """``pg_receivewal --no-loop`` as ``user`` over TCP, once its walsender streams."""
        application_name = application_name or self._app_name("receivewal")
        stream = ReplicationStream(self, user, password, application_name)
        self._register(stream)
        try:
            await stream._start()
        except BaseException:
            await stream.close()
            raise
        return stream


# --------------------------------------------------------------------------- sessions


class _Closable:
    async def close(self) -> None:
        raise NotImplementedError


class ClientSession(_Closable):
    """A real client connection; ``pid`` and ``backend_start`` identify its backend."""

    def __init__(
        self,
        server: PostgresServer,
        conn: Any,
        pid: int,
        backend_start: dt.datetime,
        application_name: str,
    ) -> None:
        self.server = server
        self.conn = conn
        self.pid = pid
        self.backend_start = backend_start
        self.application_name = application_name
        self._closing = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} pid={self.pid} {self.application_name}>"

    @property
    def connection_closed(self) -> bool:
        """Whether our end has seen the connection go (the server hung up or we closed)."""
        return bool(self.conn.is_closed())

    async def activity(self) -> dict[str, Any] | None:
        """This backend's ``pg_stat_activity`` row, or ``None`` once it is gone."""
        return await self.server.activity(self.pid)

    async def _stop_backend(self) -> None:
        """Terminate our own backend server-side (a client-side close does not interrupt a
        running ``pg_sleep``), ignoring a server that is already gone."""
        if self.server._admin is None:
            return
        with contextlib.suppress(Exception):
            await self.server.fetchval("SELECT pg_terminate_backend($1)", self.pid)

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        try:
            await self._close()
        finally:
            self.server._forget(self)

    async def _close(self) -> None:
        await _close_connection(self.conn)


class LongQuery(ClientSession):
    """A session running ``SELECT pg_sleep(seconds)`` in a background task.

    When the query ends, :attr:`outcome` says how (``cancelled`` for ``QueryCanceledError``,
    ``terminated`` for ``AdminShutdownError`` or a lost connection) and :attr:`error` holds
    the exception; the task itself always ends cleanly.
    """

    def __init__(
        self,
        server: PostgresServer,
        conn: Any,
        pid: int,
        backend_start: dt.datetime,
        application_name: str,
        seconds: float,
    ) -> None:
        super().__init__(server, conn, pid, backend_start, application_name)
        self.seconds = seconds
        self.query = f"SELECT pg_sleep({float(seconds)!r})"
        self.outcome = Outcome.RUNNING
        self.error: BaseException | None = None
        self._task = asyncio.create_task(self._run(), name=f"pg-long-query-{pid}")

    async def _run(self) -> None:
        try:
            await self.conn.execute(self.query)
        except Exception as exc:
            self.error = exc
            self.outcome = Outcome.CLOSED if self._closing else classify(exc)
        else:
            self.outcome = Outcome.COMPLETED

    async def started(self, timeout_s: float = WAIT_TIMEOUT_S) -> dict[str, Any]:
        """Wait until ``pg_stat_activity`` shows the query active; returns that row."""
        return await self.server.wait_for_activity(
            self.pid,
            lambda row: row["state"] == "active" and row["query"] == self.query,
            what=f"{self.query!r} to be active",
            timeout_s=timeout_s,
        )

    async def finished(self, timeout_s: float = WAIT_TIMEOUT_S) -> Outcome:
        """Wait for the query to end; returns :attr:`outcome`."""
        done, _ = await asyncio.wait([self._task], timeout=timeout_s)
        if not done:
            raise PostgresHarnessError(
                f"{self!r}: query still running after {timeout_s}s; "
                f"pg_stat_activity: {await self.activity()}"
            )
        return self.outcome

    async def _close(self) -> None:
        if not self._task.done():
            await self._stop_backend()
            done, _ = await asyncio.wait([self._task], timeout=CLOSE_TIMEOUT_S)
            if not done:
                self.conn.terminate()
                self._task.cancel()
                await asyncio.wait([self._task], timeout=CLOSE_TIMEOUT_S)
        await _close_connection(self.conn)


class IdleInTransaction(ClientSession):
    """A session idle inside an open transaction (``BEGIN; SELECT 1``)."""

    async def started(self, timeout_s: float = WAIT_TIMEOUT_S) -> dict[str, Any]:
        """Wait until ``pg_stat_activity`` shows ``idle in transaction``; returns that row."""
        return await self.server.wait_for_activity(
            self.pid,
            lambda row: row["state"] == "idle in transaction",
            what="'idle in transaction'",
            timeout_s=timeout_s,
        )

    async def wait_connection_closed(self, timeout_s: float = WAIT_TIMEOUT_S) -> None:
        """Wait until our end sees the server hang up (e.g. after pg_terminate_backend)."""

        async def check() -> bool | None:
            return True if self.conn.is_closed() else None

        await _poll(check, timeout_s=timeout_s, what=f"{self!r}: the connection to close")


class QuerySwitcher(ClientSession):
    """A session running a long query that :meth:`switch` replaces with a different one.

    Each phase runs ``SELECT pg_sleep(seconds) AS phase_<n>``. ``switch`` cancels the current
    query from the client side (asyncpg's cancel request, by cancelling the task awaiting
    it) and starts the next, so ``query_start`` and ``query`` change and ``pid`` and
    ``backend_start`` do not.
    """

    def __init__(
        self,
        server: PostgresServer,
        conn: Any,
        pid: int,
        backend_start: dt.datetime,
        application_name: str,
        seconds: float,
    ) -> None:
        super().__init__(server, conn, pid, backend_start, application_name)
        self.seconds = seconds
        self.phase = 1
        self.outcomes: list[Outcome] = []
        """How each earlier phase ended (``cancelled`` after a switch)."""
        self._task = self._launch()

    @property
    def query(self) -> str:
        return f"SELECT pg_sleep({float(self.seconds)!r}) AS phase_{self.phase}"

    def _launch(self) -> asyncio.Task[Outcome]:
        return asyncio.create_task(self._run(self.query), name=f"pg-switcher-{self.pid}")

    async def _run(self, query: str) -> Outcome:
        try:
            await self.conn.execute(query)
        except Exception as exc:
            return classify(exc)
        return Outcome.COMPLETED

    async def started(self, timeout_s: float = WAIT_TIMEOUT_S) -> dict[str, Any]:
        """Wait until the current phase's query is active; returns its activity row."""
        query = self.query
        return await self.server.wait_for_activity(
            self.pid,
            lambda row: row["state"] == "active" and row["query"] == query,
            what=f"{query!r} to be active",
            timeout_s=timeout_s,
        )

    async def switch(self, timeout_s: float = WAIT_TIMEOUT_S) -> dict[str, Any]:
        """Cancel the current query client-side, start the next one, and return its activity
        row once it is active."""
        if self._task.done():
            self.outcomes.append(self._task.result())
        else:
            self._task.cancel()  # asyncpg sends a CancelRequest for this backend
            done, _ = await asyncio.wait([self._task], timeout=timeout_s)
            if not done:
                raise PostgresHarnessError(f"{self!r}: the cancelled query did not end")
            self.outcomes.append(
                Outcome.CANCELLED if self._task.cancelled() else self._task.result()
            )
        self.phase += 1
        self._task = self._launch()
        return await self.started(timeout_s)

    async def _close(self) -> None:
        if not self._task.done():
            await self._stop_backend()
            done, _ = await asyncio.wait([self._task], timeout=CLOSE_TIMEOUT_S)
            if not done:
                self.conn.terminate()
                self._task.cancel()
                await asyncio.wait([self._task], timeout=CLOSE_TIMEOUT_S)
        await _close_connection(self.conn)


class ReplicationStream(_Closable):
    """``pg_receivewal`` streaming WAL from the server; :attr:`pid` is its walsender."""

    def __init__(
        self, server: PostgresServer, user: str, password: str, application_name: str
    ) -> None:
        self.server = server
        self.user = user
        self.password = password
        self.application_name = application_name
        self.pid = 0
        self.backend_start: dt.datetime | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self.wal_dir = server.base_dir / application_name
        self.log_path = server.base_dir / f"{application_name}.log"
        self._log: IO[bytes] | None = None
        self._closing = False

    def __repr__(self) -> str:
        return f"<ReplicationStream walsender pid={self.pid} {self.application_name}>"

    def log_tail(self, lines: int = 30) -> str:
        return _tail(self.log_path, lines)

    async def _start(self) -> None:
        self.wal_dir.mkdir()
        self._log = self.log_path.open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            str(self.server.bindir / "pg_receivewal"),
            "--host", self.server.host,
            "--port", str(self.server.port),
            "--username", self.user,
            "--directory", str(self.wal_dir),
            "--no-loop", "--no-password", "--no-sync", "--verbose",
            "--status-interval", "1",
            cwd=self.server.base_dir,
            env=_clean_env(PGPASSWORD=self.password, PGAPPNAME=self.application_name),
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

        async def streaming() -> dict[str, Any] | None:
            if self.proc is not None and self.proc.returncode is not None:
                raise PostgresHarnessError(
                    f"pg_receivewal exited {self.proc.returncode}:\n{self.log_tail()}"
                    f"{self.server._log_detail()}"
                )
            return await self.server.fetchrow(
                "SELECT a.pid, a.backend_start FROM pg_stat_activity a"
                " JOIN pg_stat_replication r USING (pid)"
                " WHERE a.backend_type = 'walsender' AND a.application_name = $1"
                " AND r.state = 'streaming'",
                self.application_name,
            )

        row = await _poll(
            streaming,
            timeout_s=WAIT_TIMEOUT_S,
            what="a streaming walsender for pg_receivewal",
            detail=lambda: f"\n{self.log_tail()}{self.server._log_detail()}",
        )
        self.pid = row["pid"]
        self.backend_start = row["backend_start"]

    @property
    def process_running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def alive(self) -> bool:
        """Whether ``pg_receivewal`` still runs and its walsender is still in
        ``pg_stat_activity``."""
        return self.process_running and await self.server.activity(self.pid) is not None

    async def activity(self) -> dict[str, Any] | None:
        return await self.server.activity(self.pid)

    async def wait_exit(self, timeout_s: float = WAIT_TIMEOUT_S) -> int:
        """Wait for ``pg_receivewal`` to exit (``--no-loop``: it does when the walsender
        goes); returns its exit status."""
        assert self.proc is not None
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            raise PostgresHarnessError(
                f"pg_receivewal still running after {timeout_s}s:\n{self.log_tail()}"
            ) from None

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        try:
            proc = self.proc
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGINT)  # pg_receivewal's clean stop
                try:
                    await asyncio.wait_for(proc.wait(), CLOSE_TIMEOUT_S)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
        finally:
            if self._log is not None:
                self._log.close()
            self.server._forget(self)
