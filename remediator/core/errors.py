"""The exception tree. Stopping is not an error (see ``model.Verdict``); these are.

RemediatorError
├── RequestRejected      a webhook request we answer with a 4xx/5xx and a JSON body
├── RuleFileError        a rule file that must not load; the message names file, rule, field
├── StoreUnavailable     the state store cannot be read or written
├── ActionError          an action could not do its work
│   ├── PermanentActionError   retrying will not help
│   └── TransientActionError   retrying later may help (``delay_s`` when the far side said)
└── SinkError            an escalation sink did not take a notification
    ├── SinkUnavailable        retrying later may help (``retry_after_s`` when the sink said)
    └── SinkRejected           retrying the same request cannot succeed
"""

from __future__ import annotations


class RemediatorError(Exception):
    pass


class RequestRejected(RemediatorError):
    """A webhook request refused before anything was recorded.

    ``detail`` is a sentence of ours: it never echoes the request's content.
    """

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


class RuleFileError(RemediatorError):
    pass


class ConfigError(RemediatorError):
    pass


class StoreUnavailable(RemediatorError):
    """The state store cannot be reached or written now: retried until it answers."""


class StoreRejected(RemediatorError):
    """The state store refused what it was given (a value it cannot hold, a constraint):
    retrying the same write cannot succeed, so the caller must not wait for it."""


class ActionError(RemediatorError):
    pass


class PermanentActionError(ActionError):
    pass


class TransientActionError(ActionError):
    def __init__(self, message: str, delay_s: float | None = None) -> None:
        super().__init__(message)
        self.delay_s = delay_s


class ApiError(RemediatorError):
    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class NotFound(ApiError):
    pass


class NotServed(NotFound):
    """The API server does not serve the resource at all (a custom resource whose CRD is not
    installed: a 404 that names no object), as opposed to an object of it that is missing."""


class Conflict(ApiError):
    pass


class Forbidden(ApiError):
    pass


class Throttled(ApiError):
    def __init__(self, message: str, status: int = 429, retry_after_s: float | None = None) -> None:
        super().__init__(message, status)
        self.retry_after_s = retry_after_s


class DisruptionBlocked(Throttled):
    pass


class Transient(ApiError):
    pass


class SinkError(RemediatorError):
    """Delivery failed; ``retry_after_s`` when the far side said when to come back."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class SinkUnavailable(SinkError):
    """The sink could not be reached or answered 429/5xx: the outbox retries it."""


class SinkRejected(SinkError):
    """The sink refused the request (a 4xx other than 429): sending it again cannot help."""


class ObjectStoreError(RemediatorError):
    """The object store (S3) did not take or give an object: unreachable, too slow, or it
    refused (``code``: S3's error code, such as ``AccessDenied``; empty when it never
    answered). What was to be written stays queued in the state store."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class AlertmanagerUnavailable(RemediatorError):
    """Alertmanager's silences could not be read: refused, slow, or an answer that is not
    them (``clients/alertmanager.py``)."""
