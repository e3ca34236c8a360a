"""Webhook ACK throughput: the remediator against two baselines, side by side in one run.

Each system is started as a subprocess on a free 127.0.0.1 port (own temp dir), polled
until ready, warmed up, then driven for ``--seconds`` by ``--concurrency`` keep-alive
connections that POST the same large Alertmanager payload back to back. Only requests
that complete with a 2xx inside the window count. The systems:

* ``bare``: ``bench/bare_server.py``, aiohttp that only ``json.loads`` the body;
* ``remediator``: ``python -m remediator serve`` with a Bearer token, SQLite state, dry-run;
* ``alertmanager``: ``POST /api/v2/alerts`` of the same alerts (API v2 form) to
  Debian's Alertmanager, i.e. what Alertmanager itself ingests per second.

Prints a table, the ratios ``remediator / bare`` (target >= 0.70) and
``remediator / alertmanager`` (target >= 3.0), and client/server CPU use so a
client-bound run is visible. Exit status is 0 whatever the ratios; 1 when the harness
itself broke (unreadable payload, a baseline that would not run), 2 for bad arguments,
130 when interrupted (SIGINT or SIGTERM; the systems under test are stopped first).

Usage: ``python bench/ack_throughput.py [--seconds 10] [--concurrency 8]
[--payload PATH] [--only NAME ...] [--rounds N] [--client-procs N] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import multiprocessing
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO_ROOT / "bench"
DEFAULT_PAYLOAD = REPO_ROOT / "tests/fixtures/alertmanager-0.25/mixed-1002-alerts-one-resolved.json"
ALERTMANAGER_BINARY = Path("/usr/bin/prometheus-alertmanager")
LOOPBACK = "127.0.0.1"
ZERO_TIME = "0001-01-01T00:00:00Z"

SYSTEM_NAMES = ("bare", "remediator", "alertmanager")
BASELINES = ("bare", "alertmanager")
#: (numerator, denominator, minimum ratio) from the issue.
TARGETS = (("remediator", "bare", 0.70), ("remediator", "alertmanager", 3.0))

#: The ack path alone: a backlog limit no run reaches, so every answer is an ack (under
#: ``serve``'s default limit, back-to-back resends soon get 503 Backlogged instead).
UNBOUNDED_BACKLOG = ("--max-backlog-alerts", "100000000")
EXTRA_ARGS: Mapping[str, Sequence[str]] = {"remediator": UNBOUNDED_BACKLOG}

READY_TIMEOUT_S = 30.0
READY_POLL_S = 0.02
STOP_TIMEOUT_S = 5.0
#: For a process whose state is thrown away once its results are read: then SIGKILL.
QUICK_STOP_S = 0.2
REQUEST_TIMEOUT_S = 30.0
#: Safety bound on requests per connection per phase (the time bound normally ends it).
MAX_REQUESTS_PER_CONNECTION = 500_000
MAX_ERROR_SAMPLES = 3
LOG_TAIL_LINES = 15
#: A client process above this share of one core is the likely bottleneck.
CLIENT_BOUND_CPU_PCT = 85.0
#: Head start given to load-generator worker processes so they begin together.
WORKER_START_DELAY_S = 0.5


class StartError(RuntimeError):
    """A system could not be started or never became ready."""


# --------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """What the load generator sends: one URL, fixed headers, one body."""

    url: str
    headers: Mapping[str, str]
    body: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Launch:
    """How to start one system and how to tell that it is ready."""

    argv: list[str]
    ready_url: str
    target: Target


@dataclasses.dataclass(frozen=True, slots=True)
class Bodies:
    """The payload in the two wire forms, plus its alert count."""

    webhook: bytes
    api_v2: bytes
    alerts: int


@dataclasses.dataclass(slots=True)
class LoadStats:
    """What one load-generator process observed in one phase."""

    ok: int = 0
    errors: int = 0
    latencies_s: list[float] = dataclasses.field(default_factory=list)
    error_samples: list[str] = dataclasses.field(default_factory=list)
    client_cpu_s: float = 0.0
    wall_s: float = 0.0
    window_s: float = 0.0
    processes: int = 1

    def add_error_sample(self, error: str) -> None:
        """Keep the first few distinct error descriptions."""
        if error not in self.error_samples and len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(error)

    def merge(self, other: LoadStats) -> LoadStats:
        """Combine two processes' stats covering the same window."""
        return LoadStats(
            ok=self.ok + other.ok,
            errors=self.errors + other.errors,
            latencies_s=self.latencies_s + other.latencies_s,
            error_samples=list(dict.fromkeys(self.error_samples + other.error_samples))[
                :MAX_ERROR_SAMPLES
            ],
            client_cpu_s=self.client_cpu_s + other.client_cpu_s,
            wall_s=max(self.wall_s, other.wall_s),
            window_s=max(self.window_s, other.window_s),
            processes=self.processes + other.processes,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class SystemResult:
    """One row of the report."""

    name: str
    available: bool
    detail: str = ""
    payloads_per_s: float = 0.0
    alerts_per_s: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    ok: int = 0
    errors: int = 0
    error_samples: tuple[str, ...] = ()
    seconds: float = 0.0
    client_processes: int = 0
    client_cpu_pct: float = 0.0
    server_cpu_pct: float = 0.0
    client_bound: bool = False
    round_payloads_per_s: tuple[float, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    """Parsed command line."""

    seconds: float
    warmup: float
    concurrency: int
    payload: Path
    only: tuple[str, ...]
    client_procs: int
    rounds: int
    as_json: bool


# --------------------------------------------------------------------------- payload


def load_bodies(path: Path) -> Bodies:
    """Read a webhook payload and derive the ``POST /api/v2/alerts`` body from it."""
    return bodies_of(path.read_bytes())


def bodies_of(raw: bytes) -> Bodies:
    """A webhook payload and the ``POST /api/v2/alerts`` body of the same alerts."""
    doc = json.loads(raw)
    alerts = doc["alerts"]
    api = [to_api_alert(alert) for alert in alerts]
    return Bodies(webhook=raw, api_v2=json.dumps(api).encode(), alerts=len(alerts))


def to_api_alert(alert: Mapping[str, Any]) -> dict[str, Any]:
    """Webhook alert → API v2 alert; a firing alert's zero ``endsAt`` is dropped."""
    out: dict[str, Any] = {
        "labels": dict(alert.get("labels") or {}),
        "annotations": dict(alert.get("annotations") or {}),
    }
    for key in ("startsAt", "endsAt", "generatorURL"):
        value = alert.get(key)
        if value and not (key == "endsAt" and value == ZERO_TIME):
            out[key] = value
    return out


# --------------------------------------------------------------------------- systems


def launch_bare(workdir: Path, port: int, bodies: Bodies) -> Launch:
    """``bench/bare_server.py``."""
    del workdir
    base = f"http://{LOOPBACK}:{port}"
    return Launch(
        argv=[sys.executable, str(BENCH_DIR / "bare_server.py"), "--port", str(port)],
        ready_url=f"{base}/readyz",
        target=Target(f"{base}/webhook", {"Content-Type": "application/json"}, bodies.webhook),
    )


def launch_remediator(workdir: Path, port: int, bodies: Bodies) -> Launch:
    """``python -m remediator serve`` with a fresh token and SQLite file."""
    token = secrets.token_urlsafe(32)
    token_file = workdir / "token"
    token_file.write_text(token + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    base = f"http://{LOOPBACK}:{port}"
    argv = [
        sys.executable,
        "-m",
        "remediator",
        "serve",
        "--listen",
        f"{LOOPBACK}:{port}",
        "--rules",
        str(REPO_ROOT / "rules"),
        "--state",
        f"sqlite:///{workdir.resolve() / 'remediator.db'}",
        "--token-file",
        str(token_file),
        "--dry-run",
    ]
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    return Launch(argv, f"{base}/readyz", Target(f"{base}/webhook", headers, bodies.webhook))


def launch_alertmanager(workdir: Path, port: int, bodies: Bodies) -> Launch:
    """Alertmanager with one route to a receiver that has no integrations."""
    if not ALERTMANAGER_BINARY.exists():
        raise StartError(f"{ALERTMANAGER_BINARY} is not installed (make system-deps)")
    config = {
        "route": {"receiver": "null", "group_wait": "1h", "group_interval": "1h"},
        "receivers": [{"name": "null"}],
    }
    config_path = workdir / "alertmanager.yml"
    config_path.write_text(json.dumps(config) + "\n", encoding="utf-8")  # JSON is YAML
    base = f"http://{LOOPBACK}:{port}"
    argv = [
        str(ALERTMANAGER_BINARY),
        f"--config.file={config_path}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address={LOOPBACK}:{port}",
        "--cluster.listen-address=",
    ]
    headers = {"Content-Type": "application/json"}
    return Launch(argv, f"{base}/-/ready", Target(f"{base}/api/v2/alerts", headers, bodies.api_v2))


LAUNCHERS: Mapping[str, Callable[[Path, int, Bodies], Launch]] = {
    "bare": launch_bare,
    "remediator": launch_remediator,
    "alertmanager": launch_alertmanager,
}


# --------------------------------------------------------------------------- processes


def base_url(target: Target) -> str:
    """``http://host:port`` of a target."""
    parts = urllib.parse.urlsplit(target.url)
    return f"{parts.scheme}://{parts.netloc}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env() -> dict[str, str]:
    """This environment minus ``REMEDIATOR_*``: only the documented flags configure it."""
    return {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Last ``lines`` lines of a log file, or a note that it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


async def stop_process(proc: asyncio.subprocess.Process, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the process group we created, then SIGKILL it after ``timeout_s``."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (all its threads), from ``/proc``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


async def wait_ready(
    proc: asyncio.subprocess.Process, url: str, log_path: Path, poll_s: float = READY_POLL_S
) -> None:
    """Poll ``url`` until 200; raise :class:`StartError` if the process dies or time runs out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT_S
    max_polls = int(READY_TIMEOUT_S / poll_s) + 1
    timeout = aiohttp.ClientTimeout(total=1)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for _ in range(max_polls):
            if proc.returncode is not None:
                raise StartError(f"exited with code {proc.returncode}:\n{log_tail(log_path)}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            if loop.time() >= deadline:
                break
            await asyncio.sleep(poll_s)
    raise StartError(f"not ready after {READY_TIMEOUT_S:.0f}s:\n{log_tail(log_path)}")


@contextlib.asynccontextmanager
async def running(
    name: str,
    bodies: Bodies,
    extra_args: Sequence[str] = (),
    poll_s: float = READY_POLL_S,
    stop_timeout_s: float = STOP_TIMEOUT_S,
) -> AsyncIterator[tuple[Target, int]]:
    """Start system ``name`` (``extra_args`` appended to its command line) in a temp dir,
    yield its target and pid once ready (polled every ``poll_s``), always stop it (SIGKILL
    after ``stop_timeout_s``: a remediator with a backlog takes seconds to stop)."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        workdir = Path(tmp)
        launch = LAUNCHERS[name](workdir, free_port(), bodies)
        launch = dataclasses.replace(launch, argv=[*launch.argv, *extra_args])
        log_path = workdir / f"{name}.log"
        with log_path.open("wb") as log:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *launch.argv,
                    cwd=REPO_ROOT,
                    env=clean_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise StartError(f"cannot execute {launch.argv[0]}: {exc}") from exc
            try:
                await wait_ready(proc, launch.ready_url, log_path, poll_s)
                yield launch.target, proc.pid
            finally:
                await stop_process(proc, stop_timeout_s)


# --------------------------------------------------------------------------- load


async def one_connection(
    session: aiohttp.ClientSession, target: Target, end: float, stats: LoadStats
) -> None:
    """POST back to back until ``end`` (perf_counter); count what completes before it."""
    for _ in range(MAX_REQUESTS_PER_CONNECTION):
        start = time.perf_counter()
        if start >= end:
            return
        try:
            async with session.post(target.url, data=target.body, headers=target.headers) as r:
                await r.read()
                status = r.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            status, error = 0, f"{type(exc).__name__}: {exc}"
        else:
            error = f"HTTP {status}"
        done = time.perf_counter()
        if done > end:
            return
        if 200 <= status < 300:
            stats.ok += 1
            stats.latencies_s.append(done - start)
        else:
            stats.errors += 1
            stats.add_error_sample(error)


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """One timed request: status 0 when none came (``error`` says why)."""

    status: int
    seconds: float
    retry_after: str | None = None
    body: bytes = b""
    error: str = ""


async def post_timed(
    session: aiohttp.ClientSession, target: Target, body: bytes | None = None
) -> Answer:
    """POST ``body`` (default: the target's) and time it, send to full answer."""
    start = time.perf_counter()
    try:
        async with session.post(target.url, data=body or target.body, headers=target.headers) as r:
            data = await r.read()
            status, retry_after = r.status, r.headers.get("Retry-After")
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Answer(0, time.perf_counter() - start, error=f"{type(exc).__name__}: {exc}")
    return Answer(status, time.perf_counter() - start, retry_after, data)


async def drive(target: Target, concurrency: int, seconds: float) -> LoadStats:
    """Run ``concurrency`` keep-alive connections against ``target`` for ``seconds``."""
    stats = LoadStats(window_s=seconds)
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        end = wall0 + seconds
        async with asyncio.TaskGroup() as group:
            for _ in range(concurrency):
                group.create_task(one_connection(session, target, end, stats))
        stats.client_cpu_s = time.process_time() - cpu0
        stats.wall_s = time.perf_counter() - wall0
    return stats


def drive_in_worker(target: Target, concurrency: int, seconds: float, start_at: float) -> LoadStats:
    """Worker-process entry point: wait for the common wall-clock start, then drive."""
    time.sleep(max(0.0, start_at - time.time()))
    return asyncio.run(drive(target, concurrency, seconds))


def worker_ready() -> int:
    """No-op run once per worker so process start-up happens before measuring."""
    return os.getpid()


def split(total: int, parts: int) -> list[int]:
    """Split ``total`` connections over ``parts`` processes as evenly as possible."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def measure(
    target: Target,
    opts: Options,
    pool: concurrent.futures.ProcessPoolExecutor | None,
    server_pid: int,
) -> tuple[LoadStats, float]:
    """Drive the window (here, or in the pool's workers); return stats and server CPU seconds."""
    if pool is None:
        cpu0 = process_cpu_s(server_pid)
        stats = await drive(target, opts.concurrency, opts.seconds)
        return stats, process_cpu_s(server_pid) - cpu0
    loop = asyncio.get_running_loop()
    start_at = time.time() + WORKER_START_DELAY_S
    shares = [n for n in split(opts.concurrency, opts.client_procs) if n > 0]
    futures = [
        loop.run_in_executor(pool, drive_in_worker, target, n, opts.seconds, start_at)
        for n in shares
    ]
    await asyncio.sleep(max(0.0, start_at - time.time()))
    cpu0 = process_cpu_s(server_pid)
    parts = await asyncio.gather(*futures)
    server_cpu = process_cpu_s(server_pid) - cpu0
    merged = parts[0]
    for part in parts[1:]:
        merged = merged.merge(part)
    return merged, server_cpu


def percentile_ms(sorted_s: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile of sorted seconds, in milliseconds."""
    if not sorted_s:
        return None
    rank = max(1, min(len(sorted_s), round(pct / 100 * len(sorted_s) + 0.5)))
    return sorted_s[rank - 1] * 1000


def summarise(name: str, stats: LoadStats, server_cpu_s: float, alerts: int) -> SystemResult:
    """Turn raw load stats into a report row."""
    lat = sorted(stats.latencies_s)
    wall = stats.wall_s or 1e-9  # includes the last in-flight requests: for CPU shares
    window = stats.window_s or 1e-9  # only completions inside it are counted: for rates
    per_proc_client_pct = 100 * stats.client_cpu_s / wall / stats.processes
    return SystemResult(
        name=name,
        available=True,
        payloads_per_s=stats.ok / window,
        alerts_per_s=stats.ok * alerts / window,
        p50_ms=percentile_ms(lat, 50),
        p99_ms=percentile_ms(lat, 99),
        ok=stats.ok,
        errors=stats.errors,
        error_samples=tuple(stats.error_samples),
        seconds=window,
        client_processes=stats.processes,
        client_cpu_pct=100 * stats.client_cpu_s / wall,
        server_cpu_pct=100 * server_cpu_s / wall,
        client_bound=per_proc_client_pct >= CLIENT_BOUND_CPU_PCT,
    )


async def bench_system(
    name: str,
    bodies: Bodies,
    opts: Options,
    pool: concurrent.futures.ProcessPoolExecutor | None,
) -> SystemResult:
    """Start, warm up, measure and stop one system; a start failure becomes a row."""
    try:
        async with running(name, bodies, EXTRA_ARGS.get(name, ())) as (target, pid):
            await drive(target, opts.concurrency, opts.warmup)
            stats, server_cpu = await measure(target, opts, pool, pid)
    except StartError as exc:
        return SystemResult(name=name, available=False, detail=str(exc))
    return summarise(name, stats, server_cpu, bodies.alerts)


async def bench_all(opts: Options, bodies: Bodies) -> list[SystemResult]:
    """Benchmark the selected systems one after another."""
    pool = make_pool(opts.client_procs)
    try:
        if pool is not None:
            await warm_pool(pool, opts.client_procs)
        names = [name for name in SYSTEM_NAMES if name in opts.only]
        rounds: dict[str, list[SystemResult]] = {name: [] for name in names}
        for index in range(opts.rounds):
            for name in names:
                progress(f"round {index + 1}/{opts.rounds}: {name} ...")
                rounds[name].append(await bench_system(name, bodies, opts, pool))
        return [median_round(rounds[name]) for name in names]
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def median_round(results: Sequence[SystemResult]) -> SystemResult:
    """The round with the median payloads/s (lower middle for an even count).

    Any unavailable round makes the system unavailable: its first failure is returned.
    """
    for result in results:
        if not result.available:
            return result
    ordered = sorted(results, key=lambda r: r.payloads_per_s)
    chosen = ordered[(len(ordered) - 1) // 2]
    per_round = tuple(r.payloads_per_s for r in results)
    return dataclasses.replace(chosen, round_payloads_per_s=per_round)


def make_pool(procs: int) -> concurrent.futures.ProcessPoolExecutor | None:
    """A spawn-based pool of load-generator processes, or None to drive in-process."""
    if procs <= 1:
        return None
    context = multiprocessing.get_context("spawn")
    return concurrent.futures.ProcessPoolExecutor(max_workers=procs, mp_context=context)


async def warm_pool(pool: concurrent.futures.ProcessPoolExecutor, procs: int) -> None:
    """Make sure every worker process exists (and has imported aiohttp)."""
    loop = asyncio.get_running_loop()
    await asyncio.gather(*(loop.run_in_executor(pool, worker_ready) for _ in range(procs)))


# --------------------------------------------------------------------------- report


def ratios(results: Sequence[SystemResult]) -> list[dict[str, Any]]:
    """The issue's two target ratios, each with PASS/FAIL or n/a."""
    by_name = {r.name: r for r in results}
    out = []
    for num, den, target in TARGETS:
        a, b = by_name.get(num), by_name.get(den)
        row: dict[str, Any] = {"name": f"{num} / {den}", "target": target}
        if a is None or b is None or not a.available or not b.available or b.payloads_per_s <= 0:
            row.update(value=None, verdict="n/a", why=missing_reason(((num, a), (den, b))))
        else:
            value = a.payloads_per_s / b.payloads_per_s
            row.update(value=value, verdict="PASS" if value >= target else "FAIL")
        out.append(row)
    return out


def missing_reason(pairs: Sequence[tuple[str, SystemResult | None]]) -> str:
    """Why a ratio has no value: which side was not run, unavailable or had no successes."""
    parts = []
    for name, result in pairs:
        if result is None:
            parts.append(f"{name} not run")
        elif not result.available:
            parts.append(f"{name} unavailable")
        elif result.payloads_per_s <= 0:
            parts.append(f"{name} completed no payloads")
    return ", ".join(parts)


def machine_info() -> dict[str, Any]:
    """Cores, CPU model, Python and library versions."""
    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "aiohttp": aiohttp.__version__,
        "platform": platform.platform(),
        "alertmanager": alertmanager_version(),
    }


def cpu_model() -> str:
    """The first ``model name`` in ``/proc/cpuinfo``."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def alertmanager_version() -> str:
    """First line of ``prometheus-alertmanager --version``, or why it is unknown."""
    try:
        out = subprocess.run(
            [str(ALERTMANAGER_BINARY), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({type(exc).__name__})"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def fmt(value: float | None, spec: str) -> str:
    """Format a number, or ``-`` for a missing one."""
    return "-" if value is None else format(value, spec)


def short_reason(detail: str) -> str:
    """First line of a start error plus its last (usually the exception), on one line."""
    lines = [line.strip() for line in detail.splitlines() if line.strip()]
    if not lines:
        return "?"
    return lines[0] if len(lines) == 1 else f"{lines[0].rstrip(':')}: {lines[-1]}"


def render_table(results: Sequence[SystemResult]) -> list[str]:
    """The main table plus one line per unavailable system."""
    head = f"{'system':<13}{'payloads/s':>11}{'alerts/s':>11}{'p50 ms':>9}{'p99 ms':>9}"
    head += f"{'errors':>8}{'client CPU':>12}{'server CPU':>12}"
    lines = [head, "-" * len(head)]
    for r in results:
        if not r.available:
            lines.append(f"{r.name:<13}{'unavailable':>11}  ({short_reason(r.detail)})")
            continue
        lines.append(
            f"{r.name:<13}{r.payloads_per_s:>11.1f}{r.alerts_per_s:>11.0f}"
            f"{fmt(r.p50_ms, '.1f'):>9}{fmt(r.p99_ms, '.1f'):>9}{r.errors:>8}"
            f"{r.client_cpu_pct:>11.0f}%{r.server_cpu_pct:>11.0f}%"
        )
    return lines


def render_notes(results: Sequence[SystemResult]) -> list[str]:
    """Client-bound warnings, error samples and start errors."""
    lines = []
    for r in results:
        if r.available and r.client_bound:
            lines.append(
                f"! {r.name}: load generator used {r.client_cpu_pct:.0f}% CPU over "
                f"{r.client_processes} process(es): likely client-bound; try --client-procs"
            )
        if r.available and len(r.round_payloads_per_s) > 1:
            figures = ", ".join(f"{v:.1f}" for v in r.round_payloads_per_s)
            lines.append(f"  {r.name}: payloads/s per round: {figures}")
        if r.available and r.error_samples:
            lines.append(f"! {r.name}: error samples: {'; '.join(r.error_samples)}")
        if not r.available:
            lines.append(f"! {r.name} unavailable:\n    " + r.detail.replace("\n", "\n    "))
    return lines


def render_text(report: Mapping[str, Any], results: Sequence[SystemResult]) -> str:
    """Human-readable report."""
    cfg, machine = report["config"], report["machine"]
    lines = [
        f"ACK throughput: {cfg['alerts_per_payload']} alerts/payload "
        f"({cfg['payload_bytes']} B webhook, {cfg['api_v2_bytes']} B API v2), "
        f"{cfg['seconds']:g}s each after {cfg['warmup']:g}s warm-up, "
        f"{cfg['concurrency']} connections from {cfg['client_procs']} client process(es), "
        f"{cfg['rounds']} round(s) (median shown)",
        "",
        *render_table(results),
        "",
    ]
    for row in report["ratios"]:
        value = "n/a" if row["value"] is None else f"{row['value']:.2f}"
        why = f" ({row['why']})" if row.get("why") else ""
        lines.append(
            f"{row['name']:<28}{value:>6}  target >= {row['target']:.2f}  {row['verdict']}{why}"
        )
    lines += ["", *render_notes(results)]
    lines.append(
        f"machine: {machine['cores']} cores ({machine['usable_cores']} usable), "
        f"{machine['cpu_model']}; Python {machine['python']}, aiohttp {machine['aiohttp']}; "
        f"{machine['alertmanager']}"
    )
    lines.append("CPU columns: % of one core over the window (client = load generator).")
    return "\n".join(lines)


def build_report(opts: Options, bodies: Bodies, results: Sequence[SystemResult]) -> dict[str, Any]:
    """Everything printed, as one JSON-able document."""
    return {
        "config": {
            "payload": str(opts.payload),
            "payload_bytes": len(bodies.webhook),
            "api_v2_bytes": len(bodies.api_v2),
            "alerts_per_payload": bodies.alerts,
            "seconds": opts.seconds,
            "warmup": opts.warmup,
            "concurrency": opts.concurrency,
            "client_procs": opts.client_procs,
            "rounds": opts.rounds,
        },
        "machine": machine_info(),
        "systems": [dataclasses.asdict(r) for r in results],
        "ratios": ratios(results),
    }


def progress(message: str) -> None:
    """Progress on stderr (kept out of ``--json`` stdout)."""
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- main


def positive_float(text: str) -> float:
    """argparse type: a float > 0."""
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """Parse the command line into :class:`Options`."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=positive_float, default=10.0, help="measured window")
    p.add_argument("--warmup", type=positive_float, default=1.0, help="warm-up before it")
    p.add_argument("--concurrency", type=positive_int, default=8, help="keep-alive connections")
    p.add_argument("--payload", type=Path, default=DEFAULT_PAYLOAD, help="webhook JSON body")
    p.add_argument("--only", nargs="+", choices=SYSTEM_NAMES, default=list(SYSTEM_NAMES))
    p.add_argument(
        "--client-procs",
        type=positive_int,
        default=1,
        help="load-generator processes sharing the connections (default 1: this process)",
    )
    p.add_argument(
        "--rounds",
        type=positive_int,
        default=1,
        help="repeat bare/remediator/alertmanager N times interleaved; report each median",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    a = p.parse_args(argv)
    return Options(
        seconds=a.seconds,
        warmup=a.warmup,
        concurrency=a.concurrency,
        payload=a.payload,
        only=tuple(a.only),
        client_procs=min(a.client_procs, a.concurrency),
        rounds=a.rounds,
        as_json=a.json,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 unless the harness itself broke."""
    opts = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop the systems under test.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        bodies = load_bodies(opts.payload)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"cannot use payload {opts.payload}: {exc}", file=sys.stderr)
        return 1
    try:
        results = asyncio.run(bench_all(opts, bodies))
    except KeyboardInterrupt:
        print("interrupted; systems under test were stopped", file=sys.stderr)
        return 130
    report = build_report(opts, bodies, results)
    print(json.dumps(report, indent=2) if opts.as_json else render_text(report, results))
    broken = [r.name for r in results if r.name in BASELINES and not r.available]
    if broken:
        print(f"harness broken: baseline(s) did not run: {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
