"""Storm: 20 000 alerts in 60 s over 1 000 targets, against the Kubernetes API test server.

Where it sits: a scenario of ``bench/run.py`` (and a script of its own). The issue's target:
RSS ≤ 250 MB, ack p99 within twice the bare server's, every alert decided within 5 s of its
ack, 0 lost, actions within the policy's budgets (the storm brake is meant to engage).

What runs, in order, each on its own loopback port and temporary directory (all removed
afterwards, processes stopped also on errors and Ctrl-C):

1. the Kubernetes API test server in its own process (see ``kube_latency.py`` for why),
   seeded with 1 000 Deployments of 2 pods in namespace ``storm``, all opted in
   (``remediator.io/allow: scale_out,recycle_pod``), RBAC bound by ``remediator rbac``;
2. ``bench/bare_server.py``, fed the schedule below: the reference for ack latency;
3. ``python -m remediator serve`` (not dry-run, ``--kubeconfig`` of the test server, SQLite
   state, the rules of ``bench/rules-storm/``), fed the same schedule.

The schedule is open loop (each webhook at its fixed time, whatever the answers before it)
and realistic: Alertmanager groups by ``alertname`` and ``team`` (at most 200 alerts a group)
and resends the whole group each time it changes: a group's first notification carries 20
alerts, each later one 20 more until all have fired, then the full group with one
annotation changed. So most alerts are resends. Alerts: ``HighCPUUsage`` on every
Deployment (scale out), ``PodCrashLooping`` on a pod of 3 in 10 Deployments (recycle),
``DiskUsageHigh`` on as many volumes (escalate only). Quick mode: 1 250 alerts in 2.5 s over
100 Deployments (the RSS bound, set for the full storm, is context only there).

Figures:

* peak RSS: ``VmHWM`` of the remediator process (its validation workers apart, in the note);
* ack p99 and p50: scheduled send → 200, against the bare server's for the same schedule;
  a 503 is retried after its ``Retry-After``, as Alertmanager would, and counts until the 200;
* decision latency p99 and max, per alert: its webhook's 200 → its journal entry's
  ``done_at`` (read from the SQLite state after the run): the moment every alert of the
  webhook has its decision recorded (resends have no audit record of their own);
* lost: acked alerts whose journal entry was never finished, or whose episode has no
  decision (``episodes.decided_at``), once the backlog drained (bounded wait);
* actions: ``PATCH …/deployments/*/scale`` and ``POST …/pods/*/eviction`` the test server
  received, against ``policy.storm.max_targets`` (distinct targets acted on) and
  ``policy.global_budget.max_actions`` (evictions, the destructive ones);
* storm brake refusals (``refused`` audit records with reason ``storm``): at least one.

    .venv/bin/python bench/storm.py [--quick] [--json]
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import math
import re
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import lz4.frame
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO_ROOT / "bench"
for entry in (REPO_ROOT, BENCH_DIR):  # run as a script: sys.path[0] is bench/
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

import ack_throughput  # noqa: E402
from figures import Figure  # noqa: E402
from kube_latency import (  # noqa: E402
    HEADERS,
    NAMESPACE,
    RULES_DIR,
    Cluster,
    kube_cluster,
    percentile,
    remediator_on,
    scratch,
    unavailable,
)

from tests.support.payloads import webhook_alert, webhook_payload  # noqa: E402
from tests.support.process import RemediatorProcess  # noqa: E402

SCENARIO = "storm"
RSS_MAX_MB = 250.0
ACK_RATIO_MAX = 2.0
DECIDED_WITHIN_S = 5.0
GROUP_MAX = 200
FIRST_SEND, GROWTH = 20, 20
#: The first group (PodCrashLooping) starts with fewer alerts, so that pods and Deployments
#: share the storm brake's first targets and both budgets are tested.
EARLY_FIRST = 6
REPLICAS = 2
LEAD_S = 0.2
REQUEST_TIMEOUT_S = 60.0
MAX_RETRIES = 10
POLL_S = 0.2
WRITE = re.compile(r"/namespaces/[^/]+/(deployments/([^/]+)/scale|pods/([^/]+)/eviction)$")


@dataclasses.dataclass(frozen=True)
class Size:
    alerts: int
    seconds: float
    targets: int
    drain_s: float


FULL = Size(alerts=20_000, seconds=60.0, targets=1_000, drain_s=120.0)
QUICK = Size(alerts=1_250, seconds=2.5, targets=100, drain_s=30.0)


@dataclasses.dataclass(frozen=True)
class Send:
    at_s: float
    body: bytes
    fingerprints: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Ack:
    index: int
    latency_s: float
    wall: float
    status: int
    retried: int


# --------------------------------------------------------------------------- the schedule


def alert_groups(size: Size, pods: dict[str, list[str]]) -> list[list[dict[str, Any]]]:
    """The storm's alerts, grouped as Alertmanager groups them (alertname, team)."""
    share = size.targets * 3 // 10
    labels: list[dict[str, str]] = []
    for i in range(share):
        deployment = f"api-{(3 * i + 1) % size.targets}"
        pod = pods[deployment][0]
        labels.append({"alertname": "PodCrashLooping", "deployment": deployment, "pod": pod})
    for i in range(size.targets):
        labels.append({"alertname": "HighCPUUsage", "deployment": f"api-{i}"})
    for i in range(share):
        labels.append({"alertname": "DiskUsageHigh", "persistentvolumeclaim": f"data-{i}"})
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    seen: Counter[str] = Counter()
    for one in labels:
        name = one["alertname"]
        team = f"team-{seen[name] // GROUP_MAX}"
        seen[name] += 1
        full = {**one, "namespace": NAMESPACE, "team": team, "severity": "warning"}
        groups.setdefault((name, team), []).append(
            webhook_alert(labels=full, annotations={"summary": f"{name} in the storm"})
        )
    # Team by team, so the first round opens one group of each alertname.
    ordered = sorted(groups.items(), key=lambda item: int(item[0][1].removeprefix("team-")))
    return [alerts for _, alerts in ordered]


