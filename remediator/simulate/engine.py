"""The offline engine: webhook bodies at virtual times → the decisions ``serve`` would take.

Where it sits: ``testfile`` (``remediator test``) and ``replay`` (``remediator replay``)
feed it. It runs serve's own decision core (``runtime.app.decision_core``: the active rule
set, the real ``Pipeline``, guards and claim transaction, the ``Recorder`` with the
escalation planner, the ``ActionRunner`` in dry-run) on a ``SqliteStore`` in a temporary
directory, and the real ``Delivery``, whose sinks only write down what they would send. Nothing
touches a cluster, a database or the network, and no time passes but the virtual clock's.
Given a ``World`` (a case's ``world:`` facts), the engine connects it to the handles the
rules' actions were built on (``world.Handles``) for as long as it runs, so dry-run
prechecks read those facts; without one the handles stay empty, and Kubernetes actions are
planned unprechecked, as ``serve --dry-run`` plans them with no cluster. The world's sinks
say how each recording sink answers (``SinkUnavailable``, ``SinkRejected``), from their
time on; ``Delivery`` retries or drops as it would, and each send is written down with
what came of it, read back from the audit ``Delivery`` writes.

A body is journaled at its receive time and handed to the ``JournalWorker`` as the webhook
does; the engine waits for the worker to go idle and for the actions it started
(``runner.drain``) before the clock moves on. Moving the clock delivers what falls due on
the way, each notification at its own due time, as the delivery loop would; an approval
a rule holds a claim for is never given here, so it ends at its timeout (or when its alert
resolves) as the approvals loop would end it.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from prometheus_client import CollectorRegistry

from remediator.actions.registry import default_registry
from remediator.approve.approvals import SWEPT, Approvals
from remediator.clients.http import HttpClient
from remediator.config import Settings
from remediator.core.errors import SinkRejected, SinkUnavailable
from remediator.core.metrics import Metrics
from remediator.core.model import AuditRecord
from remediator.core.vocab import ApprovalState, Outcome, Step
from remediator.escalate.delivery import Delivery
from remediator.escalate.sinks.base import Notification, Sink
from remediator.ingest.ackgate import AckGate
from remediator.ruleset.active import ActiveRules
from remediator.ruleset.rules import RuleSet
from remediator.runtime.app import decision_core
from remediator.simulate.clock import EPOCH, VirtualClock
from remediator.simulate.testfile import SinkFact
from remediator.simulate.world import Handles, World
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
    dedup_key: str = ""
    result: str = ""
    """``delivered``, ``retried`` (the sink was unavailable; ``Delivery`` tries again) or
    ``dropped`` (rejected, or given up on: audited as a failed notification)."""


ANSWERED = {Outcome.ESCALATED: "delivered", Outcome.NOTIFIED: "delivered",
            Outcome.FAILED: "dropped"}  # fmt: skip
"""A ``notified`` audit record's outcome → what came of the send it records."""


