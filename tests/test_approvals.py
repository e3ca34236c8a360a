"""Approvals end to end: a rule that asks a human's approval holds its claim, pages with
Approve and Deny, and acts only once approvers say so (through the API, the CLI or a signed
Slack click), with every guard checked again first; a deny, a timeout (both ways), a resolve
and a restart while it waits; two replicas given one approval act once. On the Kubernetes
test server, with a Slack Web API stub that receives the pages."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from remediator.config import Settings
from remediator.core.errors import ConfigError
from remediator.escalate.sinks.slack import APPROVE_ACTION, DENY_ACTION
from remediator.runtime.app import init_app
from tests.support.kube_api import KubeApiServer
from tests.support.kubeconfig import write_kubeconfig
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.postgres import PostgresServer
from tests.support.process import FAILPOINT_EXIT_CODE, RemediatorProcess, start_remediator
from tests.support.service import TOKEN, ServiceUnderTest, serve, settings_for
from tests.support.sinks import SlackStub, slack_signed_form
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import eventually

NS = "shop"
OPTED_IN = {"remediator.io/allow": "scale_out"}
SLACK_TOKEN = "xoxb-1-2-abc"
SIGNING = "8f742231b10e8888abcd99yyyzzz85a5"
CHANNEL = "C0123456789"
TOKENS = {"alice": "alice-token-0123456789", "bob": "bob-token-0123456789",
          "dave": "dave-token-0123456789"}  # fmt: skip

RULES = """
policy:
  namespaces: [shop]
  storm: {{max_targets: 100}}
defaults:
  escalation: {{SEV-1: ops, SEV-2: ops, SEV-3: ops}}
  verify_within_s: 30
escalations:
  ops: {{tiers: [{{after_s: 0, notify: [slack]}}]}}
sinks:
  slack: {{type: slack, bot_token_file: {dir}/slack-token, channel: {channel}, url: "{slack}/api/",
           signing_secret_file: {dir}/slack-signing}}
actions:
  scale: {{kind: scale_out, params: {{step: 2, max_replicas: 20}}}}
rules:
  - name: cpu
    matchers: ['alertname="HighCPUUsage"']
    severity: SEV-2
    action: scale
    target: {{kind: Deployment, namespace: "{{namespace}}", name: "{{deployment}}"}}
    approval: {{timeout_s: 600, approvers: [sre], initiator_label: deployed_by}}
  - name: four-eyes
    matchers: ['alertname="FourEyes"']
    severity: SEV-1
    action: scale
    target: {{kind: Deployment, namespace: "{{namespace}}", name: "{{deployment}}"}}
    approval: {{timeout_s: 600, approvals: 2}}
  - name: soon-escalate
    matchers: ['alertname="SoonEscalate"']
    severity: SEV-2
    action: scale
    target: {{kind: Deployment, namespace: "{{namespace}}", name: "{{deployment}}"}}
    approval: {{timeout_s: 5}}
  - name: soon-act
    matchers: ['alertname="SoonAct"']
    severity: SEV-2
    action: scale
    target: {{kind: Deployment, namespace: "{{namespace}}", name: "{{deployment}}"}}
    approval: {{timeout_s: 5, on_timeout: act}}
  - name: default
    matchers: []
    severity: SEV-3
"""

APPROVERS = f"""
approvers:
  - {{name: alice, teams: [sre], token: {TOKENS["alice"]}, slack_user_ids: [U0ALICE1]}}
  - name: bob
    teams: [sre]
    token_sha256: {hashlib.sha256(TOKENS["bob"].encode()).hexdigest()}
  - {{name: dave, teams: [dev], token: {TOKENS["dave"]}}}
