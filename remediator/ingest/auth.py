"""Webhook authentication: bearer tokens from a file, checked from the request head alone.

First step of the receive path (``webhook`` and the ``100 Continue`` gate in ``app`` call it
before any body byte is asked for or read). The file holds one token per line so a current
and a next token can coexist during a rotation; it is re-read when it changes. Comparison is
constant-time. The scheme name is case-insensitive (RFC 9110, section 11.1); a request with
more than one ``Authorization`` header is refused whatever they hold.
"""

from __future__ import annotations

import contextlib
import hmac
import os
from collections.abc import Sequence
from pathlib import Path

from remediator.core.errors import RequestRejected

SCHEME = "bearer"


def read_tokens(path: Path) -> tuple[bytes, ...]:
    lines = path.read_text(encoding="utf-8").splitlines()
    tokens = tuple(
        line.strip().encode() for line in lines if line.strip() and not line.startswith("#")
    )
    if not tokens:
        raise ValueError(f"token file {path} holds no token")
    return tokens


def offered_token(authorization: Sequence[str]) -> bytes:
    """The credentials of the one ``Authorization: Bearer <token>`` header, as bytes."""
    if not authorization:
        raise RequestRejected(401, "unauthorized", "A bearer token is required.")
    if len(authorization) > 1:
        raise RequestRejected(401, "unauthorized", "Send one Authorization header, not several.")
    scheme, _, credentials = authorization[0].strip().partition(" ")
    if scheme.lower() != SCHEME:
        raise RequestRejected(401, "unauthorized", "A bearer token is required.")
    # aiohttp hands undecodable header bytes over as surrogates; keep them as bytes.
    return credentials.strip().encode("utf-8", "surrogateescape")


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

    def check(self, authorization: Sequence[str]) -> None:
        """Raise ``RequestRejected`` (401) unless the request's one ``Authorization`` header
        (``authorization`` holds every value it sent) carries a current token."""
        # Keep the tokens we had if the file is half-written: never lock Alertmanager out.
        with contextlib.suppress(OSError, ValueError):
            self._refresh()
        offered = offered_token(authorization)
        matched = False
        for token in self._tokens:
            matched |= hmac.compare_digest(offered, token)
        if not matched:
            raise RequestRejected(401, "unauthorized", "The bearer token is not valid.")


class NoAuth:
    def check(self, authorization: Sequence[str]) -> None:
        return None
