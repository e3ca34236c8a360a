"""``heap.settle``: what exists is frozen out of the collector's sight, and a cycle among
frozen objects that became garbage is collected by the next settle, not kept for ever."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from remediator.runtime import heap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_settle_freezes_what_exists() -> None:
    gc.unfreeze()
    heap.settle()
    assert gc.get_freeze_count() > 0


def test_a_frozen_cycle_that_becomes_garbage_is_collected_by_the_next_settle() -> None:
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    heap.settle()  # the cycle is frozen
    del a, b
    gc.collect()
    assert gone() is not None  # frozen: a collection does not see it
    heap.settle()
    assert gone() is None
