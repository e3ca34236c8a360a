"""Alertmanager webhook payloads (version 4) as the tests build them, in the exact form
Alertmanager 0.25 sends: every field present, the zero ``endsAt`` on firing alerts."""

from __future__ import annotations

import json
from typing import Any

from remediator.core.fingerprint import fingerprint

ZERO = "0001-01-01T00:00:00Z"
ENDED = "2026-11-28T09:50:00Z"


def webhook_alert(
    sent_fingerprint: str | None = None, status: str = "firing", **fields: Any
) -> dict[str, Any]:
    """An alert; its ``fingerprint`` is the one its labels give, as Alertmanager sends it,
    unless ``sent_fingerprint`` says what a (forging or buggy) sender writes instead."""
    alert: dict[str, Any] = {
        "status": status,
        "labels": {"alertname": "HighCPUUsage", "namespace": "llm-research"},
        "annotations": {"summary": "CPU above 85%"},
        "startsAt": "2026-11-28T09:44:26Z",
        "endsAt": ZERO if status == "firing" else ENDED,
        "generatorURL": "",
    }
    alert.update(fields)
    if isinstance(alert["labels"], dict) and all(
        isinstance(v, str) for v in alert["labels"].values()
    ):
        alert.setdefault("fingerprint", fingerprint(alert["labels"]))
    if sent_fingerprint is not None:
        alert["fingerprint"] = sent_fingerprint
    alert.setdefault("fingerprint", "aa01")
    return alert


def webhook_payload(*alerts: dict[str, Any], **fields: Any) -> dict[str, Any]:
    alerts = alerts or (webhook_alert(),)
    payload: dict[str, Any] = {
        "receiver": "remediator",
        "status": "firing" if any(a.get("status") == "firing" for a in alerts) else "resolved",
        "alerts": list(alerts),
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
    }
    payload.update(fields)
    return payload


def fleet_labels(i: int, namespace: str = "llm-research") -> dict[str, str]:
    """The labels of HighCPUUsage on Deployment ``d<i>`` (``rules-scale-fleet``)."""
    return {"alertname": "HighCPUUsage", "namespace": namespace, "deployment": f"d{i}"}


def fleet_notifications(count: int, per_payload: int = 50) -> list[bytes]:
    """HighCPUUsage for d0 … d<count-1>, as Alertmanager builds the notifications (same
    fingerprints), ``per_payload`` alerts each."""
    return [
        json.dumps(
            webhook_payload(
                *(
                    webhook_alert(fingerprint(fleet_labels(i)), labels=fleet_labels(i))
                    for i in range(start, min(start + per_payload, count))
                )
            )
        ).encode()
        for start in range(0, count, per_payload)
    ]


def page_only_labels(i: int, namespace: str = "llm-research") -> dict[str, str]:
    """The labels of an alert no action rule matches (the catch-all pages): node ``n<i>``."""
    return {"alertname": "NodeDiskPressure", "namespace": namespace, "node": f"n{i}"}


def notifications(labels: list[dict[str, str]], per_payload: int = 50) -> list[bytes]:
    """Firing alerts with these labels, as Alertmanager builds the notifications,
    ``per_payload`` alerts each."""
    return [
        json.dumps(
            webhook_payload(
                *(
                    webhook_alert(fingerprint(ls), labels=ls)
                    for ls in labels[start : start + per_payload]
                )
            )
        ).encode()
        for start in range(0, len(labels), per_payload)
    ]
