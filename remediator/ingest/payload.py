"""Alertmanager webhook payload (version 4): bytes → validated ``WebhookPayload`` → ``Payload``.

Strict where it matters (UTF-8, one value per key, finite numbers, bounded depth and size,
string labels under Prometheus label names, RFC 3339 times with a zone, no lone UTF-16
surrogate and no NUL in any string, since neither state store can keep them) and tolerant of
fields newer Alertmanagers add. Every failure is a ``RequestRejected`` whose sentence names
the problem without echoing the input.

The ack path runs ``check``. It decodes with msgspec, whose typed decoding costs less than
``json.loads`` alone, then proves that the typed payload holds every key of the body by
counting colons (see ``_nothing_dropped``): times are decoded as the strings the body holds,
so re-encoding reproduces them exactly, and are checked as RFC 3339 times in one pass
after. Conversion to ``Alert`` values (``to_payload``) happens later, in the worker. When a
check finds a problem the body is decoded again with the standard library, to name it
exactly.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Annotated, Any, Literal, NoReturn

import msgspec

from remediator.config import PayloadLimits
from remediator.core.errors import RequestRejected
from remediator.core.fingerprint import of_alert
from remediator.core.model import Alert, AlertStatus, frozen_mapping

#: Prometheus's label name syntax (Alertmanager 0.25 refuses anything else). Used with
#: fullmatch: ``$`` would also accept a trailing newline.
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

Status = Literal["firing", "resolved"]
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]


class WebhookAlert(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An alert as Alertmanager 0.25 sends it: every field present."""

    status: Status
    labels: dict[str, str]
    annotations: dict[str, str]
    startsAt: str
    """An RFC 3339 time with a zone (``check`` proves it), as the body spells it."""
    endsAt: str | None
    generatorURL: str
    fingerprint: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class WebhookPayload(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A version-4 notification as Alertmanager 0.25 sends it: every field present."""

    receiver: str
    status: Status
    alerts: list[WebhookAlert]
    groupLabels: dict[str, str]
    commonLabels: dict[str, str]
    commonAnnotations: dict[str, str]
    externalURL: str
    version: Literal["4"]
    groupKey: str
    truncatedAlerts: Annotated[int, msgspec.Meta(ge=0)]


#: What a sender may leave out; the slow path fills these in before validating.
PAYLOAD_DEFAULTS: dict[str, Any] = {
    "receiver": "",
    "groupLabels": {},
    "commonLabels": {},
    "commonAnnotations": {},
    "externalURL": "",
    "groupKey": "",
    "truncatedAlerts": 0,
}
ALERT_DEFAULTS: dict[str, Any] = {"annotations": {}, "endsAt": None, "generatorURL": ""}


@dataclass(frozen=True, slots=True)
class Payload:
    receiver: str
    group_key: str
    truncated_alerts: int
    alerts: tuple[Alert, ...]


@cache
def _limited_schema(limits: PayloadLimits) -> type[WebhookPayload]:
    """``WebhookPayload`` with ``limits`` as constraints, checked inside the decoder."""
    name = Annotated[str, msgspec.Meta(max_length=limits.max_label_name_chars)]
    value = Annotated[str, msgspec.Meta(max_length=limits.max_label_value_chars)]
    note = Annotated[str, msgspec.Meta(max_length=limits.max_annotation_value_chars)]
    count = msgspec.Meta(max_length=limits.max_labels)
    alert = msgspec.defstruct(
        "LimitedWebhookAlert",
        [
            ("labels", Annotated[dict[name, value], count]),
            ("annotations", Annotated[dict[str, note], count]),
        ],
        bases=(WebhookAlert,),
        frozen=True,
        kw_only=True,
        gc=False,
    )
    alerts = Annotated[list[alert], msgspec.Meta(max_length=limits.max_alerts)]  # type: ignore[valid-type]
    schema = msgspec.defstruct(
        "LimitedWebhookPayload",
        [("alerts", alerts)],
        bases=(WebhookPayload,),
        frozen=True,
        kw_only=True,
        gc=False,
    )
    assert issubclass(schema, WebhookPayload)
    return schema


@cache
def _decoder(limits: PayloadLimits) -> msgspec.json.Decoder[WebhookPayload]:
    return msgspec.json.Decoder(_limited_schema(limits))


_ENCODER = msgspec.json.Encoder()


def _reject(status: int, code: str, detail: str) -> NoReturn:
    raise RequestRejected(status, code, detail)


# --- the exact, slow path: only reached once the fast path has found a problem -------------


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        _reject(400, "duplicate_key", "A JSON object in the body repeats a key.")
    return obj


def _non_finite(_: str) -> NoReturn:
    _reject(400, "non_finite_number", "The body contains NaN or Infinity, which JSON forbids.")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        _reject(400, "non_finite_number", "The body holds a number too large for a float.")
    return value


def _check_strings(document: Any) -> None:
    """Refuse what JSON can spell but Unicode text in a state store cannot hold: a lone
    UTF-16 surrogate (``"\\ud800"``) and NUL. Iterative: the depth is the parser's."""
    pending = [document]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value)
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                _reject(
                    422,
                    "invalid_string",
                    "A string in the body holds a lone UTF-16 surrogate, which is not text.",
                )
            if "\x00" in value:
                _reject(422, "invalid_string", "A string in the body holds a NUL character.")