"""


def write_world_files(directory: Path, slack_url: str) -> tuple[Path, Path]:
    """The rules directory and the approvers file in ``directory``."""
    (directory / "slack-token").write_text(SLACK_TOKEN)
    (directory / "slack-signing").write_text(SIGNING)
    rules = directory / "rules"
    rules.mkdir()
    text = RULES.format(dir=directory, channel=CHANNEL, slack=slack_url)
    (rules / "rules.yaml").write_text(text)
    approvers = directory / "approvers.yaml"
    approvers.write_text(APPROVERS)
    for name, token in TOKENS.items():
        (directory / f"{name}-token").write_text(token + "\n")
    return rules, approvers


@dataclass
class World:
    kube: KubeApiServer
    slack: SlackStub
    rules: Path
    approvers: Path
    kubeconfig: Path
    tmp: Path

    def settings(self, **overrides: Any) -> Settings:
        return settings_for(
            self.tmp, kubeconfig=self.kubeconfig, rules_dir=self.rules,
            approvers_file=self.approvers, approvals_poll_s=0.2, **overrides,
        )  # fmt: skip

    def scales(self) -> int:
        return len(self.kube.requests_to(r"/deployments/[^/]+/scale$", "PATCH"))

    def replicas(self, name: str = "api") -> int:
        return int(self.kube.deployment(NS, name)["spec"]["replicas"])


@asynccontextmanager
async def world(tmp_path: Path, seed: int, *names: str) -> AsyncIterator[World]:
    async with KubeApiServer(seed=seed) as kube, SlackStub(rate_limit=1000) as slack:
        for name in names or ("api",):
            kube.add_deployment(NS, name, replicas=3, annotations=OPTED_IN)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
        rules, approvers = write_world_files(tmp_path, slack.url)
        kube.bind_rbac_of(rules)
        yield World(kube, slack, rules, approvers, kubeconfig, tmp_path)


def alert(name: str = "HighCPUUsage", deployment: str = "api", **labels: str) -> dict[str, Any]:
    return webhook_alert(labels={"alertname": name, "namespace": NS, "deployment": deployment,
                                 **labels})  # fmt: skip


async def fire(service: ServiceUnderTest, *alerts: dict[str, Any]) -> None:
    status, _ = await service.post(webhook_payload(*alerts))
    assert status == 200
    await service.settle()


async def call(
    service: ServiceUnderTest, method: str, path: str, token: str = TOKEN, **kw: Any
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}", **kw.pop("headers", {})}
    url = f"{service.url}{path}"
    async with service.session.request(method, url, headers=headers, **kw) as response:
        return response.status, await response.json()


async def pending(service: ServiceUnderTest, count: int = 1) -> list[dict[str, Any]]:
    """The pending approvals, once there are ``count``."""
    found: list[dict[str, Any]] = []

    async def there() -> bool:
        nonlocal found
        status, page = await call(service, "GET", "/api/v1/approvals?state=pending")
        assert status == 200, page
        found = page["approvals"]
        return len(found) == count

    await eventually(there, f"{count} pending approvals")
    return found


async def answer(
    service: ServiceUnderTest, approval_id: int, who: str, decision: str = "approve",
    reason: str = "",
) -> tuple[int, dict[str, Any]]:  # fmt: skip
    body = {"decision": decision, "reason": reason}
    return await call(service, "POST", f"/api/v1/approvals/{approval_id}", TOKENS[who], json=body)


def steps(decisions: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(d["step"], d["outcome"]) for d in decisions]


async def settled(service: ServiceUnderTest, step: str, outcome: str) -> list[dict[str, Any]]:
    """The decisions, once one of ``step`` came to ``outcome``."""
    found: list[dict[str, Any]] = []

    async def there() -> bool:
        nonlocal found
        found = await service.decisions()
        return (step, outcome) in steps(found)

    await eventually(there, f"a {step} record that says {outcome}", timeout_s=30)
    await service.settle()
    return await service.decisions()


def slack_click(
    action_id: str, value: str, user_id: str, now: float
) -> tuple[bytes, dict[str, str]]:
    payload = {"type": "block_actions", "user": {"id": user_id, "username": "someone"},
               "team": {"id": "T0123"}, "channel": {"id": CHANNEL},
               "actions": [{"type": "button", "action_id": action_id, "value": value,
                            "block_id": "b1", "action_ts": f"{now:.6f}"}]}  # fmt: skip
    return slack_signed_form(payload, SIGNING, now)


# ----- approve, deny, who may


async def test_an_approval_through_the_api_runs_the_scale_and_the_story_names_the_approver(
    tmp_path: Path,
) -> None:
    async with world(tmp_path, 1) as w, serve(w.settings()) as service:
        await fire(service, alert())
        [held] = await pending(service)
        assert (held["action"], held["target"], held["approvers"]) == (
            "scale", "shop/Deployment/api", ["sre"]
        )  # fmt: skip
        assert w.scales() == 0 and w.replicas() == 3
        held_steps = steps(await service.decisions())
        assert held_steps[2:] == [
            ("claimed", "claimed"), ("approval", "pending_approval"), ("escalated", "escalated")
        ]  # fmt: skip
        await eventually(lambda: len(w.slack.posted) == 1, "the page asking the approval")
        [page] = w.slack.posted
        buttons = {b["action_id"]: b.get("value") for b in page["blocks"][-1]["elements"]}
        assert buttons["remediator_approve"] == buttons["remediator_deny"] == str(held["id"])
        assert "waits for one approval (sre)" in page["text"]
        status, said = await answer(service, held["id"], "alice", reason="go")
        assert (status, said["status"], said["state"]) == (200, "approved", "approved")
        decisions = await settled(service, "acted", "succeeded")
        assert w.replicas() == 5 and w.scales() == 1
        [approved] = [d for d in decisions if d["outcome"] == "approved"]
        assert approved["sentence"].startswith("Approved by alice (api) ('go'): scale on")
        assert approved["details"]["votes"][0]["by"] == "alice"
        await eventually(
            lambda: any("Approved by alice" in p["text"] for p in w.slack.posted),
            "the incident told of the approval",
        )
        assert await service.metric("remediator_approvals_total", {"result": "approved"}) == 1
        assert await service.metric("remediator_approvals_total", {"result": "requested"}) == 1
        detail = f"Approval {held['id']} is approved by alice already."
        again = await answer(service, held["id"], "bob")
        assert again == (409, {"error": "not_pending", "detail": detail})
        assert w.scales() == 1


async def test_a_deny_refuses_the_claim_writes_nothing_and_tells_the_incident_once(
    tmp_path: Path,
) -> None:
    async with world(tmp_path, 2) as w, serve(w.settings()) as service:
        await fire(service, alert())
        [held] = await pending(service)
        await eventually(lambda: len(w.slack.posted) == 1, "the page")
        status, said = await answer(service, held["id"], "bob", "deny", "a rollback is underway")
        assert (status, said["status"]) == (200, "denied")
        decisions = await settled(service, "refused", "refused")
        assert steps(decisions)[-2:] == [("approval", "denied"), ("refused", "refused")]
        assert decisions[-1]["reason"] == "approval_denied"
        assert "Denied by bob" in decisions[-1]["sentence"]
        assert [d for d in decisions if d["step"] == "escalated"][1:] == []  # paged once
        assert w.scales() == 0 and w.replicas() == 3
        await eventually(
            lambda: any("'a rollback is underway'" in p["text"] for p in w.slack.posted),
            "the incident told of the deny",
        )


async def test_who_may_answer_is_the_approvers_file_s_and_never_the_one_who_caused_it(
    tmp_path: Path,
) -> None:
    async with world(tmp_path, 3) as w, serve(w.settings()) as service:
        await fire(service, alert(deployed_by="Alice"))
        [held] = await pending(service)
        path = f"/api/v1/approvals/{held['id']}"
        body = {"decision": "approve"}
        refusals = [
            (await answer(service, held["id"], "dave"), 403, "not_an_approver",
             f"dave is not among the approvers of approval {held['id']}."),
            (await answer(service, held["id"], "alice"), 403, "four_eyes",
             "alice raised the alert this approval is about: another approver must answer it."),
            (await call(service, "POST", path, "not-a-token-of-anyone", json=body), 401,
             "unauthorized", "The token is no approver's."),
            (await call(service, "POST", path, TOKEN, json=body), 401, "unauthorized",
             "The token is no approver's."),
        ]  # fmt: skip
        for (status, said), want_status, code, detail in refusals:
            assert (status, said) == (want_status, {"error": code, "detail": detail})
        async with service.session.post(f"{service.url}{path}", json=body) as response:
            assert response.status == 401  # no token at all
        assert (await call(service, "GET", path, TOKENS["dave"]))[0] == 200  # may read
        assert (await call(service, "GET", path, "nobody-0123456789"))[0] == 401
        still = await service.decisions()
        assert ("approval", "approved") not in steps(still) and w.scales() == 0
        status, said = await answer(service, held["id"], "bob")
        assert (status, said["status"]) == (200, "approved")
        await settled(service, "acted", "succeeded")
        assert w.replicas() == 5


async def test_four_eyes_two_approvers_are_needed_and_one_cannot_count_twice(
    tmp_path: Path,
) -> None:
    async with world(tmp_path, 4) as w, serve(w.settings()) as service:
        await fire(service, alert("FourEyes"))
        [held] = await pending(service)
        status, said = await answer(service, held["id"], "alice")
        assert (status, said["status"], said["state"]) == (200, "counted", "pending")
        assert await answer(service, held["id"], "alice") == (
            409, {"error": "answered_already",
                  "detail": f"alice answered approval {held['id']} before."}
        )  # fmt: skip
        await asyncio.sleep(0.5)
        assert w.scales() == 0
        status, said = await answer(service, held["id"], "dave")  # any approver: no list
        assert (status, said["status"]) == (200, "approved")
        decisions = await settled(service, "acted", "succeeded")
        assert [d["sentence"] for d in decisions if d["step"] == "approval"][1:] == [
            "Approved by alice (api): 1 of the 2 approvals needed; another approver must"
            " approve too.",
            "Approved by alice, dave (api): scale on shop/Deployment/api runs once its guards"
            " hold again.",
        ]
        assert w.scales() == 1


# ----- timeouts, resolves, guards checked again


async def test_a_timeout_escalates_or_acts_as_each_rule_says(tmp_path: Path) -> None:
    async with world(tmp_path, 5, "api", "web") as w, serve(w.settings()) as service:
        await fire(service, alert("SoonEscalate", "api"), alert("SoonAct", "web"))
        await pending(service, 2)
        decisions = await settled(service, "acted", "succeeded")

        async def both() -> bool:
            nonlocal decisions
            decisions = await service.decisions()
            return ("refused", "refused") in steps(decisions)

        await eventually(both, "the other timeout refused", timeout_s=30)
        await service.settle()
        decisions = await service.decisions()
        by_rule: dict[str, list[dict[str, Any]]] = {}
        for d in decisions:
            if d["step"] != "notified":  # the deliveries, in their own time
                by_rule.setdefault(d["rule"], []).append(d)
        escalated = by_rule["soon-escalate"]
        assert steps(escalated)[-4:] == [
            ("approval", "pending_approval"), ("escalated", "escalated"),
            ("refused", "refused"), ("escalated", "escalated"),
        ]  # fmt: skip
        assert escalated[-2]["reason"] == "approval_timeout"
        assert escalated[-2]["sentence"] == (
            "No approval of scale on shop/Deployment/api came in time (on_timeout: escalate);"
            " it was not run, and a human must decide."
        )
        acted = by_rule["soon-act"]
        assert ("approval", "approved") in steps(acted) and ("acted", "succeeded") in steps(acted)
        assert w.replicas("api") == 3 and w.replicas("web") == 5
        metric = service.metric
        assert await metric("remediator_approvals_total", {"result": "timed_out"}) == 1
        assert await metric("remediator_approvals_total", {"result": "acted_on_timeout"}) == 1
        assert await metric("remediator_approvals_pending") == 0


async def test_an_approval_after_the_alert_resolved_does_nothing(tmp_path: Path) -> None:
    async with world(tmp_path, 6) as w, serve(w.settings()) as service:
        await fire(service, alert())
        [held] = await pending(service)
        await fire(service, webhook_alert(status="resolved", labels=alert()["labels"]))
        status, said = await answer(service, held["id"], "alice")
        assert (status, said["error"]) == (409, "not_pending")
        assert said["detail"].startswith(f"Approval {held['id']} is withdrawn by the resolve")
        decisions = await settled(service, "refused", "resolved")
        [withdrawn] = [d for d in decisions if d["step"] == "refused"]
        assert withdrawn["sentence"] == (
            "The alert resolved before scale on shop/Deployment/api was approved; it was not run."
        )
        assert w.scales() == 0 and w.replicas() == 3
        assert await service.metric("remediator_approvals_total", {"result": "withdrawn"}) == 1


async def test_the_guards_run_again_when_the_approval_comes(tmp_path: Path) -> None:
    """An HPA takes the Deployment over while the approval waits: the approved scale is
    refused as owned elsewhere, before anything is written."""
    async with world(tmp_path, 7) as w, serve(w.settings()) as service:
        await fire(service, alert())
        [held] = await pending(service)
        w.kube.add_hpa(NS, "api-hpa", "api", min_replicas=3, max_replicas=10)
        status, _ = await answer(service, held["id"], "alice")
        assert status == 200
        decisions = await settled(service, "refused", "refused")
        [refusal] = [d for d in decisions if d["step"] == "refused"]
        assert refusal["reason"] == "owned_elsewhere" and "api-hpa" in refusal["sentence"]
        assert steps(decisions)[-1] == ("escalated", "escalated")
        assert w.scales() == 0


# ----- Slack, the CLI


async def test_a_signed_slack_click_is_the_approver_its_user_id_is(tmp_path: Path) -> None:
    async with world(tmp_path, 8) as w, serve(w.settings()) as service:
        await fire(service, alert())
        [held] = await pending(service)
        url = f"{service.url}/api/v1/acks/slack/slack"
        now = time.time()
        body, headers = slack_click(APPROVE_ACTION, str(held["id"]), "U0NOBODY", now)
        async with service.session.post(url, data=body, headers=headers) as response:
            assert (response.status, await response.json()) == (
                403, {"error": "not_an_approver", "detail": "That Slack user is no approver."}
            )  # fmt: skip
        forged, headers = slack_click(APPROVE_ACTION, str(held["id"]), "U0ALICE1", now)
        headers["X-Slack-Signature"] = "v0=" + "0" * 64
        async with service.session.post(url, data=forged, headers=headers) as response:
            assert response.status == 401
        for value in ("0", "-1", "12a", "9" * 19, ""):
            bad, headers = slack_click(DENY_ACTION, value, "U0ALICE1", now)
            async with service.session.post(url, data=bad, headers=headers) as response:
                assert response.status == 400, value
        assert w.scales() == 0
        body, headers = slack_click(APPROVE_ACTION, str(held["id"]), "U0ALICE1", now)
        async with service.session.post(url, data=body, headers=headers) as response:
            assert (response.status, await response.json()) == (
                200, {"status": "approved", "id": held["id"]}
            )  # fmt: skip
        decisions = await settled(service, "acted", "succeeded")
        assert any(d["sentence"].startswith("Approved by alice (slack:slack)") for d in decisions)
        assert w.replicas() == 5


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "remediator", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_cli_lists_approves_and_denies_through_the_service(tmp_path: Path) -> None:
    async with world(tmp_path, 9, "api", "web") as w, serve(w.settings()) as service:
        await fire(service, alert(deployment="api"), alert(deployment="web"))
        await pending(service, 2)
        where = ("--url", service.url)
        alice = ("--token-file", str(tmp_path / "alice-token"))
        code, out, _ = await run_cli("approvals", *where, "--token-file", str(tmp_path / "token"))
        lines = out.splitlines()
        assert code == 0 and len(lines) == 2 and all(": pending; no answer yet" in x for x in lines)
        web_id, api_id = (int(line.split()[1]) for line in lines)  # newest first
        assert await run_cli("deny", str(web_id), *where, *alice) == (
            2, "", "remediator: a deny needs --reason: the audit and the incident say why\n"
        )  # fmt: skip
        code, out, _ = await run_cli("approve", str(api_id), *where, *alice, "--reason", "ok")
        assert code == 0 and out.startswith(f"approved: approval {api_id} (scale on shop/")
        code, out, _ = await run_cli("deny", str(web_id), *where, *alice, "--reason", "not now")
        assert code == 0 and out.startswith(f"denied: approval {web_id}")
        code, _, err = await run_cli("approve", str(web_id), *where, *alice)
        assert (code, err) == (1, f"remediator: refused (409): Approval {web_id} is denied by"
                                  " alice already.\n")  # fmt: skip
        code, _, err = await run_cli("approve", "1", "--url", "http://127.0.0.1:9", *alice)
        assert code == 2 and "could not be reached" in err
        decisions = await settled(service, "acted", "succeeded")
        assert any(d["sentence"].startswith("Approved by alice (cli) ('ok')") for d in decisions)
        assert w.replicas("api") == 5 and w.replicas("web") == 3


# ----- hostile answers


BAD_ANSWERS = {
    "not json": (b"{nope", "application/json", 400, "invalid_json"),
    "a repeated key": (b'{"decision": "approve", "decision": "deny"}', "application/json",
                       400, "duplicate_key"),
    "another word": (b'{"decision": "APPROVE"}', "application/json", 400, "invalid_answer"),
    "an unknown key": (b'{"decision": "approve", "as": "root"}', "application/json", 400,
                       "invalid_answer"),
    "a list": (b'["approve"]', "application/json", 400, "invalid_answer"),
    "a decision that is a list": (b'{"decision": ["approve"]}', "application/json", 400,
                                  "invalid_answer"),
    "a decision that is an object": (b'{"decision": {"a": 1}}', "application/json", 400,
                                     "invalid_answer"),
    "a via that is a list": (b'{"decision": "approve", "via": ["cli"]}', "application/json",
                             400, "invalid_answer"),
    "a reason that is a number": (b'{"decision": "approve", "reason": 1e999999}',
                                  "application/json", 400, "non_finite_number"),
    "a long reason": (json.dumps({"decision": "approve", "reason": "x" * 501}).encode(),
                      "application/json", 400, "invalid_answer"),
    "a control character": (b'{"decision": "approve", "reason": "a\\u001b[31m"}',
                            "application/json", 400, "invalid_answer"),
    "a NUL": (b'{"decision": "approve", "reason": "a\\u0000"}', "application/json", 422,
              "invalid_string"),
    "a deny without reason": (b'{"decision": "deny", "reason": "  "}', "application/json", 400,
                              "invalid_answer"),
    "NaN": (b'{"decision": "approve", "reason": NaN}', "application/json", 400,
            "non_finite_number"),
    "a form": (b"decision=approve", "application/x-www-form-urlencoded", 415,
               "unsupported_media_type"),
    "too large": (b'{"decision": "approve", "reason": "' + b"x" * 20_000 + b'"}',
                  "application/json", 413, "body_too_large"),
    "not UTF-8": (b'{"decision": "approve", "reason": "\xff"}', "application/json", 400,
                  "invalid_utf8"),
}  # fmt: skip


async def test_hostile_answers_are_refused_with_a_sentence_and_change_nothing(
    tmp_path: Path,
) -> None:
    async with world(tmp_path, 10) as w, serve(w.settings()) as service:
        await fire(service, alert())
        [held] = await pending(service)
        path = f"/api/v1/approvals/{held['id']}"
        for name, (body, content_type, status, code) in BAD_ANSWERS.items():
            headers = {"Content-Type": content_type}
            got, said = await call(service, "POST", path, TOKENS["bob"], data=body,
                                   headers=headers)  # fmt: skip
            assert (got, said["error"]) == (status, code), name
            assert "x" * 50 not in said["detail"] and "\xff" not in said["detail"], name
        for bad_id in ("0", "01", "-1", "1e3", "9" * 19, "%F0%9F%98%80", str(held["id"] + 1)):
            got, said = await call(service, "POST", f"/api/v1/approvals/{bad_id}", TOKENS["bob"],
                                   json={"decision": "approve"})  # fmt: skip
            assert (got, said["error"]) == (404, "unknown_approval"), bad_id

        async def chunked(size: int) -> AsyncIterator[bytes]:
            yield b'{"decision": "approve", "reason": "'
            for _ in range(size):
                yield b"y" * 1000
            yield b'"}'

        too_long = await call(service, "POST", path, TOKENS["bob"], data=chunked(17),
                              headers={"Content-Type": "application/json"})  # fmt: skip
        assert (too_long[0], too_long[1]["error"]) == (413, "body_too_large")
        assert (await call(service, "GET", "/api/v1/approvals?state=nope"))[0] == 400
        assert (await call(service, "GET", "/api/v1/approvals?limit=1"))[0] == 400
        [still] = await pending(service)
        assert still["votes"] == [] and w.scales() == 0

        async def in_pieces() -> AsyncIterator[bytes]:
            for piece in (b'{"decision": ', b'"approve", "re', b'ason": "in pieces"}'):
                yield piece
                await asyncio.sleep(0.05)

        status, said = await call(service, "POST", path, TOKENS["bob"], data=in_pieces(),
                                  headers={"Content-Type": "application/json"})  # fmt: skip
        assert (status, said["status"]) == (200, "approved")  # a body in pieces is one body


BAD_APPROVERS = {
    "two with one name": "approvers:\n  - {name: a, token: aaaaaaaaaaaaaaaa}\n"
                         "  - {name: a, token: bbbbbbbbbbbbbbbb}\n",
    "two with one token": "approvers:\n  - {name: a, token: aaaaaaaaaaaaaaaa}\n"
                          "  - {name: b, token: aaaaaaaaaaaaaaaa}\n",
    "a token and its hash": "approvers:\n  - {name: a, token: aaaaaaaaaaaaaaaa, token_sha256: "
                            + "0" * 64 + "}\n",
    "no token": "approvers:\n  - {name: a}\n",
    "a short token": "approvers:\n  - {name: a, token: short}\n",
    "an unknown key": "approvers:\n  - {name: a, token: aaaaaaaaaaaaaaaa, admin: true}\n",
    "an alias": "approvers:\n  - &x {name: a, token: aaaaaaaaaaaaaaaa}\n  - *x\n",
    "a repeated key": "approvers:\n  - {name: a, name: b, token: aaaaaaaaaaaaaaaa}\n",
    "a name with a space": "approvers:\n  - {name: 'a b', token: aaaaaaaaaaaaaaaa}\n",
    "nobody": "approvers: []\n",
    "not a mapping": "- a\n",
    "a Slack ID twice": "approvers:\n  - {name: a, token: aaaaaaaaaaaaaaaa, slack_user_ids: [U0A1]}"
                        "\n  - {name: b, token: bbbbbbbbbbbbbbbb, slack_user_ids: [U0A1]}\n",
}  # fmt: skip


@pytest.mark.parametrize("name", list(BAD_APPROVERS))
async def test_an_approvers_file_that_does_not_read_stops_the_start_with_a_sentence(
    tmp_path: Path, name: str
) -> None:
    rules, approvers = write_world_files(tmp_path, "http://127.0.0.1:9")
    approvers.write_text(BAD_APPROVERS[name])
    settings = settings_for(tmp_path, rules_dir=rules, approvers_file=approvers)
    with pytest.raises(ConfigError, match=f"^the approvers file {approvers}"):
        init_app(settings)


async def test_a_rule_that_asks_an_approval_needs_an_approvers_file(tmp_path: Path) -> None:
    rules, _ = write_world_files(tmp_path, "http://127.0.0.1:9")
    with pytest.raises(ConfigError, match=r"rule 'cpu' asks for an approval \(the rule\), but no"):
        init_app(settings_for(tmp_path, rules_dir=rules))


# ----- durable: a restart, two replicas


async def test_a_restart_while_the_approval_waits_keeps_it_and_its_timeout(tmp_path: Path) -> None:
    """kill -9 with two approvals pending; the next start has both: one is approved and
    acts, the other times out as if nothing had happened (its timeout fell while down)."""
    async with world(tmp_path, 11, "api", "web") as w:
        flags = ("--kubeconfig", str(w.kubeconfig), "--approvers-file", str(w.approvers),
                 "--approvals-poll-seconds", "0.2")  # fmt: skip
        first = await start_remediator(tmp_path, rules=w.rules, extra_args=flags)
        try:
            body = json.dumps(webhook_payload(alert(deployment="api"),
                                              alert("SoonEscalate", "web"))).encode()  # fmt: skip
            assert await first.post(body) == 200

            async def held() -> bool:
                return ("approval", "pending_approval") in steps(await first.decisions()) and (
                    len([d for d in await first.decisions() if d["step"] == "approval"]) == 2
                )

            await eventually(held, "two approvals pending")
        finally:
            first.proc.kill()
            await first.proc.wait()
        await asyncio.sleep(5.5)  # the SoonEscalate approval's time runs out while down
        second = await start_remediator(tmp_path, rules=w.rules, extra_args=flags)
        try:
            decisions = await second.decisions()
            [api_claim] = [d for d in decisions if d["step"] == "claimed" and d["rule"] == "cpu"]
            approval_id = api_claim["details"]["claim_id"]
            async with aiohttp.ClientSession() as session:
                url = f"{second.url}/api/v1/approvals/{approval_id}"
                headers = {"Authorization": f"Bearer {TOKENS['alice']}"}
                async with session.post(url, json={"decision": "approve"}, headers=headers) as r:
                    assert r.status == 200, await r.text()

            async def done() -> bool:
                now = steps(await second.decisions())
                return ("acted", "succeeded") in now and ("refused", "refused") in now

            await eventually(done, "the approved one acted, the other timed out", timeout_s=30)
            decisions = await second.decisions()
        finally:
            assert await second.stop() == 0
        timed_out = [d for d in decisions if d["reason"] == "approval_timeout"]
        assert [d["rule"] for d in timed_out] == ["soon-escalate", "soon-escalate"]  # + page
        assert w.replicas("api") == 5 and w.replicas("web") == 3 and w.scales() == 1


async def test_two_replicas_given_one_approval_each_act_once(tmp_path: Path) -> None:
    async with world(tmp_path, 12) as w, PostgresServer() as pg:
        dsn = await pg.create_state_database()
        settings = [w.settings(state_url=dsn, instance_id=name) for name in ("a", "b")]
        async with serve(settings[0]) as a, serve(settings[1]) as b:
            payload = webhook_payload(alert())
            answers = await asyncio.gather(a.post(payload), b.post(payload))
            assert [status for status, _ in answers] == [200, 200]
            await asyncio.gather(a.settle(), b.settle())
            [held] = await pending(a)
            results = await asyncio.gather(
                answer(a, held["id"], "alice"), answer(b, held["id"], "bob")
            )
            assert sorted(status for status, _ in results) == [200, 409]
            await settled(a, "acted", "succeeded")
            await asyncio.gather(a.settle(), b.settle())
            decisions = await a.decisions()
        assert w.scales() == 1 and w.replicas() == 5
        assert len([d for d in decisions if d["step"] == "claimed"]) == 1
        assert len([d for d in decisions if d["step"] == "acted"]) == 1


async def test_a_crash_between_the_approval_and_the_run_runs_it_once_at_the_next_start(
    tmp_path: Path,
) -> None:
    """The service dies right after the approval is kept (failpoint ``after_approval``): the
    next start finds the claim approved and not run, runs it (its guards checked), and a
    start after that runs nothing again."""
    async with world(tmp_path, 13) as w:
        flags = ("--kubeconfig", str(w.kubeconfig), "--approvers-file", str(w.approvers))
        crashing = await start_remediator(
            tmp_path, rules=w.rules, extra_args=flags, failpoints="after_approval"
        )
        try:
            assert await crashing.post(json.dumps(webhook_payload(alert())).encode()) == 200

            async def held() -> bool:
                return ("approval", "pending_approval") in steps(await crashing.decisions())

            await eventually(held, "the approval pending")
            [claimed] = [d for d in await crashing.decisions() if d["step"] == "claimed"]
            approval_id = claimed["details"]["claim_id"]
            url = f"{crashing.url}/api/v1/approvals/{approval_id}"
            headers = {"Authorization": f"Bearer {TOKENS['alice']}"}
            async with aiohttp.ClientSession() as session:
                with pytest.raises(aiohttp.ClientError):
                    async with session.post(url, json={"decision": "approve"}, headers=headers):
                        pass
            assert await crashing.wait_exit(20) == FAILPOINT_EXIT_CODE
        finally:
            await crashing.stop()
        assert w.scales() == 0
        for start in range(2):
            again = await start_remediator(tmp_path, rules=w.rules, extra_args=flags)
            try:

                async def acted(service: RemediatorProcess = again) -> bool:
                    return ("acted", "succeeded") in steps(await service.decisions())

                await eventually(acted, "the approved claim run at the start", timeout_s=30)
                decisions = await again.decisions()
            finally:
                assert await again.stop() == 0
            assert w.scales() == 1 and w.replicas() == 5, start
        assert [d["step"] for d in decisions].count("acted") == 1
        assert [d["step"] for d in decisions].count("approval") == 2  # asked, approved


async def test_an_answer_while_the_state_store_is_away_is_a_503_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    """PostgreSQL behind a proxy that goes down: an answer gets 503 ``store_unavailable``
    (the service stays up, nothing is kept or run), the listing too; once the store is back
    the same answer is kept and the scale runs once."""
    async with world(tmp_path, 14) as w, PostgresServer() as pg:
        async with TcpProxy(pg.host, pg.port) as proxy:
            dsn = await pg.create_state_database(port=proxy.port)
            async with serve(w.settings(state_url=dsn)) as service:
                await fire(service, alert())
                [held] = await pending(service)
                await proxy.down()
                status, said = await answer(service, held["id"], "alice")
                assert (status, said["error"]) == (503, "store_unavailable")
                listed = await call(service, "GET", "/api/v1/approvals?state=pending")
                assert listed[0] == 503
                await proxy.up()
                status, said = await answer(service, held["id"], "alice")
                assert (status, said["status"]) == (200, "approved")
                await settled(service, "acted", "succeeded")
        assert w.scales() == 1 and w.replicas() == 5


async def test_an_approvers_file_that_is_not_there_stops_the_start_with_a_sentence(
    tmp_path: Path,
) -> None:
    rules, _ = write_world_files(tmp_path, "http://127.0.0.1:9")
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError, match=f"^the approvers file {missing} cannot be read: "):
        init_app(settings_for(tmp_path, rules_dir=rules, approvers_file=missing))
