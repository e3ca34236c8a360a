"""The silence check (``silences/watch.py``, ``clients/alertmanager.py``): matched as
Alertmanager matches, asked of a real Alertmanager (Debian's 0.25) and compared with its own
view of which alerts it silences; hostile and broken answers; and end to end, a silenced
alert that the service decides on without acting or paging, an Alertmanager away that
refuses (and pages) or acts as the rule says."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from remediator.clients.alertmanager import MAX_ANSWER_BYTES, AlertmanagerClient
from remediator.core.errors import AlertmanagerUnavailable
from remediator.core.fingerprint import fingerprint
from remediator.core.metrics import Metrics
from remediator.core.model import StopReason
from remediator.silences import watch as silences
from remediator.silences.watch import SilenceWatch
from tests.support.alertmanager import AlertmanagerProcess, alertmanager, start_alertmanager
from tests.support.clock import FakeClock
from tests.support.kube_api import KubeApiServer
from tests.support.kubeconfig import write_kubeconfig
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.process import crash_after_claim, start_remediator
from tests.support.service import paging_example_rules, serve, settings_for
from tests.support.sinks import WebhookStub
from tests.support.waiting import eventually

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
NS = "llm-research"


def stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


Matcher = tuple[str, Any, Any, bool]
"""(name, value, isRegex, isEqual), any value: what a peer sends is not ours to type."""


def matchers_json(matchers: tuple[Matcher, ...]) -> list[dict[str, Any]]:
    return [{"name": n, "value": v, "isRegex": r, "isEqual": e} for n, v, r, e in matchers]


def silence(*matchers: Matcher, **more: Any) -> dict[str, Any]:
    """A silence as ``GET /api/v2/silences`` shows it: (name, value, isRegex, isEqual)."""
    return {
        "id": more.pop("id", "s1"),
        "matchers": [
            {"name": n, "value": v, "isRegex": r, "isEqual": e} for n, v, r, e in matchers
        ],
        "startsAt": stamp(more.pop("starts", NOW - timedelta(minutes=5))),
        "endsAt": stamp(more.pop("ends", NOW + timedelta(hours=1))),
        "updatedAt": stamp(more.pop("updated", NOW - timedelta(minutes=5))),
        "createdBy": more.pop("by", "jane"),
        "comment": more.pop("comment", "on it"),
        "status": {"state": "active"},
        **more,
    }


class Answers:
    """A source that answers each URL with what the test put there (or raises it)."""

    def __init__(self, **by_url: Any) -> None:
        self.by_url = by_url

    async def silences(self, url: str) -> Any:
        answer = self.by_url[url]
        if isinstance(answer, Exception):
            raise answer
        return answer


async def watch_of(by_url: dict[str, Any], max_age_s: float = 30) -> tuple[SilenceWatch, FakeClock]:
    """A watch of the peers ``by_url`` (their answers), read once at ``NOW``."""
    clock = FakeClock(NOW)
    metrics = Metrics(CollectorRegistry(), [])
    watch = SilenceWatch(Answers(**by_url), list(by_url), clock, metrics, max_age_s)
    await watch.refresh()
    return watch, clock


API = {"alertname": "HighCPUUsage", "namespace": NS, "deployment": "api"}

# --- matching, as Alertmanager matches ---------------------------------------------------

MATCHING = [
    # (silence matchers, labels, silenced?)
    ([("alertname", "HighCPUUsage", False, True)], API, True),
    ([("deployment", "api|web", True, True)], API, True),
    ([("deployment", "ap", True, True)], API, False),  # anchored: the whole value
    ([("deployment", "api", True, True)], {**API, "deployment": "api-2"}, False),
    ([("deployment", "api", False, False)], API, False),  # !=
    ([("deployment", "web", False, False)], API, True),
    ([("namespace", "kube-.*", True, False)], API, True),  # !~
    ([("namespace", "llm-.*", True, False)], API, False),
    ([("team", "", False, True), ("alertname", "HighCPUUsage", False, True)], API, True),
    ([("team", ".+", True, True)], API, False),  # an absent label is ""
    ([("team", "", False, False)], API, False),
    ([("alertname", "HighCPUUsage", False, True), ("deployment", "web", False, True)], API, False),
    ([("deployment", "äpi", False, True)], {**API, "deployment": "äpi"}, True),
    ([("deployment", "(?i)API", True, True)], API, True),
    ([("deployment", "a\\pi", True, True)], API, False),  # \p needs a class: not compiled
]


@pytest.mark.parametrize(("matchers", "labels", "expected"), MATCHING)
async def test_a_silence_covers_what_alertmanager_s_matchers_match(
    matchers: list[tuple[str, str, bool, bool]], labels: dict[str, str], expected: bool
) -> None:
    watch, _ = await watch_of({"http://am": [silence(*matchers)]})
    verdict = watch.verdict(labels, "act")
    assert (verdict.reason is StopReason.SILENCED) is expected, verdict


async def test_the_refusal_names_the_silence_its_author_and_comment() -> None:
    answer = [silence(("deployment", "api", False, True), id="8f1e", by="jane@example.com",
                      comment="deploying a fix, hands off")]  # fmt: skip
    watch, _ = await watch_of({"http://am": answer})
    verdict = watch.verdict(API, "refuse")
    assert verdict.reason is StopReason.SILENCED
    assert verdict.sentence == (
        "Silenced in Alertmanager by jane@example.com until 2026-12-02T13:00:00Z"
        " (silence 8f1e): 'deploying a fix, hands off'; a human is on it, so nothing was done."
    )


async def test_only_a_silence_in_force_now_counts() -> None:
    answer = [
        silence(("deployment", "api", False, True), id="later", starts=NOW + timedelta(minutes=1)),
        silence(("deployment", "api", False, True), id="over", ends=NOW),
    ]
    watch, clock = await watch_of({"http://am": answer})
    assert watch.verdict(API, "refuse").allowed
    clock.advance(61)
    await watch.refresh()
    assert watch.verdict(API, "refuse").reason is StopReason.SILENCED


async def test_an_ha_pair_is_merged_by_id_the_latest_update_winning() -> None:
    """Peer b has expired silence s1 (its update is newer); peer a still shows it; s2 is
    only on a (gossip lags): both are known."""
    old = silence(("deployment", "api", False, True), id="s1")
    expired = silence(("deployment", "api", False, True), id="s1", ends=NOW - timedelta(seconds=1),
                      updated=NOW - timedelta(seconds=1))  # fmt: skip
    other = silence(("deployment", "web", False, True), id="s2")
    watch, _ = await watch_of({"http://a": [old, other], "http://b": [expired]})  # fmt: skip
    assert watch.verdict(API, "refuse").allowed
    assert watch.verdict({**API, "deployment": "web"}, "refuse").reason is StopReason.SILENCED


async def test_one_peer_answering_is_enough_and_none_is_unknown_as_the_rule_says() -> None:
    down = AlertmanagerUnavailable("http://b: ClientConnectorError: refused")
    answer = [silence(("deployment", "api", False, True))]
    watch, clock = await watch_of({"http://a": answer, "http://b": down}, 30)  # fmt: skip
    assert watch.verdict(API, "refuse").reason is StopReason.SILENCED
    assert watch.verdict({**API, "deployment": "web"}, "refuse").allowed
    clock.advance(31)  # no answer since: what was true then is not known now
    unknown = watch.verdict({**API, "deployment": "web"}, "refuse")
    assert unknown.reason is StopReason.SILENCE_UNKNOWN
    assert "Alertmanager last answered 31 s ago" in unknown.sentence
    assert "refused" in unknown.sentence
    assert watch.verdict({**API, "deployment": "web"}, "act").allowed


async def test_never_answered_is_unknown() -> None:
    down = AlertmanagerUnavailable("http://a answered 503: draining")
    watch, _ = await watch_of({"http://a": down})
    verdict = watch.verdict(API, "refuse")
    assert verdict.reason is StopReason.SILENCE_UNKNOWN
    assert "last answered never (http://a answered 503: draining)" in verdict.sentence


async def test_a_silence_whose_regex_cannot_be_evaluated_here_is_doubt_where_it_may_apply() -> None:
    answer = [
        silence(("alertname", "HighCPUUsage", False, True), ("deployment", "(?<n>api)", True, True))
    ]
    watch, _ = await watch_of({"http://a": answer})
    doubt = watch.verdict(API, "refuse")
    assert doubt.reason is StopReason.SILENCE_UNKNOWN
    assert "silence s1 may cover it" in doubt.sentence
    assert watch.verdict({**API, "alertname": "Other"}, "refuse").allowed  # cannot apply
    assert watch.verdict(API, "act").allowed


NOT_SILENCES = [
    ({"silences": []}, "not a list of silences"),
    ([{"id": "s", "matchers": []}], "matchers"),
    ([silence(("a", "b", "yes", True))], "isRegex"),
    ([silence(("a", "b", False, True), startsAt="yesterday")], "startsAt"),
    ([silence(("a", "b", False, True), id="")], "id"),
    ([silence(("a", 7, False, True))], "value"),
    ([silence(("a", "b", False, True)), None], "1"),
    ("<html>", "not a list of silences"),
    ([silence(("a", "b", False, True), endsAt="9" * 400)], "endsAt"),
    ([silence(("a", "b", False, True), endsAt="2026-12-02T13:00:00")], "endsAt"),  # no zone
    ([silence(("a", "b", False, True), startsAt=1e400)], "startsAt"),
]


@pytest.mark.parametrize(("answer", "named"), NOT_SILENCES)
async def test_an_answer_that_is_not_silences_is_that_peers_failure_and_keeps_the_last(
    answer: Any, named: str
) -> None:
    good = [silence(("deployment", "api", False, True))]
    source = Answers(**{"http://a": good})
    clock = FakeClock(NOW)
    watch = SilenceWatch(source, ["http://a"], clock, Metrics(CollectorRegistry(), []), 30)
    await watch.refresh()
    with pytest.raises(ValueError, match=named):
        silences.parse(answer)
    source.by_url["http://a"] = answer
    clock.advance(10)
    await watch.refresh()  # refused: what was read 10 s ago still stands
    assert watch.verdict(API, "refuse").reason is StopReason.SILENCED
    clock.advance(25)
    assert watch.verdict(API, "refuse").reason is StopReason.SILENCE_UNKNOWN


async def test_without_an_alertmanager_nothing_is_silenced() -> None:
    watch = SilenceWatch(None, [], FakeClock(NOW), Metrics(CollectorRegistry(), []), 30)
    await watch.refresh()
    assert watch.verdict(API, "refuse").allowed


# --- a real Alertmanager: its silences, and its own view of what they silence ------------


async def post_silence(am: AlertmanagerProcess, *matchers: Matcher,
                       starts: datetime | None = None, **more: str) -> str:  # fmt: skip
    now = datetime.now(UTC)
    body = {
        "matchers": matchers_json(matchers),
        "startsAt": stamp(starts or now - timedelta(seconds=5)),
        "endsAt": stamp(now + timedelta(hours=1)),
        "createdBy": more.get("by", "jane"), "comment": more.get("comment", "on it"),
    }  # fmt: skip
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{am.api_url}/api/v2/silences", json=body) as resp,
    ):
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["silenceID"])


async def silenced_by(am: AlertmanagerProcess) -> dict[str, list[str]]:
    """Alertmanager's own answer: each alert's fingerprint → the silences muting it."""
    async with aiohttp.ClientSession() as http, http.get(f"{am.api_url}/api/v2/alerts") as resp:
        alerts = await resp.json()
    return {fingerprint(a["labels"]): sorted(a["status"]["silencedBy"]) for a in alerts}


DIFFERENTIAL_ALERTS = [
    API,
    {**API, "deployment": "api-2"},
    {**API, "deployment": "web"},
    {"alertname": "PodCrashLooping", "namespace": NS, "pod": "api-1"},
    {"alertname": "PodCrashLooping", "namespace": "kube-system", "pod": "dns-1"},
    {"alertname": "DiskUsageHigh", "node": "n1"},
    {"alertname": "DiskUsageHigh", "node": "n2"},
    {"alertname": "DiskUsageHigh", "node": "n2", "team": "storage"},
    {"alertname": "HighLatency", "namespace": NS, "deployment": "äpi"},
    {"alertname": "HighLatency", "namespace": NS, "deployment": "api\n"},
]


async def test_what_a_real_alertmanager_silences_is_what_the_check_refuses(
    tmp_path: Path,
) -> None:
    async with alertmanager(tmp_path / "am", "http://127.0.0.1:9/none",
                            credentials_file=None) as am:  # fmt: skip
        await am.post_alerts([{"labels": labels} for labels in DIFFERENTIAL_ALERTS])
        ids = {
            await post_silence(am, ("alertname", "HighCPUUsage", False, True),
                               ("deployment", "api|web", True, True)),
            await post_silence(am, ("alertname", "PodCrashLooping", False, True),
                               ("namespace", "kube-.*", True, False), by="sam"),
            await post_silence(am, ("alertname", "DiskUsageHigh", False, True),
                               ("node", "n1", False, False), ("team", "", False, True)),
            await post_silence(am, ("deployment", "äpi", False, True)),
            await post_silence(am, ("alertname", "HighLatency", False, True),
                               starts=datetime.now(UTC) + timedelta(hours=1)),  # pending
        }  # fmt: skip
        assert len(ids) == 5
        theirs = await silenced_by(am)
        client = AlertmanagerClient.open(None, None, timeout_s=5)
        try:
            watch = SilenceWatch(client, [am.api_url], FakeClock(datetime.now(UTC)),
                                 Metrics(CollectorRegistry(), []), 30)  # fmt: skip
            await watch.refresh()
            for labels in DIFFERENTIAL_ALERTS:
                verdict = watch.verdict(labels, "refuse")
                muted = theirs[fingerprint(labels)]
                assert (verdict.reason is StopReason.SILENCED) is bool(muted), (labels, verdict)
                if muted:
                    assert any(f"(silence {sid})" in verdict.sentence for sid in muted)
                else:
                    assert verdict.allowed, (labels, verdict)
        finally:
            await client.close()
    assert sum(bool(v) for v in theirs.values()) == 5  # the table silences five, spares five


# --- the client against peers that misbehave -------------------------------------------


class Peer:
    """An HTTP server that answers ``/api/v2/silences`` as the test says."""

    def __init__(self) -> None:
        self.status = 200
        self.body: bytes = b"[]"
        self.delay_s = 0.0
        self.seen: list[web.Request] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> Peer:
        app = web.Application()
        app.router.add_get("/api/v2/silences", self._answer)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request)
        await asyncio.sleep(self.delay_s)
        return web.Response(status=self.status, body=self.body, content_type="application/json")


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with Peer() as server:
        yield server


@pytest.mark.parametrize(
    ("status", "body", "delay_s", "error"),
    [
        (500, b"internal", 0, "answered 500: internal"),
        (401, b"Unauthorized", 0, "answered 401"),
        (200, b"<html>proxy</html>", 0, "the answer is not JSON"),
        (200, b"[" + b"0," * (MAX_ANSWER_BYTES // 2) + b"0]", 0, "over"),
        (200, b"[]", 2.0, "TimeoutError"),
    ],
)
async def test_a_peer_that_fails_is_an_error_naming_it_within_the_timeout(
    peer: Peer, status: int, body: bytes, delay_s: float, error: str
) -> None:
    peer.status, peer.body, peer.delay_s = status, body, delay_s
    client = AlertmanagerClient.open(None, None, timeout_s=0.5)
    try:
        with pytest.raises(AlertmanagerUnavailable, match=error) as caught:
            await client.silences(peer.url)
    finally:
        await client.close()
    assert peer.url.split("//")[1] in str(caught.value)


async def test_the_token_is_read_at_each_request_and_a_url_password_is_never_shown(
    peer: Peer, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    client = AlertmanagerClient.open(token, None, timeout_s=2)
    try:
        assert await client.silences(peer.url) == []
        token.write_text("second\n")
        await client.silences(peer.url)
        assert [r.headers["Authorization"] for r in peer.seen] == ["Bearer first", "Bearer second"]
        peer.status = 503
        secret_url = peer.url.replace("http://", "http://ops:hunter2@")
        with pytest.raises(AlertmanagerUnavailable) as caught:
            await client.silences(secret_url)
        assert "hunter2" not in str(caught.value)
        token.unlink()
        with pytest.raises(AlertmanagerUnavailable, match="the token file"):
            await client.silences(peer.url)
    finally:
        await client.close()
    assert peer.seen[-1].headers.get("Authorization", "").startswith("Basic ")


# --- end to end: the service asks a real Alertmanager ---------------------------------

OPTED_IN = {"remediator.io/allow": "scale_out,recycle_pod"}


def rules_dir(tmp_path: Path, hook: WebhookStub) -> Path:
    """The example rules, paging a webhook; the memory rule acts when it cannot know."""
    marker = "  - name: memory-above-90-percent\n"
    return paging_example_rules(
        tmp_path / "rules", hook.url, **{marker: marker + "    on_silence_check_error: act\n"}
    )


@dataclass
class World:
    """A cluster (Deployments ``names``, the ServiceAccount bound as ``remediator rbac``
    says), a webhook that records pages, the rules paging it, and a real Alertmanager."""

    kube: KubeApiServer
    hook: WebhookStub
    kubeconfig: Path
    rules: Path
    am: AlertmanagerProcess


@asynccontextmanager
async def world(tmp_path: Path, seed: int, *names: str) -> AsyncIterator[World]:
    async with KubeApiServer(seed=seed) as kube, WebhookStub() as hook:
        for name in names:
            kube.add_deployment(NS, name, replicas=3, annotations=OPTED_IN)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
        rules = rules_dir(tmp_path, hook)
        kube.bind_rbac_of(rules)
        am = await start_alertmanager(tmp_path / "am", "http://127.0.0.1:9/none",
                                      credentials_file=None)  # fmt: skip
        try:
            yield World(kube, hook, kubeconfig, rules, am)
        finally:
            await am.stop()


def cpu(deployment: str) -> dict[str, str]:
    return {"alertname": "HighCPUUsage", "namespace": NS, "deployment": deployment}


def memory(deployment: str) -> dict[str, str]:
    return {"alertname": "HighMemoryUsage", "namespace": NS, "deployment": deployment}


async def test_the_service_does_not_act_on_a_silenced_alert_and_says_so_without_paging(
    tmp_path: Path,
) -> None:
    async with world(tmp_path, 5, "api", "web", "db", "cache") as w:
        kube, hook, kubeconfig, rules, am = w.kube, w.hook, w.kubeconfig, w.rules, w.am
        sid = await post_silence(am, ("deployment", "api", False, True), by="jane",
                                 comment="rolling back by hand")  # fmt: skip
        settings = settings_for(
            tmp_path, kubeconfig=kubeconfig, rules_dir=rules,
            alertmanager_urls=(am.api_url,), silence_refresh_s=0.2, silence_max_age_s=2,
        )  # fmt: skip
        async with serve(settings) as service:

            async def read() -> bool:
                return await service.metric("remediator_silences") == 1

            await eventually(read, "the silence read from Alertmanager")

            async def fire(labels: dict[str, str]) -> list[dict[str, Any]]:
                status, _ = await service.post(webhook_payload(webhook_alert(labels=labels)))
                assert status == 200
                await service.settle()
                return await service.decisions(fingerprint=fingerprint(labels))

            silenced = await fire(cpu("api"))
            assert [(d["step"], d["reason"]) for d in silenced][2:] == [("refused", "silenced")]
            assert f"(silence {sid}): 'rolling back by hand'" in silenced[2]["sentence"]
            assert kube.deployment(NS, "api")["spec"]["replicas"] == 3
            acted = await fire(cpu("web"))
            assert "acted" in [d["step"] for d in acted]
            assert kube.deployment(NS, "web")["spec"]["replicas"] == 5
            await am.stop()
            await asyncio.sleep(2.5)  # past --silence-max-age-seconds without an answer
            unknown = await fire(cpu("db"))
            assert [(d["step"], d["reason"]) for d in unknown][2:] == [
                ("refused", "silence_unknown"), ("escalated", "silence_unknown")
            ]  # fmt: skip
            assert kube.deployment(NS, "db")["spec"]["replicas"] == 3
            anyway = await fire(memory("cache"))  # on_silence_check_error: act
            assert "acted" in [d["step"] for d in anyway]
            await eventually(lambda: len(hook.log) >= 1, "the page of the unknown")
            paged = [json.loads(entry.body)["details"]["alert"]["labels"] for entry in hook.log]
            assert cpu("api") not in paged and cpu("db") in paged


async def test_a_claim_resumed_after_a_crash_is_not_run_once_its_alert_is_silenced(
    tmp_path: Path,
) -> None:
    """The service dies right after claiming a scale (failpoint ``after_claim``); the
    engineer silences the alert meanwhile; the restarted service resumes the claim, reads
    the silence first, and refuses it: nothing written to the cluster, nothing paged."""
    async with world(tmp_path, 6, "api") as w:
        kube, hook, kubeconfig, rules, am = w.kube, w.hook, w.kubeconfig, w.rules, w.am
        flags = ("--kubeconfig", str(kubeconfig), "--alertmanager-url", am.api_url,
                 "--silence-refresh-seconds", "0.2")  # fmt: skip
        payload = json.dumps(webhook_payload(webhook_alert(labels=cpu("api")))).encode()
        await crash_after_claim(tmp_path, rules=rules, extra_args=flags, payload=payload)
        sid = await post_silence(am, ("deployment", "api", False, True), by="sam")
        service = await start_remediator(tmp_path, rules=rules, extra_args=flags)
        try:

            async def refused() -> bool:
                return "refused" in [d["step"] for d in await service.decisions()]

            await eventually(refused, "the resumed claim refused")
            decisions = await service.decisions()
        finally:
            assert await service.stop() == 0
    [refusal] = [d for d in decisions if d["step"] == "refused"]
    assert refusal["reason"] == "silenced" and f"(silence {sid})" in refusal["sentence"]
    assert "escalated" not in [d["step"] for d in decisions]
    assert [r for r in kube.requests if r.method == "PATCH"] == []
    assert kube.deployment(NS, "api")["spec"]["replicas"] == 3
    assert hook.log == []
