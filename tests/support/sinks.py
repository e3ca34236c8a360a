"""Local stand-ins for the services remediator escalates to.

Each stub is an aiohttp server on a free 127.0.0.1 port (from
:func:`tests.support.ports.free_port`). It answers the way the real service documents: the same
paths, status codes, headers and bodies.

* :class:`PagerDutyStub`: Events API v2, ``POST /v2/enqueue``. It validates events, keeps
  incidents by ``dedup_key`` and applies the per-routing-key rate limit (120 events in a sliding
  60 s window by default).
* :class:`SlackStub`: incoming webhooks, ``POST /services/<any path>``. Answers ``ok``,
  ``no_text`` or ``invalid_payload``, and ``429 rate_limited`` past one message per second per
  webhook.
* :class:`OpsgenieStub`: Alert API, ``POST /v2/alerts`` with
  ``/v2/alerts/{identifier}/close`` and ``/acknowledge`` (``identifierType`` id, tiny or
  alias), and ``GET /v2/alerts/requests/{requestId}``. Requires ``Authorization: GenieKey
  <uuid>``. Deduplicates open alerts by alias.
* :class:`WebhookStub`: any ``POST``; records it and answers ``200 {}``.
* :class:`JsmStub`: Jira Service Management's integration alert API, Opsgenie's under
  ``/jsm/ops/integration/v2/alerts`` (create, close, acknowledge, notes; no responders).
* :class:`GrafanaIrmStub`: Grafana IRM's Formatted Webhook integration,
  ``POST /integrations/v1/formatted_webhook/<token>/``; groups alerts by ``alert_uid``.
* :class:`TeamsStub`: a Teams Workflows webhook, ``POST /workflows/<any path>``; takes one
  Adaptive Card message of at most 28 KB and answers ``202``.

Every stub has the same lifecycle and test controls (from :class:`StubServer`):

* ``await start()`` returns the base URL; ``await stop()``; ``async with`` does both;
* ``fail_next(n, status=503, retry_after=None)``: answer the next ``n`` requests with that
  status (and a ``Retry-After`` header when given) without processing them;
* ``drop_next(n)``: close the connection on the next ``n`` requests without answering;
* ``await down()`` stops listening and closes every open connection, so clients get connection
  errors; ``await up()`` listens again on the same port;
* ``requests`` counts every request that reached the server, ``log`` holds a
  :class:`RecordedRequest` for each, with the status answered.

Rate-limit windows and recorded times use ``clock`` (``time.monotonic`` by default); pass
``FakeClock().monotonic`` from :mod:`tests.support.clock` to move time by hand.

Typical use::

    async with PagerDutyStub(rate_limit=3, rate_window=1.0) as pd:
        async with aiohttp.ClientSession() as http:
            await http.post(f"{pd.url}/v2/enqueue", json=event)
        assert pd.incidents["db-down"].status == "triggered"
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import hmac
import http
import itertools
import json
import math
import re
import uuid
from collections.abc import Awaitable, Callable, Collection
from time import monotonic
from typing import Any, Final, Literal
from urllib.parse import urlencode

from aiohttp import web
from multidict import CIMultiDict

from tests.support.lifecycle import StartStop
from tests.support.ports import free_port

JSON = dict[str, Any]
Clock = Callable[[], float]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_BIND_ATTEMPTS: Final = 20
_REBIND_DELAY_S: Final = 0.05


@dataclasses.dataclass
class RecordedRequest:
    """One request as the stub received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    body: bytes
    json: Any  # the parsed body, or None when it is empty or not JSON
    time: float  # the stub's clock when the request arrived
    status: int | None = None  # the status answered; None when the connection was dropped


_RECORD_KEY: Final = web.RequestKey("stub_record", RecordedRequest)


@dataclasses.dataclass
class _Fault:
    status: int | None  # None: close the connection without answering
    retry_after: int | str | None = None
    body: str | None = None


