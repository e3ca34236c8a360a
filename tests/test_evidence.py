"""Evidence bundles end to end: an alert into the service, the action on the Kubernetes API
test server (its ServiceAccount bound by exactly what ``remediator rbac`` prints) or a real
PostgreSQL, and the bundles in a real S3 endpoint (moto in server mode) behind a proxy that
can fail. Each action leaves a ``before`` and an ``after`` bundle, a refusal that pages a
``refused`` one, under the claim's key, redacted; the decisions API and the page name them;
an object store down, failing or slow delays them and stops nothing; the only call is
``s3:PutObject``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from remediator.core.failpoints import EXIT_CODE
from remediator.core.fingerprint import fingerprint
from tests.support import s3
from tests.support.kube_api import KubeApiServer
from tests.support.kubeconfig import write_kubeconfig
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.postgres import PostgresServer, Roles
from tests.support.process import start_remediator
from tests.support.service import ServiceUnderTest, paging_example_rules, serve, settings_for
from tests.support.sinks import WebhookStub
from tests.support.waiting import eventually
from tests.test_kill_query import dsn_file
from tests.test_kill_query import rules as kill_query_rules

BUCKET = "remediator-evidence"
PREFIX = "team-a/remediator"
NS = "llm-research"
OPTED_IN = {"remediator.io/allow": "scale_out,recycle_pod"}
SECRET = "hunter2-s3cr3t"
TODAY = datetime.now(UTC)


@pytest.fixture
async def moto() -> AsyncIterator[s3.MotoS3]:
    async with s3.MotoS3() as server:
        await s3.create_bucket(server.url, BUCKET)
        yield server


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch, moto: s3.MotoS3) -> None:
    for name, value in s3.env(moto.url).items():
        monkeypatch.setenv(name, value)


@pytest.fixture
async def faults(moto: s3.MotoS3) -> AsyncIterator[s3.S3Faults]:
    async with s3.S3Faults(moto.url) as proxy:
        yield proxy


@pytest.fixture
async def kube() -> AsyncIterator[KubeApiServer]:
    async with KubeApiServer(seed=11) as server:
        yield server


@pytest.fixture
async def hook() -> AsyncIterator[WebhookStub]:
    async with WebhookStub() as stub:
        yield stub


def rules_dir(tmp_path: Path, hook: WebhookStub) -> Path:
    """The example rules, paging a webhook on every ladder."""
    return paging_example_rules(
        tmp_path / "rules", hook.url, **{"pdb_retry_s: 30": "pdb_retry_s: 1"}
    )


def s3_overrides(faults: s3.S3Faults, **more: Any) -> dict[str, Any]:
    return {
        "s3_bucket": BUCKET, "s3_prefix": PREFIX, "s3_endpoint_url": faults.url,
        "s3_region": s3.REGION, "s3_max_attempts": 1, "evidence_every_s": 0.2,
        "archive_every_s": 3600, **more,
    }  # fmt: skip


@dataclass
class Rig:
    service: ServiceUnderTest
    kube: KubeApiServer
    faults: s3.S3Faults
    hook: WebhookStub
    bucket_url: str
    """The S3 endpoint itself, not the proxy: what the bucket holds, whatever the proxy does."""

    async def fire(self, **labels: str) -> list[dict[str, Any]]:
        alert = webhook_alert(
            labels=labels, annotations={"description": f"see postgres://app:{SECRET}@db/x"}
        )
        status, _ = await self.service.post(webhook_payload(alert))
        assert status == 200
        await self.service.settle()
        return await self.service.decisions(fingerprint=fingerprint(labels))

    async def keys(self) -> list[str]:
        return sorted(await s3.list_keys(self.bucket_url, BUCKET, f"{PREFIX}/evidence/"))

    async def bundles(self, count: int) -> dict[str, dict[str, Any]]:
        """The bucket's bundles by phase, once it holds ``count`` (and the queue is empty)."""

        async def arrived() -> bool:
            return len(await self.keys()) >= count and await self.waiting() == 0

        await eventually(arrived, f"{count} evidence bundles in the bucket")
        found = {}
        for key in await self.keys():
            raw = await s3.get_object(self.bucket_url, BUCKET, key)
            assert SECRET.encode() not in raw, key
            document = json.loads(raw)
            found[document["phase"]] = {"key": key, **document}
        assert len(found) == count, sorted(found)
        return found

    async def waiting(self) -> float:
        return await self.service.metric("remediator_evidence_queue_bundles")