def notification(group: Sequence[dict[str, Any]], count: int, serial: int) -> dict[str, Any]:
    """A group's notification with its first ``count`` alerts; one annotation changes."""
    alerts = [dict(a) for a in group[:count]]
    changed = serial % count
    annotations = {**alerts[changed]["annotations"], "value": str(serial)}
    alerts[changed] = {**alerts[changed], "annotations": annotations}
    group_labels = {k: group[0]["labels"][k] for k in ("alertname", "team")}
    key = "{}:{" + ", ".join(f'{k}="{v}"' for k, v in group_labels.items()) + "}"
    common = {**group_labels, "namespace": NAMESPACE, "severity": "warning"}
    return webhook_payload(
        *alerts, groupKey=key, groupLabels=group_labels, commonLabels=common, receiver="storm"
    )


def schedule(size: Size, pods: dict[str, list[str]]) -> list[Send]:
    """Round robin over the groups (the first starts with ``EARLY_FIRST`` alerts), each
    notification at its fixed time, until ``alerts`` alerts are sent."""
    groups = alert_groups(size, pods)
    plan: list[tuple[bytes, tuple[str, ...]]] = []
    sent, round_ = 0, 0
    while sent < size.alerts:
        for number, group in enumerate(groups):
            first = EARLY_FIRST if number == 0 else FIRST_SEND
            count = min(len(group), first + GROWTH * round_, size.alerts - sent)
            if count <= 0:
                break
            body = json.dumps(notification(group, count, len(plan))).encode()
            plan.append((body, tuple(a["fingerprint"] for a in group[:count])))
            sent += count
        round_ += 1
    gap = size.seconds / len(plan)
    return [Send(i * gap, body, fps) for i, (body, fps) in enumerate(plan)]


# --------------------------------------------------------------------------- the feed


async def post(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes
) -> tuple[int, int]:
    """POST until an answer other than 503 (after its Retry-After); status and retries."""
    for retry in range(MAX_RETRIES + 1):
        try:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                status, wait = response.status, response.headers.get("Retry-After", "1")
        except (aiohttp.ClientError, TimeoutError):
            status, wait = 0, "1"
        if status not in (0, 503) or retry == MAX_RETRIES:
            return status, retry
        await asyncio.sleep(float(wait) if wait.replace(".", "", 1).isdigit() else 1.0)
    raise AssertionError("unreachable")


async def feed(url: str, headers: dict[str, str], sends: Sequence[Send]) -> list[Ack]:
    """Every send at its time (open loop); latency from that time to the answer."""
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.monotonic() + LEAD_S

        async def one(index: int, send: Send) -> Ack:
            due = start + send.at_s
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            status, retried = await post(session, url, headers, send.body)
            return Ack(index, time.monotonic() - due, time.time(), status, retried)

        return list(await asyncio.gather(*(one(i, s) for i, s in enumerate(sends))))


async def feed_bare(sends: Sequence[Send]) -> list[Ack]:
    empty = ack_throughput.Bodies(b"", b"", 0)
    async with ack_throughput.running("bare", empty) as (target, _pid):
        return await feed(target.url, dict(target.headers), sends)


# --------------------------------------------------------------------------- reading the state


def state_db(service: RemediatorProcess) -> Path:
    return service.log_path.parent / "state.db"


def read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)


