"""Rule reload without a restart: ``POST /-/reload``, SIGHUP and the file watch (a ConfigMap's
symlink swap). A good set decides from the next decision on; a bad one never goes live (the
old set stays, the answer and ``remediator_config_last_reload_successful`` say why); under
load every decision names a set that was active and classifies as that set says, and no
webhook fails. Also ``GET /api/v1/rules`` and the ``/-/healthy`` and ``/-/ready`` aliases."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from remediator.act.slots import Slots
from remediator.actions.registry import default_registry
from remediator.core.model import AuditRecord, Outcome
from remediator.escalate.plan import plan
from remediator.ruleset.active import KEPT, ActiveRules
from remediator.ruleset.load import load_rules
from remediator.runtime.app import SERVICES
from remediator.store.contract import AuditQuery
from tests.support import waiting
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.postgres import PostgresServer
from tests.support.process import RemediatorProcess, start_remediator
from tests.support.rule_texts import POLICY
from tests.support.service import TOKEN, ServiceUnderTest, serve, settings_for

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def rules_text(prefix: str, severity: str) -> str:
    """Rules that classify ``Load`` as ``<prefix>-load`` at ``severity``: two sets that differ
    in every decision they make, so a decision shows which set made it."""
    return f"""\
policy:
  namespaces: [llm-research]
rules:
  - name: {prefix}-load
    matchers: ['alertname="Load"', 'n=~".+"']
    severity: {severity}
    action: {{kind: log_only}}
    target: {{kind: Deployment, namespace: llm-research, name: "d{{n}}"}}
    cooldown_s: 0
  - name: {prefix}-default
    matchers: []
    severity: SEV-3
"""


SET_A = rules_text("a", "SEV-2")
SET_B = rules_text("b", "SEV-3")
BROKEN = SET_A.replace("severity: SEV-2", "severity: SEV-9")
BROKEN_ERROR = (
    '10-rules.yaml: rule "a-load": field "severity" must be SEV-1, SEV-2 or SEV-3, not "SEV-9".'
)


SINKS = """\
sinks:
  oncall: {type: pagerduty, routing_key_file: /no/such}
  ops: {type: webhook, url: "http://127.0.0.1:9/ops"}
"""


def write_set(directory: Path, rules: str) -> None:
    """The rules file replaced at once (a rename), as an editor or ``kubectl cp`` leaves it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "00-policy.yaml").write_text(POLICY)
    fresh = directory / ".10-rules.yaml.new"
    fresh.write_text(rules)
    os.replace(fresh, directory / "10-rules.yaml")


def hash_of(tmp_path: Path, rules: str) -> str:
    """The hash serve gives ``rules`` (same file names, same bytes)."""
    directory = tmp_path / f"hash-{abs(hash(rules))}"
    write_set(directory, rules)
    return load_rules(directory, default_registry()).hash


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[ServiceUnderTest]:
    write_set(tmp_path / "rules", SET_A)
    async with serve(settings_for(tmp_path, rules_dir=tmp_path / "rules")) as running:
        yield running


