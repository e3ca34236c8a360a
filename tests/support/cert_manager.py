"""cert-manager in the Kubernetes test server: its ``cert-manager.io/v1`` resources as the API
server serves a CRD with a status subresource, and what its controllers do about them.

Where it sits: :meth:`tests.support.kube_api.KubeApiServer.install_cert_manager` makes one
:class:`CertManager` for a server; from then on the server routes ``certificates`` PATCH and
``certificates/{name}/status`` GET and PATCH here (get and list are the server's own), and
``certificaterequests`` are served for reading. Before, the group answers as any group the
server does not serve (a bare ``404 page not found``).

As the API server does for a custom resource with a status subresource: a write of the
object ignores its ``status`` (and bumps ``generation`` when the spec changes); a write of
``/status`` keeps only the status; both take merge patches and JSON patches (a strategic
merge patch is 415: CRDs have no strategy), refuse a stale ``metadata.resourceVersion`` with
409, and check cert-manager's schema for conditions (``type`` and ``status`` required,
``status`` one of True, False, Unknown, one condition per type: 422). RBAC authorizes the
status write as subresource ``status`` (the server's authorizer).

The controller, as cert-manager v1's does once a Certificate's ``Issuing`` condition is True
(``cmctl renew`` and its own trigger set it; its requestmanager and issuing controllers then
act), after :attr:`CertManager.request_lag_s`: the key manager's ``status.nextPrivateKeySecretName``
and a CertificateRequest ``<name>-xxxxx`` for revision ``status.revision + 1`` (annotation
``cert-manager.io/certificate-revision``, owned by the Certificate, Approved, Ready False
``Pending``); then after :attr:`CertManager.issue_lag_s`, by :attr:`CertManager.outcome`:

* ``"issue"``: the request Ready True ``Issued``; the Certificate at the next revision, with
  a new ``notBefore``/``notAfter`` (``spec.duration``, default 90 days) and ``renewalTime``
  (``spec.renewBefore``, default a third of the duration), Ready True, Issuing removed,
  ``lastFailureTime`` cleared; an Event ``Issuing``;
* ``"fail"``: the request Ready False ``Failed`` with :attr:`CertManager.failure_message`;
  the Certificate's ``lastFailureTime`` set, ``failedIssuanceAttempts`` + 1, Issuing False
  ``Failed`` ("The certificate request has failed to complete and will be retried: ..."),
  revision, dates and Ready left as they were (the old certificate still serves); an Event;
* ``"hang"``: nothing more (an issuer that never answers: the request stays Pending).

:attr:`CertManager.interleave_writes`: that many status writes meet another writer (a
label written by ``kubectl``) between the client's read and its write, as a busy cluster does.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

from aiohttp import web

from tests.support.kube_api import (
    _OPTIMISTIC_LOCK,
    CERTIFICATEREQUESTS,
    CERTIFICATES,
    EVENTS,
    JSON,
    JSON_PATCH,
    MERGE_PATCH,
    ApiError,
    _conflict,
    _FieldError,
    _go_value,
    _invalid,
    _time,
)

if TYPE_CHECKING:
    from tests.support.kube_api import KubeApiServer, _Call

GROUP: Final = "cert-manager.io"
API_VERSION: Final = "cert-manager.io/v1"
REVISION: Final = "cert-manager.io/certificate-revision"
DEFAULT_DURATION_S: Final = 90 * 86_400
CONDITION_STATUSES: Final = ("True", "False", "Unknown")
_CRD_PATCH_TYPES: Final = (
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
)
_GO_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)(h|m|s)")

Outcome = Literal["issue", "fail", "hang"]


def parse_duration(text: str) -> float:
    """Seconds of a Go duration as cert-manager's spec holds them (``2160h``, ``1h30m0s``)."""
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def _condition(kind: str, status: str, reason: str, message: str, at: str) -> JSON:
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": at}  # fmt: skip


def _set_condition(conditions: list[JSON], new: JSON) -> list[JSON]:
    """As cert-manager's SetCertificateCondition: the transition time kept when the status
    does not change."""
    for index, old in enumerate(conditions):
        if old.get("type") == new["type"]:
            if old.get("status") == new["status"]:
                new = {**new, "lastTransitionTime": old.get("lastTransitionTime")}
            return [*conditions[:index], new, *conditions[index + 1 :]]
    return [*conditions, new]


