"""Capture: a claim's evidence bundle, read, redacted, capped and queued durably.

Where it sits: the act stage (``act/runner.py``) asks for a bundle before an action's write,
once the action is judged (after its verification, or its failure), and at a refusal that
pages (``act/witness.py`` for one decided before a claim). The reads of the target
(``kube``, ``database``) run at once, all bounded by ``timeout_s``: what is not read by then
is an error in the bundle, and the action goes on. The bundle is redacted (``redact``) and
cut to ``max_bytes`` (``bundle``) in a worker thread, off the event loop, and queued in the
state store (``evidence_queue``) in one write, never retried here: evidence never holds an
action up beyond its timeout, and a store that is away loses the bundle (counted, and said
in the audit record) rather than the action. The upload is the ``uploader``'s.

What a capture answers is the audit's note of it: the bundle's key, the parts read, and
the errors.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from remediator.core.clock import Clock
from remediator.core.errors import StoreUnavailable
from remediator.core.metrics import Metrics
from remediator.core.model import Target
from remediator.evidence import bundle
from remediator.evidence.bundle import Phase, Subject
from remediator.evidence.redact import Redactor
from remediator.store.contract import EvidenceStore

log = logging.getLogger(__name__)

ERROR_CHARS = 500
Read = Callable[[], Awaitable[Any]]


class Source(Protocol):
    def reads(self, target: Target, phase: Phase) -> dict[str, Read]:
        """What to read of ``target`` for a ``phase`` bundle, by part name."""
        ...


@dataclass(frozen=True, slots=True)
class Captured:
    key: str
    parts: tuple[str, ...]
    errors: Mapping[str, str]
    queued: bool

    def note(self) -> dict[str, Any]:
        """What the audit record of the step says of its bundle."""
        note: dict[str, Any] = {"key": self.key, "parts": list(self.parts)}
        if self.errors:
            note["errors"] = dict(self.errors)
        if not self.queued:
            note["lost"] = "the state store did not take the bundle; it was not uploaded"
        return note


class Capture:
    def __init__(
        self,
        store: EvidenceStore,
        sources: Sequence[Source],
        redactor: Redactor,
        clock: Clock,
        metrics: Metrics,
        *,
        prefix: str,
        timeout_s: float,
        max_bytes: int,
    ) -> None:
        self._store = store
        self._sources = sources
        self._redactor = redactor
        self._clock = clock
        self._metrics = metrics
        self._prefix = prefix
        self._timeout_s = timeout_s
        self._max_bytes = max_bytes

    async def take(
        self,
        subject: Subject,
        phase: Phase,
        targets: Sequence[Target],
        outcome: Mapping[str, Any] | None = None,
    ) -> Captured:
        """Read ``targets`` (the claim's, then what the action touches), and queue the
        bundle of ``phase``; never raises for what it reads or the store."""
        reads: dict[str, Read] = {}
        for target in dict.fromkeys(targets):
            for source in self._sources:
                reads.update(source.reads(target, phase))
        sections, errors = await self._read(reads)
        document = bundle.document(subject, phase, self._clock.now(), sections, errors, outcome)
        body = await asyncio.to_thread(self._prepared, document)
        key = self.key(subject, phase)
        queued = await self._queue(key, body)
        result = "lost" if not queued else "partial" if errors else "complete"
        self._metrics.evidence_captured.labels(phase.value, result).inc()
        return Captured(key, tuple(sections), errors, queued)

    def key(self, subject: Subject, phase: Phase) -> str:
        """Where ``subject``'s ``phase`` bundle is kept, known before it is captured."""
        return bundle.key(self._prefix, subject, phase)

    def _prepared(self, document: dict[str, Any]) -> bytes:
        """The bundle redacted and capped: CPU work on what was read, off the event loop
        (the acks share it), in a worker thread."""
        return bundle.fitted(self._redactor.document(document).value, self._max_bytes)

    async def _read(self, reads: Mapping[str, Read]) -> tuple[dict[str, Any], dict[str, str]]:
        if not reads:
            return {}, {}
        tasks = {name: asyncio.ensure_future(read()) for name, read in reads.items()}
        done, pending = await asyncio.wait(tasks.values(), timeout=self._timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        sections: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for name, task in tasks.items():
            if task not in done:
                errors[name] = f"not read within {self._timeout_s:g} s"
            elif (exc := task.exception()) is not None:
                errors[name] = f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]
            else:
                sections[name] = task.result()
        return sections, errors

    async def _queue(self, key: str, body: bytes) -> bool:
        try:
            await self._store.evidence_put(key, body, self._clock.now())
        except StoreUnavailable as exc:
            log.warning("evidence bundle %s was not queued: %s", key, exc)
            return False
        return True
