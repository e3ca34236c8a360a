"""A real S3 for tests: moto's S3 server as a child process, and a proxy in front of it for
outages on demand.

:class:`MotoS3` runs ``python -m moto.server`` (the venv's interpreter, so the venv's moto) on
a free loopback port and answers at :attr:`MotoS3.url`. Point the client under test at it with
``endpoint_url=url``, the AWS variables of :func:`env` and path-style addressing. The small
helpers (:func:`create_bucket`, :func:`list_keys`, :func:`get_object`, :func:`object_meta`)
let a test set up a bucket and look at what the client under test left in it.

:class:`S3Faults` is an HTTP reverse proxy in front of an S3 endpoint (usually a
:class:`MotoS3`). It forwards requests as they are, or answers errors instead
(:meth:`S3Faults.failing`), forwards late (:meth:`S3Faults.slow`), or stops listening
(:meth:`S3Faults.down`, :meth:`S3Faults.up`). It records each request it receives in
:attr:`S3Faults.seen`, with the name of the S3 operation.

Clients must use path-style addressing through the proxy (``/bucket/key``, set with
``botocore.config.Config(s3={"addressing_style": "path"})``), because the proxy reads the
bucket and key from the path. Virtual-host style would need ``bucket.127.0.0.1`` to resolve.

Typical use::

    async with MotoS3() as moto, S3Faults(moto.url) as faults:
        await create_bucket(moto.url, "archive")
        faults.failing(503, times=2)
        ...  # the archiver under test, pointed at faults.url, retries and succeeds
        assert await list_keys(moto.url, "archive") == ["2026/01/01/x.json.gz"]
        assert faults.operations() >= {"PutObject"}
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import parse_qs

import aioboto3
import aiohttp
from aiohttp import web
from botocore.config import Config
from multidict import CIMultiDict
from yarl import URL

from tests.support.lifecycle import StartStop
from tests.support.ports import free_port

ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"
REGION = "us-east-1"
HOST = "127.0.0.1"

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
POLL_INTERVAL_S = 0.05
#: A port ``free_port`` chose may be taken before the child binds it: tried again this often.
START_ATTEMPTS = 3
ADDRESS_IN_USE = "in use"

_PROXY_VARIABLES = frozenset(
    {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy", "socks_proxy"}
)


def env(url: str) -> dict[str, str]:
    """The AWS variables a client under test needs for the moto server at ``url`` (credentials
    and region; the endpoint is the client's own setting, so it is not here)."""
    del url  # every MotoS3 takes the same dummy credentials
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
    }


def _child_env() -> dict[str, str]:
    """Our environment without proxies or AWS settings of the machine, plus dummy keys."""
    kept = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in _PROXY_VARIABLES and not k.startswith("AWS_")
    }
    return {**kept, **env("")}


class MotoS3(StartStop):
    """moto's server (``python -m moto.server``) on ``127.0.0.1`` at a free port.

    Its output (moto's and werkzeug's request log) goes to a temporary file, shown when it
    fails to start. Each server starts empty: buckets are the test's to create.
    """

    def __init__(self) -> None:
        self.port = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def start(self) -> str:
        for attempt in range(START_ATTEMPTS):
            try:
                await self._start_once()
                return self.url
            except RuntimeError as exc:
                if attempt == START_ATTEMPTS - 1 or ADDRESS_IN_USE not in str(exc).lower():
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _start_once(self) -> None:
        self.port = free_port()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop)
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.port),
            stdin=asyncio.subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            env=_child_env(),
        )  # fmt: skip
        try:
            await self._until_ready()
        except BaseException:
            await self.stop()
            raise

    async def _until_ready(self) -> None:
        assert self._proc is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        # Each look is bounded: until moto binds, the port may be someone else's.
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while loop.time() < deadline and self._proc.returncode is None:
                try:
                    async with session.get(f"{self.url}/moto-api/data.json") as resp:
                        if resp.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(POLL_INTERVAL_S)
        why = "timed out" if self._proc.returncode is None else f"exit {self._proc.returncode}"
        raise RuntimeError(f"moto did not start on {self.url} ({why}):\n{self.output()}")

    def output(self) -> str:
        """What the server printed so far (its last 3000 characters)."""
        if self._log is None or self._log.closed:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-3000:]

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


@contextlib.asynccontextmanager
async def _client(url: str) -> AsyncIterator[Any]:
    """An aioboto3 S3 client for ``url`` with the test keys, path-style; closed on exit."""
    session = aioboto3.Session()
    async with session.client(
        "s3",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(s3={"addressing_style": "path"}),
    ) as s3:
        yield s3


async def create_bucket(url: str, name: str) -> None:
    async with _client(url) as s3:
        await s3.create_bucket(Bucket=name)


