"""``POST /webhook``: authenticate → limits → parse → journal (durable) → 2xx.

Behind ``http_edge`` (framing, header timeout). Everything a head alone can refuse (token,
``Content-Encoding``, ``Content-Type``, ``Content-Length``) is refused before a body byte is
read, and before ``100 Continue`` when the client asks for one; the connection then closes
without the body being drained.

Never acts inline: the ack costs authentication, validation and one journal write (to the
local spool while a shared state database is away, see ``spool``), then the worker takes
over. 4xx only for malformed or unauthenticated requests, with a short JSON body that
echoes no input; 503 with ``Retry-After`` when overloaded or when the journal cannot be
written, so Alertmanager retries and nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from remediator.config import Settings
from remediator.core import failpoints
from remediator.core.clock import Clock
from remediator.core.errors import RequestRejected, StoreUnavailable
from remediator.core.metrics import Metrics
from remediator.ingest import edge
from remediator.ingest.ackgate import AckGate
from remediator.ingest.journal import Journal
from remediator.ingest.validation import Validator

log = logging.getLogger(__name__)

RETRY_AFTER_BUSY_S = 1
#: Seconds, for a journal that cannot be written and for a decision backlog over its limit.
RETRY_AFTER_S = {"journal_unavailable": 5, "backlogged": 5}


class Authenticator(Protocol):
    def check(self, authorization: Sequence[str]) -> None: ...


class Waiting(Protocol):
    """The decision backlog, as the webhook reads it (``decide/backlog.py``)."""

    @property
    def alerts(self) -> int: ...


@dataclass
class WebhookState:
    """What the handler needs; ``draining`` changes when the service stops."""

    settings: Settings
    auth: Authenticator
    journal: Journal
    metrics: Metrics
    clock: Clock
    gate: AckGate
    validator: Validator
    backlog: Waiting
    draining: bool = False
    backlogged: bool = False
    """Webhooks are being refused for the backlog (logged once when it starts and ends)."""
    journaling: int = 0
    """Alerts of the payloads past the backlog check and not yet journaled: several webhooks
    in flight at once must not each find room for themselves under the limit."""


def error_response(exc: RequestRejected) -> web.Response:
    response = web.json_response({"error": exc.code, "detail": exc.detail}, status=exc.status)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="remediator"'
    if exc.status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_S.get(exc.code, RETRY_AFTER_BUSY_S))
    if 400 <= exc.status < 500:
        response.force_close()  # a client out of step with us: what else it sent is not read
    return response


def authorization(request: web.BaseRequest) -> list[str]:
    """Every ``Authorization`` value the request carries (one is accepted, see ``auth``)."""
    return request.headers.getall("Authorization", [])


def _check_encoding(request: web.Request) -> None:
    if any(coding != "identity" for coding in edge.codings(request, "Content-Encoding")):
        raise RequestRejected(
            415, "unsupported_encoding", "Content-Encoding must be absent or identity."
        )


def _check_headers(request: web.Request, settings: Settings) -> None:
    _check_encoding(request)
    charset = (request.charset or "utf-8").lower()
    if request.content_type != "application/json" or charset != "utf-8":
        raise RequestRejected(
            415, "unsupported_media_type", "Content-Type must be application/json (UTF-8)."
        )
    length = request.content_length
    if length is not None and length > settings.max_body_bytes:
        raise RequestRejected(
            413, "body_too_large", f"The body is larger than {settings.max_body_bytes} bytes."
        )


async def _read_body(request: web.Request, settings: Settings) -> bytes:
    try:
        return await asyncio.wait_for(request.read(), settings.read_timeout_s)
    except TimeoutError:
        raise RequestRejected(
            408, "read_timeout", f"The body did not arrive within {settings.read_timeout_s:g} s."
        ) from None
    except web.HTTPRequestEntityTooLarge:
        raise RequestRejected(
            413, "body_too_large", f"The body is larger than {settings.max_body_bytes} bytes."
        ) from None
    except web.RequestPayloadError:
        raise RequestRejected(
            400, "invalid_request", "The body is not framed as the headers say."
        ) from None


def _check_head(request: web.Request, state: WebhookState) -> None:
    state.auth.check(authorization(request))
    _check_headers(request, state.settings)


async def expect(request: web.Request, state: WebhookState) -> web.Response | None:
    """The route's expect handler: ``_check_head`` before ``100 Continue``, so a refused
    client is never asked for its body. None lets the handler run."""
    try:
        _check_head(request, state)
    except RequestRejected as exc:
        state.metrics.payloads_rejected.labels(exc.code).inc()
        return error_response(exc)
    await edge.send_continue(request)
    return None


async def _accept(request: web.Request, state: WebhookState) -> web.Response:
    _check_head(request, state)
    body = await _read_body(request, state.settings)
    alerts = await state.validator.count_alerts(body)
    _check_backlog(state, alerts)
    received_at = state.clock.now()
    started = state.clock.monotonic()
    state.journaling += alerts  # counted with the backlog until the worker holds them
    try:
        journal_id = await state.journal.append(body, received_at, alerts)
    except StoreUnavailable:
        raise RequestRejected(
            503, "journal_unavailable", "The journal cannot be written; retry later."
        ) from None
    finally:
        state.journaling -= alerts
    state.metrics.journal_write_seconds.observe(state.clock.monotonic() - started)
    failpoints.hit("after_journal_write")
    failpoints.hit("before_ack")
    answer = {"status": "accepted", "journal_id": journal_id, "alerts": alerts}
    if journal_id is None:
        answer["spooled"] = True
    return web.json_response(answer)


def _check_backlog(state: WebhookState, alerts: int = 0) -> None:
    """Refuse while more alerts than ``--max-backlog-alerts`` wait for their decision: before
    the body is read, and once its ``alerts`` are counted. A payload alone over the limit is
    taken when nothing waits, else it would be refused for ever."""
    waiting, limit = state.backlog.alerts + state.journaling, state.settings.max_backlog_alerts
    if waiting == 0 or waiting + alerts <= limit:
        if state.backlogged:
            log.warning("decisions caught up (%d alerts wait): accepting webhooks again", waiting)
            state.backlogged = False
        return
    if not state.backlogged:
        log.warning(
            "%d accepted alerts wait for their decision, %d more would pass"
            " --max-backlog-alerts %d: answering webhooks 503 until decisions catch up",
            waiting, alerts, limit,
        )  # fmt: skip
        state.backlogged = True
    these = f", and these {alerts} would make" if alerts else ","
    raise RequestRejected(
        503,
        "backlogged",
        f"{waiting} accepted alerts wait for their decision{these} more than the"
        f" {limit} allowed (--max-backlog-alerts); retry.",
    )


async def handle(request: web.Request, state: WebhookState) -> web.Response:
    started = state.clock.monotonic()
    try:
        if state.draining:
            raise RequestRejected(503, "shutting_down", "The service is shutting down; retry.")
        if state.gate.in_flight >= state.settings.max_in_flight:
            raise RequestRejected(503, "overloaded", "Too many webhook requests in flight; retry.")
        _check_backlog(state)
        state.gate.enter()
        try:
            return await _accept(request, state)
        finally:
            state.gate.leave()
    except RequestRejected as exc:
        state.metrics.payloads_rejected.labels(exc.code).inc()
        return error_response(exc)
    finally:
        state.metrics.webhook_seconds.observe(state.clock.monotonic() - started)
