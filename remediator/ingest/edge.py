"""The HTTP edge: the socket, HTTP/1.1 framing and the server ``serve`` and the tests both run.

First stage of the receive path, before ``auth`` and ``webhook``:

    bytes ─► framing (our limits, our header timeout) ─► Expect / version ─► app routes

Everything refused here is answered with the same short JSON as the rest of the API,
``{"error": code, "detail": sentence}``, never aiohttp's ``text/plain`` that quotes the
request (a bad byte in ``Authorization`` would quote the token). Bodies are never inflated
(``auto_decompress=False``: ``webhook`` refuses any ``Content-Encoding``), a body left unread
is never drained (no lingering read: the connection closes), and a connection that does not
deliver a complete request head within ``header_timeout_s`` of its connect or of its last
response is closed.

Built on aiohttp 3.14 internals, each named where it is used: ``RequestHandler``'s
``data_received``, ``finish_response``, ``handle_error`` and its queue of parsed messages,
``Server.__call__`` and ``AppRunner._make_server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http import HTTPStatus
from ssl import SSLContext
from typing import Any

from aiohttp import web
from aiohttp.http import HttpVersion10, HttpVersion11
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import (
    MAX_MSG_QUEUE_SIZE,
    RequestHandler,
    RequestPayloadError,
    _ErrInfo,
)

from remediator.config import Settings
from remediator.core.errors import ConfigError, RequestRejected

log = logging.getLogger(__name__)

Refusals = Callable[[str], None]
"""Counts one refusal by its error code (``remediator_payloads_rejected_total{reason}``)."""

REFUSALS: web.AppKey[Refusals] = web.AppKey("edge_refusals")
"""Where ``init_app`` puts the counter the edge reports its refusals to."""

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
HEAD_END = b"\r\n\r\n"
INTERNAL_ERROR = RequestRejected(500, "internal_error", "The request failed in the service.")


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    header_timeout_s: float
    max_request_line_bytes: int
    max_header_bytes: int
    max_headers: int

    @classmethod
    def of(cls, settings: Settings) -> EdgeLimits:
        return cls(
            header_timeout_s=settings.header_timeout_s,
            max_request_line_bytes=settings.max_request_line_bytes,
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
        )


def json_refusal(exc: RequestRejected) -> web.Response:
    """The edge's answer: our JSON error, and the connection closed after it."""
    response = web.json_response({"error": exc.code, "detail": exc.detail}, status=exc.status)
    response.force_close()
    return response


