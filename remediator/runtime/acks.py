"""The acknowledgement routes: ``POST /api/v1/acks/pagerduty/<sink>`` (a PagerDuty v3 webhook
subscription) and ``POST /api/v1/acks/slack/<sink>`` (a Slack app's interactivity URL).

Where it sits: the sender's signature is the authentication (no bearer token: PagerDuty and
Slack cannot send one), checked by ``escalate.acks`` with the secret named by the sink's spec
in the active rules, read from its file at each request (a rotated secret is used at once; a
PagerDuty file may hold several, one per line, during a rotation). A genuine
acknowledgement of an incident remediator paged is kept with one audit record per episode
it pages for (up to ``AUDITED``), in one transaction that drops the later tiers not sent
and tells every other sink (``store.incident_acknowledge``); a resolve closes the incident
on every sink. The same acknowledgement twice changes nothing the second time.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from aiohttp import web

from remediator.audit import records as audit
from remediator.audit.recorder import Recorder
from remediator.core.clock import Clock
from remediator.core.errors import RequestRejected
from remediator.core.model import AuditRecord
from remediator.core.vocab import Step
from remediator.escalate import acks
from remediator.ingest import webhook
from remediator.ruleset.active import ActiveRules
from remediator.ruleset.schema import PagerDutySpec, SlackSpec
from remediator.store.contract import AuditQuery, HumanAck, Store

log = logging.getLogger(__name__)


#: The episodes of one incident an acknowledgement is audited on (a storm pages for many).
AUDITED = 100


def _secrets(path: str | None) -> list[str]:
    if path is None:
        return []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        log.error("the acknowledgement secret file %s cannot be read: %s", path, exc)
        return []
    return [line.strip() for line in text.splitlines() if line.strip()]


async def handle(
    request: web.Request,
    rules: ActiveRules,
    store: Store,
    recorder: Recorder,
    clock: Clock,
    on_vote: Callable[[acks.SlackVote, str], Awaitable[web.Response]],
) -> web.Response:
    """Verify, keep and apply one acknowledgement (or hand a click on Approve or Deny to
    ``on_vote``); a JSON answer either way."""
    try:
        name, ack = await _receive(request, rules, clock.now().timestamp())
        if isinstance(ack, acks.SlackVote):
            return await on_vote(ack, name)
    except RequestRejected as exc:
        return webhook.error_response(exc)
    if ack is None:
        return web.json_response({"status": "ignored", "detail": "Not an acknowledgement."})
    # Kept at our own time of receipt: the sender's clock may be behind the pages' times.
    human = HumanAck(ack.dedup_key, ack.kind, ack.by, name, ack.url, clock.now())
    episodes = await store.incident_episodes(ack.dedup_key)
    if not episodes:
        detail = "remediator paged no incident by that key."
        return web.json_response({"status": "ignored", "detail": detail})
    if ack.kind == "resolved" and not await store.incident_is_open(ack.dedup_key):
        # remediator's own resolve, as PagerDuty reports it back; or a late human one.
        detail = "The incident had resolved already."
        return web.json_response({"status": "already", "detail": detail})
    # The same again (PagerDuty retries a delivery), or anything after a resolve: nothing.
    for kind in dict.fromkeys((ack.kind, "resolved")):
        if (earlier := await store.incident_ack(ack.dedup_key, kind=kind)) is not None:
            detail = f"{earlier.kind.capitalize()} by {earlier.by} on {earlier.source} before."
            return web.json_response({"status": "already", "detail": detail})
    records = await _records(store, recorder, human, episodes)
    note = f"{ack.kind.capitalize()} by {ack.by} on {name}."
    await store.incident_acknowledge(human, records, note)
    fields = {"dedup_key": ack.dedup_key, "kind": ack.kind, "sink": name}
    log.info("incident %s %s by %s on %s", ack.dedup_key, ack.kind, ack.by, name,
             extra={"fields": fields})  # fmt: skip
    return web.json_response({"status": ack.kind, "episodes": len(episodes)})


async def _records(
    store: Store, recorder: Recorder, ack: HumanAck, episodes: Sequence[int]
) -> list[AuditRecord]:
    """One record per episode (the first ``AUDITED``), built on its ``escalated`` record."""
    stamp = recorder.stamp()
    made = []
    for episode in episodes[:AUDITED]:
        found = await store.decisions(AuditQuery(episode_id=episode, limit=1000))
        paged = next((r for r in found if r.step == Step.ESCALATED), None)
        if paged is not None:
            made.append(audit.acknowledged(stamp, paged, ack, len(episodes)))
    return made


async def _receive(
    request: web.Request, rules: ActiveRules, now_s: float
) -> tuple[str, acks.Ack | acks.SlackVote | None]:
    """The sink the request names and the acknowledgement its body holds (None: a genuine
    event about something else); ``RequestRejected`` for anything not genuine."""
    kind, name = request.match_info["kind"], request.match_info["sink"]
    spec = rules.current.sinks.get(name)
    wanted = {"pagerduty": PagerDutySpec, "slack": SlackSpec}.get(kind)
    if wanted is None or not isinstance(spec, wanted):
        raise RequestRejected(404, "unknown_sink", f"No {kind} sink is named {name!r}.")
    path = spec.webhook_secret_file if isinstance(spec, PagerDutySpec) else spec.signing_secret_file
    secrets = _secrets(path)
    if not secrets:
        detail = f"The sink {name!r} has no acknowledgement secret configured."
        raise RequestRejected(404, "no_acknowledgements", detail)
    body = await request.read()
    try:
        if isinstance(spec, PagerDutySpec):
            return name, acks.pagerduty_ack(request.headers, body, secrets)
        return name, acks.slack_ack(request.headers, body, secrets[0], now_s)
    except acks.AckUnsigned as exc:
        raise RequestRejected(401, "unsigned", str(exc)) from None
    except acks.AckRefused as exc:
        raise RequestRejected(400, "bad_body", str(exc)) from None
