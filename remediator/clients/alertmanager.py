"""Alertmanager's API, read for its silences: the far side of the silence check
(``silences/watch.py``). One session for every ``--alertmanager-url``; each answer is
bounded in time (``timeout_s``) and size (``MAX_ANSWER_BYTES``), and whatever goes wrong
(refused, slow, a status other than 200, a body that is not JSON) is an
``AlertmanagerUnavailable`` naming the URL.

Authentication: a bearer token read from ``token_file`` at each request (a rotated token is
used from the next read), or a user and password in the URL (basic auth); TLS verified
against the system's roots or ``ca_file``.
"""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from remediator.core.errors import AlertmanagerUnavailable

MAX_ANSWER_BYTES = 16 << 20
"""A silences list larger than this is refused rather than read (some thousands of
silences take a few MiB)."""
BODY_CHARS = 200


class AlertmanagerClient:
    def __init__(self, session: aiohttp.ClientSession, token_file: Path | None) -> None:
        self._session = session
        self._token_file = token_file

    @classmethod
    def open(
        cls, token_file: Path | None, ca_file: Path | None, timeout_s: float
    ) -> AlertmanagerClient:
        """From a running event loop (the session binds to it)."""
        context: ssl.SSLContext | bool = True
        if ca_file is not None:
            context = ssl.create_default_context(cafile=str(ca_file))
        connector = aiohttp.TCPConnector(ssl=context, limit=8)
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        return cls(aiohttp.ClientSession(connector=connector, timeout=timeout), token_file)

    async def close(self) -> None:
        await self._session.close()

    async def silences(self, url: str) -> Any:
        """``GET /api/v2/silences`` of the Alertmanager at ``url``, as JSON."""
        where = _shown(url)
        headers = {"Accept": "application/json"}
        token = "" if URL(url).user else self._token(where)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        endpoint = URL(url.rstrip("/") + "/api/v2/silences")
        try:
            async with self._session.get(endpoint, headers=headers) as response:
                body = await _read(response)
                if response.status != 200:
                    text = body[:BODY_CHARS].decode("utf-8", "replace")
                    raise AlertmanagerUnavailable(f"{where} answered {response.status}: {text}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AlertmanagerUnavailable(f"{where}: {type(exc).__name__}: {exc}") from None
        if len(body) > MAX_ANSWER_BYTES:
            raise AlertmanagerUnavailable(
                f"{where}: the silences are over {MAX_ANSWER_BYTES} bytes"
            )
        try:
            return json.loads(body)
        except ValueError as exc:
            raise AlertmanagerUnavailable(f"{where}: the answer is not JSON ({exc})") from None

    def _token(self, where: str) -> str:
        if self._token_file is None:
            return ""
        try:
            return self._token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise AlertmanagerUnavailable(f"{where}: the token file: {exc}") from None


async def _read(response: aiohttp.ClientResponse) -> bytes:
    """The body, or its first ``MAX_ANSWER_BYTES`` + 1 bytes: enough to know it is over."""
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_ANSWER_BYTES:
        chunk = await response.content.read(1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _shown(url: str) -> str:
    """``url`` without its password, for errors and logs."""
    parsed = URL(url)
    return str(parsed.with_password(None)) if parsed.password else url