class RecordingSink:
    """A sink that writes down what it is sent, at the virtual time it is sent, and
    answers as the world says it does from that time on (ok when it says nothing)."""

    kind = "simulated"
    min_interval_s = 0.0

    def __init__(
        self, name: str, clock: VirtualClock, pages: list[Page], answers: Mapping[str, SinkFact]
    ) -> None:
        self.name = name
        self._clock = clock
        self._pages = pages
        self._answers = answers

    async def send(self, http: HttpClient, note: Notification) -> None:
        episode = note.details.get("episode")
        self._pages.append(
            Page(self._clock.now(), self.name, note.event.value, note.tier, note.severity,
                 note.policy, episode if isinstance(episode, int) else 0, note.summary,
                 note.dedup_key)
        )  # fmt: skip
        fact = self._answers.get(self.name)
        if fact is not None and fact.answer == "unavailable":
            raise SinkUnavailable(f"{self.name} is unavailable (a world fact of the case)",
                                  fact.retry_after_s)  # fmt: skip
        if fact is not None and fact.answer == "rejected":
            raise SinkRejected(f"{self.name} rejected the notification (a world fact of the case)")


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
        world: tuple[Handles, World] | None = None,
    ) -> None:
        """``world``: the handles ``ruleset``'s actions were built on, and the world they
        are connected to while the engine runs."""
        self.clock = VirtualClock(start)
        self.ruleset = ruleset
        self.settings = config or settings()
        self.pages: list[Page] = []
        self._world = world
        self._audited = 0
        """The id of the last audit record read for what came of a send."""
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Engine:
        if self._world is not None:
            handles, world = self._world
            self._stack.callback(handles.connect(world, self.clock))
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

    def _compose(self) -> None:
        """``serve``'s decision core (``runtime.app.decision_core``), dry-run, with
        recording sinks."""
        ruleset, clock, config = self.ruleset, self.clock, self.settings
        rules = ActiveRules(ruleset, clock.now())
        self.metrics = Metrics(CollectorRegistry(), default_registry(), ruleset.sinks)
        dry_run = config.model_copy(update={"dry_run": True})  # never an action, whatever given
        core = decision_core(self.store, rules, self.metrics, clock, dry_run, AckGate())
        self.recorder, self.runner, self.worker = core.recorder, core.runner, core.worker
        answers = self._world[1].sinks if self._world is not None else {}
        sinks: Mapping[str, Sink] = {
            name: RecordingSink(name, clock, self.pages, answers) for name in ruleset.sinks
        }
        self.delivery = Delivery(
            self.store, self.recorder, sinks, _NoHttp(), self.metrics, clock,
            poll_s=config.delivery_poll_s, max_age_s=config.delivery_max_age_s,
        )  # fmt: skip
        self.approvals = Approvals(self.store, self.recorder, self.runner, clock, self.metrics)

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
        await self._sweep()

    async def _sweep(self) -> None:
        """The approvals loop's pass now (timeouts, resolves), and what it ran."""
        await self.approvals.sweep()
        await self.approvals.idle()
        await self.runner.drain(DRAIN_S)

    async def advance(self, when: datetime) -> None:
        """Move the clock to ``when``, delivering each notification due on the way at its
        due time, and ending each approval whose time runs out on the way at that time."""
        while True:
            due = await self.store.outbox_due(when, 1)
            held = await self.store.approvals(ApprovalState.PENDING, SWEPT)
            timeout = min((a.due_at for a in held if a.due_at <= when), default=None)
            if timeout is not None and (not due or timeout <= due[0].due_at):
                self.clock.set(timeout)
                await self._sweep()
                continue
            if not due:
                break
            self.clock.set(due[0].due_at)
            sent = len(self.pages)
            await self.delivery.deliver_due()
            await self._answered(sent)
        self.clock.set(when)

    async def advance_to_just_before(self, when: datetime) -> None:
        """Move the clock to ``when``, delivering only what falls due before it: what is
        due at ``when`` meets the world as it is from ``when`` on."""
        await self.advance(when - timedelta(microseconds=1))
        self.clock.set(when)

    async def _answered(self, sent: int) -> None:
        """Say what came of each send since page ``sent``, as ``Delivery`` audited it: a
        ``notified`` record (sent, or given up on), or none (to be retried)."""
        if len(self.pages) == sent:
            return
        audited: dict[tuple[str, str, int, str], str] = {}
        for record in await self._records_after(self._audited):
            self._audited = record.id or self._audited
            if record.step is Step.NOTIFIED and record.outcome in ANSWERED:
                d = record.details
                audited[d["sink"], d["dedup_key"], d["tier"], d["event"]] = ANSWERED[record.outcome]
        for i in range(sent, len(self.pages)):
            page = self.pages[i]
            key = (page.sink, page.dedup_key, page.tier, page.event)
            self.pages[i] = replace(page, result=audited.get(key, "retried"))

    async def records(self) -> list[AuditRecord]:
        """Every audit record written so far, in the order written."""
        return await self._records_after(0)

    async def _records_after(self, after_id: int) -> list[AuditRecord]:
        found: list[AuditRecord] = []
        while True:
            after = found[-1].id or 0 if found else after_id
            page = await self.store.decisions(AuditQuery(after_id=after, limit=PAGE))
            found.extend(page)
            if len(page) < PAGE:
                return found