def decode_json(body: bytes) -> Any:
    """Bytes → Python value with the standard library, naming exactly what is wrong."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        _reject(400, "invalid_utf8", "The body is not valid UTF-8.")
    try:
        document = json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_non_finite,
            parse_float=_finite_float,
        )
    except RecursionError:
        _reject(400, "too_deep", "The JSON body is nested too deeply.")
    except json.JSONDecodeError as exc:
        _reject(400, "invalid_json", f"The body is not valid JSON (line {exc.lineno}).")
    except ValueError:  # e.g. an integer longer than int_max_str_digits
        _reject(400, "invalid_json", "The body holds a number too long to read.")
    _check_strings(document)
    return document


# --- the validation ---------------------------------------------------------------------


def _path(where: str) -> str:
    return where.removeprefix("`").removesuffix("`").replace("$.", "").replace("[...]", ".<key>")


_SAFE_REASONS = (
    "Expected `",
    "Object missing required field `",
    "Invalid RFC3339 encoded datetime",
)


def _validation_error(message: str, limits: PayloadLimits) -> NoReturn:
    reason, _, where = message.partition(" - at ")
    path = _path(where.rpartition(" in ")[2]) if where else "body"
    if path == "version" or reason == "Object missing required field `version`":
        _reject(422, "unsupported_version", 'Only Alertmanager webhook version "4" is accepted.')
    if path == "alerts" and "of length <=" in reason:
        _reject(
            413, "too_many_alerts", f"The payload carries more than {limits.max_alerts} alerts."
        )
    index = path.partition("]")[0] + "]"
    if ".labels" in path and "object` of length" in reason:
        _reject(422, "too_many_labels", f"{index} has more than {limits.max_labels} labels.")
    if ".labels" in path and "of length <=" in reason:
        _reject(
            422,
            "label_too_long",
            f"{index} has a label name over {limits.max_label_name_chars} or a value over"
            f" {limits.max_label_value_chars} characters.",
        )
    if ".annotations" in path and "of length <=" in reason:
        _reject(
            422,
            "annotation_too_long",
            f"{index} has more than {limits.max_labels} annotations or one over"
            f" {limits.max_annotation_value_chars} characters.",
        )
    if reason.startswith("Invalid enum value"):
        reason = "is not an allowed value"
    elif not reason.startswith(_SAFE_REASONS):
        reason = "has the wrong type or value"
    _reject(422, "invalid_payload", f"Field {path}: {reason}.")


def _with_defaults(document: Any) -> Any:
    if isinstance(document, dict):
        document = {**PAYLOAD_DEFAULTS, **document}
        alerts = document.get("alerts")
        if isinstance(alerts, list):
            document["alerts"] = [
                {**ALERT_DEFAULTS, **a} if isinstance(a, dict) else a for a in alerts
            ]
    return document


def _slow_path(body: bytes, limits: PayloadLimits) -> WebhookPayload:
    """Standard-library decoding that names exactly what is wrong, then validation."""
    try:
        return msgspec.convert(_with_defaults(decode_json(body)), _limited_schema(limits))
    except msgspec.ValidationError as exc:
        _validation_error(str(exc), limits)


#: Escapes that spell a colon, and NUL, which only the slow path refuses.
_FAST_PATH_ESCAPES = (b"\\u003a", b"\\u003A", b"\\u0000")


def _nothing_dropped(body: bytes, payload: WebhookPayload) -> bool:
    """True when the typed payload holds every key the body has: no repeated key, no
    unknown field, exactly.

    Every key ends in a colon. Re-encoding writes each string back with the colons it
    holds, times included (they are kept as strings), and no other value holds one; so
    unless the body spells a colon as an escape, the body and the re-encoded payload hold
    equally many colons exactly when they hold the same keys. Whitespace does not count.
    """
    if b"\\u00" in body and any(escape in body for escape in _FAST_PATH_ESCAPES):
        return False
    return _ENCODER.encode(payload).count(b":") == body.count(b":")


#: Every alert's ``(startsAt, endsAt)``: one conversion checks all the times of a payload.
AlertTimes = list[tuple[Timestamp, Timestamp | None]]


def _check_times(payload: WebhookPayload, limits: PayloadLimits) -> None:
    """Every ``startsAt`` and ``endsAt`` is an RFC 3339 time with a zone."""
    try:
        msgspec.convert([(a.startsAt, a.endsAt) for a in payload.alerts], AlertTimes)
    except msgspec.ValidationError as exc:
        reason, _, where = str(exc).partition(" - at ")
        index, _, position = where.strip("`$[]").partition("][")
        field = "startsAt" if position == "0" else "endsAt"
        _validation_error(f"{reason} - at `$.alerts[{index}].{field}`", limits)


def _check_label_names(payload: WebhookPayload) -> None:
    """Every label name is a Prometheus label name. Checked once per distinct name: a
    payload's thousand alerts share a dozen."""
    names = {name for alert in payload.alerts for name in alert.labels}
    if all(LABEL_NAME.fullmatch(name) for name in names):
        return
    index = next(
        i
        for i, alert in enumerate(payload.alerts)
        if not all(LABEL_NAME.fullmatch(name) for name in alert.labels)
    )
    _reject(
        422,
        "invalid_label_name",
        f"alerts[{index}] has a label name that is not a Prometheus label name"
        " ([a-zA-Z_][a-zA-Z0-9_]*).",
    )