class StubServer(StartStop):
    """Lifecycle, request log and fault injection shared by the stubs.

    Subclasses add their routes in :meth:`_routes`.
    """

    name = "stub"
    #: Largest request body accepted; bigger ones get aiohttp's ``413``.
    max_body: int = 1024 * 1024

    def __init__(self, *, clock: Clock = monotonic) -> None:
        self.clock = clock
        self.requests = 0
        self.log: list[RecordedRequest] = []
        self._faults: collections.deque[_Fault] = collections.deque()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._started = False

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> str:
        """Listen on a free 127.0.0.1 port; return the base URL ``http://127.0.0.1:PORT``."""
        if self._started:
            raise RuntimeError(f"{self.name} already started")
        last: OSError | None = None
        for _ in range(_BIND_ATTEMPTS):
            port = free_port()
            try:
                await self._listen(port)
            except OSError as err:  # somebody took the port between free_port() and bind
                last = err
                continue
            self._port = port
            self._started = True
            return self.url
        raise RuntimeError(f"{self.name}: no free port") from last

    async def stop(self) -> None:
        """Stop listening and close all connections. Safe to call twice."""
        self._started = False
        await self._shutdown()

    async def down(self) -> None:
        """Stop listening and close open connections: clients now get connection errors."""
        self._require_started()
        await self._shutdown()

    async def up(self) -> None:
        """Listen again on the same port after :meth:`down`."""
        self._require_started()
        if self._runner is not None:
            return
        assert self._port is not None
        last: OSError | None = None
        for _ in range(_BIND_ATTEMPTS):
            try:
                await self._listen(self._port)
            except OSError as err:
                last = err
                await asyncio.sleep(_REBIND_DELAY_S)
                continue
            return
        raise RuntimeError(f"{self.name}: cannot listen on port {self._port} again") from last

    @property
    def is_up(self) -> bool:
        """True while the stub is listening."""
        return self._runner is not None

    @property
    def url(self) -> str:
        """The base URL (no trailing slash); valid after :meth:`start`, also while down."""
        if self._port is None:
            raise RuntimeError(f"{self.name} not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{self.name} not started")
        return self._port

    # ---- fault injection -------------------------------------------------------------------

    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        retry_after: int | str | None = None,
        body: str | None = None,
    ) -> None:
        """Answer the next ``n`` requests with ``status`` instead of processing them.

        ``retry_after`` (seconds, or an HTTP date) becomes a ``Retry-After`` header. ``body``
        defaults to what the real service sends for that status, or the reason phrase.
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        self._faults.extend(_Fault(status, retry_after, body) for _ in range(n))

    def drop_next(self, n: int = 1) -> None:
        """Close the connection on the next ``n`` requests without sending a response."""
        if n < 0:
            raise ValueError("n must be >= 0")
        self._faults.extend(_Fault(None) for _ in range(n))

    def clear_faults(self) -> None:
        """Forget faults that were queued but not used yet."""
        self._faults.clear()

    @property
    def pending_faults(self) -> int:
        return len(self._faults)

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests for ``path`` (and ``method``, when given)."""
        return [r for r in self.log if r.path == path and method in (None, r.method)]

    # ---- for subclasses --------------------------------------------------------------------

    def _routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def _fault_body(self, status: int) -> tuple[str, str]:
        """``(body, content type)`` the real service sends with ``status``."""
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = "Error"
        return reason, "text/plain"

    # ---- internals -------------------------------------------------------------------------

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError(f"{self.name} not started")

    async def _listen(self, port: int) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=self.max_body)
        self._routes(app)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def _shutdown(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests += 1
        try:
            body = await request.read()
        except web.HTTPException as exc:  # body too large
            body = b""
            early: web.HTTPException | None = exc
        else:
            early = None
        parsed: Any = None
        if body:
            with contextlib.suppress(ValueError):
                parsed = json.loads(body)
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=CIMultiDict(request.headers),
            body=body,
            json=parsed,
            time=self.clock(),
        )
        self.log.append(record)
        request[_RECORD_KEY] = record
        if self._faults:
            fault = self._faults.popleft()
            if fault.status is None:
                if request.transport is not None:
                    request.transport.close()
                return web.Response(status=500)  # never reaches the client
            response: web.StreamResponse = self._fault_response(fault)
        else:
            try:
                if early is not None:
                    raise early
                response = await handler(request)
            except web.HTTPException as exc:  # 404 / 405 / 413
                record.status = exc.status
                raise
        record.status = response.status
        return response

    def _fault_response(self, fault: _Fault) -> web.Response:
        assert fault.status is not None
        if fault.body is not None:
            text, content_type = fault.body, "text/plain"
        else:
            text, content_type = self._fault_body(fault.status)
        response = web.Response(status=fault.status, text=text, content_type=content_type)
        if fault.retry_after is not None:
            response.headers["Retry-After"] = str(fault.retry_after)
        return response


class _SlidingWindow:
    """At most ``limit`` hits per key in any ``window`` seconds."""

    def __init__(self, limit: int, window: float, clock: Clock) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("rate limit and window must be positive")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._hits: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)

    def retry_after(self, key: str) -> int | None:
        """Whole seconds until ``key`` may be hit again (at least 1), or None when it may now."""
        now = self._clock()
        hits = self._hits[key]
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) < self.limit:
            return None
        return max(1, math.ceil(hits[0] + self.window - now))

    def hit(self, key: str) -> None:
        self._hits[key].append(self._clock())


def _json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/json",
        headers=headers,
    )


# ---- PagerDuty ---------------------------------------------------------------------------------

PD_EVENT_ACTIONS: Final = ("trigger", "acknowledge", "resolve")
PD_SEVERITIES: Final = ("critical", "error", "warning", "info")
PD_MAX_DEDUP_KEY: Final = 255
PD_MAX_BODY: Final = 512 * 1024

IncidentStatus = Literal["triggered", "acknowledged", "resolved"]


@dataclasses.dataclass
class Incident:
    """The alert/incident PagerDuty keeps for one ``dedup_key``."""

    number: int  # 1, 2, ... in creation order over the stub's life
    dedup_key: str
    routing_key: str
    status: IncidentStatus
    payload: JSON  # the latest trigger's payload
    opened_at: float
    events: list[JSON]  # every event applied to it, as recorded in PagerDutyStub.events
    acknowledged_at: float | None = None
    resolved_at: float | None = None

    @property
    def summary(self) -> str:
        return str(self.payload.get("summary", ""))

    @property
    def severity(self) -> str:
        return str(self.payload.get("severity", ""))

    @property
    def trigger_count(self) -> int:
        return sum(1 for e in self.events if e.get("event_action") == "trigger")


