"""The lease: how replicas sharing a PostgreSQL store notice one that is gone for good.

Every replica renews its lease every third of ``lease_s`` (a supervised loop runs
``round``). Each round it also takes over what a replica silent for longer than ``lease_s``
left unfinished: journal entries it acknowledged but never processed go to this replica's
worker (episodes and unique claims make a second processing harmless), and claims it left
without an outcome are run, if they had sent nothing, or settled by observing the world
(``reconcile``). The SQLite store has no one to take over from.
"""

from __future__ import annotations

import logging

from remediator.act.reconcile import reconcile_claim
from remediator.act.runner import ActionRunner
from remediator.audit.recorder import Recorder
from remediator.core.clock import Clock
from remediator.decide.worker import JournalWorker
from remediator.store.contract import Store, UnfinishedClaim

log = logging.getLogger(__name__)


class Lease:
    def __init__(
        self,
        store: Store,
        worker: JournalWorker,
        recorder: Recorder,
        clock: Clock,
        lease_s: float,
        runner: ActionRunner,
    ) -> None:
        self._store = store
        self._worker = worker
        self._recorder = recorder
        self._clock = clock
        self._runner = runner
        self.lease_s = lease_s
        self._unsettled: list[UnfinishedClaim] = []
        """Claims taken over and not yet resumed or settled (the store went away midway):
        they are this replica's in the store, so only this list remembers to finish them."""

    async def renew(self) -> None:
        await self._store.heartbeat(self._clock.now())

    async def take_over(self) -> int:
        """Adopt what expired replicas left; how many journal entries and claims."""
        taken = await self._store.take_over(self._clock.now(), self.lease_s)
        for journal_id in taken.journal_ids:
            self._worker.accept(journal_id)
        self._unsettled.extend(taken.claims)
        count = len(taken.journal_ids) + len(taken.claims)
        if count:
            log.warning(
                "took over %d journal entries and %d claims from replicas whose lease ran out",
                len(taken.journal_ids),
                len(taken.claims),
            )
        renewed = self._clock.monotonic()
        while self._unsettled:
            if self._clock.monotonic() - renewed > self.period_s:  # observing takes time
                await self.renew()
                renewed = self._clock.monotonic()
            await reconcile_claim(self._unsettled[0], self._recorder, self._clock, self._runner)
            self._unsettled.pop(0)
        return count

    @property
    def period_s(self) -> float:
        """How often ``round`` runs: three renewals per lease, so one lost is no lapse."""
        return self.lease_s / 3

    async def round(self) -> None:
        """Renew the lease, then adopt what expired replicas left. The supervised loop
        (``runtime/tasks.py``) runs it every ``period_s``; the store away is retried there."""
        await self.renew()
        await self.take_over()
