"""Several replicas, one truth: two ``remediator serve`` processes on one PostgreSQL store,
each behind its own Alertmanager with no cluster between them (split brain: every
notification reaches both replicas). Every episode is acted on exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from tests.support.alertmanager import alertmanager
from tests.support.kube_api import KubeApiServer
from tests.support.kubeconfig import write_kubeconfig
from tests.support.postgres import PostgresServer
from tests.support.process import start_remediator

NS = "llm-research"
ALERTS = 200
RULES = """
policy:
  namespaces: [llm-research]
  storm: {max_targets: 1000, window_s: 60}
  max_concurrent_actions: 32
defaults:
  escalation: {SEV-1: page, SEV-2: page, SEV-3: page}
escalations:
  page: {tiers: [{after_s: 0, notify: [oncall]}]}
rules:
  - name: cpu
    match: ['alertname="HighCPUUsage"']
    severity: SEV-3
    action: {kind: scale_out, params: {step: 1, max_replicas: 5}}
    target: {kind: Deployment, namespace: "{namespace}", name: "{deployment}"}
    verify_within_s: 30
  - name: default
    match: []
    severity: SEV-3
"""


def scale_writes(kube: KubeApiServer) -> Counter[str]:
    return Counter(
        r.path
        for r in kube.requests
        if r.method == "PATCH" and r.path.endswith("/scale") and r.status == 200
    )


async def test_two_replicas_behind_split_brain_alertmanagers_act_once_per_episode(
    tmp_path: Path, pg: PostgresServer
) -> None:
    await pg.execute("CREATE ROLE state LOGIN PASSWORD 'state-secret'")
    await pg.execute("CREATE DATABASE state OWNER state")
    dsn = pg.dsn("state", "state-secret", "state")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "rules.yaml").write_text(RULES)
    async with KubeApiServer(seed=5) as kube:
        for i in range(ALERTS):
            kube.add_deployment(
                NS, f"d{i}", replicas=1, annotations={"remediator.io/allow": "scale_out"}
            )
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
        replicas = [
            await start_remediator(
                tmp_path / name,
                rules=rules,
                extra_args=("--state", dsn, "--instance-id", name, "--kubeconfig", str(kubeconfig)),
            )
            for name in ("replica-a", "replica-b")
        ]
        try:
            async with (
                alertmanager(tmp_path / "am-a", replicas[0].webhook_url,
                             credentials_file=tmp_path / "replica-a" / "token") as am_a,
                alertmanager(tmp_path / "am-b", replicas[1].webhook_url,
                             credentials_file=tmp_path / "replica-b" / "token") as am_b,
            ):  # fmt: skip
                alerts = [
                    {
                        "labels": {
                            "alertname": "HighCPUUsage",
                            "namespace": NS,
                            "deployment": f"d{i}",
                        }
                    }
                    for i in range(ALERTS)
                ]
                await asyncio.gather(am_a.post_alerts(alerts), am_b.post_alerts(alerts))
                for _ in range(600):
                    if sum(scale_writes(kube).values()) >= ALERTS:
                        break
                    await asyncio.sleep(0.2)
                await asyncio.sleep(2.5)  # both replicas got both deliveries by now
                claims = await replicas[1].decisions(outcome="claimed", limit="1000")
        finally:
            for replica in replicas:
                assert await replica.stop() == 0
    patches = scale_writes(kube)
    assert len(patches) == ALERTS and set(patches.values()) == {1}
    claimed = Counter(d["episode"] for d in claims)
    assert len(claimed) == ALERTS and set(claimed.values()) == {1}
    assert {kube.deployment(NS, f"d{i}")["spec"]["replicas"] for i in range(ALERTS)} == {2}