async def post_reload(
    service: ServiceUnderTest, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    sent = AUTH if headers is None else headers
    async with service.session.post(f"{service.url}/-/reload", headers=sent) as resp:
        return resp.status, await resp.json()


async def active_rules(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(f"{url}/api/v1/rules", headers=AUTH) as resp:
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body


async def accepted(service: ServiceUnderTest, alert: dict[str, Any]) -> bool:
    status, body = await service.post(webhook_payload(alert))
    return status == 200 and body["status"] == "accepted"


def load_alert(i: int) -> dict[str, Any]:
    return webhook_alert(labels={"alertname": "Load", "namespace": "llm-research", "n": str(i)})


# --------------------------------------------------------------------------- the endpoint


async def test_a_good_set_decides_from_the_next_decision_and_the_rules_api_shows_it(
    service: ServiceUnderTest, tmp_path: Path
) -> None:
    hash_a, hash_b = hash_of(tmp_path, SET_A), hash_of(tmp_path, SET_B)
    before = await active_rules(service.session, service.url)
    assert before["hash"] == hash_a and before["last_reload"] is None
    assert await accepted(service, load_alert(1))
    await service.settle()

    write_set(tmp_path / "rules", SET_B)
    assert await post_reload(service) == (
        200,
        {"status": "success", "hash": hash_b, "changed": True},
    )
    assert await accepted(service, load_alert(2))
    await service.settle()

    classified = [d for d in await service.decisions() if d["step"] == "classified"]
    assert [(d["rule"], d["severity"], d["ruleset_hash"]) for d in classified] == [
        ("a-load", "SEV-2", hash_a),
        ("b-load", "SEV-3", hash_b),
    ]
    after = await active_rules(service.session, service.url)
    assert after["hash"] == hash_b and after["files"] == ["00-policy.yaml", "10-rules.yaml"]
    assert [r["name"] for r in after["rules"]] == ["b-load", "b-default"]
    assert after["rules"][0]["matchers"] == ['alertname="Load"', 'n=~".+"']
    assert datetime.fromisoformat(after["loaded_at"]) > datetime.fromisoformat(before["loaded_at"])
    last = after["last_reload"]
    assert (last["successful"], last["trigger"], last["changed"], last["error"]) == (
        True, "http", True, None,
    )  # fmt: skip
    assert await service.metric("remediator_config_last_reload_successful") == 1
    assert await service.metric("remediator_config_reloads_total", {"result": "success"}) == 1
    stamped = await service.metric("remediator_config_last_reload_success_timestamp_seconds")
    assert stamped == pytest.approx(datetime.fromisoformat(last["at"]).timestamp())


async def test_a_reload_of_the_same_files_succeeds_and_changes_nothing(
    service: ServiceUnderTest, tmp_path: Path
) -> None:
    status, body = await post_reload(service)
    assert (status, body) == (200, {"status": "success", "hash": hash_of(tmp_path, SET_A),
                                    "changed": False})  # fmt: skip


async def test_a_broken_set_never_goes_live_and_says_why_until_a_good_one_loads(
    service: ServiceUnderTest, tmp_path: Path
) -> None:
    hash_a = hash_of(tmp_path, SET_A)
    write_set(tmp_path / "rules", BROKEN)
    status, body = await post_reload(service)
    assert (status, body) == (
        500, {"error": "reload_failed", "detail": BROKEN_ERROR, "hash": hash_a},
    )  # fmt: skip
    assert await service.metric("remediator_config_last_reload_successful") == 0
    assert await service.metric("remediator_config_reloads_total", {"result": "failure"}) == 1
    active = await active_rules(service.session, service.url)
    assert active["hash"] == hash_a
    assert (active["last_reload"]["successful"], active["last_reload"]["error"]) == (
        False, BROKEN_ERROR,
    )  # fmt: skip

    # The old set still decides, and the service is ready.
    assert await accepted(service, load_alert(1))
    await service.settle()
    [classified] = [d for d in await service.decisions() if d["step"] == "classified"]
    assert (classified["rule"], classified["ruleset_hash"]) == ("a-load", hash_a)
    async with service.session.get(f"{service.url}/readyz") as resp:
        assert resp.status == 200

    write_set(tmp_path / "rules", SET_B)
    assert (await post_reload(service))[0] == 200
    assert await service.metric("remediator_config_last_reload_successful") == 1


@pytest.mark.parametrize(
    ("files", "error"),
    [
        ({"10-rules.yaml": None}, None),  # no rules file left: the catch-all is gone too
        ({"10-rules.yaml": "rules: [\n"}, None),
        ({"20-more.yaml": "rules:\n  - name: a-load\n    matchers: []\n    severity: SEV-1\n"},
         None),
        ({"00-policy.yaml": POLICY + SINKS}, "sink oncall: cannot read secret file /no/such:"
                                             " No such file or directory"),
    ],
    ids=["file-removed", "yaml-syntax", "duplicate-rule-name", "missing-sink-secret"],
)  # fmt: skip
async def test_every_kind_of_broken_set_keeps_the_old_one(
    service: ServiceUnderTest, tmp_path: Path, files: dict[str, str | None], error: str | None
) -> None:
    for name, text in files.items():
        path = tmp_path / "rules" / name
        path.unlink() if text is None else path.write_text(text)
    status, body = await post_reload(service)
    assert status == 500 and body["error"] == "reload_failed" and body["detail"]
    if error is not None:
        assert body["detail"] == error
    assert body["hash"] == hash_of(tmp_path, SET_A)
    assert (await active_rules(service.session, service.url))["hash"] == body["hash"]


async def test_reload_and_the_rules_api_want_the_token_and_reload_wants_a_post(
    service: ServiceUnderTest,
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        status, body = await post_reload(service, headers)
        assert (status, body["error"]) == (401, "unauthorized")
        async with service.session.get(f"{service.url}/api/v1/rules", headers=headers) as resp:
            assert resp.status == 401
    async with service.session.get(f"{service.url}/-/reload", headers=AUTH) as resp:
        assert resp.status == 405 and (await resp.json())["error"] == "method_not_allowed"
    assert await service.metric("remediator_config_reloads_total", {"result": "success"}) == 0


async def test_healthy_and_ready_answer_as_healthz_and_readyz(service: ServiceUnderTest) -> None:
    for alias, original in (("/-/healthy", "/healthz"), ("/-/ready", "/readyz")):
        answers = []
        for path in (alias, original):
            async with service.session.get(f"{service.url}{path}") as resp:
                body = await resp.json()
                answers.append((resp.status, sorted(body)))
        assert answers[0] == answers[1] and answers[0][0] == 200


# --------------------------------------------------------------------------- under load

ROUNDS = 20
PER_ROUND = 50  # every 0.25 s: 200 webhooks per second
ALERTS_PER_WEBHOOK = 2  # so that the worker is deciding when a reload swaps the set


@asynccontextmanager
async def service_on(backend: str, tmp_path: Path) -> AsyncIterator[ServiceUnderTest]:
    write_set(tmp_path / "rules", SET_A)
    async with contextlib.AsyncExitStack() as stack:
        state = {}
        if backend == "postgres":
            server = await stack.enter_async_context(PostgresServer())
            state = {"state_url": await server.create_state_database()}
        settings = settings_for(tmp_path, rules_dir=tmp_path / "rules", **state)
        yield await stack.enter_async_context(serve(settings))


@pytest.mark.timeout(180)
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_under_load_every_decision_names_an_active_set_and_classifies_as_it_says(
    backend: str, tmp_path: Path
) -> None:
    """200 webhooks per second during 20 reloads alternating between two sets that classify
    the same alert differently: no webhook fails, every decision's hash is one of the two, and
    its rule is that set's (a decision that saw half of each would name the other's). On
    PostgreSQL a decision awaits the server between its first record and its claim, so a swap
    lands inside decisions there."""
    async with service_on(backend, tmp_path) as service:
        await reloads_under_load(service, tmp_path)


async def reloads_under_load(service: ServiceUnderTest, tmp_path: Path) -> None:
    rules_of = {hash_of(tmp_path, SET_A): "a-load", hash_of(tmp_path, SET_B): "b-load"}
    loop = asyncio.get_running_loop()
    statuses: list[int] = []
    reloads: list[tuple[int, dict[str, Any]]] = []

    async def post_rounds() -> None:
        for round_ in range(ROUNDS):
            started, first = loop.time(), round_ * PER_ROUND * ALERTS_PER_WEBHOOK
            sent = [
                service.post(webhook_payload(*(load_alert(first + i * ALERTS_PER_WEBHOOK + j)
                                               for j in range(ALERTS_PER_WEBHOOK))))
                for i in range(PER_ROUND)
            ]  # fmt: skip
            statuses.extend(status for status, _ in await asyncio.gather(*sent))
            await asyncio.sleep(max(0.0, 0.25 - (loop.time() - started)))

    async def reload_rounds() -> None:
        """Half a round after each burst: while the worker decides what the burst brought
        (it waits for the acks to go quiet first). Each reload waits for a decision under
        the set before it, so both sets decide however busy the machine is."""
        await asyncio.sleep(0.125)
        active, seen = hash_of(tmp_path, SET_A), 0
        for round_ in range(ROUNDS):
            started = loop.time()
            seen = await decided_under(service, active, seen)
            write_set(tmp_path / "rules", SET_B if round_ % 2 == 0 else SET_A)
            reloads.append(await post_reload(service))
            active = reloads[-1][1].get("hash", "")
            await asyncio.sleep(max(0.0, 0.25 - (loop.time() - started)))

    await asyncio.gather(post_rounds(), reload_rounds())
    services = service.server.app[SERVICES]
    await asyncio.wait_for(services.worker.idle.wait(), 120)
    await services.runner.drain(30)

    assert statuses == [200] * ROUNDS * PER_ROUND
    assert [status for status, _ in reloads] == [200] * ROUNDS
    assert all(body["changed"] for _, body in reloads)
    records = await all_decisions(service)
    classified = [d for d in records if d["step"] == "classified"]
    assert len(classified) == ROUNDS * PER_ROUND * ALERTS_PER_WEBHOOK
    assert {d["ruleset_hash"] for d in classified} == set(rules_of)  # both sets decided
    assert [d for d in classified if rules_of[d["ruleset_hash"]] != d["rule"]] == []
    # Each decision, claim included, names one set from the first record to the last.
    hashes: dict[int, set[str]] = {}
    for record in records:
        if record["step"] in ("received", "classified", "claimed", "refused", "escalated"):
            hashes.setdefault(record["episode"], set()).add(record["ruleset_hash"])
    assert [e for e, named in hashes.items() if len(named) != 1] == []
    # Every one went through the claim transaction: claimed, or refused there by the limits.
    ended = [d["step"] for d in records if d["step"] in ("claimed", "refused")]
    assert len(ended) == ROUNDS * PER_ROUND * ALERTS_PER_WEBHOOK and "claimed" in ended


async def decided_under(service: ServiceUnderTest, ruleset_hash: str, after_id: int) -> int:
    """Until an alert is classified under ``ruleset_hash`` in a record after ``after_id``;
    the last record id read."""
    store = service.server.app[SERVICES].store
    deadline = asyncio.get_running_loop().time() + 30
    while asyncio.get_running_loop().time() < deadline:
        records = await store.decisions(AuditQuery(after_id=after_id, limit=1000))
        after_id = (records[-1].id or after_id) if records else after_id
        if any(r.step == "classified" and r.ruleset_hash == ruleset_hash for r in records):
            return after_id
        await asyncio.sleep(0.01)
    raise AssertionError(f"no alert was classified under {ruleset_hash} within 30 s")


async def all_decisions(service: ServiceUnderTest) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    after = 0
    while page := await service.decisions(after=after):
        records.extend(page)
        after = page[-1]["id"]
    return records


# --------------------------------------------------------------------------- SIGHUP


async def process_rules(replica: RemediatorProcess) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        return await active_rules(session, replica.url)


async def test_sighup_under_load_reloads_without_a_dropped_webhook_and_a_bad_set_keeps_serving(
    tmp_path: Path,
) -> None:
    write_set(tmp_path / "rules", SET_A)
    hashes = {"a": hash_of(tmp_path, SET_A), "b": hash_of(tmp_path, SET_B)}
    replica = await start_remediator(tmp_path / "r", rules=tmp_path / "rules")
    statuses: list[int | None] = []
    sending = True

    async def send() -> None:
        i = 0
        while sending:
            body = json.dumps(webhook_payload(load_alert(i))).encode()
            statuses.extend(await asyncio.gather(*(replica.post(body) for _ in range(5))))
            i += 1
            await asyncio.sleep(0.02)

    sender = asyncio.create_task(send())
    try:
        for round_ in range(6):
            name = "b" if round_ % 2 == 0 else "a"
            write_set(tmp_path / "rules", SET_B if name == "b" else SET_A)
            replica.proc.send_signal(signal.SIGHUP)

            async def active(wanted: str = hashes[name]) -> bool:
                return (await process_rules(replica))["hash"] == wanted

            await waiting.eventually(active, f"rule set {name} after SIGHUP {round_}")
        write_set(tmp_path / "rules", BROKEN)
        replica.proc.send_signal(signal.SIGHUP)

        async def refused() -> bool:
            last = (await process_rules(replica))["last_reload"]
            return last is not None and not last["successful"]

        await waiting.eventually(refused, "the broken set refused")
        await asyncio.sleep(0.5)  # still sending while the broken set is refused
    finally:
        sending = False
        await sender
    assert replica.proc.returncode is None, replica.log_tail()
    assert (await process_rules(replica))["hash"] == hashes["a"]  # the last good set
    await replica.stop()
    assert statuses and set(statuses) == {200}, replica.log_tail()
    log = replica.log_path.read_text()
    assert log.count("rules reloaded (SIGHUP)") == 6
    assert f"rule set {hashes['a']} still decides: {BROKEN_ERROR}" in log
    assert "Traceback" not in log


# --------------------------------------------------------------------------- the watch


def configmap_volume(directory: Path, version: str, rules: str) -> None:
    """What the kubelet does to a ConfigMap volume: the files in a fresh timestamped
    directory, ``..data`` swapped to it by one rename, the names links through ``..data``."""
    fresh = directory / f"..{version}"
    write_set(fresh, rules)
    link = directory / "..data_tmp"
    link.symlink_to(fresh.name)
    os.replace(link, directory / "..data")
    for name in ("00-policy.yaml", "10-rules.yaml"):
        if not (directory / name).is_symlink():
            (directory / name).symlink_to(f"..data/{name}")


async def test_the_watch_reloads_a_configmap_swap_and_refuses_a_broken_one(tmp_path: Path) -> None:
    volume = tmp_path / "rules"
    volume.mkdir()
    configmap_volume(volume, "2026_12_01_a", SET_A)
    settings = settings_for(tmp_path, rules_dir=volume, rules_watch_s=0.1)
    async with serve(settings) as service:

        async def active_hash() -> str:
            return str((await active_rules(service.session, service.url))["hash"])

        assert await active_hash() == hash_of(tmp_path, SET_A)
        configmap_volume(volume, "2026_12_01_b", SET_B)

        async def swapped() -> bool:
            return await active_hash() == hash_of(tmp_path, SET_B)

        await waiting.eventually(swapped, "the watch to load the swapped ConfigMap", 10)
        configmap_volume(volume, "2026_12_01_c", BROKEN)

        async def refused() -> bool:
            return await service.metric("remediator_config_last_reload_successful") == 0

        await waiting.eventually(refused, "the watch to refuse the broken set", 10)
        await asyncio.sleep(0.5)  # several looks at the same broken files: one failure
        assert await service.metric("remediator_config_reloads_total", {"result": "failure"}) == 1
        assert await active_hash() == hash_of(tmp_path, SET_B)
        rules = await active_rules(service.session, service.url)
        assert rules["last_reload"]["trigger"] == "watch"


# --------------------------------------------------------------------------- the parts


def escalated(hash_: str, policy: str) -> AuditRecord:
    return AuditRecord(
        at=datetime(2026, 12, 1, tzinfo=UTC), step="escalated", outcome=Outcome.ESCALATED,
        sentence="Escalated.", episode_id=1, fingerprint="aa01", severity="SEV-3",
        details={"policy": policy}, ruleset_hash=hash_,
    )  # fmt: skip


def test_a_page_decided_before_a_reload_uses_the_policy_of_the_set_that_decided_it(
    tmp_path: Path,
) -> None:
    def with_policy(name: str, sink: str) -> Path:
        directory = tmp_path / name
        policy = f"""\
defaults:
  escalation: {{SEV-1: {name}, SEV-2: {name}, SEV-3: {name}}}
escalations:
  {name}:
    tiers: [{{after_s: 0, notify: [{sink}]}}]
sinks:
  old-sink: {{type: webhook, url: "http://127.0.0.1:9/a"}}
  new-sink: {{type: webhook, url: "http://127.0.0.1:9/b"}}
"""
        (directory).mkdir()
        (directory / "00-policy.yaml").write_text(policy)
        (directory / "10-rules.yaml").write_text(rules_text("x", "SEV-3"))
        return directory

    old = load_rules(with_policy("old-policy", "old-sink"), default_registry())
    new = load_rules(with_policy("new-policy", "new-sink"), default_registry())
    rules = ActiveRules(old, datetime(2026, 12, 1, tzinfo=UTC))
    rules.swap(new, datetime(2026, 12, 1, 0, 1, tzinfo=UTC))
    queued = plan([escalated(old.hash, "old-policy")], rules).outbox
    assert [(item.policy, item.sink) for item in queued] == [("old-policy", "old-sink")]
    queued = plan([escalated(new.hash, "new-policy")], rules).outbox
    assert [(item.policy, item.sink) for item in queued] == [("new-policy", "new-sink")]
    # A set long gone: its policy by name, from a kept set that has it.
    for i in range(KEPT + 2):
        rules.swap(load_rules(with_policy(f"p{i}", "new-sink"), default_registry()),
                   datetime(2026, 12, 2, tzinfo=UTC))  # fmt: skip
    assert rules.escalation("old-policy", old.hash) is None
    assert rules.escalation(f"p{KEPT + 1}", "gone") is not None


async def test_a_smaller_action_bound_starts_nothing_new_until_enough_running_ones_end() -> None:
    slots = Slots(2)
    started: list[int] = []
    releases = [asyncio.Event() for _ in range(5)]

    async def action(n: int) -> None:
        async with slots:
            started.append(n)
            await releases[n].wait()

    tasks = [asyncio.create_task(action(n)) for n in range(5)]
    await asyncio.sleep(0.01)
    assert started == [0, 1]
    slots.resize(1)
    releases[0].set()
    await asyncio.sleep(0.01)
    assert started == [0, 1]  # one still runs: the bound of 1 is reached
    releases[1].set()
    await asyncio.sleep(0.01)
    assert started == [0, 1, 2]  # both ended: one more starts, not two
    slots.resize(3)
    await asyncio.sleep(0.01)
    assert started == [0, 1, 2, 3, 4]
    for release in releases:
        release.set()
    await asyncio.gather(*tasks)
