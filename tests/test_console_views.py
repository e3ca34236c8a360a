"""The console without a browser: the states "Now" gives episodes, the brakes counted from
claims at their windows' edges, the sessions' expiry and bound, and the sign-in's and the
forms' hostile inputs over real HTTP (wrong type, too large, repeated fields, bytes that
are not UTF-8, another origin, a next page elsewhere)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from remediator.actions.registry import default_registry
from remediator.console import brakes, episodes, pages
from remediator.core.model import AuditRecord, Outcome, Step, StopReason
from remediator.ruleset.load import load_rules
from remediator.runtime.sessions import COOKIE, Sessions
from remediator.store.contract import RecentClaim
from tests.support.service import TOKEN, ServiceUnderTest, serve, settings_for
from tests.test_rules_load import write_rules

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def record(n: int, step: Step, outcome: Outcome, **fields: Any) -> AuditRecord:
    return AuditRecord(at(n), step, outcome, f"record {n}", episode_id=fields.pop("ep", 1),
                       alertname="A", id=n, **fields)  # fmt: skip


def newest_first(*records: AuditRecord) -> list[AuditRecord]:
    return sorted(records, key=lambda r: r.id or 0, reverse=True)


STORIES = {
    "claimed": ([(Step.CLAIMED, Outcome.CLAIMED, {})], "acting", ""),
    "acted": ([(Step.ACTED, Outcome.SUCCEEDED, {})], "verifying", ""),
    "fixed": ([(Step.VERIFIED, Outcome.SUCCEEDED, {})], "fixed", ""),
    "ineffective": ([(Step.VERIFIED, Outcome.FAILED, {"reason": StopReason.STILL_FIRING}),
                     (Step.ESCALATED, Outcome.ESCALATED, {"reason": StopReason.STILL_FIRING})],
                    "escalated", "ineffective"),
    "refused then paged": ([(Step.REFUSED, Outcome.REFUSED, {"reason": StopReason.COOLDOWN}),
                            (Step.ESCALATED, Outcome.ESCALATED, {}),
                            (Step.NOTIFIED, Outcome.ESCALATED, {})],
                           "refused", "cooldown"),
    "approval asked and paged": ([(Step.APPROVAL, Outcome.PENDING_APPROVAL, {}),
                                  (Step.ESCALATED, Outcome.ESCALATED, {})],
                                 "waiting for approval", ""),
    "approval then acted": ([(Step.APPROVAL, Outcome.PENDING_APPROVAL, {}),
                             (Step.ESCALATED, Outcome.ESCALATED, {}),
                             (Step.APPROVAL, Outcome.APPROVED, {}),
                             (Step.ACTED, Outcome.SUCCEEDED, {})], "verifying", ""),
    "escalate only": ([(Step.REFUSED, Outcome.REFUSED, {"reason": StopReason.ESCALATE_ONLY}),
                       (Step.ESCALATED, Outcome.ESCALATED, {})], "escalated", ""),
    "resolved": ([(Step.REFUSED, Outcome.RESOLVED, {"reason": StopReason.RESOLVED})],
                 "resolved", ""),
    "dry run": ([(Step.DRY_RUN, Outcome.DRY_RUN, {"reason": StopReason.DRY_RUN})],
                "dry-run", ""),
}  # fmt: skip


@pytest.mark.parametrize(("after", "state", "reason"), STORIES.values(), ids=STORIES)
def test_an_episodes_state_is_what_its_latest_decision_says(
    after: list[tuple[Step, Outcome, dict[str, Any]]], state: str, reason: str
) -> None:
    story = [record(1, Step.RECEIVED, Outcome.RECEIVED), record(2, Step.CLASSIFIED,
             Outcome.CLASSIFIED, rule="r", severity=None)]  # fmt: skip
    story += [record(3 + i, step, outcome, **extra) for i, (step, outcome, extra) in
              enumerate(after)]  # fmt: skip
    [row] = episodes.episodes(newest_first(*story))
    assert (row.state, row.reason) == (state, reason)
    assert row.state in episodes.STATE_NAMES
    assert (row.first_at, row.last_at) == (at(1), at(2 + len(after)))


def test_episodes_come_newest_first_and_only_http_links_are_links() -> None:
    alert = {"labels": {"namespace": "shop"}, "generator_url": "javascript:alert(1)",
             "silence_url": "https://am.example/#/silences/new?filter=x"}  # fmt: skip
    rows = episodes.episodes(newest_first(
        record(1, Step.RECEIVED, Outcome.RECEIVED, ep=7, details={"labels": {"namespace": "a"}}),
        record(2, Step.RECEIVED, Outcome.RECEIVED, ep=9, target="team-b/Deployment/web"),
        record(3, Step.ESCALATED, Outcome.ESCALATED, ep=7, details={"alert": alert}),
    ))  # fmt: skip
    assert [r.episode_id for r in rows] == [9, 7]
    assert [r.namespace for r in rows] == ["team-b", "a"]
    assert rows[1].generator_url == "" and rows[1].silence_url.startswith("https://am.example/")


def test_filters_keep_what_they_name_and_hide_resolved_unless_asked() -> None:
    rows = episodes.episodes(newest_first(
        record(1, Step.CLAIMED, Outcome.CLAIMED, ep=1, rule="cpu", target="a/Deployment/x"),
        record(2, Step.REFUSED, Outcome.RESOLVED, ep=2, rule="cpu", target="b/Deployment/y"),
    ))  # fmt: skip
    assert [r.episode_id for r in rows if episodes.Filters().keeps(r)] == [1]
    assert [r.episode_id for r in rows if episodes.Filters(show="all").keeps(r)] == [2, 1]
    assert [r.episode_id for r in rows if episodes.Filters(namespace="b", show="all").keeps(r)] == [
        2
    ]
    assert [r for r in rows if episodes.Filters(rule="other").keeps(r)] == []


RULES = """
policy:
  namespaces: [shop]
  storm: {max_targets: 3, window_s: 60}
  global_budget: {max_actions: 2, window_s: 100}
  action_limits: {recycle_pod: {max_actions: 5, window_s: 50}}
