"""Decisions per second: how fast ``remediator serve`` turns acked alerts into decisions.

Each round starts ``python -m remediator serve`` from each checkout named with ``--checkout``
(a fresh SQLite state, the checkout's own ``rules/``, dry-run), posts ``--payloads`` webhooks
of ``--alerts`` distinct firing alerts each as fast as they are acked, and stops the clock when
``remediator_journal_backlog`` is back at 0 and every alert has its decision records. The
checkouts alternate within a round, so a noisy machine skews them alike; the median of the
rounds is printed per checkout, with its ratio to the first checkout.

    .venv/bin/python bench/decisions.py --checkout base=../base --checkout head=.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import secrets
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

LOOPBACK = "127.0.0.1"
ALERTNAMES = ("HighErrorRate", "HighLatency", "HighCPUUsage", "DiskUsageHigh", "PodNotReady")
FNV64_OFFSET = 14695981039346656037
FNV64_PRIME = 1099511628211
MASK64 = 0xFFFFFFFFFFFFFFFF
READY_WITHIN_S = 60.0
DECIDED_WITHIN_S = 600.0


@dataclass(frozen=True, slots=True)
class Round:
    checkout: str
    acked_s: float
    decided_s: float
    alerts: int

    @property
    def decisions_per_s(self) -> float:
        return self.alerts / self.decided_s


def fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's label fingerprint (FNV-1a 64, 0xff after each name and value)."""
    data = b"".join(
        name.encode() + b"\xff" + value.encode() + b"\xff" for name, value in sorted(labels.items())
    )
    return f"{fnv1a(data):016x}"


def fnv1a(data: bytes, digest: int = FNV64_OFFSET) -> int:
    """FNV-1a 64 of ``data``, continuing from ``digest`` (a prefix's hash)."""
    for byte in data:
        digest = ((digest ^ byte) * FNV64_PRIME) & MASK64
    return digest


@functools.cache
def _labels_digest(alertname: str, deployment: str, instance: str) -> int:
    """The hash state after every label but the last, ``shard``, and its name."""
    labels = {
        "alertname": alertname,
        "deployment": deployment,
        "instance": instance,
        "namespace": "llm-research",
        "severity": "warning",
    }
    data = b"".join(f"{k}\xff{v}\xff".encode("latin-1") for k, v in labels.items())
    return fnv1a(data + b"shard\xff")


def payload(index: int, alerts: int, prefix: str = "node") -> bytes:
    """One webhook of ``alerts`` distinct firing alerts over the example rules' alertnames,
    50 Deployments and 10 instances; label ``shard`` = ``{prefix}-{index}-{n}`` makes each
    alert distinct (so distinct ``index`` or ``prefix``, distinct alerts). ``shard`` sorts
    last, so each fingerprint hashes only its value after a cached prefix."""
    items = []
    for n in range(alerts):
        alertname, deployment = ALERTNAMES[n % len(ALERTNAMES)], f"api-{n % 50}"
        instance, shard = f"node-{n % 10}", f"{prefix}-{index}-{n}"
        labels = {
            "alertname": alertname,
            "namespace": "llm-research",
            "deployment": deployment,
            "instance": instance,
            "severity": "warning",
            "shard": shard,
        }
        digest = fnv1a(shard.encode() + b"\xff", _labels_digest(alertname, deployment, instance))
        items.append(
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": "bench"},
                "startsAt": "2026-12-01T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus/graph",
                "fingerprint": f"{digest:016x}",
            }
        )
    doc = {
        "version": "4",
        "groupKey": f"{{}}:{{bench={prefix}-{index}}}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "remediator",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager",
        "alerts": items,
    }
    return json.dumps(doc).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class BenchFailure(RuntimeError):
    """The system under test answered or behaved so that the measurement cannot go on."""


def metric_values(text: bytes) -> dict[str, float]:
    """Prometheus text → ``{"name{labels}": value}`` (comments skipped)."""
    values: dict[str, float] = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            values[key] = float(value)
    return values


async def read_metrics(session: aiohttp.ClientSession, base: str) -> dict[str, float]:
    """One scrape of ``{base}/metrics``."""
    async with session.get(f"{base}/metrics") as response:
        return metric_values(await response.read())


def decided_alerts(metrics: dict[str, float]) -> float:
    """Alerts decided so far: each decision writes exactly one ``received`` record, counted
    in ``remediator_decisions_total{outcome="received"}`` (the other outcomes of one
    decision vary: classified, refused, escalated, claimed, dry_run...)."""
    return sum(
        v
        for k, v in metrics.items()
        if k.startswith("remediator_decisions_total{") and 'outcome="received"' in k
    )


Metrics = dict[str, float]


def caught_up(
    goal: float, key: Callable[[Metrics], float] = decided_alerts
) -> Callable[[Metrics], bool]:
    """A test of a scrape: the journal backlog is 0 and ``key`` (by default the decided
    alerts) has reached ``goal``."""

    def done(metrics: Metrics) -> bool:
        return metrics.get("remediator_journal_backlog") == 0 and key(metrics) >= goal

    return done


