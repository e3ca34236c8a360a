"""The evidence loop: every ``evidence_every_s``, the bundles queued in the state store
(``capture``) go to the object store, each under its own key, and leave the queue once it
has them.

Where it sits: beside the act stage, never in it. An object store that is away, refusing or
slow ends the round (one warning, ``core/outage.py``): the bundle that failed is tried
again after a backoff that starts at the loop's interval and doubles per failure up to
``RETRY_MAX_S``, the others at the next round, and none is dropped. A bundle leaves the
queue only after its upload: a crash between the two uploads it again, under the same key,
as an overwrite. Two replicas may upload one bundle twice in a race; it is the same object.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from remediator.clients.s3 import ObjectStore
from remediator.core import failpoints
from remediator.core.clock import Clock
from remediator.core.errors import ObjectStoreError
from remediator.core.metrics import Metrics
from remediator.core.outage import Outage
from remediator.evidence import bundle
from remediator.store.contract import EvidenceStore, QueuedEvidence

log = logging.getLogger(__name__)

PAGE = 20
"""Bundles read from the queue at once (each up to ``evidence_max_bytes``)."""
MAX_PER_ROUND = 500
RETRY_MAX_S = 300.0


class Uploader:
    def __init__(
        self,
        store: EvidenceStore,
        objects: ObjectStore,
        clock: Clock,
        metrics: Metrics,
        outage: Outage,
        retry_first_s: float,
    ) -> None:
        self._store = store
        self._objects = objects
        self._clock = clock
        self._metrics = metrics
        self._outage = outage
        self._retry_first_s = retry_first_s

    async def round(self) -> None:
        """Upload what is due, at most ``MAX_PER_ROUND``; then say how many wait."""
        sent = 0
        while sent < MAX_PER_ROUND:
            due = await self._store.evidence_due(self._clock.now(), PAGE)
            for queued in due:
                if not await self._upload(queued):
                    due = []
                    break
                sent += 1
            if len(due) < PAGE:
                break
        waiting, oldest = await self._store.evidence_waiting()
        self._metrics.evidence_waiting.set(waiting)
        age_s = 0.0 if oldest is None else (self._clock.now() - oldest).total_seconds()
        self._metrics.evidence_oldest.set(max(0.0, age_s))

    async def _upload(self, queued: QueuedEvidence) -> bool:
        try:
            await self._objects.put(queued.key, queued.body, bundle.CONTENT_TYPE,
                                    metadata={"format": bundle.FORMAT})  # fmt: skip
        except ObjectStoreError as exc:
            self._outage.failed(exc)
            wait_s = min(RETRY_MAX_S, self._retry_first_s * 2 ** min(queued.attempts, 16))
            due_at = self._clock.now() + timedelta(seconds=wait_s)
            await self._store.evidence_retry(queued, due_at, str(exc))
            return False
        failpoints.hit("after_evidence_upload")
        await self._store.evidence_sent(queued)
        self._outage.answered()
        self._metrics.evidence_uploaded.inc()
        log.debug("evidence %s uploaded", queued.key, extra={"fields": {"key": queued.key}})
        return True
