"""The operator console (``/ui/``) in a real browser: headless Chromium from Debian, driven
by Playwright, against a served app with a scripted history on the Kubernetes test server
(a scale, a refusal by cooldown, a storm, an escalation to Slack, a pending approval, an
alert whose labels are markup). Each view shows the right rows; the filters narrow them;
an episode's story; an approver approves from the page and the action runs; a hostile label
is text; a POST without the CSRF token, from another origin or by a viewer is refused; a
visit without a session is sent to the sign-in. Screenshots of each view are written to
``build/console-screenshots/``."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Browser, BrowserContext, Page

from remediator.runtime.sessions import COOKIE
from tests.support.browser import chromium, screenshot
from tests.support.kube_api import KubeApiServer
from tests.support.kubeconfig import write_kubeconfig
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.service import TOKEN, ServiceUnderTest, serve, settings_for
from tests.support.sinks import SlackStub
from tests.support.waiting import eventually

NS = "shop"
OPTED_IN = {"remediator.io/allow": "scale_out"}
ALICE = "alice-token-0123456789"
HOSTILE_NAME = '"><img src=x onerror="window.pwned=1">'
HOSTILE_POD = "<script>window.pwned=2</script>"
STORM = ("s1", "s2", "s3", "s4", "s5")

RULES = """
policy:
  namespaces: [shop]
  storm: {{max_targets: 4, window_s: 600}}
  global_budget: {{max_actions: 10, window_s: 3600}}
  action_limits: {{scale_out: {{max_actions: 8, window_s: 1800}}}}
defaults:
  escalation: {{SEV-1: ops, SEV-2: ops, SEV-3: ops}}
  verify_within_s: 300
escalations:
  ops: {{tiers: [{{after_s: 0, notify: [slack]}}]}}
sinks:
  slack: {{type: slack, bot_token_file: {dir}/slack-token, channel: C0123456789,
           url: "{slack}/api/"}}
actions:
  scale: {{kind: scale_out, params: {{step: 2, max_replicas: 20}}}}
rules:
  - name: cpu
    matchers: ['alertname="HighCPUUsage"']
    severity: SEV-2
    action: scale
    cooldown_s: 3600
    target: {{kind: Deployment, namespace: "{{namespace}}", name: "{{deployment}}"}}
  - name: latency
    matchers: ['alertname="HighLatency"']
    severity: SEV-2
    action: scale
    cooldown_s: 3600
    target: {{kind: Deployment, namespace: "{{namespace}}", name: "{{deployment}}"}}
  - name: checkout-down
    matchers: ['alertname="CheckoutDown"']
    severity: SEV-1
    action: scale
    target: {{kind: Deployment, namespace: "{{namespace}}", name: "{{deployment}}"}}
    approval: {{timeout_s: 3600, approvers: [sre]}}
  - name: default
    matchers: []
    severity: SEV-3
"""
APPROVERS = f"""
approvers:
  - {{name: alice, teams: [sre], token: {ALICE}}}