def raw_refusal(exc: RequestRejected) -> bytes:
    """``json_refusal`` as bytes, for a connection that has no request to answer."""
    body = json.dumps({"error": exc.code, "detail": exc.detail}).encode()
    head = (
        f"HTTP/1.1 {exc.status} {HTTPStatus(exc.status).phrase}\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def framing_refusal(exc: BaseException | None, limits: EdgeLimits) -> RequestRejected:
    """What a parser error becomes. The parser's message quotes the request: never sent."""
    # aiohttp raises "Too many headers received" as a plain BadHttpMessage (3.14, both parsers).
    too_many = isinstance(exc, HttpProcessingError) and "Too many headers" in exc.message
    if isinstance(exc, LineTooLong) or too_many:
        return RequestRejected(
            431,
            "headers_too_large",
            f"The request head is too large: at most {limits.max_request_line_bytes} bytes of"
            f" request line, {limits.max_header_bytes} bytes per header field and"
            f" {limits.max_headers} header fields.",
        )
    return RequestRejected(
        400, "invalid_request", "The request is not valid HTTP/1.1 (request line or headers)."
    )


def codings(request: web.BaseRequest, header: str) -> list[str]:
    """The comma-separated values of every ``header`` field, lowercased (``Content-Encoding``,
    ``Transfer-Encoding``: a list may be split over several fields)."""
    return [c.strip().lower() for v in request.headers.getall(header, []) for c in v.split(",")]


def http_error(exc: web.HTTPException) -> RequestRejected:
    """One of aiohttp's own HTTP errors (404, 405, 413, …) as ours: its reason as the code."""
    return RequestRejected(exc.status, exc.reason.lower().replace(" ", "_"), f"{exc.reason}.")


def check_framing(request: web.BaseRequest) -> None:
    """What the parser lets through and we do not: other HTTP versions, transfer codings
    other than ``chunked`` (nothing would decode them), expectations other than 100-continue."""
    if request.version not in (HttpVersion10, HttpVersion11):
        raise RequestRejected(
            400, "unsupported_http_version", "Only HTTP/1.0 and HTTP/1.1 are served."
        )
    transfer = codings(request, "Transfer-Encoding")
    if transfer and transfer != ["chunked"]:
        raise RequestRejected(400, "invalid_request", "Transfer-Encoding may only be chunked.")
    expect = request.headers.getall("Expect", [])
    if expect and (len(expect) > 1 or expect[0].strip().lower() != "100-continue"):
        raise RequestRejected(417, "expectation_failed", "Expect may only be 100-continue.")


async def send_continue(request: web.BaseRequest) -> None:
    """Ask for the body, as aiohttp's default expect handler does; call it only once the
    head is accepted. HTTP/1.0 clients are not asked (RFC 9110, section 10.1.1)."""
    if request.version == HttpVersion11:
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the response proper has not started


def split_after_heads(carry: bytes, data: bytes) -> list[bytes]:
    """``data`` cut after every CRLFCRLF, looking back into ``carry`` (the end of the previous
    read), so that every piece ends where a request head may end. Never empty."""
    window = carry + data
    pieces: list[bytes] = []
    start = 0
    at = window.find(HEAD_END)
    while at != -1:
        end = at + len(HEAD_END) - len(carry)
        if end > start:
            pieces.append(data[start:end])
            start = end
        at = window.find(HEAD_END, at + 1)
    if start < len(data) or not pieces:
        pieces.append(data[start:])
    return pieces


class EdgeProtocol(RequestHandler):
    """aiohttp's ``RequestHandler`` with our limits, our error answers, a header timeout,
    and requests kept in order when a later one in the same read is malformed."""

    def __init__(
        self,
        manager: web.Server,
        *,
        loop: asyncio.AbstractEventLoop,
        limits: EdgeLimits,
        refusals: Refusals,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            manager,
            loop=loop,
            max_line_size=limits.max_request_line_bytes,
            max_field_size=limits.max_header_bytes,
            max_headers=limits.max_headers,
            lingering_time=0.0,  # a body left unread is not drained: the connection closes
            auto_decompress=False,
            **kwargs,
        )
        self._limits = limits
        self._refusals = refusals
        self._carry = b""
        self._body: StreamReader | None = None
        self._broken = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_started = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._broken:
            return  # the parser failed; its error answer is queued and closes the connection
        if self._head_timer is not None and data:
            self._head_started = True
        if self._force_close or self._close or self._upgraded or self._payload_parser is not None:
            super().data_received(data)
            return
        # aiohttp drops every message a read completed when the parser raises later in that
        # read (RequestHandler.data_received, 3.14): feed it a head at a time instead.
        pieces = split_after_heads(self._carry, data)
        self._carry = (self._carry + data)[1 - len(HEAD_END) :]
        while pieces:
            piece = pieces.pop(0)
            if len(self._messages) >= MAX_MSG_QUEUE_SIZE:  # aiohttp pauses: it takes the rest
                piece, pieces = piece + b"".join(pieces), []
            queued = len(self._messages)
            super().data_received(piece)
            if self._took(queued):
                return

    def _took(self, queued: int) -> bool:
        """Look at what the last feed queued; True when it was aiohttp's framing error."""
        for message, payload in itertools.islice(self._messages, queued, None):
            if not isinstance(message, _ErrInfo):
                self._body = payload
                self._disarm_head_timer()
                continue
            self._broken = True
            if self._body is not None and not self._body.is_eof():
                # The error is in the body of the request being read: that request fails.
                self._body.set_exception(RequestPayloadError("The body's framing is invalid."))
            return True
        return False

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        if not request.content.is_eof() and not resp.prepared:
            resp.force_close()  # say so: the unread rest of the body will not be read
        answered = await super().finish_response(request, resp, start_time)
        if not self._messages:
            self._arm_head_timer()
        return answered

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer to a parser error or an unhandled exception, as our JSON."""
        if status >= 500:
            self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
            refusal = INTERNAL_ERROR
        else:
            refusal = framing_refusal(exc, self._limits)
            log.debug("refused a request from %s: %s", request.remote, refusal.code)
            self._refusals(refusal.code)
        if request.writer.output_size > 0:
            raise ConnectionError("Response is sent already, cannot send an error response")
        return json_refusal(refusal)

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_started = False
        timeout_s = self._limits.header_timeout_s
        self._head_timer = self._loop.call_later(timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport is None or self._force_close:
            return
        if self._head_started:  # a head is trickling in: tell it why, then close
            timeout_s = self._limits.header_timeout_s
            refusal = RequestRejected(
                408, "header_timeout", f"The request head did not arrive within {timeout_s:g} s."
            )
            self.transport.write(raw_refusal(refusal))
            self._refusals(refusal.code)
        self.force_close()  # the transport flushes what is written, then closes


def edge_handler(app_handler: Handler, refusals: Refusals) -> Handler:
    """The app's request handler behind ``check_framing``, and aiohttp's own HTTP errors
    raised outside the app's middlewares (its expect handler, for one) as our JSON."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        try:
            check_framing(request)
            return await app_handler(request)
        except RequestRejected as exc:
            refusals(exc.code)
            return json_refusal(exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            refusal = http_error(exc)
            refusals(refusal.code)
            return json_refusal(refusal)

    return handle


class EdgeServer(web.Server):
    """aiohttp's ``Server`` making ``EdgeProtocol`` connections (``Server.__call__`` is the
    protocol factory the event loop calls per connection)."""

    def __init__(
        self,
        handler: Handler,
        *,
        request_factory: Callable[..., web.BaseRequest],
        limits: EdgeLimits,
        refusals: Refusals,
        **protocol_kwargs: Any,
    ) -> None:
        super().__init__(handler, request_factory=request_factory, **protocol_kwargs)
        self._edge_loop = asyncio.get_running_loop()
        self._limits = limits
        self._refusals = refusals
        self._protocol_kwargs = protocol_kwargs

    def __call__(self) -> RequestHandler:
        return EdgeProtocol(
            self,
            loop=self._edge_loop,
            limits=self._limits,
            refusals=self._refusals,
            **self._protocol_kwargs,
        )


class EdgeRunner(web.AppRunner):
    """``AppRunner`` serving the app through ``EdgeServer``: the app starts and freezes in
    ``AppRunner._make_server``, whose server we replace by ours with the same handler."""

    def __init__(self, app: web.Application, settings: Settings) -> None:
        super().__init__(app, access_log=None)
        self._settings = settings

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        refusals = self.app.get(REFUSALS, _uncounted)
        return EdgeServer(
            edge_handler(made.request_handler, refusals),
            limits=EdgeLimits.of(self._settings),
            refusals=refusals,
            request_factory=made.request_factory,
            keepalive_timeout=self._settings.keepalive_timeout_s,
            access_log=None,
        )


def _uncounted(code: str) -> None:
    return None


@dataclass(frozen=True)
class Edge:
    """A listening service: its app and the address it took (``listen_port=0`` picks one)."""

    app: web.Application
    runner: EdgeRunner
    host: str
    port: int
    scheme: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` and not yet listening, so a port in use is found
    before the store is opened, and nothing connects until the app has started."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {_reason(exc)}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp's own sites
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {_reason(exc)}") from None
    sock.setblocking(False)
    return sock


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()


@asynccontextmanager
async def listening(
    app: web.Application, settings: Settings, *, ssl_context: SSLContext | None = None
) -> AsyncIterator[Edge]:
    """Start ``app`` on ``settings.listen_host:listen_port`` and stop it on exit: the one
    server ``remediator serve`` and the tests run. The port is taken first: the app's start
    (store, reconcile, recovery) runs only once it is ours."""
    with contextlib.closing(bind(settings.listen_host, settings.listen_port)) as sock:
        runner = EdgeRunner(app, settings)
        await runner.setup()
        try:
            site = web.SockSite(runner, sock, ssl_context=ssl_context)
            await site.start()
            host, port = runner.addresses[0][:2]
            yield Edge(app, runner, host, port, "https" if ssl_context else "http")
        finally:
            await runner.cleanup()
