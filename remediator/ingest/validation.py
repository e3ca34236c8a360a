"""Webhook validation off the event loop: ``payload.check`` runs in worker processes.

Validating a 1000-alert body costs milliseconds of CPU, more than the rest of the ack path
together, and Python runs one thread of it at a time. In worker processes it runs on the
other cores; the event loop keeps HTTP, the journal write and the ack. With ``workers=0``
it runs inline. The worker's own later parse of the journaled body is off the ack path.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from remediator.core.errors import RequestRejected
from remediator.ingest.payload import PayloadLimits, check

log = logging.getLogger(__name__)

#: (0, alerts) when valid, else (status, 0, code, detail): plain values cross processes.
Verdict = tuple[int, int, str, str]


def check_body(body: bytes, limits: PayloadLimits) -> Verdict:
    try:
        return 0, len(check(body, limits).alerts), "", ""
    except RequestRejected as exc:
        return exc.status, 0, exc.code, exc.detail


def _pool(workers: int) -> ProcessPoolExecutor:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["remediator.ingest.payload"])
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
