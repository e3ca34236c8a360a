"""What a sink receives and how it fails. Every sink speaks HTTP through the app's one
aiohttp session; a failure says whether retrying can help and when."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import aiohttp


class Event(StrEnum):
    TRIGGER = "trigger"
    RESOLVE = "resolve"


@dataclass(frozen=True, slots=True)
class Notification:
    """One page, or its resolution, for one episode. ``dedup_key`` is stable per episode."""

    event: Event
    dedup_key: str
    severity: str
    summary: str
    tier: int
    policy: str
    details: Mapping[str, Any] = field(default_factory=dict)


class SinkError(Exception):
    """Delivery failed; ``retry_after_s`` when the far side said when to come back."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermanentSinkError(SinkError):
    """Retrying the same request cannot succeed (a 4xx other than 429)."""


class Sink(Protocol):
    name: str
    kind: str
    min_interval_s: float
    """Least time between two sends, seconds: the integration's documented rate limit."""

    async def send(self, session: aiohttp.ClientSession, note: Notification) -> None: ...


#: The longest ``Retry-After`` a sink may ask for, seconds; past it the backoff decides. A
#: sink's answer is input too: ``inf`` or ``1e12`` must not overflow the next due time.
MAX_RETRY_AFTER_S = 3600.0


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
    """Raise the right ``SinkError`` for a non-2xx answer."""
    if 200 <= response.status < 300:
        return
    body = (await response.text())[:200]
    message = f"{what} answered {response.status}: {body}"
    if response.status == 429 or response.status >= 500:
        raise SinkError(message, retry_after(response.headers))
    raise PermanentSinkError(message)


SEVERITY_WORDS = {"SEV-1": "critical", "SEV-2": "error", "SEV-3": "warning"}
