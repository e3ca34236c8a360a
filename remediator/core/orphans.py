"""Child processes that die with their parent, so a killed ``serve`` leaves none behind.

A process killed with SIGKILL cleans nothing up: its children are reparented to init and
live on. Linux's parent-death signal (``prctl(PR_SET_PDEATHSIG)``) has the kernel kill a
child when its parent exits instead. Two cautions shape this module. The signal follows the
parent's *thread* that forked the child, so that thread must live as long as the parent:
fork from the main thread. And a child whose parent died before it asked is already
reparented and never gets the signal, so it checks its parent right after asking.

Used by the webhook validation pool (``ingest/forkserver``). Elsewhere than Linux these are
no-ops: processes are then left as they were.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

#: ``PR_SET_PDEATHSIG`` from ``<linux/prctl.h>``.
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent (the forking thread) exits."""
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def children_die_with_me() -> None:
    """Every process this one forks from now on dies with it: the child asks for the signal
    first thing after ``fork``, and exits at once if this process has already gone."""
    parent = os.getpid()

    def in_child() -> None:
        die_with_parent()
        if os.getppid() != parent:
            os._exit(1)

    os.register_at_fork(after_in_child=in_child)