@pytest.fixture
async def rig(
    tmp_path: Path,
    kube: KubeApiServer,
    faults: s3.S3Faults,
    hook: WebhookStub,
    moto: s3.MotoS3,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Rig]:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
    rules = rules_dir(tmp_path, hook)
    kube.bind_rbac_of(rules)
    given = s3_overrides(faults, **getattr(request, "param", {}))
    settings = settings_for(tmp_path, kubeconfig=kubeconfig, rules_dir=rules, **given)
    async with serve(settings) as service:
        yield Rig(service, kube, faults, hook, moto.url)


def cpu(deployment: str) -> dict[str, str]:
    return {"alertname": "HighCPUUsage", "namespace": NS, "deployment": deployment}


def crashloop(pod: str) -> dict[str, str]:
    return {"alertname": "PodCrashLooping", "namespace": NS, "pod": pod}


def prefix_of(decision: dict[str, Any]) -> str:
    day = datetime.fromisoformat(decision["at"].replace("Z", "+00:00")).astimezone(UTC)
    return f"{PREFIX}/evidence/{day:%Y/%m/%d}/{decision['episode']}"


def step(decisions: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [found] = [d for d in decisions if d["step"] == name]
    return found


# --- what each action's bundles hold ---------------------------------------------------


async def test_a_scale_leaves_a_before_and_an_after_bundle_of_what_a_reviewer_reads(
    rig: Rig,
) -> None:
    rig.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN,
                            env={"DB_PASSWORD": SECRET, "LOG_LEVEL": "info"})  # fmt: skip
    decisions = await rig.fire(**cpu("api"))
    acted = step(decisions, "acted")
    assert acted["outcome"] == "succeeded"
    found = await rig.bundles(2)
    before, after = found["before"], found["after"]
    claim = acted["details"]["evidence"]["before"]["key"].rsplit("/", 1)[1].split("-")[0]
    assert [before["key"], after["key"]] == [
        f"{prefix_of(acted)}/{claim}-before.json", f"{prefix_of(acted)}/{claim}-after.json"
    ]  # fmt: skip
    assert acted["details"]["evidence"] == {
        "before": {"key": before["key"], "parts": ["deployment", "replicasets", "events",
                                                   "autoscalers"]},
        "after": {"key": after["key"], "parts": ["deployment", "replicasets", "events",
                                                 "autoscalers"]},
    }  # fmt: skip
    for bundle in (before, after):
        assert bundle["format"] == "remediator-evidence/1"
        assert (bundle["rule"], bundle["action"], bundle["kind"]) == (
            "cpu-above-85-percent", "scale-out-api", "scale_out"
        )  # fmt: skip
        assert bundle["target"] == f"{NS}/Deployment/api"
        assert bundle["errors"] == {}  # every read is granted by `remediator rbac`
        assert bundle["alert"]["labels"]["deployment"] == "api"
        assert bundle["alert"]["annotations"]["description"] == "see postgres://app:[REDACTED]@db/x"
        [container] = bundle["sections"]["deployment"]["spec"]["template"]["spec"]["containers"]
        assert container["env"] == [
            {"name": "DB_PASSWORD", "value": "[REDACTED]"}, {"name": "LOG_LEVEL", "value": "info"}
        ]  # fmt: skip
        [replicaset] = bundle["sections"]["replicasets"]
        assert replicaset["metadata"]["ownerReferences"][0]["name"] == "api"
        assert bundle["sections"]["autoscalers"] == []
    assert before["sections"]["deployment"]["spec"]["replicas"] == 3
    assert after["sections"]["deployment"]["spec"]["replicas"] == 5
    assert before["outcome"] == {}
    assert after["outcome"]["sentence"] == acted["sentence"]
    assert after["outcome"]["verification"] == "verified"
    reasons = [e["reason"] for e in after["sections"]["events"]]
    assert "RemediatorScaledOut" in reasons
    assert "RemediatorScaledOut" not in [e["reason"] for e in before["sections"]["events"]]
    assert await rig.service.metric("remediator_evidence_uploads_total") == 2
    counts = {
        phase: await rig.service.metric(
            "remediator_evidence_bundles_total", {"phase": phase, "result": "complete"}
        )
        for phase in ("before", "after")
    }
    assert counts == {"before": 1, "after": 1}