def _schema_errors(status: Any) -> list[_FieldError]:
    """What cert-manager's CRD schema refuses in a status (the parts this server checks)."""
    if status is None:
        return []
    if not isinstance(status, dict):
        return [_FieldError("status", "FieldValueTypeInvalid",
                            f'Invalid value: "{type(status).__name__}": status in body must be'
                            ' of type object: "' + type(status).__name__ + '"')]  # fmt: skip
    conditions = status.get("conditions", [])
    if not isinstance(conditions, list):
        return [_FieldError("status.conditions", "FieldValueTypeInvalid",
                            "Invalid value: \"object\": status.conditions in body must be of"
                            " type array")]  # fmt: skip
    errors: list[_FieldError] = []
    seen: set[Any] = set()
    for index, condition in enumerate(conditions):
        where = f"status.conditions[{index}]"
        if not isinstance(condition, dict):
            errors.append(_FieldError(where, "FieldValueTypeInvalid",
                                      f"Invalid value: {_go_value(condition)}: {where} in body"
                                      " must be of type object"))  # fmt: skip
            continue
        for field in ("type", "status"):
            if field not in condition:
                errors.append(_FieldError(f"{where}.{field}", "FieldValueRequired",
                                          "Required value"))  # fmt: skip
        value = condition.get("status")
        if "status" in condition and value not in CONDITION_STATUSES:
            errors.append(_FieldError(f"{where}.status", "FieldValueNotSupported",
                                      f"Unsupported value: {_go_value(value)}: supported values:"
                                      ' "True", "False", "Unknown"'))  # fmt: skip
        kind = condition.get("type")
        if kind in seen:
            errors.append(_FieldError(f"{where}", "FieldValueDuplicate",
                                      f"Duplicate value: map[string]interface {{}}{{\"type\":"
                                      f"{_go_value(kind)}}}"))  # fmt: skip
        seen.add(kind)
    return errors