"""


@dataclass
class Console:
    service: ServiceUnderTest
    kube: KubeApiServer
    browser: Browser

    @property
    def url(self) -> str:
        return f"{self.service.url}/ui/"

    def scales(self, deployment: str) -> int:
        path = rf"/deployments/{deployment}/scale$"
        return len(self.kube.requests_to(path, "PATCH"))

    async def signed_in(self, token: str = TOKEN) -> tuple[BrowserContext, Page]:
        context = await self.browser.new_context()
        page = await context.new_page()
        await page.goto(self.url)
        assert re.search(r"/ui/login\?next=", page.url), page.url
        await page.fill("input[name=token]", token)
        await page.click("#login button")
        await page.wait_for_url(self.url)
        return context, page


def alert(name: str, deployment: str = "", **labels: str) -> dict[str, Any]:
    given = {"alertname": name, "namespace": NS, **labels}
    if deployment:
        given["deployment"] = deployment
    return webhook_alert(labels=given, generatorURL=f"http://prometheus:9090/graph?g0.expr={name}")


async def fire(service: ServiceUnderTest, *alerts: dict[str, Any]) -> None:
    status, _ = await service.post(webhook_payload(*alerts))
    assert status == 200
    await service.settle()


async def steps_of(service: ServiceUnderTest) -> list[tuple[str, str, str]]:
    return [(d["alertname"], d["step"], d["reason"] or "") for d in await service.decisions()]


@asynccontextmanager
async def console(tmp_path: Path, *, history: bool = True) -> AsyncIterator[Console]:
    """The served app on the test Kubernetes API and a Slack stub, with the scripted
    history when ``history``, and a browser."""
    async with KubeApiServer(seed=31) as kube, SlackStub(rate_limit=1000) as slack:
        for name in ("web", "api", "checkout", *STORM):
            kube.add_deployment(NS, name, replicas=3, annotations=OPTED_IN)
        (tmp_path / "slack-token").write_text("xoxb-1-2-abc")
        rules = tmp_path / "rules"
        rules.mkdir()
        (rules / "rules.yaml").write_text(RULES.format(dir=tmp_path, slack=slack.url))
        approvers = tmp_path / "approvers.yaml"
        approvers.write_text(APPROVERS)
        kube.bind_rbac_of(rules)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
        settings = settings_for(
            tmp_path, kubeconfig=kubeconfig, rules_dir=rules, approvers_file=approvers,
            approvals_poll_s=0.2, delivery_poll_s=0.2,
        )  # fmt: skip
        async with serve(settings) as service, chromium() as browser:
            if history:
                await script_history(service, kube)
            yield Console(service, kube, browser)


async def script_history(service: ServiceUnderTest, kube: KubeApiServer) -> None:
    await fire(service, alert("HighCPUUsage", "web"))  # scaled
    await fire(service, alert("HighLatency", "web"))  # the same target: cooldown
    await fire(service, alert("CheckoutDown", "checkout"))  # waits for approval
    await fire(service, alert("DiskAlmostFull", instance="db-1:9100"))  # escalated
    await fire(service, alert(HOSTILE_NAME, pod=HOSTILE_POD))  # escalated, markup as text
    await fire(service, *(alert("HighCPUUsage", name) for name in STORM))  # a storm
    said = await steps_of(service)
    assert ("HighLatency", "refused", "cooldown") in said, said
    assert ("HighCPUUsage", "refused", "storm") in said, said
    assert ("CheckoutDown", "approval", "") in said, said

    async def paged() -> bool:
        return sum(d["step"] == "notified" for d in await service.decisions()) >= 3

    await eventually(paged, "the escalations delivered to Slack")


async def rows(page: Page) -> dict[str, str]:
    """The rows of "Now": alert name (first line of its cell) to its state cell."""
    found = {}
    for row in await page.query_selector_all("#now-rows tr.episode"):
        cells = await row.query_selector_all("td")
        name = (await cells[2].inner_text()).splitlines()[0]
        found[name] = await cells[4].inner_text()
    return found


async def test_now_shows_each_episode_in_its_state_and_the_filters_narrow_it(
    tmp_path: Path,
) -> None:
    async with console(tmp_path) as c:
        context, page = await c.signed_in()
        shown = await rows(page)
        assert shown["HighLatency"] == "refused: cooldown"
        assert shown["CheckoutDown"] == "waiting for approval"
        assert shown["DiskAlmostFull"].startswith("escalated")
        assert shown["HighCPUUsage"] in ("verifying", "fixed", "refused: storm")
        assert await page.query_selector("#dry-run") is None  # live: no dry-run banner
        states = [await (await r.query_selector("td.state")).inner_text()  # type: ignore[union-attr]
                  for r in await page.query_selector_all("#now-rows tr.episode")]  # fmt: skip
        # web and checkout, then s1 and s2 fill the storm window's 4; s3 to s5 are braked.
        assert sum(s == "refused: storm" for s in states) == 3
        links = await page.query_selector_all("#now-rows a[href^='http://prometheus:9090/']")
        assert links, "no link to the alert's generatorURL"
        silence = await page.query_selector_all("#now-rows a[href*='/#/silences/new?filter=']")
        assert silence, "no link to silence the alert"
        await screenshot(page, "now")

        await page.select_option("select[name=severity]", "SEV-1")
        await page.click("#filters button")
        await page.wait_for_url(re.compile(r"severity=SEV-1"))
        assert list(await rows(page)) == ["CheckoutDown"]
        await page.goto(c.url + "?state=refused")
        assert set(await rows(page)) == {"HighLatency", "HighCPUUsage"}
        await page.goto(c.url + "?rule=latency")
        assert list(await rows(page)) == ["HighLatency"]
        await page.goto(c.url + "?namespace=nowhere&state=%3Cscript%3E")
        assert await rows(page) == {}
        await screenshot(page, "now-filtered")

        # Live refresh: a new episode appears without a reload.
        await page.goto(c.url)
        await fire(c.service, alert("FreshAlert", instance="x:1"))
        await page.wait_for_selector("#now-rows tr.episode:has-text('FreshAlert')", timeout=15000)
        await context.close()


async def test_an_episodes_story_shows_every_decision_its_page_and_the_rule_set(
    tmp_path: Path,
) -> None:
    async with console(tmp_path) as c:
        context, page = await c.signed_in()
        await page.click("#now-rows tr:has-text('DiskAlmostFull') a[href^='/ui/episodes/']")
        await page.wait_for_url(re.compile(r"/ui/episodes/\d+$"))
        steps = [
            await li.get_attribute("data-step") for li in await page.query_selector_all("#story li")
        ]
        assert steps == ["received", "classified", "refused", "escalated", "notified"], steps
        notified = await page.inner_text("#notifications")
        assert "slack" in notified and "trigger" in notified
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with c.service.session.get(f"{c.service.url}/api/v1/rules", headers=headers) as r:
            active = (await r.json())["hash"]
        assert f"rule default · rule set {active[:12]}" in await page.inner_text("#story")
        await screenshot(page, "story")
        await page.goto(c.url + "episodes/999999")
        assert "No decisions of episode 999999." in await page.inner_text("#refused")
        await page.goto(c.url + "episodes/0x10")
        assert "positive number" in await page.inner_text("#refused")
        await context.close()


async def test_the_brakes_show_budgets_windows_cooldowns_and_the_storm(tmp_path: Path) -> None:
    async with console(tmp_path) as c:
        context, page = await c.signed_in()
        await page.goto(c.url + "brakes")
        budgets = await page.inner_text("#budgets")
        # A scale is not destructive: the global budget is untouched. Its kind's window
        # counts every claim: web, checkout's (held for approval), s1 and s2.
        assert "destructive actions\t0 / 10" in budgets and "scale_out\t4 / 8" in budgets
        cooldowns = await page.inner_text("#cooldowns")
        assert f"{NS}/Deployment/web" in cooldowns and "cpu" in cooldowns
        storm = await page.inner_text("#storm")
        assert "engages above 4" in storm and "engaged" in storm
        assert storm.startswith("7 distinct targets"), storm  # web, checkout, s1..s5
        assert await page.inner_text("#mode") == "Live: actions run."
        await screenshot(page, "brakes")
        await context.close()


async def test_an_approver_approves_from_the_page_and_the_action_runs(tmp_path: Path) -> None:
    async with console(tmp_path) as c:
        viewer, viewer_page = await c.signed_in()
        await viewer_page.goto(c.url + "approvals")
        assert "CheckoutDown" in await viewer_page.inner_text("#pending")
        assert await viewer_page.query_selector("#pending form") is None  # no buttons to read
        await viewer.close()
        context, page = await c.signed_in(ALICE)
        await page.goto(c.url + "approvals")
        assert "alice (approver)" in await page.inner_text("header")
        await screenshot(page, "approvals")
        assert c.scales("checkout") == 0
        await page.fill("#pending input[name=reason]", "checked the dashboards")
        await page.click("#pending button[value=approve]")
        await page.wait_for_url(re.compile(r"answered=approved"))
        assert "Approved: the action runs now." in await page.inner_text("#notice")
        await eventually(lambda: c.scales("checkout") == 1, "the approved scale")
        records = await c.service.decisions(step="approval")
        voted = [d for d in records if d["outcome"] == "approved"]
        assert voted and "alice" in voted[0]["sentence"], records
        answered = await page.inner_text("#answered")
        assert "CheckoutDown\tapproved\talice" in answered, answered
        episode = voted[0]["episode"]
        await page.goto(f"{c.url}episodes/{episode}")
        await eventually(
            lambda: _has_step(c, episode, "acted"), "the approved action's acted record"
        )
        await page.reload()
        assert "acted" in [await li.get_attribute("data-step")
                           for li in await page.query_selector_all("#story li")]  # fmt: skip
        await screenshot(page, "story-approved")
        await context.close()


async def _has_step(c: Console, episode: int, step: str) -> bool:
    return any(d["step"] == step for d in await c.service.decisions(episode=episode))


async def test_a_hostile_label_shows_as_text_and_runs_nothing(tmp_path: Path) -> None:
    async with console(tmp_path) as c:
        context, page = await c.signed_in()
        dialogs: list[str] = []
        page.on("dialog", lambda d: dialogs.append(d.message))
        await page.goto(c.url)
        assert HOSTILE_NAME in await page.inner_text("#now-rows")
        assert await page.query_selector("#now-rows img") is None
        await page.click("#now-rows tr:has-text('onerror') a[href^='/ui/episodes/']")
        story = await page.text_content("#story") or ""  # the details folded in, too
        assert HOSTILE_POD in story and HOSTILE_NAME in story
        assert await page.query_selector("#story img, #story script") is None
        assert await page.evaluate("window.pwned === undefined")
        assert dialogs == []
        await screenshot(page, "hostile")
        await context.close()


async def test_posts_without_the_csrf_token_from_elsewhere_or_by_a_viewer_are_refused(
    tmp_path: Path,
) -> None:
    async with console(tmp_path) as c:
        context, page = await c.signed_in(ALICE)
        await page.goto(c.url + "approvals")
        cookies = {k["name"]: k["value"] for k in await context.cookies()}
        csrf = await page.get_attribute("#pending input[name=csrf]", "value")
        [claim] = [a["id"] for a in await approvals(c)]
        url = f"{c.service.url}/ui/approvals/{claim}"
        jar = {"Cookie": f"{COOKIE}={cookies[COOKIE]}"}
        form = {"decision": "approve", "reason": "x"}
        cases = {
            "no token": (form, {}),
            "wrong token": ({**form, "csrf": "0" * 43}, {}),
            "another origin": ({**form, "csrf": csrf}, {"Origin": "http://evil.example"}),
            "a repeated field": ([*form.items(), ("csrf", csrf), ("csrf", csrf)], {}),
        }
        async with aiohttp.ClientSession() as session:
            for what, (data, headers) in cases.items():
                async with session.post(url, data=data, headers={**jar, **headers},
                                        allow_redirects=False) as response:  # fmt: skip
                    assert response.status in (400, 403), (what, response.status)
                    assert "Refused" in await response.text(), what
            # A viewer's own session and token: read, never answer.
            viewer, viewer_page = await c.signed_in()
            viewer_cookies = {k["name"]: k["value"] for k in await viewer.cookies()}
            viewer_csrf = await viewer_page.get_attribute("form.who input[name=csrf]", "value")
            async with session.post(url, data={**form, "csrf": viewer_csrf or ""},
                                    headers={"Cookie": f"{COOKIE}={viewer_cookies[COOKIE]}"},
                                    allow_redirects=False) as response:  # fmt: skip
                assert response.status == 403
                assert "Only an approver may answer." in await response.text()
            await viewer.close()
        assert c.scales("checkout") == 0 and [a["state"] for a in await approvals(c)] == ["pending"]
        await context.close()


async def approvals(c: Console) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with c.service.session.get(
        f"{c.service.url}/api/v1/approvals?state=pending", headers=headers
    ) as response:
        body: dict[str, Any] = await response.json()
    found: list[dict[str, Any]] = body["approvals"]
    return found


async def test_without_a_session_every_page_goes_to_the_sign_in_and_a_bad_token_is_refused(
    tmp_path: Path,
) -> None:
    async with console(tmp_path, history=False) as c:
        context = await c.browser.new_context()
        page = await context.new_page()
        for path in ("", "brakes", "approvals", "rules", "episodes/1"):
            await page.goto(c.url + path)
            assert "/ui/login?next=" in page.url, (path, page.url)
        await page.fill("input[name=token]", "not-the-token-at-all")
        await page.click("#login button")
        assert "That token is not one this service knows." in await page.inner_text("#notice")
        assert await context.cookies() == []
        await screenshot(page, "login-refused")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{c.url}fragments/now") as response:
                assert response.status == 401
            async with session.get(c.url, allow_redirects=False) as response:
                assert response.status == 303
                csp = response.headers["Content-Security-Policy"]
                assert "script-src 'self'" in csp and "default-src 'none'" in csp
                assert "frame-ancestors 'none'" in csp
        await page.goto(c.url + "login?next=//evil.example/")
        await page.fill("input[name=token]", TOKEN)
        await page.click("#login button")
        await page.wait_for_url(c.url)  # not to another site
        [cookie] = await context.cookies()
        assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"]) == (True, True, "Strict")
        await page.click("form.who button")  # sign out
        await page.wait_for_url(re.compile(r"/ui/login$"))
        await page.goto(c.url + "brakes")
        assert "/ui/login?next=" in page.url
        await context.close()


async def test_the_rules_page_shows_the_active_set_and_explains_an_alert(tmp_path: Path) -> None:
    async with console(tmp_path, history=False) as c:
        context, page = await c.signed_in()
        await page.goto(c.url + "rules")
        assert len(await page.query_selector_all("#rules tbody tr")) == 4
        await page.fill("#explain textarea", f"alertname=CheckoutDown\nnamespace={NS}\n")
        await page.click("#explain button")
        explained = await page.inner_text("#explained")
        assert "checkout-down (rules.yaml)" in explained and "SEV-1" in explained
        assert "required" in explained
        await screenshot(page, "rules")
        await page.fill("#explain textarea", "not a label\n")
        await page.click("#explain button")
        assert "name=value" in await page.inner_text("#explain-error")
        await context.close()
