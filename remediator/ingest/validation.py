"""Webhook validation off the event loop: ``payload.check`` runs in worker processes.

Validating a 1000-alert body costs milliseconds of CPU, more than the rest of the ack path
together, and Python runs one thread of it at a time. In worker processes it runs on the
other cores; the event loop keeps HTTP, the journal write and the ack. With ``workers=0``
it runs inline. The worker's own later parse of the journaled body is off the ack path.

A pool starts its processes on first use, and a process pays for its start and its first
check: ``warm`` has every process validate a tiny body before ``/readyz`` says ready, so
the first webhook does not wait for them. The processes die with ``serve``, even by
``kill -9`` (``ingest/forkserver``): none is left behind.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from remediator.config import PayloadLimits
from remediator.core.errors import RequestRejected
from remediator.ingest.payload import check

log = logging.getLogger(__name__)

#: (0, alerts) when valid, else (status, 0, code, detail): plain values cross processes.
Verdict = tuple[int, int, str, str]


def check_body(body: bytes, limits: PayloadLimits) -> Verdict:
    try:
        return 0, len(check(body, limits).alerts), "", ""
    except RequestRejected as exc:
        return exc.status, 0, exc.code, exc.detail


#: What each validation process checks at start: one alert, every field Alertmanager sends.
WARM_BODY = (
    b'{"version":"4","groupKey":"{}:{}","truncatedAlerts":0,"status":"resolved",'
    b'"receiver":"","groupLabels":{},"commonLabels":{},"commonAnnotations":{},'
    b'"externalURL":"","alerts":[{"status":"resolved","labels":{"alertname":"Warm"},'
    b'"annotations":{},"startsAt":"2026-01-01T00:00:00Z","endsAt":"2026-01-01T00:00:01Z",'
    b'"generatorURL":"","fingerprint":"0000000000000000"}]}'
)
#: How long a warm-up check holds its process, so the next one goes to another process.
WARM_HOLD_S = 0.05
#: Rounds of warm-up checks before giving up on reaching every process (then: logged).
WARM_ROUNDS = 5


def warm_check(limits: PayloadLimits) -> int:
    """Check ``WARM_BODY`` in a validation process; the process's id."""
    check_body(WARM_BODY, limits)
    time.sleep(WARM_HOLD_S)
    return os.getpid()


def _pool(workers: int) -> ProcessPoolExecutor:
    """Workers forked by a forkserver that dies with ``serve`` and takes them with it
    (``ingest/forkserver``). The forkserver starts with the first check, from the thread
    that asks for it: the event loop's, the main thread, which lives as long as ``serve``."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["remediator.ingest.forkserver"])
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)


class Validator:
    def __init__(self, limits: PayloadLimits, workers: int) -> None:
        self._limits = limits
        self._workers = workers
        self._pool = _pool(workers) if workers else None

    async def count_alerts(self, body: bytes) -> int:
        """The number of alerts in a valid body; ``RequestRejected`` for an invalid one."""
        if self._pool is None:
            verdict = check_body(body, self._limits)
        else:
            verdict = await self._in_pool(self._pool, body)
        status, alerts, code, detail = verdict
        if status:
            raise RequestRejected(status, code, detail)
        return alerts

    async def warm(self) -> int:
        """Start every validation process and have each check a tiny body; how many did.
        Concurrent checks that each hold their process a moment reach every process."""
        if self._pool is None:
            check_body(WARM_BODY, self._limits)  # imports and first-use costs, inline
            return 0
        loop = asyncio.get_running_loop()
        seen: set[int] = set()
        for _ in range(WARM_ROUNDS):
            checks = [loop.run_in_executor(self._pool, warm_check, self._limits)
                      for _ in range(self._workers)]  # fmt: skip
            seen.update(await asyncio.gather(*checks))
            if len(seen) >= self._workers:
                break
        else:
            log.warning("%d of %d validation processes warmed", len(seen), self._workers)
        return len(seen)

    async def _in_pool(self, pool: ProcessPoolExecutor, body: bytes) -> Verdict:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(pool, check_body, body, self._limits)
        except BrokenProcessPool:
            log.error("a validation worker died; starting a new pool")
            self._pool = _pool(self._workers)
            pool.shutdown(wait=False, cancel_futures=True)
            raise RequestRejected(
                503, "validation_unavailable", "Validation is restarting; retry."
            ) from None

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(pool.shutdown, True, cancel_futures=True)
