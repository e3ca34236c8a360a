"""Webhook authentication: bearer tokens from a file, checked before the body is read.

The file holds one token per line so a current and a next token can coexist during a
rotation; it is re-read when it changes. Comparison is constant-time.
"""

from __future__ import annotations

import contextlib
import hmac
import os
from pathlib import Path

from remediator.errors import RequestRejected

BEARER = "Bearer "


def read_tokens(path: Path) -> tuple[bytes, ...]:
    lines = path.read_text(encoding="utf-8").splitlines()
    tokens = tuple(
        line.strip().encode() for line in lines if line.strip() and not line.startswith("#")
    )
    if not tokens:
        raise ValueError(f"token file {path} holds no token")
    return tokens


class BearerAuth:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._mtime_ns = os.stat(path).st_mtime_ns
        self._tokens = read_tokens(path)

    def _refresh(self) -> None:
        mtime_ns = os.stat(self._path).st_mtime_ns
        if mtime_ns != self._mtime_ns:
            self._tokens = read_tokens(self._path)
            self._mtime_ns = mtime_ns

    def check(self, authorization: str | None) -> None:
        """Raise ``RequestRejected`` (401) unless the header carries a current token."""
        # Keep the tokens we had if the file is half-written: never lock Alertmanager out.
        with contextlib.suppress(OSError, ValueError):
            self._refresh()
        if authorization is None or not authorization.startswith(BEARER):
            raise RequestRejected(401, "unauthorized", "A bearer token is required.")
        # aiohttp hands undecodable header bytes over as surrogates; keep them as bytes.
        offered = authorization[len(BEARER) :].strip().encode("utf-8", "surrogateescape")
        matched = False
        for token in self._tokens:
            matched |= hmac.compare_digest(offered, token)
        if not matched:
            raise RequestRejected(401, "unauthorized", "The bearer token is not valid.")


class NoAuth:
    def check(self, authorization: str | None) -> None:
        return None