async def test_a_recycle_keeps_the_pods_last_log_lines_before_and_its_workload(
    rig: Rig,
) -> None:
    rig.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    pod = rig.kube.pods(NS, {"app": "api"})[0]["metadata"]["name"]
    lines = [f"line {n}" for n in range(250)] + [f"connecting with password={SECRET}"]
    rig.kube.write_log(NS, pod, lines)
    decisions = await rig.fire(**crashloop(pod))
    assert step(decisions, "acted")["outcome"] == "succeeded"
    found = await rig.bundles(2)
    before, after = found["before"], found["after"]
    logs = before["sections"][f"logs of pod {pod}"]
    assert logs["app"]["lines"] == [*lines[-200:-1], "connecting with password=[REDACTED]"]
    assert f"logs of pod {pod}" not in after["sections"]  # the pod is gone: nothing to tail
    assert before["sections"][f"pod {pod}"]["metadata"]["name"] == pod
    assert before["sections"]["deployment"]["metadata"]["name"] == "api"
    assert before["errors"] == {}
    assert f"pod {pod}" in after["errors"]  # evicted: the API server says 404
    assert "404" in after["errors"][f"pod {pod}"] or "NotFound" in after["errors"][f"pod {pod}"]


async def test_a_refusal_that_pages_leaves_a_refused_bundle_named_in_the_page(rig: Rig) -> None:
    rig.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    pods = rig.kube.pods(NS, {"app": "api"})
    rig.kube.set_pod_ready(NS, pods[1]["metadata"]["name"], False)
    decisions = await rig.fire(**crashloop(pods[0]["metadata"]["name"]))
    refused = step(decisions, "refused")
    assert refused["reason"] == "blast_radius"
    found = await rig.bundles(1)
    bundle = found["refused"]
    assert bundle["outcome"] == {"reason": "blast_radius", "sentence": refused["sentence"]}
    assert bundle["sections"]["deployment"]["status"]["replicas"] == 3
    assert refused["details"]["evidence"]["refused"]["key"] == bundle["key"]
    assert step(decisions, "escalated")["details"]["evidence"] == refused["details"]["evidence"]
    await eventually(lambda: bool(rig.hook.log), "the page")
    page = json.loads(rig.hook.log[0].body)
    assert page["details"]["evidence"] == {"refused": bundle["key"]}
    assert "evidence_url" not in page["details"]  # links are not signed unless asked