class PagerDutyStub(StubServer):
    """PagerDuty Events API v2 (``POST /v2/enqueue``).

    ``202 {"status": "success", "message": "Event processed", "dedup_key": ...}`` for a valid
    event; ``400 {"status": "invalid event", "message": "Event object is invalid", "errors":
    [...]}`` otherwise; ``429`` with ``Retry-After`` once a routing key has had ``rate_limit``
    accepted events in the last ``rate_window`` seconds.

    Incident semantics follow PagerDuty's documentation: a trigger opens an incident for its
    ``dedup_key`` (a generated UUID hex string when none is given) or adds to the open one; a
    trigger after the incident was resolved opens a new one; acknowledge and resolve apply to
    the open incident only when sent with the routing key that opened it, and are otherwise
    accepted (202) and dropped.

    ``routing_key_length`` (32, PagerDuty integration keys) rejects keys of another length; pass
    None to accept any non-empty key.
    """

    name = "PagerDutyStub"
    max_body = PD_MAX_BODY

    def __init__(
        self,
        *,
        rate_limit: int = 120,
        rate_window: float = 60.0,
        routing_key_length: int | None = 32,
        clock: Clock = monotonic,
    ) -> None:
        super().__init__(clock=clock)
        self.routing_key_length = routing_key_length
        self._limiter = _SlidingWindow(rate_limit, rate_window, clock)
        #: Accepted (202) events: the event as sent, plus ``dedup_key`` (the effective one) and
        #: ``received_at`` (clock), in arrival order.
        self.events: list[JSON] = []
        #: The latest incident for each dedup_key.
        self.incidents: dict[str, Incident] = {}
        #: Every incident ever opened, including ones replaced in :attr:`incidents`.
        self.all_incidents: list[Incident] = []
        #: Events answered 429.
        self.throttled = 0
        self._numbers = itertools.count(1)

    def events_for(self, routing_key: str) -> list[JSON]:
        return [e for e in self.events if e.get("routing_key") == routing_key]

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/v2/enqueue", self._enqueue)

    def _fault_body(self, status: int) -> tuple[str, str]:
        if status == 429:
            return json.dumps(_PD_THROTTLED), "application/json"
        return super()._fault_body(status)

    async def _enqueue(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            event = json.loads(raw)
        except ValueError:
            return self._invalid(["Malformed JSON: the request body must be a JSON object"])
        if not isinstance(event, dict):
            return self._invalid(["Event object must be a JSON object"])
        errors = self._validate(event)
        if errors:
            return self._invalid(errors)
        routing_key: str = event["routing_key"]
        wait = self._limiter.retry_after(routing_key)
        if wait is not None:
            self.throttled += 1
            return _json_response(429, _PD_THROTTLED, {"Retry-After": str(wait)})
        self._limiter.hit(routing_key)
        dedup_key = event.get("dedup_key") or uuid.uuid4().hex
        record = {**event, "dedup_key": dedup_key, "received_at": self.clock()}
        self.events.append(record)
        self._apply(record)
        return _json_response(
            202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key}
        )

    def _validate(self, event: JSON) -> list[str]:
        errors: list[str] = []
        routing_key = event.get("routing_key")
        if not isinstance(routing_key, str) or not routing_key.strip():
            errors.append("'routing_key' is missing or blank")
        elif self.routing_key_length is not None and len(routing_key) != self.routing_key_length:
            errors.append(
                f"Length of 'routing_key' is incorrect "
                f"(should be {self.routing_key_length} characters)"
            )
        action = event.get("event_action")
        if not isinstance(action, str) or not action.strip():
            errors.append("'event_action' is missing or blank")
        elif action not in PD_EVENT_ACTIONS:
            errors.append(
                "'event_action' is invalid (must be one of: trigger, acknowledge, resolve)"
            )
        dedup_key = event.get("dedup_key")
        if dedup_key is not None:
            if not isinstance(dedup_key, str):
                errors.append("'dedup_key' must be a string")
            elif len(dedup_key) > PD_MAX_DEDUP_KEY:
                errors.append(f"'dedup_key' is too long (maximum is {PD_MAX_DEDUP_KEY} characters)")
        if action in ("acknowledge", "resolve") and not dedup_key:
            errors.append("'dedup_key' is missing or blank")
        if action == "trigger":
            errors.extend(self._validate_payload(event.get("payload")))
        return errors

    @staticmethod
    def _validate_payload(payload: Any) -> list[str]:
        if not isinstance(payload, dict):
            return ["'payload' is missing or blank"]
        errors = [
            f"'payload.{field}' is missing or blank"
            for field in ("summary", "source", "severity")
            if not isinstance(payload.get(field), str) or not payload[field].strip()
        ]
        severity = payload.get("severity")
        if isinstance(severity, str) and severity.strip() and severity not in PD_SEVERITIES:
            errors.append(
                "'payload.severity' is invalid (must be one of: critical, error, warning, info)"
            )
        return errors

    def _apply(self, record: JSON) -> None:
        key: str = record["dedup_key"]
        routing_key: str = record["routing_key"]
        now: float = record["received_at"]
        incident = self.incidents.get(key)
        is_open = (
            incident is not None
            and incident.status != "resolved"
            and incident.routing_key == routing_key
        )
        action = record["event_action"]
        if action == "trigger":
            if incident is not None and is_open:
                incident.payload = dict(record["payload"])
                incident.events.append(record)
                return
            incident = Incident(
                number=next(self._numbers),
                dedup_key=key,
                routing_key=routing_key,
                status="triggered",
                payload=dict(record["payload"]),
                opened_at=now,
                events=[record],
            )
            self.incidents[key] = incident
            self.all_incidents.append(incident)
            return
        if incident is None or not is_open:
            return  # PagerDuty accepts the event and drops it
        incident.events.append(record)
        if action == "acknowledge":
            if incident.status == "triggered":
                incident.status = "acknowledged"
                incident.acknowledged_at = now
        else:
            incident.status = "resolved"
            incident.resolved_at = now

    @staticmethod
    def _invalid(errors: list[str]) -> web.Response:
        return _json_response(
            400,
            {"status": "invalid event", "message": "Event object is invalid", "errors": errors},
        )


_PD_THROTTLED: Final[JSON] = {
    "status": "throttle event",
    "message": "Requests for this service are arriving too quickly.  Please retry later.",
}


# ---- Slack ---------------------------------------------------------------------------------------


