"""One measured figure, as every scenario of ``bench/run.py`` reports it.

Where it sits: each scenario module (``bench/ingest.py``, ``bench/classify.py``, ...) returns
a list of ``Figure``; ``run.py`` prints them as one table and writes them to
``bench/results.json``. A figure is judged by its ratio to a reference measured in the same
run, side by side, so machine speed cancels out; the absolute value is context.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

#: How a ratio passes: ``min`` (ratio >= target, e.g. throughput) or ``max`` (ratio <=
#: target, e.g. latency); ``value_max`` compares the value itself (no reference, e.g. RSS).
Sense = Literal["min", "max", "value_max", "value_min", "info"]


@dataclasses.dataclass(frozen=True, slots=True)
class Figure:
    scenario: str
    name: str
    value: float
    unit: str
    reference: float | None = None
    """The same quantity for the reference in the same run (None: judged by value)."""
    reference_name: str = ""
    target: float | None = None
    sense: Sense = "info"
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.reference is None or self.reference == 0 or math.isnan(self.reference):
            return None
        return self.value / self.reference

    @property
    def passed(self) -> bool | None:
        """None when the figure has no target (context only)."""
        if self.target is None or self.sense == "info":
            return None
        if self.sense == "value_max":
            return self.value <= self.target
        if self.sense == "value_min":
            return self.value >= self.target
        ratio = self.ratio
        if ratio is None:
            return False
        return ratio >= self.target if self.sense == "min" else ratio <= self.target

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ratio": self.ratio, "passed": self.passed}