async def list_keys(url: str, bucket: str, prefix: str = "", page_keys: int = 1000) -> list[str]:
    """Every key under ``prefix`` (all pages of ``page_keys``), in S3's order (lexicographic)."""
    keys: list[str] = []
    async with _client(url) as s3:
        paginator = s3.get_paginator("list_objects_v2")
        pages = {"PageSize": page_keys}
        async for page in paginator.paginate(Bucket=bucket, Prefix=prefix, PaginationConfig=pages):
            keys.extend(str(item["Key"]) for item in page.get("Contents", []))
    return keys


async def get_object(url: str, bucket: str, key: str) -> bytes:
    """The object's bytes as stored (no decoding of a ``Content-Encoding``)."""
    async with _client(url) as s3:
        resp = await s3.get_object(Bucket=bucket, Key=key)
        async with resp["Body"] as body:
            data: bytes = await body.read()
    return data


async def object_meta(url: str, bucket: str, key: str) -> dict[str, Any]:
    """``ServerSideEncryption``, ``ContentType``, ``ContentEncoding`` (None when absent) and
    the user ``Metadata`` (a dict) of the object, from HeadObject."""
    async with _client(url) as s3:
        head = await s3.head_object(Bucket=bucket, Key=key)
    return {
        "ServerSideEncryption": head.get("ServerSideEncryption"),
        "ContentType": head.get("ContentType"),
        "ContentEncoding": head.get("ContentEncoding"),
        "Metadata": dict(head.get("Metadata", {})),
    }


#: The status of a request :meth:`S3Faults.down` cut before it was answered.
NO_ANSWER = 0


@dataclass(frozen=True)
class Seen:
    """One request the proxy received, and the status it answered: 502 when the upstream
    broke, :data:`NO_ANSWER` when ``down()`` cut it first."""

    method: str
    path: str
    query: str
    operation: str
    status: int


def operation(method: str, path: str, query: str, copy_source: bool = False) -> str:
    """The S3 API operation a path-style request (``/bucket/key?query``) calls."""
    bucket, _, key = path.lstrip("/").partition("/")
    params = parse_qs(query, keep_blank_values=True)
    if not bucket:
        return "ListBuckets" if method == "GET" else f"Other:{method}"
    if not key:
        if method == "GET" and params.get("list-type") == ["2"]:
            return "ListObjectsV2"
        bucket_ops = {
            ("GET", frozenset()): "ListObjects",
            ("PUT", frozenset()): "CreateBucket",
            ("HEAD", frozenset()): "HeadBucket",
            ("DELETE", frozenset()): "DeleteBucket",
            ("POST", frozenset({"delete"})): "DeleteObjects",
        }
        subresources = frozenset(params) - _LIST_PARAMETERS
        return bucket_ops.get((method, subresources), f"Other:{method}")
    if "uploads" in params and method == "POST":
        return "CreateMultipartUpload"
    if "uploadId" in params:
        upload_ops = {
            "PUT": "UploadPart",
            "POST": "CompleteMultipartUpload",
            "DELETE": "AbortMultipartUpload",
            "GET": "ListParts",
        }
        return upload_ops.get(method, f"Other:{method}")
    if params.keys() - _OBJECT_PARAMETERS:
        return f"Other:{method}"
    if method == "PUT":
        return "CopyObject" if copy_source else "PutObject"
    object_ops = {"GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}
    return object_ops.get(method, f"Other:{method}")


#: Query parameters of ListObjects, which are no subresource.
_LIST_PARAMETERS = frozenset({"prefix", "delimiter", "marker", "max-keys", "encoding-type"})
#: Query parameters of GetObject/HeadObject/DeleteObject, which are no subresource.
_OBJECT_PARAMETERS = frozenset(
    {"versionId", "partNumber", "x-id"}
    | {f"response-{h}" for h in ("content-type", "content-language", "expires")}
    | {f"response-{h}" for h in ("cache-control", "content-disposition", "content-encoding")}
)

#: Request headers not forwarded: per-connection ones, and those aiohttp sets from the body.
_REQUEST_DROPPED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "expect",  # aiohttp's server already answered 100-continue; the body is read
    }
)
#: Response headers not passed back: per-connection ones, and those aiohttp recomputes.
_RESPONSE_DROPPED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
#: Bodies up to this size are taken (multipart parts are 5 MiB and up).
MAX_BODY = 256 * 1024 * 1024


def _error_body(code: str, message: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        "<RequestId>s3faults</RequestId></Error>"
    ).encode()