class SlackStub(StubServer):
    """Slack incoming webhooks (``POST /services/<any path>``) and the Web API's
    ``POST /api/chat.postMessage`` and ``POST /api/chat.update``.

    Incoming webhooks take a JSON body, or a form body with the JSON in its ``payload`` field,
    as Slack does. ``200 ok`` (text/plain) when the message has non-empty ``text``, ``blocks``
    or ``attachments``; ``400 no_text`` when it has none; ``400 invalid_payload`` when the body
    is not a JSON object; ``429 rate_limited`` with ``Retry-After`` past ``rate_limit``
    messages per ``rate_window`` seconds for one webhook path. ``revoke(path)`` makes a webhook
    answer ``404 no_service`` like a removed one.

    The Web API takes JSON or a form (``blocks`` then a JSON string) and answers as Slack
    documents: ``200 {"ok": true, "channel", "ts", "message"}``, or ``200 {"ok": false,
    "error"}`` with ``not_authed`` (no ``Authorization: Bearer``), ``invalid_auth`` (a token
    not in ``tokens``; None accepts any ``xox…`` token), ``channel_not_found`` (not in
    ``channels``), ``not_in_channel`` (in ``outside``), ``no_text``, ``msg_too_long`` (text past
    40 000 characters), ``invalid_blocks`` (past Block Kit's limits: 50 blocks, section text
    3 000, 25 elements, button text 75, value 2 000, URL 3 000), ``message_not_found``
    (``chat.update`` of a ``ts`` never posted) or ``unknown_method``; and
    ``429 {"ok": false, "error": "ratelimited"}`` with ``Retry-After`` past ``rate_limit`` posts
    per ``rate_window`` seconds in one channel. ``fail_api_next(error, status)`` answers the
    next Web API call with that error. Messages are kept in :attr:`posted` (each with
    ``channel``, ``ts``, ``thread_ts``, ``text``, ``blocks``, ``json``: the arguments, and
    ``edits``: the ``chat.update`` arguments applied to it).
    """

    name = "SlackStub"
    TEXT_CHARS: Final = 40_000
    BLOCK_LIMITS: Final = {"blocks": 50, "section": 3_000, "elements": 25, "button_text": 75,
                           "value": 2_000, "url": 3_000, "action_id": 255}  # fmt: skip

    def __init__(
        self,
        *,
        rate_limit: int = 1,
        rate_window: float = 1.0,
        tokens: Collection[str] | None = None,
        channels: Collection[str] = ("C0123456789",),
        outside: Collection[str] = (),
        clock: Clock = monotonic,
    ) -> None:
        super().__init__(clock=clock)
        self._limiter = _SlidingWindow(rate_limit, rate_window, clock)
        self._api_limiter = _SlidingWindow(rate_limit, rate_window, clock)
        self._revoked: set[str] = set()
        self.tokens = None if tokens is None else frozenset(tokens)
        self.channels = set(channels) | set(outside)
        self.outside = set(outside)
        #: Accepted webhook messages: ``{"path": ..., "json": ..., "time": ...}``.
        self.messages: list[JSON] = []
        #: Messages posted through the Web API, in order (replies too).
        self.posted: list[JSON] = []
        #: Messages answered 429 (webhooks and Web API).
        self.throttled = 0
        self._api_faults: collections.deque[tuple[str, int, int | None]] = collections.deque()
        self._ts = itertools.count(1)

    def messages_to(self, path: str) -> list[JSON]:
        return [m for m in self.messages if m["path"] == path]

    def webhook_url(
        self, path: str = "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
    ) -> str:
        """Full URL of the webhook at ``path`` (must start with ``/services/``)."""
        if not path.startswith("/services/"):
            raise ValueError("Slack webhook paths start with /services/")
        return self.url + path

    @property
    def api_url(self) -> str:
        """The Web API's base URL, as ``https://slack.com/api/`` is the real one's."""
        return self.url + "/api/"

    def revoke(self, path: str) -> None:
        """Make the webhook at ``path`` answer ``404 no_service``, as a deleted one does."""
        self._revoked.add(path)

    def fail_api_next(self, error: str, status: int = 200, retry_after: int | None = None) -> None:
        """Answer the next Web API call ``{"ok": false, "error": error}`` with ``status``."""
        self._api_faults.append((error, status, retry_after))

    def message(self, channel: str, ts: str) -> JSON:
        """The Web API message ``ts`` in ``channel`` (KeyError when there is none)."""
        for posted in self.posted:
            if posted["channel"] == channel and posted["ts"] == ts:
                return posted
        raise KeyError((channel, ts))

    def replies(self, channel: str, ts: str) -> list[JSON]:
        """The replies in the thread of message ``ts``, in order."""
        return [p for p in self.posted if p["channel"] == channel and p["thread_ts"] == ts]

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/services/{hook:.+}", self._post)
        app.router.add_post("/api/{method}", self._api)

    def _fault_body(self, status: int) -> tuple[str, str]:
        if status == 429:
            return "rate_limited", "text/plain"
        return super()._fault_body(status)

    async def _post(self, request: web.Request) -> web.Response:
        path = request.path
        if path in self._revoked:
            return web.Response(status=404, text="no_service")
        message = await self._message(request)
        if message is None:
            return web.Response(status=400, text="invalid_payload")
        if not any(message.get(field) for field in ("text", "blocks", "attachments")):
            return web.Response(status=400, text="no_text")
        wait = self._limiter.retry_after(path)
        if wait is not None:
            self.throttled += 1
            return web.Response(status=429, text="rate_limited", headers={"Retry-After": str(wait)})
        self._limiter.hit(path)
        self.messages.append({"path": path, "json": message, "time": self.clock()})
        return web.Response(status=200, text="ok")

    @staticmethod
    async def _message(request: web.Request) -> JSON | None:
        raw = await request.read()
        if request.content_type == "application/x-www-form-urlencoded":
            form = await request.post()
            field = form.get("payload")
            if not isinstance(field, str):
                return None
            raw = field.encode()
        try:
            message = json.loads(raw)
        except ValueError:
            return None
        return message if isinstance(message, dict) else None

    # ---- Web API ---------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        if self._api_faults:
            code, status, wait = self._api_faults.popleft()
            headers = {"Retry-After": str(wait)} if wait is not None else None
            return _json_response(status, {"ok": False, "error": code}, headers)
        args = await self._arguments(request)
        error = self._authenticate(request) or self._check(request.match_info["method"], args)
        if error is not None:
            return _json_response(200, {"ok": False, "error": error})
        if request.match_info["method"] == "chat.update":
            return self._update(args)
        wait = self._api_limiter.retry_after(args["channel"])
        if wait is not None:
            self.throttled += 1
            body = {"ok": False, "error": "ratelimited"}
            return _json_response(429, body, {"Retry-After": str(wait)})
        self._api_limiter.hit(args["channel"])
        return self._post_message(args)

    @staticmethod
    async def _arguments(request: web.Request) -> JSON:
        if request.content_type == "application/x-www-form-urlencoded":
            args: JSON = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
            with contextlib.suppress(ValueError):
                args["blocks"] = json.loads(args.get("blocks", "null"))
            return args
        with contextlib.suppress(ValueError):
            parsed = json.loads(await request.read())
            if isinstance(parsed, dict):
                return parsed
        return {}

    def _authenticate(self, request: web.Request) -> str | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not token:
            return "not_authed"
        if (self.tokens is None and token.startswith("xox")) or token in (self.tokens or ()):
            return None
        return "invalid_auth"

    def _check(self, method: str, args: JSON) -> str | None:
        if method not in ("chat.postMessage", "chat.update"):
            return "unknown_method"
        channel = args.get("channel")
        if channel not in self.channels:
            return "channel_not_found"
        if channel in self.outside:
            return "not_in_channel"
        text, blocks = args.get("text"), args.get("blocks")
        if not (isinstance(text, str) and text) and not blocks:
            return "no_text"
        if isinstance(text, str) and len(text) > self.TEXT_CHARS:
            return "msg_too_long"
        if blocks is not None and not self._blocks_valid(blocks):
            return "invalid_blocks"
        return None

    def _blocks_valid(self, blocks: Any) -> bool:
        limits = self.BLOCK_LIMITS
        if not isinstance(blocks, list) or len(blocks) > limits["blocks"]:
            return False
        return all(isinstance(b, dict) and self._block_valid(b) for b in blocks)

    def _block_valid(self, block: JSON) -> bool:
        limits = self.BLOCK_LIMITS
        if block.get("type") == "section":
            text = (block.get("text") or {}).get("text")
            return isinstance(text, str) and 0 < len(text) <= limits["section"]
        if block.get("type") == "actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 0 < len(elements) <= limits["elements"]:
                return False
            return all(isinstance(e, dict) and self._button_valid(e) for e in elements)
        return False  # the stand-in knows sections and actions only

    def _button_valid(self, button: JSON) -> bool:
        limits = self.BLOCK_LIMITS
        text = (button.get("text") or {}).get("text")
        sizes = {
            "button_text": text,
            "value": button.get("value", ""),
            "url": button.get("url", ""),
            "action_id": button.get("action_id", ""),
        }
        return (
            button.get("type") == "button"
            and all(isinstance(v, str) and len(v) <= limits[k] for k, v in sizes.items())
            and bool(text)
            and ("url" not in button or str(button["url"]).startswith(("https://", "http://")))
        )

    def _post_message(self, args: JSON) -> web.Response:
        number = next(self._ts)
        message: JSON = {
            "channel": args["channel"],
            "ts": f"{1_700_000_000 + number}.{number:06d}",
            "thread_ts": args.get("thread_ts"),
            "text": args.get("text", ""),
            "blocks": args.get("blocks"),
            "json": args,
            "edits": [],
            "time": self.clock(),
        }
        self.posted.append(message)
        answer = {"type": "message", "text": message["text"], "ts": message["ts"]}
        body = {"ok": True, "channel": message["channel"], "ts": message["ts"], "message": answer}
        return _json_response(200, body)

    def _update(self, args: JSON) -> web.Response:
        try:
            message = self.message(args["channel"], str(args.get("ts")))
        except KeyError:
            return _json_response(200, {"ok": False, "error": "message_not_found"})
        message["edits"].append(args)
        message["text"] = args.get("text", message["text"])
        if "blocks" in args:
            message["blocks"] = args["blocks"]
        body = {"ok": True, "channel": message["channel"], "ts": message["ts"],
                "text": message["text"], "message": {"text": message["text"]}}  # fmt: skip
        return _json_response(200, body)


