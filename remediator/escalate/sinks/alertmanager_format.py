"""A notification as Alertmanager's own webhook payload (version 4,
https://prometheus.io/docs/alerting/latest/configuration/#webhook_config), so a receiver
written for Alertmanager takes remediator's escalations as they are.

* ``alerts``: one per alert the incident lists, with its labels, annotations,
  ``startsAt``, ``generatorURL`` and ``fingerprint`` (computed from the labels, as
  Alertmanager does); ``status`` ``firing`` for a trigger and an update, ``resolved`` for
  the resolve;
* ``receiver``: the sink's name; ``groupKey``: the incident's dedup key;
  ``truncatedAlerts``: how many the incident groups past those listed;
* ``commonLabels`` and ``commonAnnotations``: the pairs every listed alert shares;
  ``groupLabels``: the shared ``alertname`` (remediator groups by notification and reason,
  not by labels); ``externalURL``: the Alertmanager that sent the alerts, when the page
  has a silence link into it;
* remediator's own facts become annotations of every alert, prefixed ``remediator_``
  (``event``, ``severity``, ``summary``, ``tier``, ``policy``, ``update``, ``decisions``,
  ``reason``, ``action``, ``target``, ``rule``, ``episode``), so nothing is lost.

Alertmanager's ``endsAt`` of a resolved alert is when it resolved; the notification does
not carry that time, so ``endsAt`` is ``details["ends_at"]`` when given, else the zero time
Alertmanager sends for a firing alert."""

from __future__ import annotations

from typing import Any

from remediator.core.fingerprint import fingerprint
from remediator.escalate.sinks import escape
from remediator.escalate.sinks.base import Event, Notification, alert_count, alerts_of

VERSION = "4"
ZERO_TIME = "0001-01-01T00:00:00Z"
PREFIX = "remediator_"
_FACTS = ("reason", "action", "target", "rule", "episode", "decisions")
_SILENCES = "/#/silences/"


def payload(receiver: str, note: Notification) -> dict[str, Any]:
    facts = _facts(note)
    alerts = [_alert(note, alert, facts) for alert in _listed(note)]
    common_labels = _common([a["labels"] for a in alerts])
    name = common_labels.get("alertname")
    return {
        "version": VERSION,
        "groupKey": escape.text(note.dedup_key),
        "truncatedAlerts": max(0, alert_count(note) - len(alerts)),
        "status": "resolved" if note.event is Event.RESOLVE else "firing",
        "receiver": escape.text(receiver),
        "groupLabels": {"alertname": name} if name else {},
        "commonLabels": common_labels,
        "commonAnnotations": _common([a["annotations"] for a in alerts]),
        "externalURL": _external_url(note),
        "alerts": alerts,
    }


def _listed(note: Notification) -> list[dict[str, Any]]:
    """The incident's alerts; one made of its alertname when it carries none (a page about
    a journal entry that could not be read)."""
    listed = alerts_of(note)
    if listed:
        return listed
    name = note.details.get("alertname")
    return [{"labels": {"alertname": name if isinstance(name, str) and name else "remediator"}}]


def _alert(note: Notification, alert: dict[str, Any], facts: dict[str, str]) -> dict[str, Any]:
    labels = _strings(alert.get("labels"))
    ends = note.details.get("ends_at") if note.event is Event.RESOLVE else None
    return {
        "status": "resolved" if note.event is Event.RESOLVE else "firing",
        "labels": labels,
        "annotations": {**_strings(alert.get("annotations")), **facts},
        "startsAt": escape.text(str(alert.get("starts_at") or ZERO_TIME)),
        "endsAt": escape.text(ends) if isinstance(ends, str) and ends else ZERO_TIME,
        "generatorURL": escape.text(str(alert.get("generator_url") or "")),
        "fingerprint": fingerprint(labels),
    }


def _facts(note: Notification) -> dict[str, str]:
    facts = {"event": note.event.value, "severity": note.severity, "summary": note.summary,
             "tier": str(note.tier), "policy": note.policy, "update": note.update}  # fmt: skip
    facts.update({k: str(note.details[k]) for k in _FACTS if note.details.get(k) is not None})
    return {PREFIX + k: escape.text(v) for k, v in facts.items() if v}


def _strings(value: object) -> dict[str, str]:
    """A label or annotation map as strings UTF-8 can hold."""
    if not isinstance(value, dict):
        return {}
    return {escape.text(str(k)): escape.text(str(v)) for k, v in value.items()}


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    """The pairs every map holds, as Alertmanager computes ``commonLabels``."""
    if not maps:
        return {}
    first, *rest = maps
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in rest)}


def _external_url(note: Notification) -> str:
    """The sending Alertmanager's URL: the head of the page's silence link into it."""
    for alert in alerts_of(note):
        silence = alert.get("silence_url")
        if isinstance(silence, str) and _SILENCES in silence:
            return escape.text(silence.split(_SILENCES, 1)[0])
    return ""
