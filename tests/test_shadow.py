"""Shadow rules: ``shadow: true`` decides and audits as if live, but never claims, never acts
and never pages; its decisions are marked and counted apart, and the live rules decide every
alert exactly as they would without it. The guards it meets are the live ones: scope, the
storm brake and the claim's cooldowns and limits, read without writing."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from remediator.actions.registry import default_registry
from remediator.core.clock import SystemClock
from remediator.core.errors import RuleFileError
from remediator.core.metrics import Metrics
from remediator.core.model import Verdict
from remediator.guards.claim import ClaimRequest
from remediator.ingest.ackgate import AckGate
from remediator.ruleset.active import ActiveRules
from remediator.ruleset.load import load_rules
from remediator.runtime.app import SERVICES, decision_core
from remediator.store.contract import AuditQuery
from remediator.store.sqlite import SqliteStore
from tests.support.kube_api import KubeApiServer
from tests.support.kubeconfig import write_kubeconfig
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.service import ServiceUnderTest, serve, settings_for

POLICY = """\
policy:
  namespaces: [llm-research]
defaults:
  escalation: {SEV-1: page, SEV-2: page, SEV-3: page}
escalations:
  page:
    tiers: [{after_s: 0, notify: [hook]}]
sinks:
  hook: {type: webhook, url: "http://127.0.0.1:9/hook"}
"""
RULES = """\
rules:
  - name: cpu-critical
    matchers: ['alertname="HighCPUUsage"', 'severity="critical"']
    severity: SEV-2
  - name: new-cpu
    shadow: true
    matchers: ['alertname="HighCPUUsage"', 'deployment=~".+"']
    severity: SEV-3
    action: {kind: log_only}
    target: {kind: Deployment, namespace: "{namespace}", name: "{deployment}"}
    cooldown_s: 600
  - name: cpu
    matchers: ['alertname="HighCPUUsage"']
    severity: SEV-3
  - name: deploy-fix
    matchers: ['alertname="Deploy"', 'deployment=~".+"']
    severity: SEV-3
    action: {kind: log_only}
    target: {kind: Deployment, namespace: "{namespace}", name: "{deployment}"}
    cooldown_s: 0
  - name: default
    matchers: []
    severity: SEV-3