# ---- Opsgenie ------------------------------------------------------------------------------------

OG_PRIORITIES: Final = ("P1", "P2", "P3", "P4", "P5")
OG_MAX_MESSAGE: Final = 130
OG_MAX_ALIAS: Final = 512
OG_MAX_DESCRIPTION: Final = 15000
_UUID_RE: Final = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_IDENTIFIER_TYPES: Final = ("id", "tiny", "alias")


class OpsgenieStub(StubServer):
    """Opsgenie Alert API v2.

    * ``POST /v2/alerts``: create. ``message`` is required (longer than 130 characters is
      truncated), ``priority`` is P1..P5 (default P3). An open alert with the same ``alias``
      is not duplicated: its ``count`` goes up. Without an alias, the alert id is used.
    * ``POST /v2/alerts/{identifier}/close`` and ``.../acknowledge``, ``identifierType`` =
      ``id`` (default), ``tiny`` or ``alias``; body optional (``user``, ``source``, ``note``).
    * ``GET /v2/alerts/requests/{requestId}``: the outcome of an earlier request.
    * ``POST /v2/alerts/{identifier}/notes`` (``note`` required, 25 000 characters at most)
      and ``.../responders`` (``responder``: a type and one of id, name or username): kept
      in the alert's ``notes`` and ``responders``; a responder is added once.

    Writes answer ``202 {"result": "Request will be processed", "took": ..., "requestId":
    ...}``, also for an alert that does not exist: Opsgenie processes them asynchronously and
    reports the failure only through the request status.

    Authentication: ``Authorization: GenieKey <key>``. No header, another scheme, or a key not
    in ``api_keys`` → ``401 {"message": "Could not authenticate"}``; a key that is not a UUID →
    ``422 {"message": "Key format is not valid!"}``. ``api_keys=None`` accepts any UUID key.
    """

    name = "OpsgenieStub"

    def __init__(
        self,
        *,
        api_keys: Collection[str] | None = None,
        clock: Clock = monotonic,
    ) -> None:
        super().__init__(clock=clock)
        self.api_keys = None if api_keys is None else frozenset(api_keys)
        #: The latest alert for each alias: ``id``, ``tinyId``, ``alias``, ``message``,
        #: ``description``, ``priority``, ``details``, ``tags``, ``responders``, ``entity``,
        #: ``source``, ``user``, ``note``, ``status`` (open/closed), ``acknowledged``,
        #: ``count``, ``createdAt``, ``updatedAt``, ``closedAt``, ``body`` (the create request).
        self.alerts: dict[str, JSON] = {}
        #: Every alert ever created, including ones replaced in :attr:`alerts`.
        self.all_alerts: list[JSON] = []
        #: requestId -> outcome, as ``GET /v2/alerts/requests/{requestId}`` reports it.
        self.request_status: dict[str, JSON] = {}
        self._tiny = itertools.count(1)

    #: Where the alert API lives on this server.
    alerts_path = "/v2/alerts"
    #: Whether the API can add a responder to an open alert.
    takes_responders = True

    def _routes(self, app: web.Application) -> None:
        base = self.alerts_path
        app.router.add_post(base, self._create)
        app.router.add_post(base + "/{identifier}/close", self._close_alert)
        app.router.add_post(base + "/{identifier}/acknowledge", self._acknowledge_alert)
        app.router.add_post(base + "/{identifier}/notes", self._add_note)
        if self.takes_responders:
            app.router.add_post(base + "/{identifier}/responders", self._add_responder)
        app.router.add_get(base + "/requests/{request_id}", self._request_status)

    def _fault_body(self, status: int) -> tuple[str, str]:
        reason, _ = super()._fault_body(status)
        return json.dumps(_og_body({"message": reason})), "application/json"

    # ---- handlers --------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        denied = self._authenticate(request)
        if denied is not None:
            return denied
        body = await self._body(request, required=True)
        if body is None:
            return _og_unprocessable({"body": "Could not parse request body as a JSON object."})
        errors = self._validate_create(body)
        if errors:
            return _og_unprocessable(errors)
        now = self.clock()
        message = body["message"].strip()[:OG_MAX_MESSAGE]
        alert_id = str(uuid.uuid4())
        alias = body.get("alias") or alert_id
        existing = self.alerts.get(alias)
        request_id = str(uuid.uuid4())
        if existing is not None and existing["status"] == "open":
            existing["count"] += 1
            existing["updatedAt"] = now
            existing["lastOccurredAt"] = now
            self._record(request_id, "Create", True, "Alert already exists", existing)
            return _og_accepted(request_id)
        alert: JSON = {
            "id": alert_id,
            "tinyId": str(next(self._tiny)),
            "alias": alias,
            "message": message,
            "description": body.get("description", ""),
            "priority": body.get("priority", "P3"),
            "details": dict(body.get("details") or {}),
            "tags": list(body.get("tags") or []),
            "responders": list(body.get("responders") or []),
            "entity": body.get("entity", ""),
            "source": body.get("source", ""),
            "user": body.get("user", ""),
            "note": body.get("note", ""),
            "status": "open",
            "acknowledged": False,
            "count": 1,
            "createdAt": now,
            "updatedAt": now,
            "lastOccurredAt": now,
            "closedAt": None,
            "body": body,
            "notes": [],
        }
        self.alerts[alias] = alert
        self.all_alerts.append(alert)
        self._record(request_id, "Create", True, "Created alert", alert)
        return _og_accepted(request_id)

    async def _close_alert(self, request: web.Request) -> web.Response:
        return await self._alert_action(request, "Close")

    async def _acknowledge_alert(self, request: web.Request) -> web.Response:
        return await self._alert_action(request, "Acknowledge")

    async def _alert_action(self, request: web.Request, action: str) -> web.Response:
        denied = self._authenticate(request)
        if denied is not None:
            return denied
        identifier_type = request.query.get("identifierType", "id")
        if identifier_type not in _IDENTIFIER_TYPES:
            return _og_unprocessable(
                {"identifierType": "Identifier type should be one of [id, tiny, alias]"}
            )
        body = await self._body(request, required=False)
        if body is None:
            return _og_unprocessable({"body": "Could not parse request body as a JSON object."})
        request_id = str(uuid.uuid4())
        alert = self._find(identifier_type, request.match_info["identifier"])
        if alert is None:
            self._record(request_id, action, False, "Alert does not exist", None)
            return _og_accepted(request_id)
        now = self.clock()
        if action == "Close":
            if alert["status"] != "closed":
                alert["status"] = "closed"
                alert["closedAt"] = now
                alert["closedBy"] = body.get("user", "")
                alert["closeNote"] = body.get("note", "")
                alert["updatedAt"] = now
            self._record(request_id, action, True, "Closed alert", alert)
        else:
            if alert["status"] == "closed":
                self._record(request_id, action, False, "Alert is already closed", alert)
                return _og_accepted(request_id)
            alert["acknowledged"] = True
            alert["updatedAt"] = now
            self._record(request_id, action, True, "Acknowledged alert", alert)
        return _og_accepted(request_id)

    async def _add_note(self, request: web.Request) -> web.Response:
        """``POST …/{identifier}/notes``: ``note`` (required, at most 25 000 characters),
        ``user``, ``source``; kept in the alert's ``notes``."""
        return await self._alert_update(request, "AddNote", _og_note_errors, self._note)

    async def _add_responder(self, request: web.Request) -> web.Response:
        """``POST …/{identifier}/responders``: ``responder`` (a type and one of id, name or
        username), ``note``; added once to the alert's ``responders``."""
        return await self._alert_update(request, "AddResponder", _og_responder_errors, self._add)

    async def _alert_update(
        self,
        request: web.Request,
        action: str,
        check: Callable[[JSON], dict[str, str]],
        apply: Callable[[JSON, JSON], str],
    ) -> web.Response:
        denied = self._authenticate(request)
        if denied is not None:
            return denied
        identifier_type = request.query.get("identifierType", "id")
        if identifier_type not in _IDENTIFIER_TYPES:
            return _og_unprocessable(
                {"identifierType": "Identifier type should be one of [id, tiny, alias]"}
            )
        body = await self._body(request, required=True)
        if body is None:
            return _og_unprocessable({"body": "Could not parse request body as a JSON object."})
        errors = check(body)
        if errors:
            return _og_unprocessable(errors)
        request_id = str(uuid.uuid4())
        alert = self._find(identifier_type, request.match_info["identifier"])
        if alert is None:
            self._record(request_id, action, False, "Alert does not exist", None)
        elif alert["status"] == "closed" and action == "AddResponder":
            self._record(request_id, action, False, "Alert is already closed", alert)
        else:
            alert["updatedAt"] = self.clock()
            self._record(request_id, action, True, apply(alert, body), alert)
        return _og_accepted(request_id)

    def _note(self, alert: JSON, body: JSON) -> str:
        entry = {k: body.get(k, "") for k in ("note", "user", "source")}
        alert["notes"].append({**entry, "at": self.clock()})
        return "Added note"

    @staticmethod
    def _add(alert: JSON, body: JSON) -> str:
        if body["responder"] not in alert["responders"]:
            alert["responders"].append(body["responder"])
        if body.get("note"):
            alert["notes"].append({"note": body["note"], "user": "", "source": ""})
        return "Added responder"

    async def _request_status(self, request: web.Request) -> web.Response:
        denied = self._authenticate(request)
        if denied is not None:
            return denied
        status = self.request_status.get(request.match_info["request_id"])
        if status is None:
            return _json_response(404, _og_body({"message": "Request not found"}))
        return _json_response(200, _og_body({"data": status}))

    # ---- helpers ---------------------------------------------------------------------------

    def _authenticate(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "geniekey" or not key:
            return _json_response(401, _og_body({"message": "Could not authenticate"}))
        if not _UUID_RE.match(key):
            return _json_response(422, _og_body({"message": "Key format is not valid!"}))
        if self.api_keys is not None and key not in self.api_keys:
            return _json_response(401, _og_body({"message": "Could not authenticate"}))
        return None

    @staticmethod
    async def _body(request: web.Request, *, required: bool) -> JSON | None:
        raw = await request.read()
        if not raw.strip():
            return None if required else {}
        try:
            body = json.loads(raw)
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    @staticmethod
    def _validate_create(body: JSON) -> dict[str, str]:
        errors: dict[str, str] = {}
        message = body.get("message")
        if not isinstance(message, str) or not message.strip():
            errors["message"] = "Message can not be empty."
        alias = body.get("alias")
        if alias is not None and (not isinstance(alias, str) or len(alias) > OG_MAX_ALIAS):
            errors["alias"] = f"Alias can not be longer than {OG_MAX_ALIAS} characters."
        description = body.get("description")
        if description is not None and (
            not isinstance(description, str) or len(description) > OG_MAX_DESCRIPTION
        ):
            errors["description"] = (
                f"Description can not be longer than {OG_MAX_DESCRIPTION} characters."
            )
        priority = body.get("priority")
        if priority is not None and priority not in OG_PRIORITIES:
            errors["priority"] = "Priority should be one of [P1, P2, P3, P4, P5]"
        details = body.get("details")
        if details is not None and not isinstance(details, dict):
            errors["details"] = "Details should be a map of string keys and values."
        return errors

    def _find(self, identifier_type: str, identifier: str) -> JSON | None:
        if identifier_type == "alias":
            return self.alerts.get(identifier)
        field = "id" if identifier_type == "id" else "tinyId"
        for alert in reversed(self.all_alerts):
            if alert[field] == identifier:
                return alert
        return None

    def _record(
        self, request_id: str, action: str, success: bool, status: str, alert: JSON | None
    ) -> None:
        entry: JSON = {
            "success": success,
            "action": action,
            "processedAt": self.clock(),
            "integrationId": "00000000-0000-0000-0000-000000000000",
            "isSuccess": success,
            "status": status,
        }
        if alert is not None:
            entry["alertId"] = alert["id"]
            entry["alias"] = alert["alias"]
        self.request_status[request_id] = entry


OG_MAX_NOTE: Final = 25000
OG_RESPONDER_TYPES: Final = ("team", "user", "escalation", "schedule")


def _og_note_errors(body: JSON) -> dict[str, str]:
    note = body.get("note")
    if not isinstance(note, str) or not note.strip():
        return {"note": "Note can not be empty."}
    if len(note) > OG_MAX_NOTE:
        return {"note": f"Note can not be longer than {OG_MAX_NOTE} characters."}
    return {}


def _og_responder_errors(body: JSON) -> dict[str, str]:
    responder = body.get("responder")
    if not isinstance(responder, dict) or responder.get("type") not in OG_RESPONDER_TYPES:
        return {"responder": "Responder type should be one of [team, user, escalation, schedule]"}
    keys = [k for k in ("id", "name", "username") if isinstance(responder.get(k), str)]
    if len(keys) != 1 or not responder[keys[0]]:
        return {"responder": "Responder should have one of id, name or username."}
    if keys[0] == "username" and responder["type"] != "user":
        return {"responder": "Only a user has a username."}
    note = body.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > OG_MAX_NOTE):
        return {"note": f"Note can not be longer than {OG_MAX_NOTE} characters."}
    return {}