async def test_a_refusal_before_any_claim_leaves_the_episodes_bundle_named_in_its_page(
    rig: Rig,
) -> None:
    """A guard of the decision refuses (here the target's cooldown after a scale): the
    episode's ``refused.json`` holds the target as it is; out of the policy's namespaces
    the target is not read at all, and the bundle holds the alert and the refusal."""
    rig.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    assert step(await rig.fire(**cpu("api")), "acted")["outcome"] == "succeeded"
    await rig.bundles(2)
    memory = {"alertname": "HighMemoryUsage", "namespace": NS, "deployment": "api"}
    decisions = await rig.fire(**memory)
    refused = step(decisions, "refused")
    assert refused["reason"] == "cooldown"
    key = f"{prefix_of(refused)}/refused.json"
    assert refused["details"]["evidence"] == {"refused": {"key": key}}
    assert step(decisions, "escalated")["details"]["evidence"] == refused["details"]["evidence"]
    bundle = (await rig.bundles(3))["refused"]
    assert bundle["key"] == key
    assert (bundle["claim"], bundle["rule"], bundle["kind"]) == (
        None, "memory-above-90-percent", "scale_out"
    )  # fmt: skip
    assert bundle["outcome"] == {"reason": "cooldown", "sentence": refused["sentence"]}
    assert bundle["sections"]["deployment"]["spec"]["replicas"] == 5  # the scale it follows
    assert list(bundle["sections"]) == ["deployment", "replicasets", "events", "autoscalers"]
    assert bundle["alert"]["labels"] == memory

    def paged() -> bool:  # the delivery loop sends it after the decision, on its own time
        pages = [json.loads(entry.body) for entry in rig.hook.log]
        return {"refused": key} in [page["details"].get("evidence") for page in pages]

    await eventually(paged, "the page naming the refusal's bundle")
    outside = {**cpu("api"), "namespace": "kube-system"}
    decisions = await rig.fire(**outside)
    assert step(decisions, "refused")["reason"] == "out_of_scope"
    bundles = [b for b in (await _all_bundles(rig, 4)) if b["alert"]["labels"] == outside]
    [bundle] = bundles
    assert (bundle["outcome"]["reason"], bundle["sections"], bundle["errors"]) == (
        "out_of_scope", {}, {}
    )  # fmt: skip
    assert rig.kube.requests_to("/namespaces/kube-system") == []
    complete = await rig.service.metric(
        "remediator_evidence_bundles_total", {"phase": "refused", "result": "complete"}
    )
    assert complete == 2


async def _all_bundles(rig: Rig, count: int) -> list[dict[str, Any]]:
    async def arrived() -> bool:
        return len(await rig.keys()) >= count and await rig.waiting() == 0

    await eventually(arrived, f"{count} evidence bundles in the bucket")
    keys = await rig.keys()
    return [json.loads(await s3.get_object(rig.bucket_url, BUCKET, key)) for key in keys]


@pytest.mark.parametrize("rig", [{"evidence_presign_s": 600}], indirect=True)
async def test_signed_links_open_the_bundle_from_the_page_and_the_decisions_api(rig: Rig) -> None:
    rig.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    pods = rig.kube.pods(NS, {"app": "api"})
    rig.kube.set_pod_ready(NS, pods[1]["metadata"]["name"], False)
    decisions = await rig.fire(**crashloop(pods[0]["metadata"]["name"]))
    bundle = (await rig.bundles(1))["refused"]
    refused = step(decisions, "refused")
    api_url = refused["evidence_urls"]["refused"]
    await eventually(lambda: bool(rig.hook.log), "the page")
    page_url = json.loads(rig.hook.log[0].body)["details"]["evidence_url"]
    for url in (api_url, page_url):
        parts = urlsplit(url)
        assert parts.path == f"/{BUCKET}/{bundle['key']}"
        assert "X-Amz-Expires=600" in parts.query
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            assert resp.status == 200
            assert json.loads(await resp.read())["claim"] == bundle["claim"]


@pytest.mark.parametrize("rig", [{"evidence_timeout_s": 0.5}], indirect=True)
async def test_a_read_slow_or_refused_is_an_error_of_the_bundle_and_the_action_goes_on(
    rig: Rig,
) -> None:
    rig.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    rig.kube.inject_fault(r"/replicasets$", method="GET", delay=5, times=None)
    rig.kube.inject_fault(r"/namespaces/llm-research/events$", method="GET", status=403,
                          times=None)  # fmt: skip
    decisions = await rig.fire(**cpu("api"))
    acted = step(decisions, "acted")
    assert acted["outcome"] == step(decisions, "verified")["outcome"] == "succeeded"
    assert rig.kube.deployment(NS, "api")["spec"]["replicas"] == 5
    found = await rig.bundles(2)
    for phase in ("before", "after"):
        errors = found[phase]["errors"]
        assert sorted(errors) == ["events", "replicasets"], errors
        assert errors["replicasets"] == "not read within 0.5 s"
        assert "forbidden" in errors["events"].lower(), errors["events"]
        assert list(found[phase]["sections"]) == ["deployment", "autoscalers"]
        assert acted["details"]["evidence"][phase]["errors"] == errors
    partial = await rig.service.metric(
        "remediator_evidence_bundles_total", {"phase": "before", "result": "partial"}
    )
    assert partial == 1


