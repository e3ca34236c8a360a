"""Quiet retries: a dependency that is away is logged once when it goes and once when it
is back, with the failures in between counted in ``remediator_dependency_failures_total``
and its state in ``remediator_dependency_up``.

Every stage that retries the state store (the worker, the action runner, the loops) reports
to one ``Outage`` per dependency, so an outage is two log lines per process however many
callers wait it out. Tracebacks are for the unexpected: a store that is away is expected.
"""

from __future__ import annotations

import logging
import time

from remediator.core.metrics import Metrics

log = logging.getLogger(__name__)

#: How much of the first error's text the log line keeps.
ERROR_CHARS = 300


class Outage:
    """The state of one dependency, as its callers see it."""

    def __init__(self, dependency: str, metrics: Metrics, what: str) -> None:
        self._dependency = dependency
        self._what = what
        self._failures = metrics.dependency_failures.labels(dependency)
        self._up = metrics.dependency_up.labels(dependency)
        self._since: float | None = None
        self._failed_calls = 0

    def failed(self, exc: BaseException) -> None:
        """A call failed for a reason retrying outlasts; logged only if it is the first."""
        self._failures.inc()
        self._failed_calls += 1
        if self._since is not None:
            return
        self._since = time.monotonic()
        self._up.set(0)
        error = f"{exc}"[:ERROR_CHARS] or type(exc).__name__
        log.warning("%s unavailable (%s); retrying quietly until it answers", self._what, error,
                    extra={"fields": {"dependency": self._dependency, "error": error}})  # fmt: skip

    def answered(self) -> None:
        """A call succeeded: if the dependency was away, say it is back, once."""
        if self._since is None:
            return
        away_s = time.monotonic() - self._since
        failed, self._since, self._failed_calls = self._failed_calls, None, 0
        self._up.set(1)
        fields = {"dependency": self._dependency, "away_s": round(away_s, 3),
                  "failed_calls": failed}  # fmt: skip
        log.warning("%s is back after %.1f s (%d calls failed meanwhile)", self._what, away_s,
                    failed, extra={"fields": fields})  # fmt: skip