def _og_body(body: JSON, request_id: str | None = None) -> JSON:
    return {**body, "took": 0.0, "requestId": request_id or str(uuid.uuid4())}


def _og_accepted(request_id: str) -> web.Response:
    return _json_response(202, _og_body({"result": "Request will be processed"}, request_id))


def _og_unprocessable(errors: dict[str, str]) -> web.Response:
    return _json_response(
        422,
        _og_body(
            {
                "message": "Request body is not processable. Please check the errors.",
                "errors": errors,
            }
        ),
    )


# ---- generic webhook -----------------------------------------------------------------------------


class WebhookStub(StubServer):
    """A generic webhook receiver: any ``POST /<path>`` is recorded and answered ``200 {}``.

    ``response_status`` and ``response_body`` change the answer for every request.
    """

    name = "WebhookStub"

    def __init__(
        self,
        *,
        response_status: int = 200,
        response_body: str = "{}",
        clock: Clock = monotonic,
    ) -> None:
        super().__init__(clock=clock)
        self.response_status = response_status
        self.response_body = response_body
        #: Requests answered by the webhook (not by an injected fault).
        self.received: list[RecordedRequest] = []

    def received_at(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.received if r.path == path]

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/{path:.*}", self._post)

    async def _post(self, request: web.Request) -> web.Response:
        await request.read()
        self.received.append(request[_RECORD_KEY])
        return web.Response(
            status=self.response_status, text=self.response_body, content_type="application/json"
        )