async def test_an_answer_that_is_not_json_refuses_the_action_and_is_an_error_of_its_bundle(
    rig: Rig,
) -> None:
    """The autoscalers' list comes back as a proxy's HTML page with status 200: who owns
    the replicas is unknown, so the scale is refused (the API failed) and pages; its
    bundle says what the answer was, and holds what else was read."""
    rig.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    rig.kube.inject_fault(r"/horizontalpodautoscalers$", method="GET", status=200,
                          body="<html>502 Bad Gateway</html>", times=None)  # fmt: skip
    decisions = await rig.fire(**cpu("api"))
    refused = step(decisions, "refused")
    assert refused["reason"] == "api_error"
    assert "not the object asked for" in refused["sentence"]
    assert step(decisions, "escalated")["outcome"] == "escalated"
    assert rig.kube.deployment(NS, "api")["spec"]["replicas"] == 3
    bundle = (await rig.bundles(1))["refused"]
    assert bundle["errors"]["autoscalers"].startswith(
        "ApiError: the answer is not the object asked for: JSONDecodeError: "
    ), bundle["errors"]
    assert list(bundle["sections"]) == ["deployment", "replicasets", "events"]


@pytest.mark.parametrize("rig", [{"dry_run": True}], indirect=True)
async def test_a_dry_run_captures_nothing(rig: Rig) -> None:
    """Nothing is done, so nothing is captured: a dry run's reads would be the load of a
    real run for a record of what did not happen."""
    rig.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    decisions = await rig.fire(**cpu("api"))
    assert [d["outcome"] for d in decisions if d["step"] == "acted"] in ([], ["dry_run"])
    await asyncio.sleep(0.6)  # three rounds of the uploader
    assert await rig.keys() == []
    assert all("evidence" not in (d["details"] or {}) for d in decisions)
    assert rig.faults.seen == []


# --- a kill on a real PostgreSQL -------------------------------------------------------


async def test_a_kill_keeps_the_sessions_and_locks_without_literals(
    tmp_path: Path, pg: PostgresServer, roles: Roles, faults: s3.S3Faults
) -> None:
    app, rem = roles.app, roles.remediator
    holder = await pg.idle_in_transaction(app.name, app.password, "appdb")
    await holder.started()
    victim = await pg.long_query(app.name, app.password, "appdb", 60)
    await victim.started()
    await asyncio.sleep(1.2)
    params = "{min_duration_s: 1, max_per_run: 5, states: [active], grace_s: 1}"
    settings = settings_for(
        tmp_path, rules_dir=kill_query_rules(tmp_path / "rules", params),
        databases={"primary": dsn_file(tmp_path, pg.dsn(rem.name, rem.password))},
        **s3_overrides(faults),
    )  # fmt: skip
    labels = {"alertname": "LongRunningQuery"}
    async with serve(settings) as service:
        assert (await service.post(webhook_payload(webhook_alert(labels=labels))))[0] == 200
        await service.settle()
        decisions = await service.decisions(fingerprint=fingerprint(labels))

        async def two() -> bool:
            return len(await s3.list_keys(faults.url, BUCKET, f"{PREFIX}/evidence/")) == 2

        await eventually(two, "the kill's two bundles")
    acted = step(decisions, "acted")
    assert acted["outcome"] == "succeeded"
    found = {}
    for key in await s3.list_keys(faults.url, BUCKET, f"{PREFIX}/evidence/"):
        document = json.loads(await s3.get_object(faults.url, BUCKET, key))
        found[document["phase"]] = document
    before = found["before"]["sections"]["postgres"]
    pids = {s["pid"]: s for s in before["sessions"]}
    assert pids[victim.pid]["query"] == "SELECT pg_sleep(?)"
    assert holder.pid in pids
    assert all(lock["pid"] in pids for lock in before["locks"])
    assert any(lock["pid"] == victim.pid for lock in before["locks"])
    after = found["after"]
    assert [s["pid"] for s in after["outcome"]["details"]["sessions"]] == [victim.pid]
    assert victim.pid not in {
        s["pid"] for s in after["sections"]["postgres"]["sessions"] if s.get("state") == "active"
    }