"""


def write_rules(directory: Path, rules: str = RULES) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "00-policy.yaml").write_text(POLICY)
    (directory / "10-rules.yaml").write_text(rules)
    return directory


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[ServiceUnderTest]:
    rules = write_rules(tmp_path / "rules")
    async with serve(settings_for(tmp_path, rules_dir=rules)) as running:
        yield running


def cpu(deployment: str, namespace: str = "llm-research", **labels: str) -> dict[str, Any]:
    return webhook_alert(labels={"alertname": "HighCPUUsage", "namespace": namespace,
                                 "deployment": deployment, **labels})  # fmt: skip


async def decide(service: ServiceUnderTest, *alerts: dict[str, Any]) -> list[dict[str, Any]]:
    status, _ = await service.post(webhook_payload(*alerts))
    assert status == 200
    await service.settle()
    return await service.decisions()


async def outbox_rules(service: ServiceUnderTest) -> list[str]:
    services = service.server.app[SERVICES]
    due = await services.store.outbox_due(services.recorder.stamp().at, 1000)
    return [str(item.details["rule"]) for item in due]


def steps(records: list[dict[str, Any]], rule: str) -> list[tuple[str, str, str | None]]:
    return [(r["step"], r["outcome"], r["reason"]) for r in records if r["rule"] == rule]


async def test_a_shadow_rule_decides_as_if_live_but_the_live_rule_still_decides_and_pages(
    service: ServiceUnderTest,
) -> None:
    records = await decide(service, cpu("api"))
    # The live decision is the one the table makes without the shadow rule.
    assert steps(records, "cpu") == [
        ("received", "received", None), ("classified", "classified", None),
        ("refused", "refused", "escalate_only"), ("escalated", "escalated", "escalate_only"),
    ]  # fmt: skip
    [shadow] = [r for r in records if r["rule"] == "new-cpu"]
    assert (shadow["step"], shadow["outcome"], shadow["reason"]) == ("shadow", "dry_run", None)
    assert shadow["sentence"] == (
        "Shadow rule 'new-cpu' would run log_only on llm-research/Deployment/api; its precheck"
        " passed (the live rule 'cpu' decided)."
    )
    assert shadow["details"]["prechecked"] is True
    assert shadow["details"]["shadow"] is True and shadow["details"]["live_rule"] == "cpu"
    assert shadow["target"] == "llm-research/Deployment/api" and shadow["severity"] == "SEV-3"
    # Nothing claimed, nothing run, nothing paged for it; counted apart.
    assert [r for r in records if r["step"] == "claimed"] == []
    assert await outbox_rules(service) == ["cpu"]
    assert await service.metric("remediator_shadow_decisions_total", {"outcome": "dry_run"}) == 1
    sev3 = {"severity": "SEV-3"}
    assert await service.metric("remediator_decisions_total", {**sev3, "outcome": "dry_run"}) == 0
    assert (
        await service.metric("remediator_actions_total", {"kind": "log_only", "result": "dry_run"})
        == 0
    )


async def test_an_alert_an_earlier_live_rule_takes_has_no_shadow_decision(
    service: ServiceUnderTest,
) -> None:
    records = await decide(service, cpu("api", severity="critical"))
    assert {r["rule"] for r in records} == {"cpu-critical"}


async def test_a_shadow_decision_meets_the_live_guards_read_without_writing(
    service: ServiceUnderTest,
) -> None:
    # A live claim on d2: the shadow rule's cooldown sees it.
    await decide(service, webhook_alert(labels={"alertname": "Deploy", "namespace": "llm-research",
                                                "deployment": "d2"}))  # fmt: skip
    records = await decide(service, cpu("d2"), cpu("d3", namespace="kube-system"), cpu("d4"))
    by_target = {r["target"]: r for r in records if r["step"] == "shadow"}
    d2 = by_target["llm-research/Deployment/d2"]
    assert (d2["outcome"], d2["reason"]) == ("refused", "cooldown")
    assert d2["sentence"].startswith(
        "Shadow rule 'new-cpu' would be refused: llm-research/Deployment/d2 was acted on"
    )
    assert by_target["kube-system/Deployment/d3"]["reason"] == "out_of_scope"
    assert by_target["llm-research/Deployment/d4"]["outcome"] == "dry_run"
    assert await service.metric("remediator_shadow_decisions_total", {"outcome": "refused"}) == 2
    # A shadow decision wrote no claim and no storm sighting: the live state is the live rules'.
    services = service.server.app[SERVICES]
    claims = [r for r in await service.decisions() if r["step"] == "claimed"]
    assert [c["rule"] for c in claims] == ["deploy-fix"]
    distinct = await services.store.storm_add("probe", services.recorder.stamp().at, 60)
    assert distinct == 2  # deploy-fix's d2 and the probe: not d4, which only a shadow saw


async def test_shadow_decisions_never_page_even_when_refused(service: ServiceUnderTest) -> None:
    await decide(service, cpu("x", namespace="kube-system"))
    assert "new-cpu" not in await outbox_rules(service)
    assert [
        r for r in await service.decisions() if r["rule"] == "new-cpu" and r["step"] == "escalated"
    ] == []


def test_the_catch_all_cannot_be_a_shadow_rule(tmp_path: Path) -> None:
    rules = RULES.replace("  - name: default\n    matchers: []\n",
                          "  - name: default\n    shadow: true\n    matchers: []\n")  # fmt: skip
    with pytest.raises(RuleFileError) as caught:
        load_rules(write_rules(tmp_path / "rules", rules), default_registry())
    assert str(caught.value) == (
        '10-rules.yaml: rule "default": field "shadow" must be false on the catch-all:'
        " the last rule decides every alert no other rule takes, live."
    )


def test_the_rules_api_and_the_rule_set_say_which_rules_are_shadow(tmp_path: Path) -> None:
    ruleset = load_rules(write_rules(tmp_path / "rules"), default_registry())
    assert [r.name for r in ruleset.rules if r.shadow] == ["new-cpu"]
    labels = {"alertname": "HighCPUUsage", "deployment": "api"}
    assert ruleset.classify(labels).name == "cpu"
    shadow = ruleset.shadow_of(labels)
    assert shadow is not None and shadow.name == "new-cpu"
    assert ruleset.shadow_of({**labels, "severity": "critical"}) is None


class PreviewFails(SqliteStore):
    """A state store whose claim preview raises what no store should: a bug's stand-in."""

    async def claim_preview(self, request: ClaimRequest, now: datetime) -> Verdict:
        raise RuntimeError("a bug on the shadow path")