class S3Faults(StartStop):
    """An HTTP reverse proxy in front of the S3 endpoint ``upstream`` (e.g. a moto URL).

    Modes, switchable at any time; each holds until the next is chosen:

    * :meth:`passing` (the default): forward each request and pass the answer back;
    * :meth:`failing`: answer ``status`` with an S3 XML error, not forwarding, for the next
      ``times`` requests (then passing again) or until another mode is chosen;
    * :meth:`slow`: wait ``delay_s`` before forwarding.

    Apart from the mode, :meth:`down` closes the listening socket and aborts open connections
    (connects are refused, as with an endpoint that went away); :meth:`up` listens again on
    the same port.

    Requests go upstream with the method, raw path and query, headers and body the client
    sent, ``Host`` included: the client signed (SigV4) for the proxy's host and port, and the
    request stays as signed. moto does not check signatures by default, so that passes; an
    upstream that checks them would accept it too, as the signed ``Host`` is unchanged.
    Per-connection headers (``Connection``, ``Transfer-Encoding``, ...) and ``Content-Length``
    are not copied either way (aiohttp sets them from the body); a response to ``HEAD``
    keeps ``Content-Length``, as it describes the object, not the empty body.
    Bodies go through byte for byte (no decompression).
    """

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream.rstrip("/")
        self.port = free_port()
        self.seen: list[Seen] = []
        self._failing: tuple[int, str] | None = None
        self._failures_left: int | None = None
        self._delay_s = 0.0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def start(self) -> str:
        self._session = aiohttp.ClientSession(
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=60, sock_connect=5),
        )
        try:
            await self.up()
        except BaseException:
            await self.stop()
            raise
        return self.url

    async def stop(self) -> None:
        await self.down()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # Modes.

    def passing(self) -> None:
        self._failing = None
        self._failures_left = None
        self._delay_s = 0.0

    def failing(self, status: int = 500, times: int | None = None, code: str = "") -> None:
        """Answer ``status`` (with ``<Code>code</Code>``; by default ``InternalError``, or
        ``SlowDown`` for 503) to the next ``times`` requests; ``None``: until changed."""
        self.passing()
        self._failing = (status, code or ("SlowDown" if status == 503 else "InternalError"))
        self._failures_left = times

    def slow(self, delay_s: float) -> None:
        self.passing()
        self._delay_s = delay_s

    # Listening.

    async def up(self) -> None:
        if self._runner is not None:
            return
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: an aborted connection (``down``) cancels its handler at once.
        # auto_decompress off: a gzip body with ``Content-Encoding: gzip`` goes on as sent.
        runner = web.AppRunner(
            app,
            access_log=None,
            handler_cancellation=True,
            auto_decompress=False,
            shutdown_timeout=1.0,
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, HOST, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def down(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for site in list(runner.sites):
            await site.stop()  # closes the listening socket: new connects are refused
        if runner.server is not None:
            for conn in runner.server.connections:
                if conn.transport is not None:
                    conn.transport.abort()
        await runner.cleanup()

    # What was seen.

    def operations(self) -> set[str]:
        return {s.operation for s in self.seen}

    # Serving.

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        op = operation(
            request.method,
            request.path,
            request.query_string,
            copy_source="x-amz-copy-source" in request.headers,
        )
        status = NO_ANSWER
        try:
            body = await request.read()
            response = self._injected() or await self._forward(request, body)
            status = response.status
            return response
        finally:
            self.seen.append(Seen(request.method, request.path, request.query_string, op, status))

    def _injected(self) -> web.Response | None:
        if self._failing is None:
            return None
        status, code = self._failing
        if self._failures_left is not None:
            self._failures_left -= 1
            if self._failures_left <= 0:
                self.passing()
        return web.Response(
            status=status,
            body=_error_body(code, "injected"),
            content_type="application/xml",
            headers={"x-amz-request-id": "s3faults"},
        )

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        if self._delay_s > 0:
            await asyncio.sleep(self._delay_s)
        assert self._session is not None
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in _REQUEST_DROPPED
        )
        target = URL(self._upstream + request.raw_path, encoded=True)
        try:
            async with self._session.request(
                request.method,
                target,
                headers=headers,
                # A stream, not bytes: aiohttp warns (an error here) at large bytes bodies.
                data=io.BytesIO(body) if body else None,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
                allow_redirects=False,
            ) as resp:
                data = await resp.read()
                keep_length = request.method == "HEAD" or resp.status == 304
                out = CIMultiDict(
                    (k, v)
                    for k, v in resp.headers.items()
                    if k.lower() not in _RESPONSE_DROPPED
                    or (keep_length and k.lower() == "content-length")
                )
                return web.Response(status=resp.status, reason=resp.reason, headers=out, body=data)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return web.Response(
                status=502,
                body=_error_body("BadGateway", f"upstream: {type(exc).__name__}"),
                content_type="application/xml",
            )
