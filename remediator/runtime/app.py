"""``init_app(settings)``: routes, typed app keys, and one cleanup context that owns the
store, the worker and the action runner. ``serve`` and the tests both build the app here
and serve it through ``edge.listening``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from remediator.act.aftercare import Aftercare
from remediator.act.reconcile import reconcile_unfinished_claims
from remediator.act.runner import ActionRunner
from remediator.actions.registry import default_registry
from remediator.approve.approvals import Approvals
from remediator.approve.approvers import Approvers, check_approvers
from remediator.audit import api
from remediator.audit.recorder import Recorder
from remediator.clients.alertmanager import AlertmanagerClient
from remediator.clients.http import HttpClient
from remediator.clients.k8s import KubeClient, KubeHandle
from remediator.clients.postgres import DatabaseHandle
from remediator.clients.s3 import ObjectStore
from remediator.config import Settings
from remediator.core.clock import Clock, SystemClock
from remediator.core.errors import RequestRejected, StoreUnavailable
from remediator.core.metrics import Metrics
from remediator.core.outage import Outage
from remediator.decide.pipeline import Pipeline
from remediator.decide.worker import JournalWorker
from remediator.escalate import plan as escalate
from remediator.escalate.acks import SlackVote
from remediator.escalate.delivery import Delivery
from remediator.escalate.sinks.base import Sink
from remediator.escalate.sinks.registry import build_sinks
from remediator.evidence.capture import Capture
from remediator.ingest import edge, webhook
from remediator.ingest.ackgate import AckGate
from remediator.ingest.auth import BearerAuth, NoAuth
from remediator.ingest.journal import DRAIN_EVERY_S, Journal
from remediator.ingest.validation import Validator
from remediator.ingest.webhook import WebhookState
from remediator.ruleset.active import ActiveRules
from remediator.ruleset.load import load_rules
from remediator.ruleset.rules import RuleSet
from remediator.runtime import acks, approvals, console, reload
from remediator.runtime.lease import Lease
from remediator.runtime.objects import Objects, s3_settings
from remediator.runtime.sessions import Sessions
from remediator.runtime.tasks import Loops
from remediator.silences.watch import SilenceWatch
from remediator.store import open_store
from remediator.store.contract import Store

log = logging.getLogger(__name__)
SINK_TIMEOUT_S = 10.0
ALERTMANAGER_TIMEOUT_S = 5.0
"""One read of one Alertmanager's silences; a slower peer is a failed read."""


@dataclass
class Services:
    store: Store
    worker: JournalWorker
    runner: ActionRunner
    webhook: WebhookState
    metrics: Metrics
    journal: Journal
    recorder: Recorder
    loops: Loops
    clock: Clock
    objects: Objects | None = None
    """The object store (archive, evidence) when a bucket is configured."""
    silences: SilenceWatch | None = None
    """Alertmanager's silences, with ``--alertmanager-url``."""
    approvers: Approvers | None = None
    """Who may approve, with ``--approvers-file``."""
    approvals: Approvals | None = None


SETTINGS = web.AppKey("settings", Settings)
RULES = web.AppKey("rules", ActiveRules)
RELOADER = web.AppKey("reloader", reload.Reloader)
REGISTRY = web.AppKey("registry", CollectorRegistry)
SERVICES = web.AppKey("services", Services)
KUBE = web.AppKey("kube", KubeHandle)
DATABASES = web.AppKey("databases", DatabaseHandle)
APPROVERS = web.AppKey("approvers", Approvers)
"""Who may approve: set with ``--approvers-file``, read once when the app is built."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STORE_AWAY = RequestRejected(503, "store_unavailable", "The state store cannot be reached; retry.")


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own 404/405/413 answers, as the JSON errors the rest of the API gives."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return webhook.error_response(edge.http_error(exc))


async def _webhook(request: web.Request) -> web.Response:
    return await webhook.handle(request, request.app[SERVICES].webhook)


async def _webhook_expect(request: web.Request) -> web.Response | None:
    return await webhook.expect(request, request.app[SERVICES].webhook)


def _unauthorized(request: web.Request) -> web.Response | None:
    """The 401 of a request without a good bearer token, or None: the API's one check."""
    try:
        request.app[SERVICES].webhook.auth.check(webhook.authorization(request))
    except RequestRejected as exc:
        return webhook.error_response(exc)
    return None