def drained(path: Path, acked: int) -> bool:
    """Every acked webhook journaled and finished, and every claim has its outcome."""
    try:
        with read_only(path) as db:
            done, pending = db.execute(
                "SELECT COUNT(done_at), COUNT(*) - COUNT(done_at) FROM journal"
            ).fetchone()
            unfinished = db.execute("SELECT COUNT(*) FROM claims WHERE outcome IS NULL").fetchone()
    except sqlite3.Error:
        return False
    return bool(done >= acked and pending == 0 and unfinished[0] == 0)


async def wait_drained(path: Path, acked: int, within_s: float) -> float:
    """Seconds until drained, or nan when ``within_s`` passed first."""
    began = time.monotonic()
    while time.monotonic() - began < within_s:
        if await asyncio.to_thread(drained, path, acked):
            return time.monotonic() - began
        await asyncio.sleep(POLL_S)
    return math.nan


@dataclasses.dataclass
class Outcome:
    done_at: dict[int, float]  # send index -> its journal entry's done_at (epoch s)
    decided: set[str]  # fingerprints whose episode has its decision
    refusals: Counter[str]  # refused audit records by reason


def read_outcome(path: Path, sends: Sequence[Send]) -> Outcome:
    """Match journal entries to sends by their bodies (each is unique), read decisions."""
    by_digest = {hashlib.sha256(s.body).digest(): i for i, s in enumerate(sends)}
    done_at: dict[int, float] = {}
    with read_only(path) as db:
        for body, finished in db.execute("SELECT body, done_at FROM journal ORDER BY id"):
            index = by_digest.get(hashlib.sha256(lz4.frame.decompress(body)).digest())
            if index is not None and finished is not None:
                done_at.setdefault(index, float(finished))
        decided = {
            fp
            for (fp,) in db.execute("SELECT fingerprint FROM episodes WHERE decided_at IS NOT NULL")
        }
        refusals = Counter(
            dict(
                db.execute(
                    "SELECT reason, COUNT(*) FROM audit WHERE step = 'refused' GROUP BY reason"
                ).fetchall()
            )
        )
    return Outcome(done_at, decided, refusals)