async def scrape(session: aiohttp.ClientSession, base: str) -> tuple[float, float]:
    """``(remediator_journal_backlog, decided alerts)``; backlog -1 when not exported."""
    metrics = await read_metrics(session, base)
    return metrics.get("remediator_journal_backlog", -1.0), decided_alerts(metrics)


async def wait_metrics(
    session: aiohttp.ClientSession,
    base: str,
    done: Callable[[dict[str, float]], bool],
    within_s: float,
    poll_s: float = 0.02,
) -> dict[str, float] | None:
    """Scrape every ``poll_s`` until ``done(metrics)``; the metrics then, None on timeout."""
    deadline = time.monotonic() + within_s
    while True:
        metrics = await read_metrics(session, base)
        if done(metrics):
            return metrics
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(poll_s)


async def wait_ready(session: aiohttp.ClientSession, base: str) -> None:
    deadline = time.monotonic() + READY_WITHIN_S
    while time.monotonic() < deadline:
        try:
            async with session.get(f"{base}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise BenchFailure(f"remediator at {base} was not ready within {READY_WITHIN_S:.0f} s")


def auth_headers(token: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}


async def post_all(
    session: aiohttp.ClientSession,
    url: str,
    headers: Mapping[str, str],
    bodies: Sequence[bytes],
    connections: int = 4,
) -> None:
    """POST every body, over ``connections`` at once, each as soon as the last is acked."""
    queue = list(bodies)

    async def one() -> None:
        while queue:
            body = queue.pop()
            async with session.post(url, data=body, headers=headers) as response:
                if response.status >= 300:
                    raise BenchFailure(
                        f"webhook answered {response.status}: {await response.text()}"
                    )

    await asyncio.gather(*(one() for _ in range(connections)))


async def wait_decided(session: aiohttp.ClientSession, base: str, expected: float) -> None:
    """Until the journal backlog is 0 and ``expected`` alerts in all have been decided."""
    done = caught_up(expected)
    if await wait_metrics(session, base, done, DECIDED_WITHIN_S, poll_s=0.05) is None:
        raise BenchFailure(f"not decided within {DECIDED_WITHIN_S:.0f} s")


async def one_round(
    name: str, checkout: Path, bodies: Sequence[bytes], alerts: int, serve_args: Sequence[str]
) -> Round:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        token = secrets.token_urlsafe(24)
        (work / "token").write_text(token + "\n")
        (work / "token").chmod(0o600)
        port = free_port()
        base = f"http://{LOOPBACK}:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REMEDIATOR_", "KUBE"))}
        env["PYTHONPATH"] = str(checkout.resolve())
        argv = [sys.executable, "-m", "remediator", "serve", "--listen", f"{LOOPBACK}:{port}"]
        argv += ["--rules", str(checkout / "rules"), "--token-file", str(work / "token")]
        argv += ["--state", f"sqlite:///{work.resolve() / 'state.db'}", "--dry-run", *serve_args]
        log = (work / "log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=work, env=env, stdout=log, stderr=log
        )
        try:
            async with aiohttp.ClientSession() as session:
                await wait_ready(session, base)
                _, before = await scrape(session, base)
                started = time.perf_counter()
                await post_all(session, f"{base}/webhook", auth_headers(token), bodies)
                acked = time.perf_counter() - started
                await wait_decided(session, base, before + alerts)
                decided = time.perf_counter() - started
        finally:
            proc.terminate()
            await proc.wait()
            log.close()
    return Round(name, acked, decided, alerts)


def parse_checkout(value: str) -> tuple[str, Path]:
    name, sep, path = value.partition("=")
    if not sep or not (Path(path) / "remediator").is_dir():
        raise argparse.ArgumentTypeError(f"expected NAME=CHECKOUT_DIR, got {value!r}")
    return name, Path(path).resolve()


def options(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", type=parse_checkout, action="append", required=True)
    parser.add_argument("--payloads", type=int, default=20, help="webhooks per round")
    parser.add_argument("--alerts", type=int, default=500, help="alerts per webhook")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--serve-arg", action="append", default=[], help="one more argument for serve, repeatable"
    )
    return parser.parse_args(argv)


async def main(argv: Sequence[str] | None = None) -> int:
    opts = options(argv)
    bodies = [payload(i, opts.alerts) for i in range(opts.payloads)]
    total = opts.payloads * opts.alerts
    rounds: list[Round] = []
    for n in range(opts.rounds):
        order = opts.checkout if n % 2 == 0 else list(reversed(opts.checkout))
        for name, path in order:
            try:
                result = await one_round(name, path, bodies, total, opts.serve_arg)
            except BenchFailure as exc:
                print(f"round {n + 1} {name}: {exc}", file=sys.stderr)
                return 1
            rounds.append(result)
            print(
                f"round {n + 1} {name}: {total} alerts acked in {result.acked_s:.2f} s,"
                f" decided in {result.decided_s:.2f} s ({result.decisions_per_s:.0f}/s)",
                flush=True,
            )
    first = None
    for name, _ in opts.checkout:
        median = statistics.median(r.decisions_per_s for r in rounds if r.checkout == name)
        first = first or median
        print(
            f"{name}: median {median:.0f} decisions/s, {median / first:.2f} x {opts.checkout[0][0]}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
