"""One alert's way through the pipeline, over real HTTP into an in-process service with the
example rules: decisions recorded, claims unique per episode, guards that refuse."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from remediator.core.fingerprint import fingerprint
from remediator.store import open_store
from tests.support.clock import FakeClock
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.service import fixture_json, serve, settings_for


def alert(status: str = "firing", **labels: str) -> dict[str, Any]:
    return webhook_alert(status=status, labels=labels, annotations={})


def payload(*alerts: dict[str, Any], truncated: int = 0) -> dict[str, Any]:
    return webhook_payload(*alerts, truncatedAlerts=truncated)


def cpu(deployment: str, namespace: str = "llm-research", status: str = "firing") -> dict[str, Any]:
    return alert(status, alertname="HighCPUUsage", namespace=namespace, deployment=deployment)


def fp(alert: dict[str, Any]) -> str:
    """The fingerprint remediator keys the alert on: the one its labels give."""
    return fingerprint(alert["labels"])


def steps(decisions: list[dict[str, Any]], of: str) -> list[tuple[str, str | None]]:
    return [(d["step"], d["reason"]) for d in decisions if d["fingerprint"] == of]


async def test_firing_cpu_alert_is_classified_claimed_and_acted_on_once(tmp_path: Path) -> None:
    async with serve(settings_for(tmp_path)) as service:
        status, body = await service.post(fixture_json("firing-2-alerts.json"))
        assert (status, body["alerts"]) == (200, 2)
        await service.settle()
        decisions = await service.decisions()
    assert steps(decisions, "df82dde64a63646d") == [
        ("received", None),
        ("classified", None),
        ("claimed", None),
        ("acted", None),
        ("verified", None),
    ]
    acted = [d for d in decisions if d["step"] == "acted"]
    assert {d["target"] for d in acted} == {
        "llm-research/Deployment/llm-research-api",
        "llm-research/Deployment/llm-research-worker",
    }
    assert {(d["rule"], d["severity"], d["outcome"]) for d in acted} == {
        ("cpu-above-85-percent", "SEV-3", "succeeded")
    }


async def test_a_resend_joins_the_open_episode_and_claims_nothing_new(tmp_path: Path) -> None:
    async with serve(settings_for(tmp_path)) as service:
        for _ in range(3):
            await service.post(fixture_json("firing-2-alerts.json"))
            await service.settle()
        decisions = await service.decisions()
        resent = await service.metric("remediator_alerts_resent_total")
    assert [d["step"] for d in decisions].count("claimed") == 2
    assert len({d["episode"] for d in decisions}) == 2
    assert resent == 4


async def test_a_resolved_alert_closes_its_episode_and_a_new_firing_opens_another(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with serve(settings_for(tmp_path, episode_grace_s=60), clock=clock) as service:
        await service.post(payload(cpu("api")))
        await service.settle()
        await service.post(payload(cpu("api", status="resolved")))
        await service.settle()
        clock.advance(3600)
        await service.post(payload(cpu("api")))
        await service.settle()
        decisions = await service.decisions(fingerprint=fp(cpu("api")))
    episodes = [d["episode"] for d in decisions if d["step"] == "received"]
    assert len(episodes) == 2 and episodes[0] != episodes[1]
    assert [d["step"] for d in decisions if d["episode"] == episodes[0]][-1] == "resolved"
    assert [d["step"] for d in decisions].count("acted") == 2


async def test_a_firing_within_the_grace_after_resolve_reopens_without_acting_again(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with serve(settings_for(tmp_path, episode_grace_s=300), clock=clock) as service:
        await service.post(payload(cpu("api")))
        await service.settle()
        await service.post(payload(cpu("api", status="resolved")))
        await service.settle()
        clock.advance(30)
        await service.post(payload(cpu("api")))
        await service.settle()
        decisions = await service.decisions(fingerprint=fp(cpu("api")))
    assert len({d["episode"] for d in decisions}) == 1
    assert [d["step"] for d in decisions].count("claimed") == 1


async def test_labels_pointing_outside_the_allowed_namespaces_are_refused_and_escalated(
    tmp_path: Path,
) -> None:
    coredns = cpu("coredns", namespace="kube-system")
    async with serve(settings_for(tmp_path)) as service:
        await service.post(payload(coredns))
        await service.settle()
        decisions = await service.decisions(fingerprint=fp(coredns))
    assert steps(decisions, fp(coredns))[2:] == [
        ("refused", "out_of_scope"),
        ("escalated", "out_of_scope"),
    ]
    assert "kube-system" in decisions[2]["sentence"]


async def test_a_label_that_is_not_an_object_name_leaves_the_target_unresolved(
    tmp_path: Path,
) -> None:
    injected = cpu("api;rm -rf /")
    no_deployment = alert(alertname="HighCPUUsage", namespace="llm-research")
    async with serve(settings_for(tmp_path)) as service:
        await service.post(payload(injected))
        await service.post(payload(no_deployment))
        await service.settle()
        decisions = await service.decisions()
    for sent in (injected, no_deployment):
        assert steps(decisions, fp(sent))[2] == ("refused", "target_unresolved")
    assert not [d for d in decisions if d["step"] == "claimed"]


async def test_escalate_only_rules_page_with_the_seed_ladder(tmp_path: Path) -> None:
    down = alert(alertname="APIUnavailable")
    async with serve(settings_for(tmp_path)) as service:
        await service.post(payload(down))
        await service.settle()
        decisions = await service.decisions(fingerprint=fp(down))
    assert steps(decisions, fp(down))[2:] == [
        ("refused", "escalate_only"),
        ("escalated", "escalate_only"),
    ]
    escalated = decisions[-1]
    assert escalated["severity"] == "SEV-1"
    assert escalated["details"]["policy"] == "sev1-ladder"
    assert [t["after_s"] for t in escalated["details"]["tiers"]] == [0, 1800, 3600, 7200]


async def test_a_second_episode_on_the_same_target_within_cooldown_is_refused(
    tmp_path: Path,
) -> None:
    async with serve(settings_for(tmp_path)) as service:
        await service.post(payload(cpu("api")))
        await service.settle()
        other = alert(alertname="HighLatency", namespace="llm-research", deployment="api")
        await service.post(payload(other))
        await service.settle()
        decisions = await service.decisions(fingerprint=fp(other))
    assert steps(decisions, fp(other))[2:] == [("refused", "cooldown"), ("escalated", "cooldown")]


async def test_the_rule_rate_limit_stops_the_fifth_scale_out_in_an_hour(tmp_path: Path) -> None:
    async with serve(settings_for(tmp_path)) as service:
        for i in range(5):
            await service.post(payload(cpu(f"svc-{i}")))
        await service.settle()
        decisions = await service.decisions()
    refused = [d for d in decisions if d["step"] == "refused"]
    assert [d["step"] for d in decisions].count("claimed") == 4
    assert [(d["fingerprint"], d["reason"]) for d in refused] == [
        (fp(cpu("svc-4")), "rule_rate_limit")
    ]


async def test_many_distinct_targets_at_once_engage_the_storm_brake(tmp_path: Path) -> None:
    alerts = [
        alert(alertname="PodCrashLooping", namespace="llm-research", pod=f"p-{i}")
        for i in range(12)
    ]
    async with serve(settings_for(tmp_path)) as service:
        await service.post(payload(*alerts))
        await service.settle()
        decisions = await service.decisions()
    reasons = [d["reason"] for d in decisions if d["step"] == "refused"]
    assert [d["step"] for d in decisions].count("claimed") == 10
    assert reasons == ["storm", "storm"]


async def test_a_truncated_notification_is_a_storm_and_acts_on_nothing(tmp_path: Path) -> None:
    async with serve(settings_for(tmp_path)) as service:
        await service.post(fixture_json("truncated-10-of-many.json"))
        await service.settle()
        decisions = await service.decisions()
        truncated = await service.metric("remediator_truncated_alerts_total")
    assert truncated == 192
    assert not [d for d in decisions if d["step"] == "claimed"]
    assert {d["reason"] for d in decisions if d["step"] == "refused"} == {"storm"}


async def test_dry_run_claims_and_records_what_it_would_do_without_acting(tmp_path: Path) -> None:
    async with serve(settings_for(tmp_path, dry_run=True)) as service:
        await service.post(payload(cpu("api")))
        await service.settle()
        decisions = await service.decisions(fingerprint=fp(cpu("api")))
    assert steps(decisions, fp(cpu("api")))[2:] == [("claimed", None), ("dry_run", "dry_run")]
    assert decisions[-1]["sentence"] == (
        "Dry-run: would run log_only on llm-research/Deployment/api; its precheck passed."
    )


async def test_a_payload_journaled_before_a_long_outage_is_stale_on_restart(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    settings = settings_for(tmp_path, stale_after_s=600)
    store = open_store(settings)
    await store.open()
    body = json.dumps(payload(cpu("api"))).encode()
    await store.journal_append(body, clock.now())
    await store.close()
    clock.advance(3600)
    async with serve(settings, clock=clock) as service:
        await service.settle()
        decisions = await service.decisions(fingerprint=fp(cpu("api")))
    assert steps(decisions, fp(cpu("api")))[2:] == [("refused", "stale"), ("escalated", "stale")]
    assert "waited 3600 s" in decisions[2]["sentence"]