def vm_hwm_mb(pid: int) -> float:
    """Peak resident set of ``pid`` (``VmHWM``), MB; nan once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


# --------------------------------------------------------------------------- one run


@dataclasses.dataclass
class Run:
    bare: list[Ack]
    acks: list[Ack]
    outcome: Outcome
    drain_s: float
    rss_mb: float
    workers_mb: float
    workers: int
    writes: list[list[Any]]


Served = tuple[list[Ack], Outcome, float, float, list[float]]


async def run_remediator(
    workdir: Path, cluster: Cluster, sends: Sequence[Send], size: Size
) -> Served:
    """Feed remediator; its acks, what it decided, drain seconds, peak RSS (its, workers')."""
    async with remediator_on(workdir, RULES_DIR, cluster) as service:
        acks = await feed(service.webhook_url, HEADERS, sends)
        acked = sum(1 for a in acks if a.status == 200)
        drain_s = await wait_drained(state_db(service), acked, size.drain_s)
        pid = service.proc.pid
        workers = [vm_hwm_mb(child) for child in children(pid)]
        rss = vm_hwm_mb(pid)
        outcome = await asyncio.to_thread(read_outcome, state_db(service), sends)
    return acks, outcome, drain_s, rss, workers


def progress(began: float, what: str) -> None:
    print(f"storm: {time.monotonic() - began:5.1f} s {what}", file=sys.stderr, flush=True)


async def storm_run(size: Size) -> tuple[Run, list[Send]]:
    names = [f"api-{i}" for i in range(size.targets)]
    began = time.monotonic()
    with scratch("bench-storm-") as workdir:
        async with kube_cluster(workdir, names, REPLICAS, RULES_DIR) as cluster:
            progress(began, f"test server up, {size.targets} Deployments")
            sends = schedule(size, cluster.pods)
            bare = await feed_bare(sends)
            progress(began, "bare server fed")
            acks, outcome, drain_s, rss, workers = await run_remediator(
                workdir, cluster, sends, size
            )
            progress(began, "remediator fed, drained and stopped")
            async with aiohttp.ClientSession() as session:
                requests = await cluster.requests(session)
    writes = [r for r in requests if r[2] in ("PATCH", "POST") and WRITE.search(r[3])]
    run = Run(bare, acks, outcome, drain_s, rss, sum(workers), len(workers), writes)
    return run, sends


# --------------------------------------------------------------------------- figures


def policy() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((RULES_DIR / "00-policy.yaml").read_text())
    return dict(doc["policy"])


def ack_figures(run: Run) -> list[Figure]:
    out = []
    ours = [a.latency_s * 1000 for a in run.acks if a.status == 200]
    bare = [a.latency_s * 1000 for a in run.bare if a.status == 200]
    for pct, target in ((99, ACK_RATIO_MAX), (50, None)):
        out.append(
            Figure(
                SCENARIO, f"ack p{pct}", percentile(ours, pct), "ms",
                reference=percentile(bare, pct), reference_name="ms, bare server",
                target=target, sense="max" if target else "info",
                note=f"{len(run.acks)} webhooks, open loop" if pct == 99 else "",
            )
        )  # fmt: skip
    retried = sum(a.retried for a in run.acks)
    failed = sum(1 for a in run.acks if a.status != 200)
    out.append(
        Figure(SCENARIO, "webhooks retried after 503 / never acked", retried, "retries",
               note=f"{failed} never answered 200 (their alerts are not counted as sent)")
    )  # fmt: skip
    return out


def decision_latencies(run: Run, sends: Sequence[Send]) -> tuple[list[float], int, int]:
    """Per acked alert: ack → decided seconds; and how many alerts were lost, of how many."""
    latencies: list[float] = []
    lost = total = 0
    for ack in run.acks:
        if ack.status != 200:
            continue
        send = sends[ack.index]
        total += len(send.fingerprints)
        done = run.outcome.done_at.get(ack.index)
        for fp in send.fingerprints:
            if done is None or fp not in run.outcome.decided:
                lost += 1
            else:
                latencies.append(done - ack.wall)
    return latencies, lost, total


def decision_figures(run: Run, sends: Sequence[Send]) -> list[Figure]:
    latencies, lost, total = decision_latencies(run, sends)
    distinct = len({fp for s in sends for fp in s.fingerprints})
    drain = "" if math.isfinite(run.drain_s) else "; the backlog had not drained at the deadline"
    return [
        Figure(SCENARIO, "decision latency p99 (ack → decided)", percentile(latencies, 99), "s",
               target=DECIDED_WITHIN_S, sense="value_max",
               note=f"per alert, to its webhook's journal entry done_at{drain}"),
        Figure(SCENARIO, "decision latency max", max(latencies, default=math.nan), "s",
               target=DECIDED_WITHIN_S, sense="value_max"),
        Figure(SCENARIO, "lost alerts", lost, "alerts", target=0, sense="value_max",
               note=f"of {total} acked ({distinct} distinct, the rest resends)"),
        Figure(SCENARIO, "backlog drained after the last ack", run.drain_s, "s",
               note="journal all done and every claim with its outcome"),
    ]  # fmt: skip


def action_figures(run: Run) -> list[Figure]:
    rules = policy()
    brake = int(rules["storm"]["max_targets"])
    budget = int(rules["global_budget"]["max_actions"])
    scaled = {m.group(2) for r in run.writes if (m := WRITE.search(r[3])) and m.group(2)}
    evicted = [r for r in run.writes if r[3].endswith("/eviction")]
    refused = run.outcome.refusals
    reasons = ", ".join(f"{k} {v}" for k, v in refused.most_common())
    return [
        Figure(SCENARIO, "targets written (scale + evict), storm brake", len(run.writes), "writes",
               target=brake, sense="value_max",
               note=f"{len(scaled)} Deployments scaled, {len(evicted)} evictions;"
               f" policy.storm.max_targets {brake}"),
        Figure(SCENARIO, "evictions, global budget", len(evicted), "writes", target=budget,
               sense="value_max", note="policy.global_budget.max_actions (destructive only)"),
        Figure(SCENARIO, "storm brake refusals", refused.get("storm", 0), "alerts", target=1,
               sense="value_min", note=f"refused records by reason: {reasons or 'none'}"),
    ]  # fmt: skip


def figures(run: Run, sends: Sequence[Send], full: bool) -> list[Figure]:
    """All figures; the RSS bound is the full storm's, context only for a smaller one."""
    rss = Figure(
        SCENARIO, "remediator peak RSS (VmHWM)", run.rss_mb, "MB", target=RSS_MAX_MB,
        sense="value_max" if full else "info",
        note=f"main process; {run.workers} validation workers peaked at {run.workers_mb:.0f} MB"
        " together" + ("" if full else f"; the {RSS_MAX_MB:g} MB bound is for the full storm"),
    )  # fmt: skip
    return [rss, *ack_figures(run), *decision_figures(run, sends), *action_figures(run)]


async def measure(quick: bool) -> list[Figure]:
    size = QUICK if quick else FULL
    try:
        run, sends = await storm_run(size)
    except (Exception, TimeoutError) as exc:
        return [unavailable(SCENARIO, "storm ran", exc)]
    sizes = [len(s.fingerprints) for s in sends]
    alerts = sum(sizes)
    header = Figure(
        SCENARIO, "alerts sent", alerts, "alerts",
        note=f"{len(sends)} webhooks of {min(sizes)} to {max(sizes)} alerts in"
        f" {size.seconds:g} s over {size.targets} Deployments",
    )  # fmt: skip
    return [header, *figures(run, sends, size == FULL)]


if __name__ == "__main__":
    from run import script_main

    sys.exit(script_main(measure, __doc__))
