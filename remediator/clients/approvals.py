"""The approvals API of a running remediator, as the CLI (``remediator approve``, ``deny``,
``approvals``) speaks it: one request each, a bearer token read from a file, TLS checked
against the system's CAs or a given bundle, and a short timeout. Answers come back as the
HTTP status and the JSON body; a peer that cannot be reached, or answers no JSON, is a
``ConfigError`` whose sentence names it.
"""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import aiohttp

from remediator.core.errors import ConfigError

TIMEOUT_S = 15.0
USER_AGENT = "remediator-cli"


def read_token(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"the token file {path} cannot be read: {exc}") from None
    token = next((line.strip() for line in lines if line.strip()), "")
    if not token:
        raise ConfigError(f"the token file {path} holds no token")
    return token


async def call(
    method: str,
    url: str,
    token: str,
    body: dict[str, Any] | None = None,
    ca_file: Path | None = None,
) -> tuple[int, dict[str, Any]]:
    """One request to ``url``; its status and its JSON object."""
    tls: ssl.SSLContext | bool = True
    if ca_file is not None:
        tls = ssl.create_default_context(cafile=str(ca_file))
    headers = {"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT}
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(method, url, json=body, headers=headers, ssl=tls) as response,
        ):
            text = await response.text()
            status = response.status
    except (aiohttp.ClientError, TimeoutError, ssl.SSLError, OSError) as exc:
        reached = f"remediator at {url} could not be reached: {exc or type(exc).__name__}"
        raise ConfigError(reached) from None
    try:
        answer = json.loads(text)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise ConfigError(f"remediator at {url} answered {status} without a JSON object")
    return status, answer
