"""Named crash points for crash-safety tests: ``REMEDIATOR_FAILPOINTS=name[,name]`` makes the
process die (``os._exit``, no clean-up, like ``kill -9``) when it reaches one of them.

Unset in production, where ``hit`` is a dictionary-free string check.
"""

from __future__ import annotations

import os
import sys

ENV = "REMEDIATOR_FAILPOINTS"
EXIT_CODE = 137

#: Every failpoint the code base has, so tests and docs can name them.
NAMES = (
    "after_journal_write",  # the payload is durable, the 2xx not sent
    "before_ack",  # handed to the worker, the 2xx not sent
    "before_process",  # acknowledged, not yet processed
    "after_claim",  # the claim is durable, the action not started
    "after_intent",  # what the action will do is durable, nothing sent yet
    "after_action",  # the side effect happened, its outcome not recorded
    "after_outcome",  # the outcome is recorded
    "after_approval",  # an approval is decided (vote, timeout), its claim not yet run
    "after_archive_upload",  # an archive object and its manifest are up, the cursor not moved
    "after_evidence_upload",  # an evidence bundle is up, still queued in the store
)

_enabled = frozenset(filter(None, os.environ.get(ENV, "").split(",")))


def hit(name: str) -> None:
    assert name in NAMES, name
    if name in _enabled:
        print(f"remediator: failpoint {name} reached; exiting", file=sys.stderr, flush=True)
        os._exit(EXIT_CODE)