async def _authenticated_expect(request: web.Request) -> web.Response | None:
    refused = _unauthorized(request)
    if refused is None:
        await edge.send_continue(request)
    return refused


async def _decisions(request: web.Request) -> web.Response:
    if (refused := _unauthorized(request)) is not None:
        return refused
    try:
        query = api.parse_query(request.query)
    except RequestRejected as exc:
        return webhook.error_response(exc)
    services = request.app[SERVICES]
    records = await services.store.decisions(query)
    page = dict(api.page_json(records, query))
    if services.objects is not None:
        page["decisions"] = await services.objects.linked(page["decisions"])
    return web.json_response(page)


async def _ack(request: web.Request) -> web.Response:
    """``POST /api/v1/acks/{pagerduty|slack}/<sink>``: authenticated by the sender's
    signature, not the bearer token (``runtime/acks.py``)."""
    services = request.app[SERVICES]

    async def on_vote(vote: SlackVote, sink: str) -> web.Response:
        return await approvals.slack_vote(vote, sink, services.approvals, services.approvers)

    return await acks.handle(
        request, request.app[RULES], services.store, services.recorder, services.clock, on_vote
    )


def _approvals_read(read: Callable[[web.Request, Store], Awaitable[web.Response]]) -> Handler:
    """A read of the approvals (``read``): the service's bearer token, or an approver's."""

    async def handle(request: web.Request) -> web.Response:
        services = request.app[SERVICES]
        try:
            refused = _unauthorized(request)
            if refused is not None and services.approvers is None:
                return refused
            if refused is not None:  # an approver's token, or a 401
                approvals.approver_of(request, services.approvers)
            return await read(request, services.store)
        except RequestRejected as exc:
            return webhook.error_response(exc)
        except StoreUnavailable:
            return webhook.error_response(STORE_AWAY)

    return handle


async def _approval_answer(request: web.Request) -> web.Response:
    """``POST /api/v1/approvals/<id>``: an approver's token only (``runtime/approvals.py``)."""
    services = request.app[SERVICES]
    try:
        return await approvals.answer(request, services.approvals, services.approvers)
    except RequestRejected as exc:
        return webhook.error_response(exc)
    except StoreUnavailable:  # the answer was not kept, or its answer was lost: ask again
        return webhook.error_response(STORE_AWAY)


async def _reload(request: web.Request) -> web.Response:
    """``POST /-/reload``: 200 and the active hash once the new set decides; 500 naming
    the error when the old set stays (as Prometheus's ``/-/reload`` answers)."""
    if (refused := _unauthorized(request)) is not None:
        return refused
    result = await request.app[RELOADER].reload("http")
    if not result.successful:
        body = {"error": "reload_failed", "detail": result.error, "hash": result.hash}
        return web.json_response(body, status=500)
    return web.json_response({"status": "success", "hash": result.hash, "changed": result.changed})


