"""The decision backlog: alerts accepted (journaled, acked) and not yet decided.

Where it sits: the journal worker (``worker.py``) adds each entry it is given and takes
off each chunk it decides; the webhook (``ingest/webhook.py``) reads the total before it
reads a body, and answers 503 with ``Retry-After`` while the total is above
``--max-backlog-alerts`` (Alertmanager retries; the payloads already accepted wait in the
journal, so nothing is lost and what is decided stays fresh).

An entry the worker is given without its count (recovered at start-up, taken over from
another replica, moved from the spool) counts from when the worker reads it.
"""

from __future__ import annotations

from prometheus_client import Gauge


class Backlog:
    def __init__(self, gauge: Gauge) -> None:
        self._gauge = gauge
        self._remaining: dict[int, int] = {}
        self.alerts = 0
        """Alerts waiting for their decision, in the entries the worker was given."""

    def add(self, journal_id: int, alerts: int | None) -> None:
        """An entry to decide, with its count of alerts (None: not known yet)."""
        if journal_id not in self._remaining:
            self._remaining[journal_id] = 0
            self._change(alerts or 0, journal_id)

    def known(self, journal_id: int, alerts: int) -> None:
        """The entry was read: ``alerts`` remain to decide in it."""
        if journal_id in self._remaining:
            self._change(alerts - self._remaining[journal_id], journal_id)

    def decided(self, journal_id: int, alerts: int) -> None:
        if journal_id in self._remaining:
            self._change(-min(alerts, self._remaining[journal_id]), journal_id)

    def finished(self, journal_id: int) -> None:
        """The entry is done (or quarantined, or left for the next start)."""
        remaining = self._remaining.pop(journal_id, 0)
        self.alerts -= remaining
        self._gauge.set(self.alerts)

    def _change(self, delta: int, journal_id: int) -> None:
        self._remaining[journal_id] += delta
        self.alerts += delta
        self._gauge.set(self.alerts)