class CertManager:
    """cert-manager for one :class:`KubeApiServer`; see the module documentation."""

    def __init__(self, server: KubeApiServer) -> None:
        self._server = server
        #: What the issuer does with the next requests.
        self.outcome: Outcome = "issue"
        self.failure_message = (
            "Failed to wait for order resource to become ready: 429"
            " urn:ietf:params:acme:error:rateLimited"
        )
        #: Seconds (low, high) from Issuing True to the CertificateRequest, and from it to
        #: the issuer's answer; (0, 0) acts within the request that set Issuing.
        self.request_lag_s: tuple[float, float] = (0.05, 0.2)
        self.issue_lag_s: tuple[float, float] = (0.1, 0.4)
        self.interleave_writes = 0
        self._pending: set[tuple[str, int]] = set()  # (uid, revision) being issued

    # ---- seeding and reading ---------------------------------------------------------------

    def add_certificate(
        self,
        namespace: str,
        name: str,
        *,
        annotations: Mapping[str, str] | None = None,
        expires_in_s: float = 10 * 86_400,
        duration_s: float = DEFAULT_DURATION_S,
        revision: int = 1,
        status: Any = ...,
    ) -> JSON:
        """A Certificate as cert-manager leaves it after issuing revision ``revision``:
        expiring ``expires_in_s`` from now (Ready False ``Expired`` when past), its Secret
        ``<name>-tls``. ``status`` replaces the status outright (None: none at all)."""
        self._server.add_namespace(namespace)
        now = dt.datetime.now(dt.UTC)
        not_after = now + dt.timedelta(seconds=expires_in_s)
        hours = int(duration_s // 3600)
        certificate: JSON = {
            "apiVersion": API_VERSION, "kind": "Certificate",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"secretName": f"{name}-tls", "dnsNames": [f"{name}.example.internal"],
                     "duration": f"{hours}h0m0s",
                     "issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer",
                                   "group": GROUP}},
        }  # fmt: skip
        if annotations:
            certificate["metadata"]["annotations"] = dict(annotations)
        if status is ...:
            certificate["status"] = self._issued_status(certificate, revision, not_after, [])
        elif status is not None:
            certificate["status"] = copy.deepcopy(status)
        created = self._server._create(CERTIFICATES, certificate)
        return copy.deepcopy(created)

    def certificate(self, namespace: str, name: str) -> JSON:
        return copy.deepcopy(self._server._get(CERTIFICATES, namespace, name))

    def certificate_requests(self, namespace: str) -> list[JSON]:
        return copy.deepcopy(self._server._items(CERTIFICATEREQUESTS, namespace))

    def touch(self, namespace: str, name: str) -> JSON:
        """Another writer (``kubectl label``): a new resourceVersion, nothing else of note."""
        current = self._server._get(CERTIFICATES, namespace, name)
        updated = copy.deepcopy(current)
        labels = updated["metadata"].setdefault("labels", {})
        labels["touched"] = str(int(labels.get("touched", "0")) + 1)
        self._server._update(CERTIFICATES, updated)
        return copy.deepcopy(updated)

    # ---- HTTP handlers ---------------------------------------------------------------------

    def get_status(self, call: _Call) -> web.Response:
        return self._server._json_response(
            self._server._get(CERTIFICATES, call.namespace or "", call.name)
        )

    def patch(self, call: _Call) -> web.Response:
        """The object itself: its metadata and spec; its status is not written here."""
        return self._write(call, status_only=False)

    def patch_status(self, call: _Call) -> web.Response:
        """``/status``: only the status is written, whatever else the patch changed."""
        return self._write(call, status_only=True)

    def _write(self, call: _Call, *, status_only: bool) -> web.Response:
        server, namespace = self._server, call.namespace or ""
        content_type = call.content_type.split(";")[0].strip().lower()
        if content_type not in (MERGE_PATCH, JSON_PATCH):
            raise ApiError(
                415, "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types"
                f" include: {_CRD_PATCH_TYPES}",
            )  # fmt: skip
        current = server._get(CERTIFICATES, namespace, call.name)
        patched = server._apply_patch(current, call)
        server._check_name(patched, call.name, namespace)
        sent = (patched.get("metadata") or {}).get("resourceVersion")
        if self.interleave_writes > 0 and not call.dry_run:
            self.interleave_writes -= 1
            self.touch(namespace, call.name)
            current = server._get(CERTIFICATES, namespace, call.name)
        if sent and sent != current["metadata"]["resourceVersion"]:
            raise _conflict(GROUP, CERTIFICATES.resource, call.name, _OPTIMISTIC_LOCK)
        updated = copy.deepcopy(current)
        if status_only:
            updated["status"] = copy.deepcopy(patched.get("status"))
            if updated["status"] is None:
                del updated["status"]
            errors = _schema_errors(updated.get("status"))
            if errors:
                raise _invalid("Certificate", GROUP, call.name, errors)
        else:
            meta = updated["metadata"]
            for field in ("labels", "annotations"):
                given = (patched.get("metadata") or {}).get(field)
                if given:
                    meta[field] = copy.deepcopy(given)
                else:
                    meta.pop(field, None)
            if patched.get("spec") != current.get("spec"):
                updated["spec"] = copy.deepcopy(patched.get("spec"))
                meta["generation"] = int(meta.get("generation", 1)) + 1
        if call.dry_run:
            return server._json_response(updated)
        server._update(CERTIFICATES, updated)
        self._issuing_changed(namespace, call.name)
        return server._json_response(copy.deepcopy(server._get(CERTIFICATES, namespace, call.name)))

    # ---- the controller --------------------------------------------------------------------

    def _issuing_changed(self, namespace: str, name: str) -> None:
        certificate = self._server._get(CERTIFICATES, namespace, name)
        status = certificate.get("status") or {}
        issuing = [c for c in status.get("conditions") or [] if c.get("type") == "Issuing"]
        if not issuing or issuing[0].get("status") != "True":
            return
        uid, revision = certificate["metadata"]["uid"], int(status.get("revision") or 0)
        if (uid, revision) in self._pending:
            return
        self._pending.add((uid, revision))
        self._after(self.request_lag_s, lambda: self._request(namespace, name, uid, revision))

    def _after(self, lag_s: tuple[float, float], step: Callable[[], None]) -> None:
        if lag_s[1] <= 0 or self._server.lags.instant:
            step()
            return
        self._server._later(time.monotonic() + self._server._draw(lag_s), step)

    def _current(self, namespace: str, name: str, uid: str, revision: int) -> JSON | None:
        """The Certificate, if it is still the one being issued (same UID and revision,
        Issuing still True); else the work is dropped, as the controller's would be."""
        found = self._server._store[CERTIFICATES.resource].get((namespace, name))
        status = (found or {}).get("status") or {}
        issuing = any(
            c.get("type") == "Issuing" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        if found is None or found["metadata"]["uid"] != uid or not issuing:
            self._pending.discard((uid, revision))
            return None
        if int(status.get("revision") or 0) != revision:
            self._pending.discard((uid, revision))
            return None
        return found

    def _request(self, namespace: str, name: str, uid: str, revision: int) -> None:
        certificate = self._current(namespace, name, uid, revision)
        if certificate is None:
            return
        server = self._server
        updated = copy.deepcopy(certificate)
        key_secret = server._generated_name(CERTIFICATES, namespace, f"{name}-")
        updated["status"]["nextPrivateKeySecretName"] = key_secret
        server._update(CERTIFICATES, updated)
        now = server._now()
        request: JSON = {
            "apiVersion": API_VERSION, "kind": "CertificateRequest",
            "metadata": {
                "name": server._generated_name(CERTIFICATEREQUESTS, namespace, f"{name}-"),
                "namespace": namespace,
                "annotations": {REVISION: str(revision + 1),
                                "cert-manager.io/certificate-name": name,
                                "cert-manager.io/private-key-secret-name": key_secret},
                "ownerReferences": [{"apiVersion": API_VERSION, "kind": "Certificate",
                                     "name": name, "uid": uid, "controller": True,
                                     "blockOwnerDeletion": True}],
            },
            "spec": {"issuerRef": copy.deepcopy(certificate["spec"].get("issuerRef")),
                     "duration": certificate["spec"].get("duration", "2160h0m0s"),
                     "request": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K"},
            "status": {"conditions": [
                _condition("Approved", "True", "cert-manager.io",
                           "Certificate request has been approved by cert-manager.io", now),
                _condition("Ready", "False", "Pending",
                           "Waiting on certificate issuance from order", now),
            ]},
        }  # fmt: skip
        created = server._create(CERTIFICATEREQUESTS, request)
        request_name = created["metadata"]["name"]
        self._event(
            certificate, "Normal", "Requested",
            f'Created new CertificateRequest resource "{request_name}"',
        )  # fmt: skip
        if self.outcome == "hang":
            return
        self._after(
            self.issue_lag_s, lambda: self._answer(namespace, name, uid, revision, request_name)
        )

    def _answer(self, namespace: str, name: str, uid: str, revision: int, request: str) -> None:
        certificate = self._current(namespace, name, uid, revision)
        self._pending.discard((uid, revision))
        if certificate is None:
            return
        server = self._server
        now = server._now()
        cr = copy.deepcopy(server._get(CERTIFICATEREQUESTS, namespace, request))
        updated = copy.deepcopy(certificate)
        if self.outcome == "fail":
            cr["status"]["conditions"] = _set_condition(
                cr["status"]["conditions"],
                _condition("Ready", "False", "Failed", self.failure_message, now),
            )
            cr["status"]["failureTime"] = now
            message = (
                "The certificate request has failed to complete and will be retried: "
                + self.failure_message
            )
            status = updated["status"]
            status["lastFailureTime"] = now
            status["failedIssuanceAttempts"] = int(status.get("failedIssuanceAttempts", 0)) + 1
            status["conditions"] = _set_condition(
                status["conditions"], _condition("Issuing", "False", "Failed", message, now)
            )
            status.pop("nextPrivateKeySecretName", None)
            server._update(CERTIFICATEREQUESTS, cr)
            server._update(CERTIFICATES, updated)
            self._event(updated, "Warning", "Failed", message)
            return
        cr["status"]["conditions"] = _set_condition(
            cr["status"]["conditions"],
            _condition("Ready", "True", "Issued", "Certificate fetched from issuer successfully",
                       now),
        )  # fmt: skip
        cr["status"]["certificate"] = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="
        server._update(CERTIFICATEREQUESTS, cr)
        duration_s = parse_duration(updated["spec"].get("duration", "2160h"))
        not_after = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=duration_s)
        kept = [c for c in updated["status"].get("conditions") or [] if c.get("type") != "Issuing"]
        updated["status"] = self._issued_status(updated, revision + 1, not_after, kept)
        server._update(CERTIFICATES, updated)
        self._event(updated, "Normal", "Issuing", "The certificate has been successfully issued")

    def _issued_status(
        self, certificate: JSON, revision: int, not_after: dt.datetime, conditions: list[JSON]
    ) -> JSON:
        """What the issuing and readiness controllers leave once ``revision`` is issued."""
        now = dt.datetime.now(dt.UTC)
        duration_s = parse_duration(certificate["spec"].get("duration", "2160h"))
        renew_before = certificate["spec"].get("renewBefore")
        before_s = parse_duration(renew_before) if renew_before else duration_s / 3
        expired = f"Certificate expired on {not_after.strftime('%a, %d %b %Y %H:%M:%S UTC')}"
        ready = (
            _condition("Ready", "True", "Ready", "Certificate is up to date and has not expired",
                       _time(now))
            if not_after > now
            else _condition("Ready", "False", "Expired", expired, _time(now))
        )  # fmt: skip
        return {
            "conditions": _set_condition(conditions, ready),
            "notAfter": _time(not_after),
            "notBefore": _time(not_after - dt.timedelta(seconds=duration_s)),
            "renewalTime": _time(not_after - dt.timedelta(seconds=before_s)),
            "revision": revision,
        }

    def _event(self, certificate: JSON, kind: str, reason: str, message: str) -> None:
        meta, now = certificate["metadata"], self._server._now()
        self._server._create(EVENTS, {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}",
                         "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": API_VERSION, "kind": "Certificate",
                               "name": meta["name"], "namespace": meta["namespace"],
                               "uid": meta["uid"]},
            "reason": reason, "message": message, "type": kind,
            "source": {"component": "cert-manager-certificates-issuing"},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        })  # fmt: skip