# --- an object store away ----------------------------------------------------------------


async def test_an_object_store_down_then_failing_then_slow_delays_bundles_and_stops_nothing(
    rig: Rig,
) -> None:
    rig.kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    rig.kube.add_deployment(NS, "web", replicas=3, annotations=OPTED_IN)
    await rig.faults.down()
    first = await rig.fire(**cpu("api"))
    assert step(first, "acted")["outcome"] == "succeeded"
    await eventually(lambda: _waiting(rig, 2), "both bundles queued through the outage")
    assert rig.faults.seen == []  # nothing listens: no request reached the proxy
    assert await rig.keys() == []
    await rig.faults.up()
    rig.faults.failing(500)
    second = await rig.fire(**cpu("web"))
    assert step(second, "acted")["outcome"] == "succeeded"
    await eventually(lambda: any(s.status == 500 for s in rig.faults.seen), "a 500")
    assert await rig.keys() == []
    rig.faults.slow(0.3)
    keys = [n["key"] for d in (first, second) for n in step(d, "acted")["details"]["evidence"]
            .values()]  # fmt: skip
    await eventually(lambda: _all_in(rig, keys), "every bundle after the recovery", 40)
    assert await rig.waiting() == 0
    assert rig.kube.deployment(NS, "api")["spec"]["replicas"] == 5
    assert rig.kube.deployment(NS, "web")["spec"]["replicas"] == 5
    assert {seen.operation for seen in rig.faults.seen} == {"PutObject"}  # the IAM policy
    oldest = await rig.service.metric("remediator_evidence_queue_oldest_age_seconds")
    assert oldest == 0


async def _waiting(rig: Rig, count: int) -> bool:
    return await rig.waiting() == count


async def _all_in(rig: Rig, keys: list[str]) -> bool:
    return sorted(await rig.keys()) == sorted(keys) and await rig.waiting() == 0


# --- a state store that refuses the bundle ---------------------------------------------

REFUSE_BUNDLES = """
CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = '53100';
END $$;
CREATE TRIGGER disk_full BEFORE INSERT OR UPDATE ON evidence_queue
    FOR EACH ROW EXECUTE FUNCTION disk_full();
"""


