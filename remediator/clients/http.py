"""Outbound HTTP for the escalation sinks: the only module that uses aiohttp's client side.

After httpx's ``map_httpcore_exceptions``: every aiohttp failure becomes one of ours at this
edge. A 429 or 5xx answer, a refused or dropped connection and a timeout raise
``SinkUnavailable`` (the outbox retries it, honouring a bounded ``Retry-After``); any other
non-2xx answer raises ``SinkRejected`` (sending the same request again cannot help).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from typing import Any

import aiohttp

from remediator.core.errors import SinkRejected, SinkUnavailable

#: The longest ``Retry-After`` a sink may ask for, seconds; past it the backoff decides. A
#: sink's answer is input too: ``inf`` or ``1e12`` must not overflow the next due time.
MAX_RETRY_AFTER_S = 3600.0

#: How much of a refusing sink's body the error quotes: enough to name the reason.
BODY_CHARS = 200


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The delay a sink asks for, in seconds, bounded; None when it asks for none we can
    use (absent, an HTTP date, negative, not a finite number)."""
    try:
        delay = float(headers["Retry-After"])
    except (KeyError, ValueError):
        return None
    if not 0 <= delay < math.inf:  # NaN fails this too
        return None
    return min(delay, MAX_RETRY_AFTER_S)


async def check_response(response: aiohttp.ClientResponse, what: str) -> None:
    """Raise the right sink error for a non-2xx answer."""
    if 200 <= response.status < 300:
        return
    body = (await response.text(errors="replace"))[:BODY_CHARS]
    message = f"{what} answered {response.status}: {body}"
    if response.status == 429 or response.status >= 500:
        raise SinkUnavailable(message, retry_after(response.headers))
    raise SinkRejected(message)


@contextlib.contextmanager
def sink_errors(what: str) -> Iterator[None]:
    """aiohttp's transport failures as ``SinkUnavailable``, naming the sink."""
    try:
        yield
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SinkUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc


class HttpClient:
    """The service's one outbound session (one connection pool, one total timeout per
    request); the runtime opens it at start-up and closes it at shutdown."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    @classmethod
    def open(cls, timeout_s: float) -> HttpClient:
        """A client whose every request must finish within ``timeout_s`` seconds. Call it
        from a running event loop: the session binds to it."""
        return cls(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)))

    async def close(self) -> None:
        await self._session.close()

    async def post(
        self,
        what: str,
        url: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> None:
        """POST ``json`` (or the exact bytes ``data``) to ``url``; returns when the sink took
        it (2xx). ``what`` names the sink in errors, e.g. ``"PagerDuty"``."""
        with sink_errors(what):
            request = self._session.post(url, json=json, data=data, headers=headers, params=params)
            async with request as response:
                await check_response(response, what)
