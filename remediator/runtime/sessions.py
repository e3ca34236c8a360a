"""The console's sign-ins: a token exchanged for a session (``viewer`` for the service's
bearer token, ``approver`` for an approver's), kept in this process's memory and named by a
random id in an ``HttpOnly``, ``Secure``, ``SameSite=Strict`` cookie, each with its own CSRF
token for the forms it posts.

Where it sits: ``runtime.console`` opens a session at ``POST /ui/login``, finds it on every
page, and closes it at ``POST /ui/logout``. A session lasts ``TTL_S`` from its sign-in; at
``MAX_SESSIONS`` the oldest goes first (so a flood of sign-ins costs memory once). Sessions
are this replica's: behind a load balancer, the console needs sticky sessions or a replica of
its own, and a restart signs everyone out.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Role = Literal["viewer", "approver"]
COOKIE = "remediator_session"
TTL_S = 8 * 3600.0
"""A working day: an incident's engineer is not signed out in the middle of it."""
MAX_SESSIONS = 1000


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    name: str
    """The approver's name, or ``viewer`` for the service's token."""
    role: Role
    csrf: str
    expires_at: float

    def csrf_matches(self, offered: str) -> bool:
        return hmac.compare_digest(self.csrf.encode(), offered.encode("utf-8", "surrogateescape"))


class Sessions:
    def __init__(
        self,
        now: Callable[[], float] = time.monotonic,
        ttl_s: float = TTL_S,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self._now = now
        self._ttl_s = ttl_s
        self._max = max_sessions
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    @property
    def ttl_s(self) -> float:
        return self._ttl_s

    def open(self, name: str, role: Role) -> Session:
        while len(self._by_id) >= self._max:
            self._by_id.popitem(last=False)
        session = Session(
            id=secrets.token_urlsafe(32),
            name=name,
            role=role,
            csrf=secrets.token_urlsafe(32),
            expires_at=self._now() + self._ttl_s,
        )
        self._by_id[session.id] = session
        return session

    def find(self, session_id: str | None) -> Session | None:
        """The live session of ``session_id``; None for no id, an unknown or an expired one
        (which is forgotten)."""
        if not session_id:
            return None
        session = self._by_id.get(session_id)
        if session is None:
            return None
        if session.expires_at <= self._now():
            del self._by_id[session_id]
            return None
        return session

    def close(self, session_id: str) -> None:
        self._by_id.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._by_id)
