"""Reload: the rule files read again, checked whole, and swapped in between two decisions.

Where it sits: ``serve`` calls ``reload`` on SIGHUP, the app on ``POST /-/reload``, and the
watch loop (``--rules-watch-seconds``) when the files changed. The files load in a thread
(10 000 rules take seconds; webhooks keep being answered) with the same checks as at the
start, and the sinks are built from the new set, their secret files read again (a SIGHUP
is also how a rotated sink secret is taken up). Only then is the set swapped in
(``ActiveRules.swap``), with the policy's bounds for the runner and the sinks for delivery.
On any error the set loaded before stays active: the error is logged, returned, and
``remediator_config_last_reload_successful`` is 0 until a reload succeeds (Prometheus's
names). Reloads run one at a time.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from remediator.actions.base import AnyAction
from remediator.core.clock import Clock
from remediator.core.errors import ConfigError, RuleFileError
from remediator.core.metrics import Metrics
from remediator.escalate.sinks.base import Sink
from remediator.escalate.sinks.registry import build_sinks
from remediator.ruleset.active import ActiveRules
from remediator.ruleset.files import rule_files
from remediator.ruleset.load import load_rules
from remediator.ruleset.rules import RuleSet
from remediator.runtime import heap

log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, int, int, int, int], ...]
Apply = Callable[[RuleSet, Mapping[str, Sink]], None]


def fingerprint(directory: Path) -> Fingerprint:
    """What the watch compares: each rule file's name, and its target's inode, size and
    modification time (a ConfigMap's symlink swap changes the inode). Empty when the
    directory cannot be listed; the reload that follows says why."""
    try:
        seen = []
        for path in rule_files(directory):
            st = os.stat(path)
            seen.append((path.name, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(seen)
    except (OSError, RuleFileError):
        return ()


@dataclass(frozen=True, slots=True)
class Reloaded:
    """One reload's outcome, as ``POST /-/reload`` and ``GET /api/v1/rules`` tell it."""

    successful: bool
    trigger: str
    at: datetime
    hash: str
    changed: bool = False
    error: str = ""

    def json(self) -> dict[str, object]:
        return {"successful": self.successful, "trigger": self.trigger,
                "at": self.at.isoformat(), "hash": self.hash, "changed": self.changed,
                "error": self.error or None}  # fmt: skip


class Reloader:
    """Reloads ``directory`` into ``rules``. Until the service has started (``bind``),
    a request is kept and run once it has: the start reads the active set as it builds."""

    def __init__(
        self,
        directory: Path,
        actions: Mapping[str, AnyAction],
        rules: ActiveRules,
        clock: Clock,
        seen: Fingerprint,
        check: Callable[[RuleSet], None] = lambda _: None,
    ) -> None:
        self._check = check
        self._directory = directory
        self._actions = actions
        self._rules = rules
        self._clock = clock
        self._seen = seen
        self._lock = asyncio.Lock()
        self._metrics: Metrics | None = None
        self._apply: Apply | None = None
        self._pending: str | None = None
        self.last: Reloaded | None = None

    async def bind(self, metrics: Metrics, apply: Apply) -> None:
        """The started service's metrics and the swap's consequences; a reload asked for
        during the start runs now."""
        self._metrics, self._apply = metrics, apply
        metrics.reload_success_at.set(self._rules.loaded_at.timestamp())
        if self._pending is not None:
            trigger, self._pending = self._pending, None
            await self.reload(trigger)

    def request(self, trigger: str) -> asyncio.Task[Reloaded] | None:
        """A reload in the background (SIGHUP), or kept for ``bind`` while starting."""
        if self._apply is None:
            self._pending = trigger
            log.info("reload asked for (%s) while starting: it runs once started", trigger)
            return None
        return asyncio.create_task(self.reload(trigger), name=f"reload:{trigger}")

    async def look(self) -> None:
        """The watch: reload when the files' fingerprint changed since the last load."""
        if fingerprint(self._directory) != self._seen:
            await self.reload("watch")

    async def reload(self, trigger: str) -> Reloaded:
        async with self._lock:
            seen = fingerprint(self._directory)  # before the read: a later change is seen
            try:
                ruleset, sinks = await asyncio.to_thread(self._load)
            except (RuleFileError, ConfigError) as exc:
                return self._failed(trigger, seen, str(exc))
            except Exception as exc:  # a bug of ours must not end serve: the old set decides
                log.exception("rule reload (%s) failed unexpectedly", trigger)
                return self._failed(trigger, seen, f"unexpected error: {exc!r}")
            return self._succeeded(trigger, seen, ruleset, sinks)

    def _load(self) -> tuple[RuleSet, Mapping[str, Sink]]:
        ruleset = load_rules(self._directory, self._actions)
        self._check(ruleset)  # what the service needs of a set beyond the files (ConfigError)
        return ruleset, build_sinks(ruleset.sinks)

    def _failed(self, trigger: str, seen: Fingerprint, error: str) -> Reloaded:
        self._seen = seen  # the watch does not retry the same broken files every look
        active = self._rules.current.hash
        log.error("rule reload (%s) failed; rule set %s still decides: %s", trigger, active, error)
        if self._metrics is not None:
            self._metrics.reload_successful.set(0)
            self._metrics.reloads.labels("failure").inc()
        self.last = Reloaded(False, trigger, self._clock.now(), active, error=error)
        return self.last

    def _succeeded(
        self, trigger: str, seen: Fingerprint, ruleset: RuleSet, sinks: Mapping[str, Sink]
    ) -> Reloaded:
        self._seen = seen
        now = self._clock.now()
        previous = self._rules.current.hash
        changed = ruleset.hash != previous
        if changed:
            self._rules.swap(ruleset, now)
            heap.settle()
        assert self._apply is not None and self._metrics is not None
        self._apply(self._rules.current, sinks)
        self._metrics.reload_successful.set(1)
        self._metrics.reload_success_at.set(now.timestamp())
        self._metrics.reloads.labels("success").inc()
        if changed:
            log.warning(
                "rules reloaded (%s): rule set %s replaces %s, %d rules in %d files",
                trigger, ruleset.hash, previous, len(ruleset.rules), len(ruleset.files),
            )  # fmt: skip
        else:
            log.info("rules reloaded (%s): unchanged, rule set %s", trigger, ruleset.hash)
        self.last = Reloaded(True, trigger, now, self._rules.current.hash, changed=changed)
        return self.last