async def test_a_state_store_that_refuses_the_bundle_loses_it_and_nothing_else(
    tmp_path: Path, pg: PostgresServer, kube: KubeApiServer, faults: s3.S3Faults,
    hook: WebhookStub, moto: s3.MotoS3,
) -> None:  # fmt: skip
    """The queue's table refuses every write (a disk full, say): the action, its refusal,
    their records and pages go on; each bundle is lost, counted, and said in the record of
    the action; once the table takes writes again the next bundles arrive."""
    state_url = await pg.create_state_database()
    kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    kube.add_deployment(NS, "web", replicas=3, annotations=OPTED_IN)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
    rules = rules_dir(tmp_path, hook)
    kube.bind_rbac_of(rules)
    settings = settings_for(tmp_path, kubeconfig=kubeconfig, rules_dir=rules,
                            state_url=state_url, **s3_overrides(faults))  # fmt: skip
    async with serve(settings) as service:
        rig = Rig(service, kube, faults, hook, moto.url)
        state = await asyncpg.connect(state_url)
        try:
            await state.execute(REFUSE_BUNDLES)
            decisions = await rig.fire(**cpu("api"))
            acted = step(decisions, "acted")
            assert acted["outcome"] == step(decisions, "verified")["outcome"] == "succeeded"
            assert kube.deployment(NS, "api")["spec"]["replicas"] == 5
            for phase in ("before", "after"):
                note = acted["details"]["evidence"][phase]
                assert (
                    note["lost"] == "the state store did not take the bundle; it was not uploaded"
                )
            memory = {"alertname": "HighMemoryUsage", "namespace": NS, "deployment": "api"}
            refused = await rig.fire(**memory)
            assert step(refused, "refused")["reason"] == "cooldown"
            assert step(refused, "escalated")["outcome"] == "escalated"

            async def counted() -> bool:
                lost = await service.metric(
                    "remediator_evidence_bundles_total", {"phase": "refused", "result": "lost"}
                )
                return lost == 1

            await eventually(counted, "the refusal's bundle counted lost")
            for phase in ("before", "after"):
                lost = await service.metric(
                    "remediator_evidence_bundles_total", {"phase": phase, "result": "lost"}
                )
                assert lost == 1
            assert await rig.keys() == []
            await state.execute("DROP TRIGGER disk_full ON evidence_queue")
        finally:
            await state.close()
        later = await rig.fire(**cpu("web"))
        keys = [note["key"] for note in step(later, "acted")["details"]["evidence"].values()]
        await eventually(lambda: _all_in(rig, keys), "the next action's bundles")
        assert kube.deployment(NS, "web")["spec"]["replicas"] == 5


# --- a crash between the upload and the queue's write ------------------------------------


async def test_a_crash_after_an_upload_uploads_it_again_under_the_same_key_only(
    tmp_path: Path, kube: KubeApiServer, moto: s3.MotoS3, faults: s3.S3Faults, hook: WebhookStub
) -> None:
    """The action runs with the object store down, so that the crash comes at the first
    upload once it is back, with both bundles queued and the claim settled."""
    kube.add_deployment(NS, "api", replicas=3, annotations=OPTED_IN)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
    rules = rules_dir(tmp_path, hook)
    kube.bind_rbac_of(rules)
    flags = ("--kubeconfig", str(kubeconfig), "--s3-bucket", BUCKET, "--s3-prefix", PREFIX,
             "--s3-endpoint-url", faults.url, "--s3-region", s3.REGION,
             "--s3-max-attempts", "1", "--evidence-every-seconds", "0.2")  # fmt: skip
    env = s3.env(moto.url)
    payload = json.dumps(webhook_payload(webhook_alert(labels=cpu("api")))).encode()
    await faults.down()
    crashing = await start_remediator(tmp_path, rules=rules, failpoints="after_evidence_upload",
                                      extra_args=flags, env=env)  # fmt: skip
    try:
        assert await crashing.post(payload) == 200

        async def verified() -> bool:
            return "verified" in [d["step"] for d in await crashing.decisions()]

        await eventually(verified, "the scale verified")
        await faults.up()
        assert await crashing.wait_exit(20) == EXIT_CODE
    finally:
        await crashing.stop()
    [uploaded] = [s.path for s in faults.seen if s.operation == "PutObject" and s.status == 200]
    service = await start_remediator(tmp_path, rules=rules, extra_args=flags, env=env)
    try:

        async def both() -> bool:
            return len(await s3.list_keys(moto.url, BUCKET, f"{PREFIX}/evidence/")) == 2

        await eventually(both, "both bundles after the restart")
        await asyncio.sleep(0.6)  # three more rounds: nothing is left to upload
        decisions = await service.decisions()
    finally:
        assert await service.stop() == 0
    puts = [s.path for s in faults.seen if s.operation == "PutObject" and s.status == 200]
    assert puts.count(uploaded) == 2  # the same key again: an overwrite, not a copy
    assert len(puts) == 3 and len(set(puts)) == 2
    assert len([r for r in kube.requests if r.method == "PATCH"]) == 1
    keys = await s3.list_keys(moto.url, BUCKET, f"{PREFIX}/evidence/")
    acted = step(decisions, "acted")
    assert sorted(keys) == sorted(n["key"] for n in acted["details"]["evidence"].values())