async def test_a_shadow_decision_that_fails_leaves_the_live_decision_as_it_was(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = PreviewFails(tmp_path / "state.db")
    await store.open()
    ruleset = load_rules(write_rules(tmp_path / "rules"), default_registry())
    clock = SystemClock()
    metrics = Metrics(CollectorRegistry(), default_registry())
    rules = ActiveRules(ruleset, clock.now())
    core = decision_core(store, rules, metrics, clock, settings_for(tmp_path), AckGate())
    worker = asyncio.create_task(core.worker.run())
    try:
        body = json.dumps(webhook_payload(cpu("api"))).encode()
        core.worker.accept(await store.journal_append(body, clock.now()))
        await asyncio.wait_for(core.worker.idle.wait(), 10)
        records = await store.decisions(AuditQuery(limit=100))
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        await store.close()
    assert [(r.rule, r.step.value, r.reason) for r in records] == [
        ("cpu", "received", None), ("cpu", "classified", None),
        ("cpu", "refused", "escalate_only"), ("cpu", "escalated", "escalate_only"),
    ]  # fmt: skip
    assert "the shadow decision for journal entry 1 failed" in caplog.text


SCALE_SHADOW = """\
rules:
  - name: new-cpu
    shadow: true
    matchers: ['alertname="HighCPUUsage"', 'deployment=~".+"']
    severity: SEV-3
    action: {kind: scale_out, params: {step: 1, max_replicas: 5}}
    target: {kind: Deployment, namespace: "{namespace}", name: "{deployment}"}
  - name: cpu
    matchers: ['alertname="HighCPUUsage"']
    severity: SEV-3
  - name: default
    matchers: []
    severity: SEV-3
"""


async def test_a_shadow_decision_runs_the_precheck_a_live_one_would_and_writes_nothing(
    tmp_path: Path,
) -> None:
    """With a cluster, the precheck decides "would run" as for a live claim: a Deployment
    that does not opt in is refused (and would page), one that does would be scaled; the
    API server sees reads only."""
    async with KubeApiServer(seed=11) as kube:
        kube.add_deployment("llm-research", "opted", replicas=3,
                            annotations={"remediator.io/allow": "scale_out"})  # fmt: skip
        kube.add_deployment("llm-research", "plain", replicas=3)
        rules = write_rules(tmp_path / "rules", SCALE_SHADOW)
        kube.bind_rbac_of(rules)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
        settings = settings_for(tmp_path, rules_dir=rules, kubeconfig=kubeconfig)
        async with serve(settings) as service:
            records = await decide(service, cpu("opted"), cpu("plain"))
            outbox = await outbox_rules(service)
        writes = [r.method for r in kube.requests if r.method not in ("GET", "HEAD")]
        replicas = [
            kube.deployment("llm-research", d)["spec"]["replicas"] for d in ("opted", "plain")
        ]
    shadows = {r["target"]: r for r in records if r["step"] == "shadow"}
    opted, plain = (
        shadows["llm-research/Deployment/opted"],
        shadows["llm-research/Deployment/plain"],
    )
    assert opted["outcome"] == "dry_run" and opted["details"]["prechecked"] is True
    assert (plain["outcome"], plain["reason"]) == ("refused", "not_opted_in")
    assert plain["details"]["would_page"] == "page"
    assert plain["sentence"].endswith(", and page 'page' (the live rule 'cpu' decided).")
    assert (writes, replicas) == ([], [3, 3])
    assert "new-cpu" not in outbox and [r for r in records if r["step"] == "claimed"] == []