async def _rules(request: web.Request) -> web.Response:
    """``GET /api/v1/rules``: the active set, its hash, files and load time, its rules in
    order, and how the last reload went."""
    if (refused := _unauthorized(request)) is not None:
        return refused
    last = request.app[RELOADER].last
    body = api.rules_json(request.app[RULES])
    body["last_reload"] = last.json() if last else None
    return web.json_response(body)


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    """Ready: not draining, the store answers (or a spool takes its place), and no loop is
    down. ``loops`` says how each loop is (running, restarting, its last error);
    ``stopped_loops`` names those that hold readiness down."""
    services = request.app[SERVICES]
    store = await services.store.ping()
    down = services.loops.down()
    ready = (
        not services.webhook.draining
        and not down
        and (store or request.app[SETTINGS].journal_spool is not None)
    )
    body = {"ready": ready, "store": store, "spooling": services.journal.spooling,
            "stopped_loops": down, "loops": services.loops.report()}  # fmt: skip
    return web.json_response(body, status=200 if ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@dataclass(frozen=True, slots=True)
class DecisionCore:
    """What decides and acts, over one store: ``serve`` puts the ingest around it, the
    offline engine (``simulate``) a virtual clock and recording sinks."""

    recorder: Recorder
    runner: ActionRunner
    worker: JournalWorker


def decision_core(
    store: Store,
    rules: ActiveRules,
    metrics: Metrics,
    clock: Clock,
    settings: Settings,
    gate: AckGate,
    evidence: Capture | None = None,
    silences: SilenceWatch | None = None,
) -> DecisionCore:
    policy = rules.current.policy
    recorder = Recorder(
        store, metrics, clock, rules, plan=escalate.plan, resolve_after_s=settings.episode_grace_s
    )
    runner = ActionRunner(
        store, recorder, metrics, clock, dry_run=settings.dry_run,
        max_concurrent=policy.max_concurrent_actions, require_opt_in=policy.require_opt_in,
        stale_after_s=settings.stale_after_s, evidence=evidence, silences=silences,
    )  # fmt: skip
    pipeline = Pipeline(rules, store, runner, recorder, metrics, clock, settings, silences)
    worker = JournalWorker(store, pipeline, metrics, clock, settings, gate)
    return DecisionCore(recorder, runner, worker)


def _services(
    app: web.Application,
    store: Store,
    clock: Clock,
    objects: ObjectStore | None,
    alertmanager: AlertmanagerClient | None,
) -> Services:
    settings, rules = app[SETTINGS], app[RULES]
    metrics = Metrics(app[REGISTRY], default_registry(), rules.current.sinks)
    store.watch(Outage("state_store", metrics, "state store"))
    gate = AckGate()
    parts = None
    capture = None
    if objects is not None:
        outage = Outage("object_store", metrics, "the object store (archive, evidence)")
        parts = Objects(objects, outage, settings.evidence_presign_s)
        capture = parts.capture(store, app[KUBE], app[DATABASES], clock, metrics, settings)
    silences = None
    if alertmanager is not None:
        silences = SilenceWatch(
            alertmanager, settings.alertmanager_urls, clock, metrics, settings.silence_max_age_s
        )
    core = decision_core(store, rules, metrics, clock, settings, gate, capture, silences)
    auth = BearerAuth(settings.token_file) if settings.token_file else NoAuth()
    validator = Validator(settings.payload_limits, settings.validation_workers)
    journal = Journal(
        store, core.worker, clock, metrics, settings.journal_spool, settings.journal_timeout_s
    )
    state = WebhookState(
        settings, auth, journal, metrics, clock, gate, validator, core.worker.undecided
    )
    approvers = app.get(APPROVERS)
    held = None
    if approvers is not None:
        held = Approvals(store, core.recorder, core.runner, clock, metrics)
    return Services(
        store=store, worker=core.worker, runner=core.runner, webhook=state, metrics=metrics,
        journal=journal, recorder=core.recorder, loops=Loops(metrics.loop_failures), clock=clock,
        objects=parts, silences=silences, approvers=approvers, approvals=held,
    )  # fmt: skip


async def _connect_kube(settings: Settings) -> KubeClient | None:
    """The cluster from the kubeconfig, or in-cluster; None (dry-run) when neither is there."""
    in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    if settings.kubeconfig is None and not in_cluster:
        log.warning("no cluster configured: Kubernetes actions are planned as dry-run")
        return None
    return await KubeClient.connect(settings.kubeconfig, settings.kube_context)


def _lifecycle(clock: Clock) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        kube = app[KUBE]
        sinks = build_sinks(app[RULES].current.sinks)
        if not sinks:
            log.warning("no escalation sinks configured: escalations are audited, not sent")
        kube.client = await _connect_kube(settings)
        await app[DATABASES].open(settings.databases)
        archive = contextlib.AsyncExitStack()
        objects = None
        if settings.s3_bucket:
            objects = await archive.enter_async_context(ObjectStore.open(s3_settings(settings)))
        alertmanager = None
        if settings.alertmanager_urls:
            alertmanager = AlertmanagerClient.open(
                settings.alertmanager_token_file,
                settings.alertmanager_ca_file,
                ALERTMANAGER_TIMEOUT_S,
            )
            archive.push_async_callback(alertmanager.close)
        store = open_store(settings)
        await store.open()
        services = _services(app, store, clock, objects, alertmanager)
        if services.silences is not None:  # before the first decision, which would not know
            await services.silences.refresh()
        app[SERVICES] = services
        lease = Lease(
            store, services.worker, services.recorder, clock, settings.lease_s, services.runner
        )
        await lease.renew()
        left = await reconcile_unfinished_claims(store, services.recorder, clock, services.runner)
        if left.total():
            log.warning("%d claims had no outcome after the last stop: %d had sent nothing and"
                        " run now, %d were settled by observing", left.total(), left["resumed"],
                        left["settled"])  # fmt: skip
        recovered = await services.worker.recover()
        if recovered:
            log.warning("processing %d journal entries accepted before the last stop", recovered)
        await lease.take_over()
        await services.journal.open()
        aftercare = Aftercare(store, services.recorder, clock, settings.aftercare_poll_s)
        http = HttpClient.open(SINK_TIMEOUT_S)
        delivery = Delivery(
            store, services.recorder, sinks, http, services.metrics, clock,
            poll_s=settings.delivery_poll_s, max_age_s=settings.delivery_max_age_s,
            external_url=settings.external_url,
            sign=services.objects.sign if services.objects is not None else None,
        )  # fmt: skip
        await app[RELOADER].bind(services.metrics, _applier(services, delivery))
        _register_loops(services, settings, lease, aftercare, delivery)
        if services.objects is not None:
            services.objects.loops(services.loops, store, clock, services.metrics, settings)
        if services.silences is not None:
            services.loops.every("silences", services.silences.refresh,
                                 settings.silence_refresh_s, wait_first=True,
                                 required=False)  # fmt: skip
        if services.approvals is not None:
            services.loops.every("approvals", services.approvals.sweep, settings.approvals_poll_s,
                                 required=False, after_stop=services.approvals.drain)  # fmt: skip
        if settings.rules_watch_s > 0:
            services.loops.every("rules_watch", app[RELOADER].look, settings.rules_watch_s,
                                 wait_first=True, required=False)  # fmt: skip
        await services.webhook.validator.warm()  # before /readyz can answer: the port waits
        services.loops.start()
        try:
            yield
        finally:
            services.webhook.draining = True
            # Within the stop's one deadline (serve fixed it at the signal, or it starts now).
            left_s = (
                services.runner.stop_by(settings.shutdown_grace_s)
                - asyncio.get_running_loop().time()
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(services.worker.idle.wait(), max(0.0, left_s))
            await services.loops.stop()
            await archive.aclose()
            await services.webhook.validator.close()
            await services.journal.close()
            await store.close()
            if kube.client is not None:
                await kube.client.close()
                kube.client = None
            await app[DATABASES].close()

    return lifecycle


def _applier(services: Services, delivery: Delivery) -> reload.Apply:
    """What a reloaded set changes beyond the decisions: the runner's bounds, the sinks."""

    def apply(ruleset: RuleSet, sinks: Mapping[str, Sink]) -> None:
        services.runner.apply(ruleset.policy)
        delivery.use(sinks)
        services.metrics.sinks_configured(sinks)

    return apply


def _register_loops(
    services: Services,
    settings: Settings,
    lease: Lease,
    aftercare: Aftercare,
    delivery: Delivery,
) -> None:
    """The background loops in start order; they stop in the reverse order. A loop that
    hands work to another starts after it, so what it hands over has a taker while it runs:
    the worker outlives the spool that hands it entries, and runs every action it started
    to its outcome (``runner.drain``) before the lease, held to the last, stops. A
    restarting aftercare or delivery does not take the replica out of service: their work
    waits in the store, and a failure that repeats on one item would otherwise stop every
    replica taking webhooks."""
    loops, grace_s = services.loops, settings.shutdown_grace_s
    loops.every("lease", lease.round, lease.period_s, wait_first=True)

    async def drain_actions() -> None:
        await services.runner.drain(grace_s)

    loops.forever("worker", services.worker.run, after_stop=drain_actions)
    loops.every("spool", services.journal.drain, DRAIN_EVERY_S, wait_first=True)
    loops.every("aftercare", aftercare.run_due, aftercare.poll_s, required=False)
    loops.every(
        "delivery", delivery.deliver_due, delivery.poll_s, required=False, after_stop=delivery.close
    )


async def drain(app: web.Application, timeout_s: float) -> None:
    """Stop taking webhooks (503 with Retry-After, readiness false) while still serving,
    then let the journal empty and running actions finish, within ``timeout_s``. Requests
    already in flight finish; the cleanup context waits for what they journaled."""
    services = app[SERVICES]
    services.webhook.draining = True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(services.worker.idle.wait(), max(0.0, deadline - loop.time()))
    await services.runner.drain(max(0.0, deadline - loop.time()))


def _count_refusals(app: web.Application) -> edge.Refusals:
    def count(code: str) -> None:
        services = app.get(SERVICES)
        if services is not None:
            services.metrics.payloads_rejected.labels(code).inc()

    return count


def init_app(
    settings: Settings,
    *,
    ruleset: RuleSet | None = None,
    clock: Clock | None = None,
    registry: CollectorRegistry | None = None,
) -> web.Application:
    """The application; rules load here, so a bad rule file fails before anything listens."""
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[json_errors])
    app[SETTINGS] = settings
    app[KUBE] = KubeHandle()
    app[DATABASES] = DatabaseHandle()
    actions = default_registry(app[KUBE], app[DATABASES])
    clock = clock or SystemClock()
    seen = reload.fingerprint(settings.rules_dir)  # before the read: a later change is seen
    app[RULES] = ActiveRules(ruleset or load_rules(settings.rules_dir, actions), clock.now())

    def check(ruleset: RuleSet) -> None:
        check_approvers(ruleset, settings.approvers_file)

    check(app[RULES].current)
    if settings.approvers_file is not None:  # a broken file fails before anything listens
        app[APPROVERS] = Approvers(settings.approvers_file)
    app[RELOADER] = reload.Reloader(settings.rules_dir, actions, app[RULES], clock, seen, check)
    app[REGISTRY] = registry or CollectorRegistry()
    app[edge.REFUSALS] = _count_refusals(app)
    app.cleanup_ctx.append(_lifecycle(clock))
    # The expect handlers authenticate before aiohttp's router sends 100 Continue.
    app.router.add_post("/webhook", _webhook, expect_handler=_webhook_expect)
    app.router.add_get("/api/v1/decisions", _decisions, expect_handler=_authenticated_expect)
    app.router.add_get("/api/v1/rules", _rules, expect_handler=_authenticated_expect)
    app.router.add_post("/-/reload", _reload, expect_handler=_authenticated_expect)
    app.router.add_post("/api/v1/acks/{kind}/{sink}", _ack)
    app.router.add_get("/api/v1/approvals", _approvals_read(approvals.listing))
    app.router.add_get("/api/v1/approvals/{id}", _approvals_read(approvals.one))
    app.router.add_post("/api/v1/approvals/{id}", _approval_answer)
    for path in ("/healthz", "/-/healthy"):  # the second as Prometheus and Alertmanager
        app.router.add_get(path, _healthz)
    for path in ("/readyz", "/-/ready"):
        app.router.add_get(path, _readyz)
    app.router.add_get("/metrics", _metrics)
    wiring = console.Wiring(settings, app[RULES], app[RELOADER], lambda: app[SERVICES], Sessions())
    console.add_routes(app, wiring)
    return app