def _times(raw: WebhookAlert) -> tuple[datetime, datetime | None]:
    [(starts_at, ends_at)] = msgspec.convert([(raw.startsAt, raw.endsAt)], AlertTimes)
    return starts_at, ends_at


def check(body: bytes, limits: PayloadLimits) -> WebhookPayload:
    """The ack path's validation: the payload, or ``RequestRejected`` naming the problem.

    Alertmanager's own bodies take the fast path: one typed decode and a colon count.
    Anything else (an error, an unknown field, an omitted optional field) takes the slow
    path, which accepts what is valid and names what is not.
    """
    try:
        payload = _decoder(limits).decode(body)
    except UnicodeDecodeError:
        _reject(400, "invalid_utf8", "The body is not valid UTF-8.")
    except RecursionError:
        _reject(400, "too_deep", "The JSON body is nested too deeply.")
    except msgspec.DecodeError:  # ValidationError included
        payload = _slow_path(body, limits)
    else:
        if not _nothing_dropped(body, payload):
            payload = _slow_path(body, limits)
    _check_label_names(payload)
    _check_times(payload, limits)
    return payload


def to_alert(raw: WebhookAlert) -> Alert:
    starts_at, ends_at = _times(raw)
    if ends_at is not None and ends_at.year == 1:
        ends_at = None
    ours = of_alert(raw.fingerprint, raw.labels)
    return Alert(
        fingerprint=ours,
        sent_fingerprint="" if raw.fingerprint == ours else raw.fingerprint,
        status=AlertStatus(raw.status),
        labels=frozen_mapping(raw.labels),
        annotations=frozen_mapping(raw.annotations),
        starts_at=starts_at,
        ends_at=ends_at,
        generator_url=raw.generatorURL,
    )


def to_payload(model: WebhookPayload) -> Payload:
    return Payload(
        receiver=model.receiver,
        group_key=model.groupKey,
        truncated_alerts=model.truncatedAlerts,
        alerts=tuple(to_alert(a) for a in model.alerts),
    )


def parse(body: bytes, limits: PayloadLimits) -> Payload:
    return to_payload(check(body, limits))
