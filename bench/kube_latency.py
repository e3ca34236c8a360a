"""Decision latency to the first Kubernetes API call, against the Kubernetes API test server.

Where it sits: a scenario of ``bench/run.py`` (and a script of its own); ``bench/storm.py``
uses its cluster helpers. It starts the test server (``tests/support/kube_api.py``
``KubeApiServer``, realistic controller lags, RBAC bound by exactly what ``remediator rbac``
prints for the rules) in a subprocess of its own, seeded with Deployments in an opted-in
namespace, then ``python -m remediator serve`` as a real subprocess, not dry-run, with a
kubeconfig of that server. It posts one webhook at a time, each one ``HighCPUUsage`` alert on
another Deployment (rule ``cpu-high``: ``scale_out``), and measures, per alert, from the
webhook's 200 to

* the first request the test server receives for that Deployment (the precheck's GET), and
* the scale write (``PATCH .../deployments/NAME/scale``),

both on ``CLOCK_MONOTONIC``, which the two processes share: the server stamps each request
as it arrives. 20 Deployments (5 with ``--quick``); p50 and p99 are reported as context,
with the webhook ack latency of the same posts as reference.

Why the test server runs in its own process: its controllers reconcile synchronously (tens
of milliseconds per write at 1 000 Deployments); in this process that would stall the load
generator's clock and inflate every latency it measures. It still shares the two cores with
remediator, as an API server on the same node would.

    .venv/bin/python bench/kube_latency.py [--quick] [--json]
    .venv/bin/python bench/kube_latency.py --serve-kube SPEC_JSON   # the server process
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO_ROOT / "bench"
for entry in (REPO_ROOT, BENCH_DIR):  # run as a script: sys.path[0] is bench/
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

from figures import Figure  # noqa: E402

from tests.support.kube_api import JSON, PODS, REPLICASETS, KubeApiServer, _controller_uid  # noqa: E402
from tests.support.kubeconfig import write_kubeconfig  # noqa: E402
from tests.support.payloads import webhook_alert, webhook_payload  # noqa: E402
from tests.support.process import RemediatorProcess, start_remediator  # noqa: E402
from tests.support.service import TOKEN  # noqa: E402

SCENARIO = "kube_latency"
RULES_DIR = BENCH_DIR / "rules-storm"
RULES_FILE = "10-storm.yaml"
NAMESPACE = "storm"
OPT_IN = {"remediator.io/allow": "scale_out,recycle_pod"}
#: The policy of this scenario: limits far above its 20 targets (the storm's own policy,
#: ``rules-storm/00-policy.yaml``, brakes after 10 and is the storm's to measure), and as
#: many concurrent actions as allowed: an action holds its slot while it verifies (pods
#: become Ready 0.4 to 2 s after the write), so with 4 slots the fifth alert in a row would
#: wait for a verification, not for its decision.
LATENCY_POLICY = """\
policy:
  namespaces: [storm]
  storm: {max_targets: 1000, window_s: 600}
  global_budget: {max_actions: 1000, window_s: 3600}
  action_limits:
    scale_out: {max_actions: 1000, window_s: 3600}
    recycle_pod: {max_actions: 1000, window_s: 3600}
  max_concurrent_actions: 64
  require_opt_in: true
defaults:
  cooldown_s: 900
  verify_within_s: 30
  escalation: {SEV-1: page, SEV-2: page, SEV-3: page}
escalations:
  page:
    tiers: [{after_s: 0, notify: [oncall]}]