# ---- Jira Service Management -------------------------------------------------------------------


class JsmStub(OpsgenieStub):
    """Jira Service Management operations: an API integration's alert API, the same
    contract as Opsgenie's (bodies, ``GenieKey`` authentication, 202 with a ``requestId``)
    under ``/jsm/ops/integration/v2/alerts``: create, close, acknowledge, add note and the
    request status. It has no responders endpoint (404)."""

    name = "JsmStub"
    alerts_path = "/jsm/ops/integration/v2/alerts"
    takes_responders = False


# ---- Grafana IRM ---------------------------------------------------------------------------------


@dataclasses.dataclass
class AlertGroup:
    """The alert group Grafana IRM keeps for one ``alert_uid`` (its grouping id)."""

    uid: str
    alerts: list[JSON]  # every payload grouped into it, in arrival order
    resolved: bool = False

    @property
    def title(self) -> str:
        """The group shows its first alert's title."""
        return str(self.alerts[0].get("title", ""))


class GrafanaIrmStub(StubServer):
    """Grafana IRM's Formatted Webhook integration,
    ``POST /integrations/v1/formatted_webhook/{token}/``.

    A JSON object is answered ``200 Ok.`` and grouped as the integration's default templates
    do: by ``alert_uid`` into an open :class:`AlertGroup` (a new one when the last was
    resolved), which ``state`` ``ok`` resolves. Anything else is ``400``."""

    name = "GrafanaIrmStub"

    def __init__(self, *, clock: Clock = monotonic) -> None:
        super().__init__(clock=clock)
        #: The latest group for each alert_uid.
        self.groups: dict[str, AlertGroup] = {}
        #: Every group ever opened.
        self.all_groups: list[AlertGroup] = []

    def integration_url(self, token: str = "t0ken") -> str:
        return f"{self.url}/integrations/v1/formatted_webhook/{token}/"

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/integrations/v1/formatted_webhook/{token}/", self._post)

    async def _post(self, request: web.Request) -> web.Response:
        payload = request[_RECORD_KEY].json
        if not isinstance(payload, dict):
            return web.Response(status=400, text="Bad Request")
        uid = str(payload.get("alert_uid", ""))
        group = self.groups.get(uid)
        if group is None or group.resolved:
            group = AlertGroup(uid, [])
            self.groups[uid] = group
            self.all_groups.append(group)
        group.alerts.append(payload)
        if str(payload.get("state", "")).upper() == "OK":
            group.resolved = True
        return web.Response(status=200, text="Ok.")


