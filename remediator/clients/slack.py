"""Slack's Web API and its request signatures, through slack_sdk: the only module that
imports it. The Slack sink posts and edits messages here; ``escalate.acks`` checks the
signature of an Acknowledge click here.

After ``clients.http``: every slack_sdk failure becomes one of ours at this edge. A 429 or
5xx answer, an ``ok: false`` whose error Slack documents as temporary (``ratelimited``,
``service_unavailable``, ``fatal_error``, ``internal_error``, ``request_timeout``), a refused or
dropped connection and a timeout raise ``SinkUnavailable`` (the outbox retries it, honouring
a bounded ``Retry-After``); any other ``ok: false`` (``invalid_auth``, ``channel_not_found``,
``not_in_channel``, ``msg_too_long``, ``invalid_blocks``, ...) raises ``SinkRejected``.
slack_sdk's own retries are off: the outbox owns retry and pacing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.signature import Clock, SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from remediator.clients.http import BODY_CHARS, retry_after
from remediator.core.errors import SinkError, SinkRejected, SinkUnavailable

#: Longest a Web API call may take, seconds, connection included.
TIMEOUT_S = 10.0

#: ``ok: false`` errors Slack documents as temporary: the same call may succeed later.
TEMPORARY_ERRORS = frozenset(
    {"ratelimited", "service_unavailable", "fatal_error", "internal_error", "request_timeout"}
)


@dataclass(frozen=True, slots=True)
class Posted:
    """Where a message landed: its channel's ID and its ``ts``, which name it from then on."""

    channel: str
    ts: str


def _api_error(method: str, response: Any) -> SinkError:
    """The sink error for a Slack answer that was not ``ok``: ``response`` is slack_sdk's
    response, or aiohttp's when the body was not JSON."""
    status = getattr(response, "status_code", None) or getattr(response, "status", None)
    status = status if isinstance(status, int) else 0
    data = getattr(response, "data", None)
    code = data.get("error") if isinstance(data, dict) else None
    reason = str(code)[:BODY_CHARS] if code else "no error code"
    message = f"Slack {method} answered {status}: {reason}"
    if status == 429 or status >= 500 or code in TEMPORARY_ERRORS:
        headers: Mapping[str, str] = getattr(response, "headers", None) or {}
        return SinkUnavailable(message, retry_after(headers))
    return SinkRejected(message)


@contextlib.contextmanager
def slack_errors(method: str) -> Iterator[None]:
    """slack_sdk's and aiohttp's failures during a Web API call as sink errors."""
    try:
        yield
    except SlackApiError as exc:
        raise _api_error(method, exc.response) from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SinkUnavailable(f"Slack {method}: {type(exc).__name__}: {exc}") from exc
    except SlackClientError as exc:  # arguments slack_sdk refused before sending
        raise SinkRejected(f"Slack {method}: {type(exc).__name__}") from exc
    except AttributeError as exc:  # a 200 that is not JSON: slack_sdk reads it as text
        raise SinkRejected(f"Slack {method} answered without JSON: is the API URL right?") from exc


class SlackApi:
    """One bot token's Web API client: one aiohttp session, opened at the first call (from
    the running event loop) and closed by ``close``."""

    def __init__(self, token: str, base_url: str, timeout_s: float = TIMEOUT_S) -> None:
        self._token = token
        self._base_url = base_url
        self._timeout_s = timeout_s
        self._web: AsyncWebClient | None = None
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> AsyncWebClient:
        if self._web is None:
            timeout = aiohttp.ClientTimeout(total=self._timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
            self._web = AsyncWebClient(
                token=self._token, base_url=self._base_url, session=self._session,
                timeout=int(self._timeout_s), retry_handlers=[],
            )  # fmt: skip
            self._web.proxy = None  # as the sinks' HttpClient: no proxy from the environment
        return self._web

    async def post_message(self, **fields: Any) -> Posted:
        """``chat.postMessage`` with ``fields``; where the message landed."""
        with slack_errors("chat.postMessage"):
            answer = await self._client().chat_postMessage(**fields)
        return Posted(str(answer.get("channel") or ""), str(answer.get("ts") or ""))

    async def update_message(self, **fields: Any) -> None:
        """``chat.update`` with ``fields`` (``channel``, ``ts``, the new ``text``...)."""
        with slack_errors("chat.update"):
            await self._client().chat_update(**fields)

    async def close(self) -> None:
        session, self._session, self._web = self._session, None, None
        if session is not None:
            await session.close()


class _At(Clock):
    """slack_sdk's clock, stopped at the ``now`` its caller passed in."""

    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def signature_valid(secret: str, body: bytes, timestamp: str, signature: str, now: float) -> bool:
    """True when ``signature`` (``v0=<hex>``) is Slack's for ``body`` sent at ``timestamp``
    (whole seconds) with the app's signing ``secret``, and ``timestamp`` is within five
    minutes of ``now``. Never raises: what slack_sdk cannot read is not a valid signature."""
    try:
        return SignatureVerifier(secret, _At(now)).is_valid(body, timestamp, signature)
    except (ValueError, TypeError):  # UnicodeDecodeError is a ValueError
        return False