"""
KUBE_START_S = 120.0
STOP_S = 10.0
WRITE_WITHIN_S = 15.0
POLL_S = 0.02
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


# --------------------------------------------------------------------------- the test server


class TimedKube(KubeApiServer):
    """The test server with two additions a benchmark needs.

    * ``timed``: every request as ``(arrived, answered, method, path, status)``, monotonic
      seconds, stamped as it arrives (``requests`` records no times);
    * an owner index kept up to date on every write, instead of rebuilt after each one:
      seeding 1 000 Deployments takes 3 s instead of more than a minute (the controllers
      ask for each owner's children on every pass).
    """

    def __init__(self, **kwargs: Any) -> None:
        self.timed: list[tuple[float, float, str, str, int]] = []
        self._children: dict[tuple[str, str], dict[tuple[str, str], JSON]] = {}
        super().__init__(**kwargs)

    async def _handle(self, request: Any) -> Any:
        arrived = time.monotonic()
        response = await super()._handle(request)
        self.timed.append((arrived, time.monotonic(), request.method, request.path,
                           response.status))  # fmt: skip
        return response

    def _index(self, kind: Any, key: tuple[str, str], obj: JSON | None, add: bool) -> None:
        if kind not in (PODS, REPLICASETS) or obj is None:
            return
        uid = _controller_uid(obj)
        if uid is None:
            return
        bucket = self._children.setdefault((kind.resource, uid), {})
        if add:
            bucket[key] = obj
        else:
            bucket.pop(key, None)

    def _create(self, kind: Any, obj: JSON) -> JSON:
        created = super()._create(kind, obj)
        self._index(kind, self._key(kind, created), created, True)
        return created

    def _update(self, kind: Any, obj: JSON, *, force: bool = False) -> bool:
        key = self._key(kind, obj)
        old = self._store[kind.resource].get(key)
        written = super()._update(kind, obj, force=force)
        if written:
            self._index(kind, key, old, False)
            self._index(kind, key, obj, True)
        return written

    def _remove(self, kind: Any, namespace: str, name: str) -> JSON:
        obj = super()._remove(kind, namespace, name)
        self._index(kind, self._key(kind, obj), obj, False)
        return obj

    def _owned(self, kind: Any, namespace: str, owner_uid: str) -> list[JSON]:
        bucket = self._children.get((kind.resource, owner_uid), {})
        return [bucket[k] for k in sorted(bucket) if k[0] == namespace]

    def seed(self, names: Sequence[str], replicas: int) -> dict[str, list[str]]:
        """Add opted-in Deployments, settling the controllers once at the end (each
        ``add_deployment`` settles the whole cluster, quadratic over hundreds); their pods."""
        settle = self._reconcile
        self._reconcile = lambda **_: None  # type: ignore[method-assign]
        try:
            for name in names:
                self.add_deployment(NAMESPACE, name, replicas=replicas, annotations=OPT_IN)
        finally:
            del self._reconcile
        settle()
        pods: dict[str, list[str]] = {name: [] for name in names}
        for pod in self.pods(NAMESPACE):
            app = pod["metadata"].get("labels", {}).get("app")
            if app in pods:
                pods[app].append(pod["metadata"]["name"])
        return pods


async def serve_kube(spec: dict[str, Any]) -> None:
    """The server process: seed, bind RBAC, print one JSON line, serve until SIGTERM."""
    from aiohttp import web

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with TimedKube(seed=spec.get("seed", 7)) as kube:
        pods = kube.seed(spec["deployments"], spec["replicas"])
        kube.bind_rbac_of(Path(spec["rules"]))

        async def requests(request: web.Request) -> web.Response:
            after = int(request.query.get("after", "0"))
            return web.json_response({"requests": kube.timed[after:]})

        app = web.Application()
        app.router.add_get("/requests", requests)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        control = f"http://127.0.0.1:{runner.addresses[0][1]}"
        hello = {"url": kube.url, "token": kube.token, "control": control, "pods": pods}
        print(json.dumps(hello), flush=True)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The running test server, as the benchmark sees it."""

    url: str
    control: str
    kubeconfig: Path
    pods: dict[str, list[str]]
    pid: int

    async def requests(self, session: aiohttp.ClientSession, after: int = 0) -> list[list[Any]]:
        """``[arrived, answered, method, path, status]`` from the ``after``-th request on."""
        async with session.get(f"{self.control}/requests", params={"after": str(after)}) as r:
            body: dict[str, list[list[Any]]] = await r.json()
        return body["requests"]


async def stop_group(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the process group we started: the test server's state is thrown away, and
    what it recorded is read before it is stopped."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    await asyncio.wait_for(proc.wait(), STOP_S)


@contextlib.asynccontextmanager
async def kube_cluster(
    workdir: Path, deployments: Sequence[str], replicas: int, rules: Path
) -> AsyncIterator[Cluster]:
    """The test server in a subprocess, seeded and bound; always stopped."""
    spec = {"deployments": list(deployments), "replicas": replicas, "rules": str(rules)}
    log = (workdir / "kube.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).resolve()), "--serve-kube", json.dumps(spec),
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
        start_new_session=True, limit=64 * 1024 * 1024,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), KUBE_START_S)
        if not line:
            await proc.wait()
            tail = (workdir / "kube.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the test server exited {proc.returncode}: {tail}")
        hello = json.loads(line)
        kubeconfig = write_kubeconfig(workdir / "kubeconfig", hello["url"], hello["token"])
        yield Cluster(hello["url"], hello["control"], kubeconfig, hello["pods"], proc.pid)
    finally:
        await stop_group(proc)
        log.close()


@contextlib.asynccontextmanager
async def remediator_on(
    workdir: Path, rules: Path, cluster: Cluster, kill: bool = False
) -> AsyncIterator[RemediatorProcess]:
    """``remediator serve`` (not dry-run) on ``cluster``; always stopped: by SIGTERM, or
    with ``kill`` by SIGKILL (its results read, a graceful stop waits for verifications
    in flight; its validation workers die with it)."""
    service = await start_remediator(
        workdir / "remediator", rules=rules, extra_args=("--kubeconfig", str(cluster.kubeconfig))
    )
    try:
        yield service
    finally:
        if kill and service.proc.returncode is None:
            service.proc.kill()
            await service.proc.wait()
        await service.stop()


@contextlib.contextmanager
def scratch(prefix: str) -> Any:
    """A temporary directory, removed afterwards whatever happens."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- figures


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (nan for no values)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(pct / 100 * len(ordered))))
    return ordered[rank - 1]


def unavailable(scenario: str, name: str, exc: BaseException) -> Figure:
    """A system that would not start or a run that broke: a ``nan`` figure saying why."""
    return Figure(scenario, name, math.nan, "", note=f"{type(exc).__name__}: {exc}"[:400])


def cpu_alert(deployment: str) -> dict[str, Any]:
    labels = {"alertname": "HighCPUUsage", "namespace": NAMESPACE, "deployment": deployment}
    return webhook_alert(labels=labels, annotations={"summary": "CPU above 85%"})


def latency_rules(workdir: Path) -> Path:
    """This scenario's rule set: the storm's rules under a policy that does not brake."""
    rules = workdir / "rules"
    rules.mkdir()
    shutil.copy(RULES_DIR / RULES_FILE, rules / RULES_FILE)
    (rules / "00-policy.yaml").write_text(LATENCY_POLICY, encoding="utf-8")
    return rules


@dataclasses.dataclass
class Sample:
    ack_s: float
    first_call_s: float
    write_s: float


async def one_sample(
    session: aiohttp.ClientSession, service: RemediatorProcess, cluster: Cluster, name: str
) -> Sample:
    """Post one alert on Deployment ``name``; ack, first request and scale write latencies."""
    seen = len(await cluster.requests(session))
    body = json.dumps(webhook_payload(cpu_alert(name))).encode()
    sent = time.monotonic()
    async with session.post(service.webhook_url, data=body, headers=HEADERS) as response:
        await response.read()
        acked = time.monotonic()
        if response.status != 200:
            raise RuntimeError(f"webhook answered {response.status}")
    mine = re.compile(rf"/namespaces/{NAMESPACE}/deployments/{re.escape(name)}(/scale)?$")
    first = write = math.nan
    deadline = acked + WRITE_WITHIN_S
    while math.isnan(write) and time.monotonic() < deadline:
        await asyncio.sleep(POLL_S)
        for arrived, _, method, path, _ in await cluster.requests(session, seen):
            if mine.search(path) and math.isnan(first):
                first = arrived - acked
            if method == "PATCH" and path.endswith(f"/deployments/{name}/scale"):
                write = arrived - acked
                break
    if math.isnan(write):
        raise RuntimeError(f"no scale write for {name} within {WRITE_WITHIN_S:.0f} s")
    return Sample(acked - sent, first, write)


def latency_figures(samples: Sequence[Sample]) -> list[Figure]:
    acks = [s.ack_s * 1000 for s in samples]
    out = []
    for label, values in (
        ("ack → first API request for the Deployment", [s.first_call_s * 1000 for s in samples]),
        ("ack → scale write (PATCH)", [s.write_s * 1000 for s in samples]),
    ):
        for pct in (50, 99):
            out.append(
                Figure(
                    SCENARIO,
                    f"{label}, p{pct}",
                    percentile(values, pct),
                    "ms",
                    reference=percentile(acks, pct),
                    reference_name=f"ms, webhook ack p{pct}",
                    note=f"{len(values)} alerts, one at a time" if pct == 50 else "",
                )
            )
    return out


async def measure(quick: bool) -> list[Figure]:
    count = 5 if quick else 20
    names = [f"api-{i}" for i in range(count)]
    try:
        with scratch("bench-kube-latency-") as workdir:
            rules = latency_rules(workdir)
            async with (
                kube_cluster(workdir, names, 3, rules) as cluster,
                remediator_on(workdir, rules, cluster, kill=True) as service,
                aiohttp.ClientSession() as session,
            ):
                samples = [await one_sample(session, service, cluster, n) for n in names]
    except (Exception, TimeoutError) as exc:
        return [unavailable(SCENARIO, "ack → first API request", exc)]
    return latency_figures(samples)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-kube":
        asyncio.run(serve_kube(json.loads(sys.argv[2])))
        sys.exit(0)
    from run import script_main

    sys.exit(script_main(measure, __doc__))