# ---- Microsoft Teams -----------------------------------------------------------------------------

TEAMS_MAX_BYTES: Final = 28 * 1024
TEAMS_CARD_TYPE: Final = "application/vnd.microsoft.card.adaptive"


class TeamsStub(StubServer):
    """A Teams Workflows "post to a channel when a webhook request is received" flow,
    ``POST /workflows/{path}``.

    Takes a message of Adaptive Cards (``type`` ``message``, ``attachments`` of
    ``contentType`` ``application/vnd.microsoft.card.adaptive`` whose ``content`` is an
    ``AdaptiveCard`` with a ``version`` and a ``body``) and answers ``202`` with no body;
    past 28 KB, ``413``; any other body ``400`` with the flow's error object. The real flow
    checks the card only after it answered; the stub checks it before, so a test sees it.
    """

    name = "TeamsStub"
    max_body = 4 * TEAMS_MAX_BYTES

    def __init__(self, *, clock: Clock = monotonic) -> None:
        super().__init__(clock=clock)
        #: Every card posted, in order.
        self.cards: list[JSON] = []

    def workflow_url(self, path: str = "flow-0") -> str:
        return f"{self.url}/workflows/{path}"

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/workflows/{path:.+}", self._post)

    async def _post(self, request: web.Request) -> web.Response:
        record = request[_RECORD_KEY]
        if len(record.body) > TEAMS_MAX_BYTES:
            return web.Response(status=413, text="Request Entity Too Large")
        cards = _teams_cards(record.json)
        if cards is None:
            return _json_response(400, _TEAMS_INVALID)
        self.cards.extend(cards)
        return web.Response(status=202)


_TEAMS_INVALID: Final = {
    "error": {
        "code": "InvalidRequestContent",
        "message": (
            "The input body for trigger 'manual' of type 'Request' did not match its schema."
        ),
    }
}


def _teams_cards(message: Any) -> list[JSON] | None:
    """The cards of a valid message, or None."""
    if not isinstance(message, dict) or message.get("type") != "message":
        return None
    attachments = message.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return None
    cards = [a.get("content") for a in attachments if isinstance(a, dict)]
    valid = all(
        isinstance(a, dict) and a.get("contentType") == TEAMS_CARD_TYPE for a in attachments
    ) and all(
        isinstance(c, dict)
        and c.get("type") == "AdaptiveCard"
        and isinstance(c.get("version"), str)
        and isinstance(c.get("body"), list)
        for c in cards
    )
    return [c for c in cards if isinstance(c, dict)] if valid else None


__all__ = [
    "AlertGroup",
    "GrafanaIrmStub",
    "Incident",
    "JsmStub",
    "OpsgenieStub",
    "PagerDutyStub",
    "RecordedRequest",
    "SlackStub",
    "StubServer",
    "TeamsStub",
    "WebhookStub",
]


def slack_signed_form(payload: JSON, secret: str, now: float) -> tuple[bytes, dict[str, str]]:
    """An interaction as Slack posts it to an app's interactivity URL: ``payload`` as JSON in
    a form field, signed over ``v0:<timestamp>:<body>`` with HMAC-SHA256 of ``secret``."""
    body = urlencode({"payload": json.dumps(payload)}).encode()
    stamp = str(int(now))
    base = b"v0:" + stamp.encode() + b":" + body
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/x-www-form-urlencoded",
                  "X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature}  # fmt: skip