defaults:
  escalation: {SEV-1: ops, SEV-2: ops, SEV-3: ops}
escalations:
  ops: {tiers: [{after_s: 0, notify: [oncall]}]}
actions:
  recycle: {kind: recycle_pod, params: {min_healthy: "66%"}}
rules:
  - name: pods
    matchers: ['alertname="PodStuck"']
    severity: SEV-3
    action: recycle
    cooldown_s: 30
    target: {kind: Pod, namespace: "{namespace}", name: "{pod}"}
  - name: default
    matchers: []
    severity: SEV-3
"""


def claim(seconds: float, target: str = "shop/Pod/p", outcome: str | None = "succeeded",
          rule: str = "pods") -> RecentClaim:  # fmt: skip
    return RecentClaim(1, rule, "recycle_pod", target, True, at(seconds), outcome)


def test_the_brakes_count_each_window_from_its_edge_and_cool_only_what_sent_something(
    tmp_path: Path,
) -> None:
    ruleset = load_rules(write_rules(tmp_path / "rules", {"rules.yaml": RULES}), default_registry())
    assert brakes.lookback_s(ruleset) == 100
    now = at(200)
    claims = [
        claim(199, "shop/Pod/refused", outcome="refused"),  # counts, but no cooldown
        claim(190, "shop/Pod/a"),
        claim(180, "shop/Pod/gone-rule", rule="removed"),
        claim(150, "shop/Pod/b"),  # the recycle window's edge: 200 - 50, not counted
        claim(100, "shop/Pod/c"),  # the budget's edge: not counted
    ]
    state = brakes.brakes(ruleset, claims, storm_targets=4, now=now, dry_run=False)
    assert (state.budget.used, state.budget.limit, state.budget.spent) == (4, 2, True)
    assert state.budget.frees_at == at(250)  # the oldest counted, 150, leaves at 250
    [kind] = state.kinds
    assert (kind.name, kind.used, kind.limit, kind.frees_at) == ("recycle_pod", 3, 5, at(230))
    assert [(c.target, c.ends_at) for c in state.cooldowns] == [("shop/Pod/a", at(220))]
    assert state.storm_engaged and (state.storm_targets, state.storm_limit) == (4, 3)
    assert not state.truncated
    empty = brakes.brakes(ruleset, [], storm_targets=3, now=now, dry_run=True)
    assert (empty.budget.used, empty.budget.frees_at, empty.storm_engaged) == (0, None, False)


def test_sessions_expire_are_bounded_and_compare_csrf_tokens_whatever_they_hold() -> None:
    clock = [0.0]
    sessions = Sessions(now=lambda: clock[0], ttl_s=10, max_sessions=2)
    first = sessions.open("alice", "approver")
    second = sessions.open("viewer", "viewer")
    assert sessions.find(first.id) == first and sessions.find(None) is None
    assert sessions.find("") is None and sessions.find("nope") is None
    third = sessions.open("bob", "approver")  # the oldest goes
    assert sessions.find(first.id) is None and len(sessions) == 2
    assert first.id != second.id != third.id and len(first.csrf) >= 43
    assert third.csrf_matches(third.csrf)
    for offered in ("", third.csrf[:-1], third.csrf + "x", "\udcff", "é" * 43):
        assert not third.csrf_matches(offered)
    clock[0] = 10.0
    assert sessions.find(second.id) is None and sessions.find(third.id) is None


@pytest.mark.parametrize(("seconds", "said"), [(0, "0s"), (59.9, "59s"), (61, "1m01s"),
                         (7260, "2h01m"), (90000, "1d01h"), (-5, "0s")])  # fmt: skip
def test_an_age_reads_at_a_glance(seconds: float, said: str) -> None:
    assert pages.age(seconds) == said


def test_only_the_console_s_own_static_files_are_served() -> None:
    assert pages.static("console.js") is not None
    for name in ("../pages.py", "templates/base.html", "console.js/", "", "CONSOLE.JS"):
        assert pages.static(name) is None


async def login(service: ServiceUnderTest, body: bytes, **headers: str) -> tuple[int, str, Any]:
    sent = {"Content-Type": "application/x-www-form-urlencoded", **headers}
    async with service.session.post(
        f"{service.url}/ui/login", data=body, headers=sent, allow_redirects=False
    ) as response:
        return response.status, await response.text(), response


HOSTILE_LOGINS = {
    "json": (b'{"token": "x"}', {"Content-Type": "application/json"}, 415,
             "Post the page&#39;s own form."),
    "too large": (b"token=" + b"a" * 20_000, {}, 413, "The form is over 16384 bytes."),
    "repeated": (f"token={TOKEN}&token=other".encode(), {}, 400, "A field is given twice."),
    "not utf-8": (b"token=%ff%fe", {}, 400, "The form does not read."),
    "raw bytes": (b"token=\xff", {}, 400, "The form does not read."),
    "no equals": (b"tokenonly", {}, 400, "The form does not read."),
    "many fields": ("&".join(f"f{i}=1" for i in range(20)).encode(), {}, 400,
                    "The form does not read."),
    "another origin": (f"token={TOKEN}".encode(), {"Origin": "https://evil.example"}, 403,
                       "A form from another site is refused."),
    "origin null": (f"token={TOKEN}".encode(), {"Origin": "null"}, 403,
                    "A form from another site is refused."),
    "wrong token": (b"token=wrong-token", {}, 401, "That token is not one this service knows."),
    "no token": (b"token=", {}, 401, "Give a token."),
    "token with a newline": (f"token={TOKEN}%0Aextra".encode(), {}, 401,
                             "That token is not one this service knows."),
}  # fmt: skip


@pytest.mark.parametrize(("body", "headers", "status", "said"), HOSTILE_LOGINS.values(),
                         ids=HOSTILE_LOGINS)  # fmt: skip
async def test_a_hostile_sign_in_is_a_page_saying_why_and_no_session(
    tmp_path: Path, body: bytes, headers: dict[str, str], status: int, said: str
) -> None:
    async with serve(settings_for(tmp_path)) as service:
        got, text, response = await login(service, body, **headers)
        assert (got, COOKIE in response.cookies) == (status, False), text[:300]
        assert said in text and "Content-Security-Policy" in response.headers
        got, _, response = await login(service, f"token={TOKEN}".encode())  # still serving
        assert got == 303 and COOKIE in response.cookies


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/ui/", "/elsewhere",
                                    "/ui/\\evil", "javascript:alert(1)"])  # fmt: skip
async def test_after_sign_in_the_next_page_is_the_consoles_own(tmp_path: Path, target: str) -> None:
    async with serve(settings_for(tmp_path)) as service:
        body = f"token={TOKEN}&next=".encode() + target.encode()
        status, _, response = await login(service, body)
        assert status == 303 and response.headers["Location"] == "/ui/"
        status, _, response = await login(service, f"token={TOKEN}&next=/ui/brakes".encode())
        assert response.headers["Location"] == "/ui/brakes"


async def test_a_dry_run_service_says_so_on_every_page(tmp_path: Path) -> None:
    async with serve(settings_for(tmp_path, dry_run=True)) as service:
        status, _, response = await login(service, f"token={TOKEN}".encode())
        assert status == 303
        cookie = {"Cookie": f"{COOKIE}={response.cookies[COOKIE].value}"}
        for path in ("/ui/", "/ui/brakes", "/ui/approvals", "/ui/rules"):
            async with service.session.get(f"{service.url}{path}", headers=cookie) as page:
                text = await page.text()
                assert page.status == 200, (path, text[:200])
                assert 'id="dry-run"' in text, path
        async with service.session.get(f"{service.url}/ui/brakes", headers=cookie) as page:
            assert "Dry-run: nothing is done" in await page.text()
        async with service.session.get(f"{service.url}/ui/approvals", headers=cookie) as page:
            assert "No approvers file is configured" in await page.text()
