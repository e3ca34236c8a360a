"""``min_healthy``: the Ready replicas an action that takes pods down must leave.

Where it sits: the params of ``recycle_pod`` and ``restart_rollout`` declare it, checked when
the rules load; their prechecks resolve it against the replicas the Deployment wants.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import AfterValidator

MAX_MIN_HEALTHY = 1_000
"""As scale_out's max_replicas: the most replicas a rule reasons about."""


def _count_or_share(value: int | str) -> int | str:
    if isinstance(value, int):
        if not 0 <= value <= MAX_MIN_HEALTHY:
            raise ValueError(f"must be a count from 0 to {MAX_MIN_HEALTHY}, not {value}")
        return value
    digits = value.removesuffix("%")
    share_ok = digits != value and digits.isascii() and digits.isdigit() and len(digits) <= 3
    if not share_ok or int(digits) > 100:
        raise ValueError('must be a count or a percentage from "0%" to "100%", such as "66%"')
    return value


MinHealthy = Annotated[int | str, AfterValidator(_count_or_share)]
"""Ready replicas that must remain: a count (0 to 1 000) or a share of the desired,
"0%" to "100%" ("66%")."""


def required_ready(min_healthy: int | str, desired: int) -> int:
    """``min_healthy`` as a count of the ``desired`` replicas (a share rounds up)."""
    if isinstance(min_healthy, int):
        return min_healthy
    return math.ceil(desired * int(min_healthy[:-1]) / 100)
