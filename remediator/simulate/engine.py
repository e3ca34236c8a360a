"""The offline engine: webhook bodies at virtual times → the decisions ``serve`` would take.

Where it sits: ``testfile`` (``remediator test``) and ``replay`` (``remediator replay``)
feed it. It composes what ``runtime.app._services`` composes — the active rule set, the
real ``Pipeline``, guards and claim transaction on a ``SqliteStore`` in a temporary
directory, the ``Recorder`` with the escalation planner, the ``ActionRunner`` in dry-run —
and the real ``Delivery``, whose sinks only write down what they would send. Nothing
touches a cluster, a database or the network, and no time passes but the virtual clock's.
Given a ``World`` (a case's ``world:`` facts), the engine connects its in-memory client to
the ``KubeHandle`` the rules' actions were built on for as long as it runs, so dry-run
prechecks read those facts; without one the handle stays empty, and Kubernetes actions are
planned unprechecked, as ``serve --dry-run`` plans them with no cluster.

A body is journaled at its receive time and handed to the ``JournalWorker`` as the webhook
does; the engine waits for the worker to go idle and for the actions it started
(``runner.drain``) before the clock moves on. Moving the clock delivers what falls due on
the way, each notification at its own due time, as the delivery loop would.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from prometheus_client import CollectorRegistry

from remediator.actions.registry import default_registry
from remediator.clients.http import HttpClient
from remediator.clients.k8s import KubeHandle
from remediator.config import Settings
from remediator.core.metrics import Metrics
from remediator.core.model import AuditRecord
from remediator.escalate.delivery import Delivery
from remediator.escalate.sinks.base import Notification, Sink
from remediator.ingest.ackgate import AckGate
from remediator.ruleset.active import ActiveRules
from remediator.ruleset.rules import RuleSet
from remediator.runtime.app import decision_core
from remediator.simulate.clock import EPOCH, VirtualClock
from remediator.simulate.world import World
from remediator.store.contract import AuditQuery
from remediator.store.sqlite import SqliteStore

#: Seconds the engine lets the actions of one input finish (dry-run: they only record).
DRAIN_S = 60.0
PAGE = 1000
"""Audit records read back per query."""


@dataclass(frozen=True, slots=True)
class Page:
    """A notification a sink would have been sent, and when."""

    at: datetime
    sink: str
    event: str
    tier: int
    severity: str
    policy: str
    episode_id: int
    summary: str


class RecordingSink:
    """A sink that writes down what it is sent, at the virtual time it is sent."""

    kind = "simulated"
    min_interval_s = 0.0

    def __init__(self, name: str, clock: VirtualClock, pages: list[Page]) -> None:
        self.name = name
        self._clock = clock
        self._pages = pages

    async def send(self, http: HttpClient, note: Notification) -> None:
        episode = note.details.get("episode")
        self._pages.append(
            Page(self._clock.now(), self.name, note.event.value, note.tier, note.severity,
                 note.policy, episode if isinstance(episode, int) else 0, note.summary)
        )  # fmt: skip


class _NoHttp(HttpClient):
    """The HTTP client ``Delivery`` hands its sinks: the recording sinks never use it."""

    def __init__(self) -> None:
        pass

    async def post(self, what: str, url: str, **_: Any) -> None:
        raise RuntimeError(f"the offline engine sends nothing ({what} {url})")

    async def close(self) -> None:
        pass


def settings(**overrides: Any) -> Settings:
    """What ``serve --dry-run`` would run with, and nothing served."""
    return Settings(dry_run=True, insecure_no_auth=True, validation_workers=0, **overrides)


class Engine:
    """``async with Engine(ruleset) as engine``: feed bodies, move time, read decisions."""

    def __init__(
        self,
        ruleset: RuleSet,
        start: datetime = EPOCH,
        config: Settings | None = None,
        world: tuple[KubeHandle, World] | None = None,
    ) -> None:
        """``world``: the handle ``ruleset``'s actions were built on, and the world whose
        client it holds while the engine runs."""
        self.clock = VirtualClock(start)
        self.ruleset = ruleset
        self.settings = config or settings()
        self.pages: list[Page] = []
        self._world = world
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Engine:
        if self._world is not None:
            self._stack.callback(self._connect(*self._world))
        directory = self._stack.enter_context(tempfile.TemporaryDirectory(prefix="remediator-"))
        self.store = SqliteStore(Path(directory) / "state.db")
        await self.store.open()
        self._stack.push_async_callback(self.store.close)
        self._compose()
        self._worker_task = asyncio.create_task(self.worker.run(), name="simulated-worker")
        self._stack.push_async_callback(self._stop_worker)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    @staticmethod
    def _connect(handle: KubeHandle, world: World) -> Callable[[], None]:
        """Connect ``world``'s client to ``handle``; what disconnects it."""
        assert handle.client is None, "a KubeHandle serves one engine at a time"
        handle.client = world.client

        def disconnect() -> None:
            handle.client = None

        return disconnect

    def _compose(self) -> None:
        """``serve``'s decision core (``runtime.app.decision_core``), dry-run, with
        recording sinks."""
        ruleset, clock, config = self.ruleset, self.clock, self.settings
        rules = ActiveRules(ruleset, clock.now())
        self.metrics = Metrics(CollectorRegistry(), default_registry(), ruleset.sinks)
        dry_run = config.model_copy(update={"dry_run": True})  # never an action, whatever given
        core = decision_core(self.store, rules, self.metrics, clock, dry_run, AckGate())
        self.recorder, self.runner, self.worker = core.recorder, core.runner, core.worker
        sinks: Mapping[str, Sink] = {
            name: RecordingSink(name, clock, self.pages) for name in ruleset.sinks
        }
        self.delivery = Delivery(
            self.store, self.recorder, sinks, _NoHttp(), self.metrics, clock,
            poll_s=config.delivery_poll_s, max_age_s=config.delivery_max_age_s,
        )  # fmt: skip

    async def _stop_worker(self) -> None:
        await self.runner.drain(DRAIN_S)
        self._worker_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker_task

    async def feed(self, body: bytes, received_at: datetime) -> int:
        """Journal ``body`` as received at ``received_at`` (the clock moves there first),
        and decide it; its journal id."""
        await self.advance(received_at)
        journal_id = await self.store.journal_append(body, self.clock.now())
        self.worker.accept(journal_id)
        await self.settle()
        return journal_id

    async def settle(self) -> None:
        """Wait for the worker to go idle, then for the actions it started."""
        idle = asyncio.create_task(self.worker.idle.wait())
        await asyncio.wait({idle, self._worker_task}, return_when=asyncio.FIRST_COMPLETED)
        if self._worker_task.done():
            idle.cancel()
            self._worker_task.result()  # the worker stopped: a bug of ours, raised here
            raise RuntimeError("the journal worker stopped")
        await self.runner.drain(DRAIN_S)

    async def advance(self, when: datetime) -> None:
        """Move the clock to ``when``, delivering each notification due on the way at its
        due time."""
        while True:
            due = await self.store.outbox_due(when, 1)
            if not due:
                break
            self.clock.set(due[0].due_at)
            await self.delivery.deliver_due()
        self.clock.set(when)

    async def records(self) -> list[AuditRecord]:
        """Every audit record written so far, in the order written."""
        found: list[AuditRecord] = []
        while True:
            after = found[-1].id or 0 if found else 0
            page = await self.store.decisions(AuditQuery(after_id=after, limit=PAGE))
            found.extend(page)
            if len(page) < PAGE:
                return found
