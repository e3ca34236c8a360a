"""Webhook bodies the engine is fed: built from a test's short alerts, or checked as the
webhook would check them before journaling (``ingest.payload.check``), with the alerts
each holds (labels and fingerprint as the worker computes them)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from remediator.config import PayloadLimits
from remediator.core.errors import ConfigError, RequestRejected
from remediator.core.fingerprint import of_alert
from remediator.ingest.payload import check


@dataclass(frozen=True, slots=True)
class Fed:
    """An alert of a body fed to the engine: its labels, and the key of its decision."""

    labels: Mapping[str, str]
    fingerprint: str


def build(
    alerts: Sequence[tuple[Mapping[str, str], Mapping[str, str], str]],
    at: datetime,
    truncated: int = 0,
) -> dict[str, Any]:
    """An Alertmanager 0.25 body holding ``alerts`` (labels, annotations, status) at ``at``."""
    stamp = at.isoformat().replace("+00:00", "Z")
    items = [
        {"status": status, "labels": dict(labels), "annotations": dict(notes),
         "startsAt": stamp, "endsAt": stamp if status == "resolved" else None,
         "generatorURL": "", "fingerprint": of_alert("", labels)}
        for labels, notes, status in alerts
    ]  # fmt: skip
    firing = any(item["status"] == "firing" for item in items)
    return {"receiver": "remediator", "status": "firing" if firing else "resolved",
            "alerts": items, "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "", "version": "4", "groupKey": "{}:{}",
            "truncatedAlerts": truncated}  # fmt: skip


def encode(body: Mapping[str, Any], limits: PayloadLimits, what: str) -> tuple[bytes, list[Fed]]:
    """``body`` as bytes the webhook would journal, and its alerts; ``ConfigError`` naming
    ``what`` when the webhook would refuse it."""
    data = json.dumps(body, separators=(",", ":")).encode()
    try:
        model = check(data, limits)
    except RequestRejected as exc:
        raise ConfigError(f"{what} is a body the webhook refuses: {exc}") from None
    return data, [Fed(a.labels, of_alert(a.fingerprint, a.labels)) for a in model.alerts]
