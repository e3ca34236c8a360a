"""An in-memory stand-in for a kube-apiserver, with the controllers remediator depends on.

:class:`KubeApiServer` is an aiohttp server on a free loopback port. It answers the requests
remediator makes the way a real kube-apiserver does: the same paths, status codes, ``kind:
Status`` error bodies (``reason``, ``message``, ``details``, ``code``), and object JSON
(``metadata`` with ``uid``, ``resourceVersion``, ``generation``, ``creationTimestamp``, labels,
annotations, ``ownerReferences``). List items leave out ``kind`` and ``apiVersion``, as a real
server does.

Served:

* ``v1``: namespaces (get, list), pods (get, list, delete, ``pods/{name}/eviction``,
  ``pods/{name}/log``), events (create, get, list);
* ``apps/v1``: deployments (get, list, patch; ``deployments/{name}/scale`` get, patch, put),
  replicasets and daemonsets (get, list);
* ``autoscaling/v2``: horizontalpodautoscalers (get, list, patch);
* ``policy/v1``: poddisruptionbudgets (get, list);
* ``keda.sh/v1alpha1``: scaledobjects (get, list), once :meth:`KubeApiServer.install_keda`
  installed KEDA's CRD (before, its paths answer as any group not served), with what KEDA's
  operator does about one (:meth:`KubeApiServer.add_scaled_object`);
* ``cert-manager.io/v1``: certificates (get, list, patch; ``certificates/{name}/status`` get,
  patch) and certificaterequests (get, list), once :meth:`KubeApiServer.install_cert_manager`
  installed cert-manager, with what its controller does (:mod:`tests.support.cert_manager`);
* discovery (``/api``, ``/apis``, ``/api/v1``, ``/apis/{group}/{version}``), ``/version``,
  ``/healthz``, ``/livez`` and ``/readyz``.

``labelSelector`` (equality and set-based), ``fieldSelector``, ``limit``/``continue`` and
``dryRun=All`` work. PATCH takes merge patches, strategic merge patches (applied as merge
patches: lists are replaced, not merged by key) and JSON patches, and on Deployments
server-side apply (``application/apply-patch+yaml``, ``fieldManager``, ``force``). A
Deployment's ``metadata.managedFields`` are kept as the API server keeps them, by every
writer (the request's field manager, else its User-Agent's name; ``subresource: scale`` for
scale writes, the HPA controller's included): see ``managed_fields``. Other verbs, and watches,
answer ``405 MethodNotAllowed``.

After every write the controllers run until nothing changes: in background tasks after the
answer, with :data:`REALISTIC` lags (the default, what a kube-controller-manager v1.36.2
showed; see :func:`default_lags`), or inside the request with :data:`INSTANT` lags. With lags,
a ReplicaSet short of pods creates them 20 ms to 1.4 s after the write that left it short and
they become Ready 0.4 to 2 s after it (``readyReplicas`` reads one less meanwhile); an HPA acts
on a changed spec 10 s later; and after each replica change the deployment controller writes
``deployments/status`` a few more times, each a new ``resourceVersion``, and while those are
due one may land between a client's read and its guarded write: a guarded scale write often
meets 409 with no other client about. :meth:`KubeApiServer.stop` cancels what is still pending.

The controllers:

* deployment: one ReplicaSet per pod template (``<deployment>-<pod-template-hash>``), scaled to
  ``spec.replicas`` (older ones to 0), and ``status`` recomputed;
* replicaset: creates pods ``<rs-name>-<5 chars>`` to make up ``spec.replicas``. Pods that are
  terminating, ``Succeeded`` or ``Failed`` are replaced. Scaling down deletes the lowest-ranked
  pods first: unscheduled, then Pending, then not Ready, then the newest;
* daemonset: one pod per simulated node (see :meth:`KubeApiServer.add_daemonset_pod`);
* kubelet, while :attr:`KubeApiServer.kubelet` is true: schedules Pending pods and makes them
  Running and Ready, and removes terminating pods at once. While it is false, new pods stay
  ``Pending`` with no conditions, and deleted scheduled pods stay terminating. That is what a
  cluster with no scheduler and no kubelet shows;
* disruption: PodDisruptionBudget status (``currentHealthy``, ``desiredHealthy``,
  ``disruptionsAllowed``, ``expectedPods``, ``disruptedPods``, ``observedGeneration``);
* horizontal pod autoscaler: ``status.currentReplicas`` and ``status.desiredReplicas`` follow
  the target, which it rescales only when its replicas fall outside
  ``[minReplicas, maxReplicas]``.

Pod logs are what :meth:`KubeApiServer.write_log` wrote for that pod object (a pod recreated
under the same name has a new UID and an empty log; a deleted pod's log is gone). The API server
checks the options (``tailLines``, ``limitBytes``, ``sinceSeconds``: 400 when they do not parse,
422 when out of range), the pod (404) and the container (400); a pod on no node answers
``204 No Content``; then the kubelet refuses containers that are waiting, or ``previous`` when
there was no earlier run (400, its text as the message), and otherwise serves ``text/plain``:
``tailLines`` cuts to the last lines, ``sinceSeconds`` drops older lines, ``timestamps`` prefixes
RFC 3339 timestamps and ``limitBytes`` cuts the bytes, mid-character if need be. ``follow`` reads
what is there and ends.

Eviction checks the PodDisruptionBudget before the UID precondition, as the API server does:
with no disruption allowed a UID mismatch is 429; with one allowed it is 409 after the budget
was spent (the pod stays in ``status.disruptedPods`` for ``pdb_deletion_timeout_s``).

RBAC: once :meth:`KubeApiServer.load_rbac` (or :meth:`KubeApiServer.bind_rbac_of`, which loads
what ``remediator rbac`` prints) gave it any Role, ClusterRole or binding, every request of
:attr:`KubeApiServer.user` is authorized by verb, API group, resource and subresource,
resource name and namespace, and a denied one is 403 with the API server's message. With
none loaded everything is allowed.

Test control: the seeding helpers (``add_*``), :meth:`KubeApiServer.set_pod_ready`,
:meth:`KubeApiServer.set_pod_phase`, :meth:`KubeApiServer.start_rollout`,
:meth:`KubeApiServer.write_log`, the ``kubelet`` switch, :attr:`KubeApiServer.lags`, readers
for assertions, :attr:`KubeApiServer.requests` and :meth:`KubeApiServer.inject_fault`. Seeding
helpers settle at once, whatever the lags.

Typical use::

    async with KubeApiServer() as kube:
        kube.add_deployment("shop", "web", replicas=3)
        path = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token)
        ...
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import dataclasses
import datetime as dt
import hashlib
import io
import json
import math
import os
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import yaml
from aiohttp import web

from remediator.cli.main import main as remediator_main
from tests.support import managed_fields
from tests.support.lifecycle import StartStop

if TYPE_CHECKING:
    from tests.support.cert_manager import CertManager

JSON = dict[str, Any]

DEFAULT_TOKEN: Final = "remediator-test-token"
DEFAULT_USER: Final = "system:serviceaccount:remediator:remediator"
DEFAULT_IMAGE: Final = "registry.k8s.io/pause:3.10"
CONTROLLER_MANAGER: Final = "kube-controller-manager"
"""The field manager of the built-in controllers' writes."""
KEDA_OPERATOR: Final = "keda-operator"
DEFAULT_NAMESPACES: Final = ("default", "kube-node-lease", "kube-public", "kube-system")
SERVER_VERSION: Final[JSON] = {
    "major": "1",
    "minor": "36",
    "emulationMajor": "1",
    "emulationMinor": "36",
    "minCompatibilityMajor": "1",
    "minCompatibilityMinor": "35",
    "gitVersion": "v1.36.2",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.25.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}

MERGE_PATCH: Final = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH: Final = "application/strategic-merge-patch+json"
JSON_PATCH: Final = "application/json-patch+json"
APPLY_PATCH: Final = "application/apply-patch+yaml"
_ACCEPTED_PATCH_TYPES: Final = (
    "application/json-patch+json, application/merge-patch+json, "
    "application/apply-patch+yaml, application/strategic-merge-patch+json"
)

_NAME_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"
_REVISION: Final = "deployment.kubernetes.io/revision"
_DESIRED_REPLICAS: Final = "deployment.kubernetes.io/desired-replicas"
_MAX_REPLICAS: Final = "deployment.kubernetes.io/max-replicas"
_REVISION_HISTORY: Final = "deployment.kubernetes.io/revision-history"
_OPTIMISTIC_LOCK: Final = (
    "the object has been modified; please apply your changes to the latest version and try again"
)
_META_ORDER: Final = (
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
)
_GENERIC_MESSAGES: Final[dict[int, tuple[str, str]]] = {
    400: ("BadRequest", "the server rejected our request for an unknown reason"),
    401: ("Unauthorized", "Unauthorized"),
    403: ("Forbidden", "the server does not allow access to the requested resource"),
    404: ("NotFound", "the server could not find the requested resource"),
    405: ("MethodNotAllowed", "the server does not allow this method on the requested resource"),
    406: (
        "NotAcceptable",
        "the server was unable to respond with a content type that the client supports",
    ),
    409: ("Conflict", "the server reported a conflict"),
    410: ("Expired", "the resource has expired"),
    413: ("RequestEntityTooLarge", "the request entity is too large"),
    415: ("UnsupportedMediaType", "the server does not support the media type"),
    422: ("Invalid", "the server rejected our request due to an error in our request"),
    429: ("TooManyRequests", "Too many requests, please try again later."),
    500: ("InternalError", "Internal error occurred: injected fault"),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
    504: (
        "Timeout",
        "Timeout: request did not complete within the allotted timeout",
    ),
}


# --------------------------------------------------------------------------------------------
# Resource kinds


@dataclasses.dataclass(frozen=True)
class _Kind:
    resource: str
    singular: str
    kind: str
    group: str
    version: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    has_generation: bool = False
    verbs: tuple[str, ...] = (
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    )

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``resource.group`` as the API server writes it in messages (``deployments.apps``)."""
        return f"{self.resource}.{self.group}" if self.group else self.resource


NAMESPACES: Final = _Kind(
    "namespaces",
    "namespace",
    "Namespace",
    "",
    "v1",
    namespaced=False,
    short_names=("ns",),
    verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
)
PODS: Final = _Kind("pods", "pod", "Pod", "", "v1", short_names=("po",), has_generation=True)
EVENTS: Final = _Kind("events", "event", "Event", "", "v1", short_names=("ev",))
DEPLOYMENTS: Final = _Kind(
    "deployments",
    "deployment",
    "Deployment",
    "apps",
    "v1",
    short_names=("deploy",),
    has_generation=True,
)
REPLICASETS: Final = _Kind(
    "replicasets",
    "replicaset",
    "ReplicaSet",
    "apps",
    "v1",
    short_names=("rs",),
    has_generation=True,
)
DAEMONSETS: Final = _Kind(
    "daemonsets", "daemonset", "DaemonSet", "apps", "v1", short_names=("ds",), has_generation=True
)
HPAS: Final = _Kind(
    "horizontalpodautoscalers",
    "horizontalpodautoscaler",
    "HorizontalPodAutoscaler",
    "autoscaling",
    "v2",
    short_names=("hpa",),
)
PDBS: Final = _Kind(
    "poddisruptionbudgets",
    "poddisruptionbudget",
    "PodDisruptionBudget",
    "policy",
    "v1",
    short_names=("pdb",),
    has_generation=True,
)
SCALEDOBJECTS: Final = _Kind(
    "scaledobjects",
    "scaledobject",
    "ScaledObject",
    "keda.sh",
    "v1alpha1",
    short_names=("so",),
    has_generation=True,
)
"""KEDA's CRD: served only once :meth:`KubeApiServer.install_keda` installed it."""
CERTIFICATES: Final = _Kind(
    "certificates", "certificate", "Certificate", "cert-manager.io", "v1",
    short_names=("cert", "certs"), has_generation=True,
)  # fmt: skip
CERTIFICATEREQUESTS: Final = _Kind(
    "certificaterequests", "certificaterequest", "CertificateRequest", "cert-manager.io", "v1",
    short_names=("cr", "crs"), has_generation=True,
)  # fmt: skip
"""cert-manager's CRDs: served only once :meth:`KubeApiServer.install_cert_manager` did."""
_KINDS: Final = (
    NAMESPACES, PODS, EVENTS, DEPLOYMENTS, REPLICASETS, DAEMONSETS, HPAS, PDBS, SCALEDOBJECTS,
    CERTIFICATES, CERTIFICATEREQUESTS,
)  # fmt: skip
_SERVED: Final[dict[tuple[str, str], dict[str, _Kind]]] = {}
for _kind in _KINDS:
    _SERVED.setdefault((_kind.group, _kind.version), {})[_kind.resource] = _kind
_SUBRESOURCE_PAIRS: Final = (
    ("pods", "eviction"), ("pods", "log"), ("deployments", "scale"), ("certificates", "status"),
)  # fmt: skip
_SUBRESOURCES: Final[dict[str, list[JSON]]] = {
    "v1": [
        {
            "name": "pods/eviction",
            "singularName": "",
            "namespaced": True,
            "group": "policy",
            "version": "v1",
            "kind": "Eviction",
            "verbs": ["create"],
        },
        {
            "name": "pods/log",
            "singularName": "",
            "namespaced": True,
            "kind": "Pod",
            "verbs": ["get"],
        },
    ],
    "apps/v1": [
        {
            "name": "deployments/scale",
            "singularName": "",
            "namespaced": True,
            "group": "autoscaling",
            "version": "v1",
            "kind": "Scale",
            "verbs": ["get", "patch", "update"],
        }
    ],
    "cert-manager.io/v1": [
        {
            "name": "certificates/status",
            "singularName": "",
            "namespaced": True,
            "kind": "Certificate",
            "verbs": ["get", "patch", "update"],
        }
    ],
}


# --------------------------------------------------------------------------------------------
# Errors


class ApiError(Exception):
    """An error answer: a ``kind: Status`` body, or plain text when ``text`` is set."""

    def __init__(
        self,
        code: int,
        reason: str | None,
        message: str,
        details: JSON | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        text: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = dict(headers or {})
        self.text = text

    def body(self) -> JSON:
        status: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
        }
        if self.reason:
            status["reason"] = self.reason
        if self.details is not None:
            status["details"] = self.details
        status["code"] = self.code
        return status


def _details(name: str, group: str, kind: str) -> JSON:
    details: JSON = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    if kind:
        details["kind"] = kind
    return details


def _not_found(kind: _Kind, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{kind.qualified} "{name}" not found',
        _details(name, kind.group, kind.resource),
    )


def _conflict(group: str, resource: str, name: str, why: str) -> ApiError:
    qualified = f"{resource}.{group}" if group else resource
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified} "{name}": {why}',
        _details(name, group, resource),
    )


def _bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


@dataclasses.dataclass(frozen=True)
class _FieldError:
    field: str
    reason: str  # FieldValueInvalid, FieldValueRequired, ...
    detail: str  # the text after the field name, e.g. 'Invalid value: -1: must be ...'


def _invalid(kind: str, group: str, name: str, errors: list[_FieldError]) -> ApiError:
    qualified = f"{kind}.{group}" if group else kind
    rendered = [f"{e.field}: {e.detail}" for e in errors]
    summary = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    details = _details(name, group, kind)
    details["causes"] = [
        {"reason": e.reason, "message": e.detail, "field": e.field} for e in errors
    ]
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {summary}', details)


def _go_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value)


# --------------------------------------------------------------------------------------------
# Label and field selectors


class SelectorError(ValueError):
    """A label or field selector that does not parse."""


_LABEL_KEY = re.compile(
    r"^(?:[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^(?:(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SELECTOR_TOKEN = re.compile(r"\s*(==|!=|=|!|\(|\)|,|>|<|[^\s=!(),<>]+)")


@dataclasses.dataclass(frozen=True)
class Requirement:
    """One label requirement: ``op`` is one of ``=``, ``!=``, ``in``, ``notin``, ``exists``,
    ``!`` (does not exist), ``gt``, ``lt``."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case "=" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values
            case "exists":
                return present
            case "!":
                return not present
            case "gt" | "lt":
                if value is None:
                    return False
                try:
                    number = int(value)
                except ValueError:
                    return False
                bound = int(self.values[0])
                return number > bound if self.op == "gt" else number < bound
        raise AssertionError(self.op)

    def __str__(self) -> str:
        match self.op:
            case "exists":
                return self.key
            case "!":
                return f"!{self.key}"
            case "in" | "notin":
                return f"{self.key} {self.op} ({','.join(sorted(self.values))})"
            case "gt":
                return f"{self.key}>{self.values[0]}"
            case "lt":
                return f"{self.key}<{self.values[0]}"
        return f"{self.key}{self.op}{self.values[0]}"


def _check_key(key: str) -> None:
    if len(key) > 317 or not _LABEL_KEY.match(key):
        raise SelectorError(
            f'unable to parse requirement: invalid label key "{key}": name part must consist of '
            "alphanumeric characters, '-', '_' or '.', and must start and end with an "
            "alphanumeric character"
        )


def _check_value(key: str, value: str) -> None:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise SelectorError(
            f'unable to parse requirement: values[0][{key}]: Invalid value: "{value}": a valid '
            "label must be an empty string or consist of alphanumeric characters, '-', '_' or "
            "'.', and must start and end with an alphanumeric character"
        )


def parse_label_selector(text: str) -> list[Requirement]:
    """Parse a ``labelSelector`` query value the way the API server does.

    Supports ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k``, ``!k``,
    ``k>1``, ``k<1``, joined by commas. The empty selector matches everything.
    """
    tokens: list[str] = []
    pos = 0
    stripped = text.rstrip()
    while pos < len(stripped):
        m = _SELECTOR_TOKEN.match(stripped, pos)
        if m is None:  # pragma: no cover - the pattern accepts any non-space character
            raise SelectorError(f"unable to parse selector {text!r}")
        tokens.append(m.group(1))
        pos = m.end()
    if not tokens:
        return []
    special = {"==", "!=", "=", "!", "(", ")", ",", ">", "<"}
    reqs: list[Requirement] = []
    i = 0

    def peek() -> str | None:
        return tokens[i] if i < len(tokens) else None

    def expected(what: str) -> SelectorError:
        found = peek()
        return SelectorError(f"found '{found if found is not None else ''}', expected: {what}")

    while True:
        tok = peek()
        if tok == "!":
            i += 1
            key = peek()
            if key is None or key in special:
                raise expected("identifier after '!'")
            _check_key(key)
            i += 1
            reqs.append(Requirement(key, "!"))
        elif tok is not None and tok not in special:
            key = tok
            _check_key(key)
            i += 1
            op = peek()
            if op is None or op == ",":
                reqs.append(Requirement(key, "exists"))
            elif op in ("=", "==", "!="):
                i += 1
                value = peek()
                if value is None or value == ",":
                    value = ""
                elif value in special:
                    raise expected("identifier")
                else:
                    i += 1
                _check_value(key, value)
                reqs.append(Requirement(key, "!=" if op == "!=" else "=", (value,)))
            elif op in ("in", "notin"):
                i += 1
                if peek() != "(":
                    raise expected("'('")
                i += 1
                values: list[str] = []
                while True:
                    value = peek()
                    if value == ")":
                        i += 1
                        break
                    if value == ",":
                        if not values:
                            values.append("")
                        i += 1
                        if peek() in (",", ")"):
                            values.append("")
                        continue
                    if value is None or value in special:
                        raise expected("',', ')' or identifier")
                    values.append(value)
                    i += 1
                if not values:
                    raise SelectorError(
                        "unable to parse requirement: values: Invalid value: []string{}: "
                        "for 'in', 'notin' operators, values set can't be empty"
                    )
                for value in values:
                    _check_value(key, value)
                reqs.append(Requirement(key, op, tuple(values)))
            elif op in (">", "<"):
                i += 1
                value = peek()
                if value is None or not re.fullmatch(r"-?\d+", value):
                    raise SelectorError(
                        "unable to parse requirement: for 'Gt', 'Lt' operators, the value must "
                        "be an integer"
                    )
                i += 1
                reqs.append(Requirement(key, "gt" if op == ">" else "lt", (value,)))
            else:
                raise expected("in, notin, =, ==, !=, gt, lt")
        else:
            raise expected("!, identifier")
        tok = peek()
        if tok is None:
            break
        if tok != ",":
            raise expected("',' or 'end of string'")
        i += 1
    return reqs


def selector_requirements(selector: Mapping[str, Any] | None) -> list[Requirement]:
    """The requirements of a ``metav1.LabelSelector`` (``matchLabels``/``matchExpressions``)."""
    if not selector:
        return []
    reqs = [Requirement(k, "=", (str(v),)) for k, v in (selector.get("matchLabels") or {}).items()]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in selector.get("matchExpressions") or []:
        reqs.append(
            Requirement(expr["key"], ops[expr["operator"]], tuple(expr.get("values") or ()))
        )
    return sorted(reqs, key=lambda r: r.key)


def selector_string(selector: Mapping[str, Any] | None) -> str:
    """A label selector as the API server renders it (``Scale.status.selector``)."""
    return ",".join(str(r) for r in selector_requirements(selector))


def _matches(reqs: Iterable[Requirement], labels: Mapping[str, str]) -> bool:
    return all(r.matches(labels) for r in reqs)


def _field_value(kind: _Kind, obj: JSON, field: str) -> str | None:
    meta = obj["metadata"]
    if field == "metadata.name":
        return str(meta["name"])
    if field == "metadata.namespace":
        return str(meta.get("namespace", ""))
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if kind is PODS:
        values = {
            "spec.nodeName": spec.get("nodeName", ""),
            "spec.restartPolicy": spec.get("restartPolicy", ""),
            "spec.schedulerName": spec.get("schedulerName", ""),
            "spec.serviceAccountName": spec.get("serviceAccountName", ""),
            "spec.hostNetwork": "true" if spec.get("hostNetwork") else "false",
            "status.phase": status.get("phase", ""),
            "status.podIP": status.get("podIP", ""),
            "status.nominatedNodeName": status.get("nominatedNodeName", ""),
        }
        return values.get(field)
    if kind is EVENTS:
        if field.startswith("involvedObject."):
            sub = field.removeprefix("involvedObject.")
            if sub in (
                "kind",
                "namespace",
                "name",
                "uid",
                "apiVersion",
                "resourceVersion",
                "fieldPath",
            ):
                return str((obj.get("involvedObject") or {}).get(sub, ""))
            return None
        if field == "source":
            return str((obj.get("source") or {}).get("component", ""))
        if field in ("reason", "reportingComponent", "type"):
            return str(obj.get(field, ""))
        return None
    if kind is NAMESPACES and field == "status.phase":
        return str(status.get("phase", ""))
    if kind is REPLICASETS and field == "status.replicas":
        return str(status.get("replicas", 0))
    return None


def _parse_field_selector(text: str) -> list[tuple[str, bool, str]]:
    """``[(field, equal, value)]`` from ``a=b,c!=d``."""
    out: list[tuple[str, bool, str]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        m = re.fullmatch(r"([^=!\s]+)\s*(==|=|!=)\s*(.*)", part)
        if m is None:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        out.append((m.group(1), m.group(2) != "!=", m.group(3)))
    return out


# --------------------------------------------------------------------------------------------
# Patches


def _strip_directives(patch: Any) -> Any:
    if isinstance(patch, dict):
        return {k: _strip_directives(v) for k, v in patch.items() if not k.startswith("$")}
    if isinstance(patch, list):
        return [_strip_directives(v) for v in patch]
    return patch


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: ``null`` deletes a key, objects merge, everything else
    replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"JSON pointer must start with '/': {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _resolve(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(doc, list):
            doc = doc[int(part)]
        elif isinstance(doc, dict):
            doc = doc[part]
        else:
            raise KeyError(part)
    return doc


def _json_patch(doc: JSON, ops: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test)."""
    if not isinstance(ops, list):
        raise ValueError("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    result: Any = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise ValueError(f"invalid JSON patch operation: {op!r}")
        parts = _pointer(op["path"])
        name = op["op"]
        if name == "test":
            if _resolve(result, parts) != op.get("value"):
                raise ValueError("testing value " + op["path"] + " failed: test failed")
            continue
        if name in ("move", "copy"):
            value = copy.deepcopy(_resolve(result, _pointer(op["from"])))
            if name == "move":
                result = _json_patch(result, [{"op": "remove", "path": op["from"]}])
            result = _json_patch(result, [{"op": "add", "path": op["path"], "value": value}])
            continue
        if not parts:
            if name == "remove":
                raise ValueError("cannot remove the whole document")
            result = copy.deepcopy(op.get("value"))
            continue
        parent = _resolve(result, parts[:-1])
        last = parts[-1]
        if name == "add":
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                parent.insert(index, copy.deepcopy(op.get("value")))
            else:
                parent[last] = copy.deepcopy(op.get("value"))
        elif name == "replace":
            if isinstance(parent, list):
                parent[int(last)] = copy.deepcopy(op.get("value"))
            else:
                if last not in parent:
                    raise ValueError(
                        f"replace operation does not apply: doc is missing key: {op['path']}"
                    )
                parent[last] = copy.deepcopy(op.get("value"))
        elif name == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                if last not in parent:
                    raise ValueError(
                        f"remove operation does not apply: doc is missing path: {op['path']}"
                    )
                del parent[last]
        else:
            raise ValueError(f"Unexpected kind: {name}")
    return result


# --------------------------------------------------------------------------------------------
# Small helpers


def _fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for byte in data:
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def _safe_encode(text: str) -> str:
    return "".join(_NAME_ALPHABET[ord(c) % len(_NAME_ALPHABET)] for c in text)


def _template_hash(template: JSON) -> str:
    """A ``pod-template-hash`` in the API server's alphabet, stable for equal templates."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    return _safe_encode(str(_fnv32a(canonical)))


def _ordered_meta(meta: JSON) -> JSON:
    out: JSON = {k: meta[k] for k in _META_ORDER if k in meta}
    out.update({k: v for k, v in meta.items() if k not in out})
    return out


def _time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _labels(obj: JSON) -> dict[str, str]:
    return dict(obj["metadata"].get("labels") or {})


def _controller_uid(obj: JSON) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref["uid"])
    return None


def _controller_ref(obj: JSON) -> JSON | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def _owner_ref(owner: JSON) -> JSON:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def is_pod_ready(pod: JSON) -> bool:
    """True when the pod has a ``Ready`` condition with status ``True``."""
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _is_terminating(pod: JSON) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def _is_active(pod: JSON) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return not _is_terminating(pod) and phase not in ("Succeeded", "Failed")


def _scaled(value: int | str, total: int, *, round_up: bool) -> int:
    """``intstr.GetScaledValueFromIntOrPercent``."""
    if isinstance(value, bool):
        raise ValueError(f"invalid value for IntOrString: {value!r}")
    if isinstance(value, int):
        return value
    if not value.endswith("%") or not value[:-1].isdigit():
        raise ValueError(
            f'invalid value for IntOrString: invalid type: string is not a percentage: "{value}"'
        )
    exact = int(value[:-1]) * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def _nonzero(pairs: Iterable[tuple[str, Any]]) -> JSON:
    return {k: v for k, v in pairs if v}


_GO_ESCAPES: Final = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def _go_quote(text: str) -> str:
    """``strconv.Quote`` (``%q``): printable characters as they are, the rest escaped."""
    out = []
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        elif char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


_GO_INT: Final = re.compile(r"[+-]?[0-9]+")


def _parse_int64(text: str) -> int:
    """``strconv.ParseInt(text, 10, 64)``; its error is the 400 the API server answers."""
    if not _GO_INT.fullmatch(text):
        raise _bad_request(f"strconv.ParseInt: parsing {_go_quote(text)}: invalid syntax")
    value = int(text)
    if not -(2**63) <= value < 2**63:
        raise _bad_request(f"strconv.ParseInt: parsing {_go_quote(text)}: value out of range")
    return value


# --------------------------------------------------------------------------------------------
# Pod logs


@dataclasses.dataclass(frozen=True)
class _LogLine:
    at: dt.datetime  # UTC
    text: bytes  # without its newline


@dataclasses.dataclass(frozen=True)
class _LogOptions:
    """``PodLogOptions`` as the API server decodes them from the query (first value of each;
    a bool is false only for ``0`` and ``false`` in any case)."""

    container: str = ""
    previous: bool = False
    timestamps: bool = False
    since_seconds: int | None = None
    tail_lines: int | None = None
    limit_bytes: int | None = None

    @classmethod
    def of(cls, query: Mapping[str, str]) -> _LogOptions:
        def flag(key: str) -> bool:
            value = query.get(key)
            return value is not None and value != "0" and value.casefold() != "false"

        def number(key: str) -> int | None:
            value = query.get(key)
            return None if value is None else _parse_int64(value)

        # Decoded in the order of the PodLogOptions fields: the first bad one is reported.
        return cls(
            container=query.get("container", ""),
            previous=flag("previous"),
            since_seconds=number("sinceSeconds"),
            timestamps=flag("timestamps"),
            tail_lines=number("tailLines"),
            limit_bytes=number("limitBytes"),
        )

    def errors(self) -> list[_FieldError]:
        """``ValidatePodLogOptions``."""
        bounds = (
            ("tailLines", self.tail_lines, 0, "must be greater than or equal to 0"),
            ("limitBytes", self.limit_bytes, 1, "must be greater than 0"),
            ("sinceSeconds", self.since_seconds, 1, "must be greater than 0"),
        )
        return [
            _FieldError(field, "FieldValueInvalid", f"Invalid value: {value}: {why}")
            for field, value, low, why in bounds
            if value is not None and value < low
        ]


def _container_names(pod: JSON) -> list[str]:
    """Every container of the pod, init containers first (``podutil.VisitContainers``)."""
    spec = pod["spec"]
    kinds = ("initContainers", "containers", "ephemeralContainers")
    return [str(c["name"]) for kind in kinds for c in spec.get(kind) or []]


def _log_container(pod: JSON, wanted: str) -> str:
    """The container whose log is read (``validateContainer``): the one named, or the pod's
    only one."""
    name = pod["metadata"]["name"]
    if wanted:
        if wanted not in _container_names(pod):
            raise _bad_request(f"container {wanted} is not valid for pod {name}")
        return wanted
    containers = [str(c["name"]) for c in pod["spec"].get("containers") or []]
    if len(containers) == 1:
        return containers[0]
    choices = "" if not containers else f", choose one of: [{' '.join(_container_names(pod))}]"
    raise _bad_request(f"a container name must be specified for pod {name}{choices}")


def _log_refusal(pod: JSON, container: str, previous: bool) -> str | None:
    """Why the kubelet serves no log for this container (``validateContainerLogStatus``), or
    None when it serves one."""
    status = pod.get("status") or {}
    kinds = ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses")
    found = [s for kind in kinds for s in status.get(kind) or [] if s.get("name") == container]
    which = f"container {_go_quote(container)} in pod {_go_quote(pod['metadata']['name'])}"
    if not found:
        return f"{which} is not available"
    state, last = found[0].get("state") or {}, (found[0].get("lastState") or {}).get("terminated")
    if previous:
        return (
            None if last and last.get("containerID") else f"previous terminated {which} not found"
        )
    if state.get("running") is not None:
        return None
    if state.get("terminated") is not None:
        ran = state["terminated"].get("containerID") or (last and last.get("containerID"))
        return None if ran else f"{which} is terminated"
    if last is not None:
        return None if last.get("containerID") else f"{which} is terminated"
    if state.get("waiting") is not None:
        reason = str(state["waiting"].get("reason", ""))
        known = {
            "ErrImagePull": "image can't be pulled",
            "ImagePullBackOff": "trying and failing to pull image",
        }
        return f"{which} is waiting to start: {known.get(reason, reason)}"
    return f"{which} is waiting to start - no logs yet"


def _rfc3339_nano(moment: dt.datetime) -> str:
    """Go's ``time.RFC3339Nano`` in UTC: trailing zeros of the fraction dropped."""
    utc = moment.astimezone(dt.UTC)
    fraction = f".{utc.microsecond:06d}".rstrip("0") if utc.microsecond else ""
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def _go_seconds(seconds: int) -> dt.timedelta:
    """``time.Duration(seconds) * time.Second``: the kubelet's product wraps around in int64, so
    a huge ``sinceSeconds`` can point into the future."""
    nanoseconds = (seconds * 1_000_000_000 + 2**63) % 2**64 - 2**63
    return dt.timedelta(microseconds=nanoseconds // 1000)


def _log_body(lines: Sequence[_LogLine], options: _LogOptions, now: dt.datetime) -> bytes:
    """What the kubelet streams (``ReadLogs``): the last ``tailLines`` lines of the file, those
    not older than ``sinceSeconds``, with timestamps, cut to ``limitBytes`` bytes."""
    if options.tail_lines is not None:
        lines = lines[max(len(lines) - options.tail_lines, 0) :]
    since = None if options.since_seconds is None else now - _go_seconds(options.since_seconds)
    out = bytearray()
    for line in lines:
        if since is not None and line.at < since:
            continue
        if options.timestamps:
            out += _rfc3339_nano(line.at).encode() + b" "
        out += line.text + b"\n"
    if options.limit_bytes is not None:
        del out[options.limit_bytes :]
    return bytes(out)


# --------------------------------------------------------------------------------------------
# Requests, faults and request attributes


@dataclasses.dataclass
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    body: Any  # decoded JSON, the raw text when it is not JSON, or None when empty
    content_type: str
    status: int | None = None  # the HTTP status answered; None when the connection was dropped


@dataclasses.dataclass
class Fault:
    """An injected misbehaviour; see :meth:`KubeApiServer.inject_fault`."""

    path: re.Pattern[str]
    method: str | None
    remaining: int | None  # None: until cleared
    delay: float = 0.0
    status: int | None = None
    message: str | None = None
    retry_after: int | None = None
    drop: bool = False
    served: bool = False
    body: Any = None
    hits: int = 0

    @property
    def stage(self) -> str:
        if self.status is not None:
            return "status"
        return "served" if self.served else "network"

    @property
    def terminal(self) -> bool:
        return self.drop or self.status is not None

    def matches(self, method: str, path: str) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path.search(path) is not None

    def consume(self) -> None:
        self.hits += 1
        if self.remaining is not None:
            self.remaining -= 1


@dataclasses.dataclass(frozen=True)
class _Attributes:
    """What the authorizer sees of a request (``RequestInfo``)."""

    verb: str
    path: str
    resource_request: bool
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    @classmethod
    def of(cls, method: str, path: str, query: Mapping[str, str]) -> _Attributes:
        parts = [p for p in path.split("/") if p]
        plain = cls(method.lower(), path, False)
        if not parts or parts[0] not in ("api", "apis"):
            return plain
        if parts[0] == "api":
            group, rest = "", parts[2:]
        else:
            group, rest = (parts[1], parts[3:]) if len(parts) >= 3 else ("", [])
        if not rest:
            return plain
        verb = {
            "POST": "create",
            "GET": "get",
            "HEAD": "get",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete",
        }.get(method.upper(), method.lower())
        namespace = ""
        if rest[0] == "namespaces" and len(rest) > 1:
            namespace = rest[1]
            if len(rest) > 2 and rest[2] not in ("status", "finalize"):
                rest = rest[2:]
        resource = rest[0]
        name = rest[1] if len(rest) > 1 else ""
        subresource = rest[2] if len(rest) > 2 else ""
        if not name and verb == "get":
            verb = "watch" if query.get("watch") in ("1", "true") else "list"
        if not name and verb == "delete":
            verb = "deletecollection"
        return cls(verb, path, True, group, resource, subresource, namespace, name)

    def forbidden(self, user: str) -> ApiError:
        """The answer RBAC gives when it denies this request to ``user``."""
        if not self.resource_request:
            why = f'User "{user}" cannot {self.verb} path "{self.path}"'
            return ApiError(403, "Forbidden", f"forbidden: {why}", {})
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        why = f'User "{user}" cannot {self.verb} resource "{resource}" in API group "{self.group}"'
        why += (
            f' in the namespace "{self.namespace}"' if self.namespace else " at the cluster scope"
        )
        qualified = f"{self.resource}.{self.group}" if self.group else self.resource
        target = f'{qualified} "{self.name}"' if self.name else qualified
        return ApiError(
            403,
            "Forbidden",
            f"{target} is forbidden: {why}",
            _details(self.name, self.group, self.resource),
        )


# --------------------------------------------------------------------------------------------
# Controller lags


@dataclasses.dataclass(frozen=True)
class Lags:
    """How long the simulated controllers take after a request gave them work. Ranges are
    ``(low, high)`` seconds, drawn uniformly from the server's seeded random.

    Seeding helpers (``add_*``, ``set_*``, ...) always settle at once; lags apply to the work
    requests cause, and to what that work causes in turn.
    """

    pod_created_s: tuple[float, float] = (0.0, 0.0)
    """From the write that left a ReplicaSet or DaemonSet short (an eviction, a delete, a
    scale-out) to its controller creating the pods."""
    pod_ready_s: tuple[float, float] = (0.0, 0.0)
    """From that same write to the kubelet making the new pods Running and Ready (never
    before they exist)."""
    hpa_sync_s: float = 0.0
    """From a write to an HPA's spec to the HPA controller acting on it."""
    status_writes: tuple[int, int] = (0, 0)
    """How many extra ``deployments/status`` writes (each a new ``resourceVersion``) the
    deployment controller makes after each change of a Deployment's replicas."""
    status_write_gap_s: tuple[float, float] = (0.0, 0.0)
    """The gap before each of those writes."""
    busy_conflict: float = 0.0
    """The chance that, while some of those writes are still to come, one of them lands
    between a client's read of a Deployment (or its scale) and its guarded write: the write
    meets 409, however quickly it followed the read."""

    @property
    def instant(self) -> bool:
        return self == INSTANT


INSTANT: Final = Lags()
"""Controllers settle inside the request that gave them work: no real cluster does this."""

REALISTIC: Final = Lags(
    pod_created_s=(0.02, 1.4),
    pod_ready_s=(0.4, 2.0),
    hpa_sync_s=10.0,
    status_writes=(2, 4),
    status_write_gap_s=(0.02, 0.4),
    busy_conflict=0.5,
)
"""What kube-controller-manager v1.36.2 showed (see the module documentation)."""


def default_lags() -> Lags:
    """:data:`REALISTIC`, or :data:`INSTANT` when ``KUBE_API_LAGS=instant`` is set (to tell
    a failure the lags cause from one they do not)."""
    return INSTANT if os.environ.get("KUBE_API_LAGS") == "instant" else REALISTIC


# --------------------------------------------------------------------------------------------
# RBAC

RBAC_API_VERSION: Final = "rbac.authorization.k8s.io/v1"
_RBAC_KINDS: Final = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
_SA_PREFIX: Final = "system:serviceaccount:"


def _groups_of(user: str) -> set[str]:
    """The groups the authenticator puts a user in."""
    groups = {"system:authenticated"}
    if user.startswith(_SA_PREFIX):
        namespace = user.removeprefix(_SA_PREFIX).partition(":")[0]
        groups |= {"system:serviceaccounts", f"system:serviceaccounts:{namespace}"}
    return groups


def _subject_matches(subject: Mapping[str, Any], user: str, binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return user == f"{_SA_PREFIX}{namespace}:{name}"
    if kind == "User":
        return user == name
    return kind == "Group" and name in _groups_of(user)


def _rule_allows(rule: Mapping[str, Any], attrs: _Attributes) -> bool:
    """``rbac.RuleAllows``: verb, API group, resource (``*``, ``res/sub`` or ``*/sub``) and
    resourceNames."""
    verbs = rule.get("verbs") or []
    groups = rule.get("apiGroups") or []
    resources = rule.get("resources") or []
    names = rule.get("resourceNames") or []
    combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    resource_ok = any(
        r in ("*", combined) or (attrs.subresource and r == f"*/{attrs.subresource}")
        for r in resources
    )
    return (
        ("*" in verbs or attrs.verb in verbs)
        and ("*" in groups or attrs.group in groups)
        and resource_ok
        and (not names or attrs.name in names)
    )


class Rbac:
    """The Roles, ClusterRoles and bindings the server holds, and the RBAC authorizer over
    them. Requests that name no resource (discovery, ``/version``) are allowed to every
    authenticated user, as the default ``system:discovery`` bindings do."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], JSON] = {}  # (kind, namespace, name)

    def load(self, objects: Iterable[Mapping[str, Any]]) -> None:
        """Add (or replace, by kind, namespace and name) RBAC objects; ``kind: List`` is
        unpacked."""
        for obj in objects:
            if obj.get("kind") == "List":
                self.load(obj.get("items") or [])
                continue
            kind, meta = obj.get("kind"), obj.get("metadata") or {}
            if kind not in _RBAC_KINDS or obj.get("apiVersion") != RBAC_API_VERSION:
                raise ValueError(
                    f"not an {RBAC_API_VERSION} Role, ClusterRole or binding: "
                    f"{obj.get('apiVersion')}/{kind}"
                )
            namespace = str(meta.get("namespace") or "") if kind.startswith("Role") else ""
            self.objects[(str(kind), namespace, str(meta["name"]))] = copy.deepcopy(dict(obj))

    def allows(self, user: str, attrs: _Attributes) -> bool:
        if not attrs.resource_request:
            return True
        for (kind, namespace, _), binding in self.objects.items():
            if kind == "RoleBinding" and namespace != attrs.namespace:
                continue
            if kind not in ("RoleBinding", "ClusterRoleBinding"):
                continue
            subjects = binding.get("subjects") or []
            if not any(_subject_matches(s, user, namespace) for s in subjects):
                continue
            ref = binding.get("roleRef") or {}
            role_key = (
                ("ClusterRole", "", ref.get("name"))
                if ref.get("kind") == "ClusterRole"
                else ("Role", namespace, ref.get("name"))
            )
            if kind == "ClusterRoleBinding" and role_key[0] != "ClusterRole":
                continue
            role = self.objects.get((str(role_key[0]), role_key[1], str(role_key[2])))
            if role and any(_rule_allows(rule, attrs) for rule in role.get("rules") or []):
                return True
        return False


# --------------------------------------------------------------------------------------------
# The server


class KubeApiServer(StartStop):
    """A stateful kube-apiserver stand-in; see the module documentation."""

    def __init__(
        self,
        *,
        token: str | None = DEFAULT_TOKEN,
        user: str = DEFAULT_USER,
        kubelet: bool = True,
        anonymous_auth: bool = False,
        seed: int | None = None,
        lags: Lags | None = None,
        pdb_deletion_timeout_s: float = 120.0,
    ) -> None:
        """``token``: the bearer token required (None: any request is accepted as ``user``).
        ``user``: the identity requests authenticate as, and the one RBAC authorizes (see
        :meth:`load_rbac`). ``kubelet``: see :attr:`kubelet`. ``anonymous_auth``: when true,
        requests without credentials are ``system:anonymous`` and are denied with 403 (the
        API server's ``--anonymous-auth=true``); when false they get 401. ``seed``: makes
        generated names and drawn lags reproducible. ``lags``: see :class:`Lags` (default
        :func:`default_lags`). ``pdb_deletion_timeout_s``: how long a pod an eviction
        counted against a PDB stays in ``status.disruptedPods`` unless it is deleted."""
        self.token = token
        self.user = user
        self.anonymous_auth = anonymous_auth
        #: The controllers' lags; may be changed at any time (it applies to work given after).
        self.lags = lags if lags is not None else default_lags()
        self.pdb_deletion_timeout_s = pdb_deletion_timeout_s
        #: The RBAC objects; enforced for every request once it holds any.
        self.rbac = Rbac()
        #: How many extra ``deployments/status`` writes the deployment controller made.
        self.status_writes = 0
        self.requests: list[RecordedRequest] = []
        #: Unexpected exceptions raised while serving (answered with 500); should stay empty.
        self.internal_errors: list[Exception] = []
        self._kubelet = kubelet
        self._faults: list[Fault] = []
        self._rng = random.Random(seed)
        self._rv = 1000
        self._store: dict[str, dict[tuple[str, str], JSON]] = {k.resource: {} for k in _KINDS}
        self._pinned_pods: set[str] = set()  # uids whose status a test set explicitly
        self._pod_seq: dict[str, int] = {}  # uid -> creation order
        self._pod_node: dict[str, str] = {}  # uid -> node a daemonset pod is bound to
        self._ds_nodes: dict[tuple[str, str], list[str]] = {}
        self._frozen_deployments: set[tuple[str, str]] = set()
        #: Images whose containers start but never pass their readiness probe: their pods
        #: stay Running and not Ready, as a bad release's do.
        self.failing_images: set[str] = set()
        #: Whether KEDA's ScaledObject CRD is installed (:meth:`install_keda`); until it is,
        #: its paths answer as those of any group the server does not serve.
        self.keda_installed = False
        #: cert-manager once :meth:`install_cert_manager` installed it: its switches and
        #: readers (:class:`tests.support.cert_manager.CertManager`); until then, None.
        self.cert_manager: CertManager | None = None
        self._uncomputed_pdbs: set[tuple[str, str]] = set()
        self._seq = 0
        self._node_count = 0
        self._ip_count = 0
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self._owners: dict[tuple[str, str], list[JSON]] | None = None
        self._settled: dict[tuple[str, tuple[str, str]], tuple[str, ...]] = {}
        self._url: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._lagged = False  # whether the running reconcile is one a request caused
        self._spawn_gates: dict[str, tuple[float, float]] = {}  # owner uid -> (cause, due)
        self._spawn_cause: float | None = None  # set while pods due to a gate are created
        self._ready_at: dict[str, float] = {}  # pod uid -> when the kubelet may make it Ready
        self._hpa_gates: dict[tuple[str, str], float] = {}  # HPA key -> when it next syncs
        self._seen_replicas: dict[str, int] = {}  # deployment uid -> spec.replicas last synced
        self._status_due: dict[str, int] = {}  # deployment uid -> status writes still to come
        self._logs: dict[str, dict[str, list[_LogLine]]] = {}  # pod uid -> container -> lines
        for namespace in DEFAULT_NAMESPACES:
            self.add_namespace(namespace)

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> str:
        """Listen on a free 127.0.0.1 port; return the base URL (``http://127.0.0.1:PORT``)."""
        if self._runner is not None:
            raise RuntimeError("KubeApiServer already started")
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self._stopping.clear()
        port = runner.addresses[0][1]
        self._url = f"http://127.0.0.1:{port}"
        return self._url

    async def stop(self) -> None:
        """Stop listening, finish pending requests (injected latency is cut short) and cancel
        the controllers' pending work."""
        self._stopping.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def url(self) -> str:
        """The base URL; only valid after :meth:`start`."""
        if self._url is None:
            raise RuntimeError("KubeApiServer not started")
        return self._url

    @property
    def resource_version(self) -> str:
        """The latest resourceVersion handed out."""
        return str(self._rv)

    # ---- knobs -----------------------------------------------------------------------------

    @property
    def kubelet(self) -> bool:
        """Whether a (very fast) kubelet runs: when true, Pending pods become Running and Ready
        at once and terminating pods disappear at once. When false, new pods stay Pending
        with no conditions and deleted scheduled pods stay terminating."""
        return self._kubelet

    @kubelet.setter
    def kubelet(self, value: bool) -> None:
        self._kubelet = value
        self._reconcile()

    # ---- RBAC ------------------------------------------------------------------------------

    def load_rbac(self, source: str | Iterable[Mapping[str, Any]]) -> None:
        """Hold these Roles, ClusterRoles, RoleBindings and ClusterRoleBindings: YAML text
        (one or more documents, as ``remediator rbac`` prints) or objects as dicts. From the
        first one on, every request is authorized against them and a denied one is 403."""
        if isinstance(source, str):
            source = [doc for doc in yaml.safe_load_all(source) if doc is not None]
        self.rbac.load(source)

    def bind_rbac_of(self, rules_dir: Path) -> str:
        """Load what ``remediator rbac --rules rules_dir`` prints for :attr:`user`'s
        ServiceAccount (run in-process through the CLI); return that YAML."""
        if not self.user.startswith(_SA_PREFIX):
            raise ValueError(f"{self.user!r} is not a ServiceAccount")
        namespace, _, name = self.user.removeprefix(_SA_PREFIX).partition(":")
        argv = ["rbac", "--rules", str(rules_dir), "--service-account", name]
        argv += ["--service-account-namespace", namespace]
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = remediator_main(argv, environ={})
        if status != 0:
            raise RuntimeError(f"remediator rbac exited {status}: {err.getvalue().strip()}")
        text = out.getvalue()
        self.load_rbac(text)
        return text

    # ---- fault injection -------------------------------------------------------------------

    def inject_fault(
        self,
        path: str = ".*",
        *,
        method: str | None = None,
        times: int | None = 1,
        delay: float = 0.0,
        status: int | None = None,
        message: str | None = None,
        retry_after: int | None = None,
        drop: bool = False,
        served: bool = False,
        body: Any = None,
    ) -> Fault:
        """Misbehave for the next ``times`` requests (``None``: until :meth:`clear_faults`)
        whose path matches the regex ``path`` (``re.search``) and, if given, whose ``method``
        matches.

        * ``delay``: wait this many seconds before answering. A fault with only a delay applies
          before authentication and lets the request go on. A delay on a ``status`` fault
          applies before that answer.
        * ``drop``: close the connection without answering, before the request is served. With
          ``served=True`` the request is served first (its effects happen) and only the answer
          is lost.
        * ``status``: answer this code instead of serving the request, after authentication.
          403 gives the RBAC denial for the request and :attr:`user`. 429 gives API Priority
          and Fairness throttling: a plain-text body and ``Retry-After`` (``retry_after``,
          default 1). Other codes give a ``kind: Status`` body with the usual ``reason``, and
          ``message`` overrides the default message. ``body`` (dict or str) replaces the body,
          and ``retry_after`` adds a ``Retry-After`` header to any status.

        Faults are checked in the order they were added; the first terminal one wins.
        """
        if status is None and not drop and delay <= 0:
            raise ValueError("a fault needs a status, drop=True or a delay")
        if status is not None and drop:
            raise ValueError("a fault either drops the connection or answers a status")
        if served and not drop:
            raise ValueError("served=True only makes sense with drop=True")
        fault = Fault(
            path=re.compile(path),
            method=method,
            remaining=times,
            delay=delay,
            status=status,
            message=message,
            retry_after=retry_after,
            drop=drop,
            served=served,
            body=body,
        )
        self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self._faults.clear()

    # ---- seeding ---------------------------------------------------------------------------

    def add_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> JSON:
        """Create a namespace (no-op returning the existing one if it exists)."""
        existing = self._store["namespaces"].get(("", name))
        if existing is not None:
            return copy.deepcopy(existing)
        ns = {
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "labels": {"kubernetes.io/metadata.name": name, **dict(labels or {})},
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }
        return copy.deepcopy(self._create(NAMESPACES, ns))

    def add_deployment(
        self,
        namespace: str,
        name: str,
        replicas: int = 3,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        *,
        image: str = DEFAULT_IMAGE,
        env: Mapping[str, str] | None = None,
        manager: str = "kubectl-create",
        strategy: Mapping[str, Any] | None = None,
        revision_history_limit: int = 10,
    ) -> JSON:
        """Create a Deployment whose selector, template labels and labels are ``labels``
        (default ``{"app": name}``), its container given ``env`` (name to value), as field
        manager ``manager`` (``kubectl create``'s by default), with ``strategy`` (default a
        rolling update of 25 % surge and 25 % unavailable); the controllers then create its
        ReplicaSet and pods."""
        self.add_namespace(namespace)
        labels = dict(labels) if labels is not None else {"app": name}
        deployment: JSON = {
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": dict(labels)},
                "template": {
                    "metadata": {"labels": dict(labels)},
                    "spec": self._pod_spec(image, env=env),
                },
                "strategy": dict(strategy)
                if strategy is not None
                else {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
                },
                "revisionHistoryLimit": revision_history_limit,
                "progressDeadlineSeconds": 600,
            },
            "status": {},
        }
        if annotations:
            deployment["metadata"]["annotations"] = dict(annotations)
        managed_fields.record_update(None, deployment, manager)
        self._create(DEPLOYMENTS, deployment)
        self._reconcile()
        return self.deployment(namespace, name)

    def add_standalone_pod(
        self,
        namespace: str,
        name: str,
        labels: Mapping[str, str],
        *,
        phase: str | None = None,
        ready: bool | None = None,
        image: str = DEFAULT_IMAGE,
        containers: Sequence[str] = ("app",),
        init_containers: Sequence[str] = (),
    ) -> JSON:
        """Create a pod with no owner, with these containers and init containers (all running
        ``image``). It follows :attr:`kubelet` unless ``phase`` or ``ready`` is given (see
        :meth:`set_pod_phase` and :meth:`set_pod_ready`); ``ready`` alone means a Running pod
        that is (not) Ready."""
        names = [*init_containers, *containers]
        if not containers or len(set(names)) != len(names):
            raise ValueError(f"a pod needs containers with distinct names, not {names}")
        self.add_namespace(namespace)
        spec = self._pod_spec(image, containers, init_containers)
        pod = self._new_pod_object(namespace, name, dict(labels), spec, None)
        self._create_pod(pod)
        if phase is None and ready is not None:
            phase = "Running"
        if phase is not None:
            self.set_pod_phase(namespace, name, phase)
        if ready is not None:
            self.set_pod_ready(namespace, name, ready)
        self._reconcile()
        return self.pod(namespace, name)

    def add_daemonset_pod(
        self, namespace: str, ds_name: str, labels: Mapping[str, str] | None = None
    ) -> JSON:
        """Add a node to DaemonSet ``ds_name`` (created on first use, with labels ``labels``,
        default ``{"app": ds_name}``); its controller then creates a pod for that node.
        Returns that pod."""
        self.add_namespace(namespace)
        key = (namespace, ds_name)
        if key not in self._store["daemonsets"]:
            labels = dict(labels) if labels is not None else {"app": ds_name}
            ds: JSON = {
                "kind": "DaemonSet",
                "apiVersion": "apps/v1",
                "metadata": {
                    "name": ds_name,
                    "namespace": namespace,
                    "labels": dict(labels),
                    "annotations": {"deprecated.daemonset.template.generation": "1"},
                },
                "spec": {
                    "selector": {"matchLabels": dict(labels)},
                    "template": {
                        "metadata": {"labels": dict(labels)},
                        "spec": self._pod_spec(DEFAULT_IMAGE),
                    },
                    "updateStrategy": {
                        "type": "RollingUpdate",
                        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
                    },
                    "revisionHistoryLimit": 10,
                },
                "status": {
                    "currentNumberScheduled": 0,
                    "numberMisscheduled": 0,
                    "desiredNumberScheduled": 0,
                    "numberReady": 0,
                },
            }
            self._create(DAEMONSETS, ds)
        self._node_count += 1
        node = f"node-{self._node_count}"
        self._ds_nodes.setdefault(key, []).append(node)
        self._reconcile()
        ds_uid = self._store["daemonsets"][key]["metadata"]["uid"]
        for pod in self._owned_pods(namespace, ds_uid):
            if self._pod_node.get(pod["metadata"]["uid"]) == node:
                return copy.deepcopy(pod)
        raise AssertionError("daemonset controller created no pod")  # pragma: no cover

    def add_pdb(
        self,
        namespace: str,
        name: str,
        selector_labels: Mapping[str, str],
        min_available: int | str | None = None,
        max_unavailable: int | str | None = None,
        computed: bool = True,
    ) -> JSON:
        """Create a policy/v1 PodDisruptionBudget selecting ``selector_labels``.
        ``min_available``/``max_unavailable`` are integers or percentages (``"50%"``).
        With ``computed=False`` the disruption controller leaves its status alone (no
        ``observedGeneration``) until :meth:`compute_pdb`."""
        if min_available is not None and max_unavailable is not None:
            raise ValueError("minAvailable and maxUnavailable cannot be both set")
        self.add_namespace(namespace)
        spec: JSON = {}
        if min_available is not None:
            spec["minAvailable"] = min_available
        spec["selector"] = {"matchLabels": dict(selector_labels)}
        if max_unavailable is not None:
            spec["maxUnavailable"] = max_unavailable
        pdb = {
            "kind": "PodDisruptionBudget",
            "apiVersion": "policy/v1",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
            "status": {
                "disruptionsAllowed": 0,
                "currentHealthy": 0,
                "desiredHealthy": 0,
                "expectedPods": 0,
            },
        }
        if not computed:
            self._uncomputed_pdbs.add((namespace, name))
        self._create(PDBS, pdb)
        self._reconcile()
        return self.pdb(namespace, name)

    def compute_pdb(self, namespace: str, name: str) -> JSON:
        """Let the disruption controller compute a PDB created with ``computed=False``."""
        self._get(PDBS, namespace, name)
        self._uncomputed_pdbs.discard((namespace, name))
        self._reconcile()
        return self.pdb(namespace, name)

    def add_hpa(
        self,
        namespace: str,
        name: str,
        target_deployment: str,
        min_replicas: int,
        max_replicas: int,
        *,
        cpu_utilization: int = 80,
    ) -> JSON:
        """Create an autoscaling/v2 HorizontalPodAutoscaler targeting a Deployment."""
        self.add_namespace(namespace)
        hpa = {
            "kind": "HorizontalPodAutoscaler",
            "apiVersion": "autoscaling/v2",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "scaleTargetRef": {
                    "kind": "Deployment",
                    "name": target_deployment,
                    "apiVersion": "apps/v1",
                },
                "minReplicas": min_replicas,
                "maxReplicas": max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {
                                "type": "Utilization",
                                "averageUtilization": cpu_utilization,
                            },
                        },
                    }
                ],
            },
            "status": {"desiredReplicas": 0},
        }
        self._create(HPAS, hpa)
        self._reconcile()
        return copy.deepcopy(self._get(HPAS, namespace, name))

    def apply(
        self,
        resource: str,
        namespace: str,
        name: str,
        body: JSON,
        manager: str,
        force: bool = False,
    ) -> JSON:
        """Server-side apply of ``body`` to Deployment ``name`` by field manager ``manager``
        (``resource`` is ``deployments``, the only kind applied here), as a PATCH of
        ``application/apply-patch+yaml`` does; ``managed_fields.ApplyConflict`` when the API
        would answer 409."""
        assert resource == DEPLOYMENTS.resource, "only Deployments are applied"
        applied = self._applied(namespace, name, copy.deepcopy(body), manager, force)
        self._reconcile()
        return applied

    def install_keda(self) -> None:
        """Install KEDA's ScaledObject CRD: ``keda.sh/v1alpha1`` ``scaledobjects`` is served."""
        self.keda_installed = True

    def install_cert_manager(self) -> CertManager:
        """Install cert-manager: its CRDs are served and its controller runs."""
        from tests.support.cert_manager import CertManager  # it builds on this module

        if self.cert_manager is None:
            self.cert_manager = CertManager(self)
        return self.cert_manager

    def _certs(self) -> CertManager:
        assert self.cert_manager is not None, "cert-manager's paths are served once installed"
        return self.cert_manager

    def add_scaled_object(
        self,
        namespace: str,
        name: str,
        target: str,
        *,
        annotations: Mapping[str, str] | None = None,
        min_replicas: int = 1,
        max_replicas: int = 10,
        target_kind: str = "Deployment",
    ) -> JSON:
        """A KEDA ScaledObject scaling ``target``, and what KEDA's operator then does (its
        documented behaviour, at once): unpaused, an HPA ``keda-hpa-<name>`` it controls,
        with the ScaledObject's bounds; with ``autoscaling.keda.sh/paused-replicas: N``, no
        HPA and the target held at N replicas (written through its scale subresource, as
        ``keda-operator``); with ``autoscaling.keda.sh/paused: "true"``, no HPA and the
        count left as it is."""
        assert self.keda_installed, "install_keda() first"
        self.add_namespace(namespace)
        annotations = dict(annotations or {})
        scaled: JSON = {
            "kind": "ScaledObject", "apiVersion": "keda.sh/v1alpha1",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"scaleTargetRef": {"name": target, "kind": target_kind},
                     "minReplicaCount": min_replicas, "maxReplicaCount": max_replicas,
                     "triggers": [{"type": "cpu", "metricType": "Utilization",
                                   "metadata": {"value": "80"}}]},
        }  # fmt: skip
        if annotations:
            scaled["metadata"]["annotations"] = annotations
        created = self._create(SCALEDOBJECTS, scaled)
        held = annotations.get("autoscaling.keda.sh/paused-replicas")
        if held is not None:
            current = self._get(DEPLOYMENTS, namespace, target)
            updated = copy.deepcopy(current)
            updated["spec"]["replicas"] = int(held)
            managed_fields.record_update(current, updated, KEDA_OPERATOR, "scale")
            self._update(DEPLOYMENTS, updated)
        elif annotations.get("autoscaling.keda.sh/paused", "").lower() != "true":
            self.add_hpa(namespace, f"keda-hpa-{name}", target, min_replicas, max_replicas)
            hpa = self._get(HPAS, namespace, f"keda-hpa-{name}")
            owned = copy.deepcopy(hpa)
            owned["metadata"]["ownerReferences"] = [{
                "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": name,
                "uid": created["metadata"]["uid"], "controller": True,
                "blockOwnerDeletion": True,
            }]  # fmt: skip
            self._update(HPAS, owned)
        self._reconcile()
        return copy.deepcopy(self._get(SCALEDOBJECTS, namespace, name))

    # ---- test-side mutations ---------------------------------------------------------------

    def set_pod_ready(self, namespace: str, name: str, ready: bool) -> JSON:
        """Make a pod Running and Ready (``ready=True``), or make a running pod not Ready. A
        Pending pod stays Pending when ``ready=False``. From then on the simulated kubelet
        leaves this pod's status alone."""
        pod = copy.deepcopy(self._get(PODS, namespace, name))
        uid = pod["metadata"]["uid"]
        self._pinned_pods.add(uid)
        phase = pod["status"].get("phase")
        if ready or phase == "Running":
            self._schedule(pod)
            pod["status"] = self._running_status(pod, ready=ready)
            self._update(PODS, pod)
        self._reconcile()
        return self.pod(namespace, name)

    def set_pod_phase(self, namespace: str, name: str, phase: str) -> JSON:
        """Set ``status.phase`` (``Pending``, ``Running`` (Ready), ``Succeeded``, ``Failed``).
        From then on the simulated kubelet leaves this pod's status alone."""
        pod = copy.deepcopy(self._get(PODS, namespace, name))
        self._pinned_pods.add(pod["metadata"]["uid"])
        if phase == "Running":
            self._schedule(pod)
            pod["status"] = self._running_status(pod, ready=True)
        elif phase in ("Succeeded", "Failed"):
            self._schedule(pod)
            pod["status"] = self._terminated_status(pod, succeeded=phase == "Succeeded")
        elif phase == "Pending":
            pod["status"] = self._pending_status(pod)
        else:
            raise ValueError(f"unknown pod phase {phase!r}")
        self._update(PODS, pod)
        self._reconcile()
        return self.pod(namespace, name)

    def start_rollout(
        self, namespace: str, name: str, *, updated_replicas: int | None = None
    ) -> JSON:
        """Make a Deployment look mid-rollout: bump ``metadata.generation`` and stop its
        controller (``status.observedGeneration`` stays behind, the spec is not acted on) until
        :meth:`finish_rollout`. ``updated_replicas`` also sets ``status.updatedReplicas``."""
        d = copy.deepcopy(self._get(DEPLOYMENTS, namespace, name))
        d["metadata"]["generation"] = int(d["metadata"].get("generation", 1)) + 1
        if updated_replicas is not None:
            d["status"]["updatedReplicas"] = updated_replicas
        rs_name = self._newest_rs_name(d)
        conditions = [c for c in d["status"].get("conditions", []) if c["type"] != "Progressing"]
        conditions.append(
            self._deployment_condition(
                next(
                    (c for c in d["status"].get("conditions", []) if c["type"] == "Progressing"),
                    None,
                ),
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                f'ReplicaSet "{rs_name}" is progressing.',
            )
        )
        d["status"]["conditions"] = conditions
        self._frozen_deployments.add((namespace, name))
        self._update(DEPLOYMENTS, d)
        self._reconcile()
        return self.deployment(namespace, name)

    def deploy(
        self,
        namespace: str,
        name: str,
        image: str,
        *,
        manager: str = "kubectl-set",
        annotations: Mapping[str, str] | None = None,
    ) -> JSON:
        """A release, as ``kubectl set image`` makes one: every container of the pod template
        gets ``image`` (and the template ``annotations``), written as field manager
        ``manager``; the deployment controller then rolls it out (a new ReplicaSet, a new
        revision) at the lags' pace, within the strategy's bounds."""
        current = self._get(DEPLOYMENTS, namespace, name)
        d = copy.deepcopy(current)
        template = d["spec"]["template"]
        for container in template["spec"]["containers"]:
            container["image"] = image
        if annotations:
            template.setdefault("metadata", {}).setdefault("annotations", {}).update(annotations)
        d["metadata"]["generation"] = int(d["metadata"].get("generation", 1)) + 1
        managed_fields.record_update(current, d, manager)
        self._update(DEPLOYMENTS, d)
        self._reconcile(lagged=True)
        return self.deployment(namespace, name)

    def set_created(self, resource: str, namespace: str, name: str, at: dt.datetime) -> JSON:
        """Back-date an object's ``creationTimestamp`` (``resource`` as in its path, e.g.
        ``replicasets``): what a cluster shows of one made ``at``."""
        obj = copy.deepcopy(self._store[resource][(namespace, name)])
        obj["metadata"]["creationTimestamp"] = _time(at)
        self._store[resource][(namespace, name)] = obj
        return copy.deepcopy(obj)

    def finish_rollout(self, namespace: str, name: str) -> JSON:
        """Let the deployment controller act on a Deployment again (see :meth:`start_rollout`)."""
        self._get(DEPLOYMENTS, namespace, name)
        self._frozen_deployments.discard((namespace, name))
        self._reconcile()
        return self.deployment(namespace, name)

    def write_log(
        self,
        namespace: str,
        pod: str,
        lines: Iterable[str],
        container: str | None = None,
        at: dt.datetime | None = None,
    ) -> None:
        """Append ``lines`` to the log of ``container`` (default: the pod's first container),
        each stamped ``at`` (timezone-aware; default now). A line holding newlines is several
        lines, as the container runtime records them; one trailing newline is dropped.

        The log belongs to this pod object: a pod recreated under the same name (a new UID)
        starts with an empty log, and a deleted pod's log is gone. Raises KeyError when the pod
        is missing and ValueError for a container the pod does not have."""
        if isinstance(lines, str):
            raise TypeError("lines is an iterable of lines, not one str")
        if at is not None and at.utcoffset() is None:
            raise ValueError("at must be timezone-aware")
        obj = self._get(PODS, namespace, pod, error=KeyError)
        name = container if container is not None else obj["spec"]["containers"][0]["name"]
        if name not in _container_names(obj):
            raise ValueError(f"pod {namespace}/{pod} has no container {name!r}")
        moment = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        log = self._logs.setdefault(obj["metadata"]["uid"], {}).setdefault(name, [])
        for line in lines:
            log.extend(
                _LogLine(moment, part.encode()) for part in line.removesuffix("\n").split("\n")
            )

    # ---- readers ---------------------------------------------------------------------------

    def deployment(self, namespace: str, name: str) -> JSON:
        """The Deployment as stored (a copy). Raises KeyError when missing."""
        return copy.deepcopy(self._get(DEPLOYMENTS, namespace, name, error=KeyError))

    def replicasets(self, namespace: str, deployment: str | None = None) -> list[JSON]:
        """ReplicaSets in ``namespace``, optionally only those a Deployment owns."""
        items = self._items(REPLICASETS, namespace)
        if deployment is not None:
            uid = self._get(DEPLOYMENTS, namespace, deployment, error=KeyError)["metadata"]["uid"]
            items = [rs for rs in items if _controller_uid(rs) == uid]
        return copy.deepcopy(items)

    def pods(self, namespace: str, labels: Mapping[str, str] | None = None) -> list[JSON]:
        """Pods in ``namespace`` (by name), optionally only those carrying all ``labels``;
        terminating pods included."""
        items = self._items(PODS, namespace)
        if labels:
            items = [p for p in items if all(_labels(p).get(k) == v for k, v in labels.items())]
        return copy.deepcopy(items)

    def pod(self, namespace: str, name: str) -> JSON:
        """One pod (a copy). Raises KeyError when missing."""
        return copy.deepcopy(self._get(PODS, namespace, name, error=KeyError))

    def has_pod(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self._store["pods"]

    def pdb(self, namespace: str, name: str) -> JSON:
        """One PodDisruptionBudget (a copy). Raises KeyError when missing."""
        return copy.deepcopy(self._get(PDBS, namespace, name, error=KeyError))

    def events(self, namespace: str) -> list[JSON]:
        """Events in ``namespace``, by name."""
        return copy.deepcopy(self._items(EVENTS, namespace))

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests whose path matches the regex ``path`` (and ``method``)."""
        pattern = re.compile(path)
        return [
            r
            for r in self.requests
            if pattern.search(r.path) and (method is None or r.method == method.upper())
        ]

    # ---- storage ---------------------------------------------------------------------------

    def _now(self) -> str:
        return _time(dt.datetime.now(dt.UTC))

    def _items(self, kind: _Kind, namespace: str | None) -> list[JSON]:
        store = self._store[kind.resource]
        keys = sorted(k for k in store if namespace is None or k[0] == namespace)
        return [store[k] for k in keys]

    def _get(
        self,
        kind: _Kind,
        namespace: str,
        name: str,
        *,
        error: Callable[[str], Exception] | None = None,
    ) -> JSON:
        obj = self._store[kind.resource].get((namespace if kind.namespaced else "", name))
        if obj is None:
            if error is not None:
                raise error(f"{kind.resource} {namespace}/{name} does not exist")
            raise _not_found(kind, name)
        return obj

    def _key(self, kind: _Kind, obj: JSON) -> tuple[str, str]:
        meta = obj["metadata"]
        return (meta.get("namespace", "") if kind.namespaced else "", meta["name"])

    def _bump(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _create(self, kind: _Kind, obj: JSON) -> JSON:
        self._owners = None
        key = self._key(kind, obj)
        store = self._store[kind.resource]
        if key in store:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{kind.qualified} "{key[1]}" already exists',
                _details(key[1], kind.group, kind.resource),
            )
        meta = obj["metadata"]
        meta["uid"] = str(uuid.uuid4())
        meta["resourceVersion"] = self._bump()
        if kind.has_generation:
            meta["generation"] = 1
        meta["creationTimestamp"] = self._now()
        obj["metadata"] = _ordered_meta(meta)
        store[key] = obj
        return obj

    def _update(self, kind: _Kind, obj: JSON, *, force: bool = False) -> bool:
        """Store ``obj`` (a copy the caller owns) with a new resourceVersion, unless nothing
        but the resourceVersion would change (and not ``force``). Returns whether it was
        written."""
        self._owners = None
        key = self._key(kind, obj)
        store = self._store[kind.resource]
        current = store.get(key)
        if current is not None and not force:
            before = dict(
                current,
                metadata={k: v for k, v in current["metadata"].items() if k != "resourceVersion"},
            )
            after = dict(
                obj, metadata={k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}
            )
            if before == after:
                return False
        obj["metadata"]["resourceVersion"] = self._bump()
        obj["metadata"] = _ordered_meta(obj["metadata"])
        store[key] = obj
        return True

    def _remove(self, kind: _Kind, namespace: str, name: str) -> JSON:
        self._owners = None
        obj = self._store[kind.resource].pop((namespace if kind.namespaced else "", name))
        obj["metadata"]["resourceVersion"] = self._bump()
        if kind is PODS:
            uid = obj["metadata"]["uid"]
            self._pinned_pods.discard(uid)
            self._pod_seq.pop(uid, None)
            self._pod_node.pop(uid, None)
            self._ready_at.pop(uid, None)
            self._logs.pop(uid, None)
        return obj

    # ---- pods ------------------------------------------------------------------------------

    @staticmethod
    def _pod_spec(
        image: str,
        containers: Sequence[str] = ("app",),
        init_containers: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> JSON:
        def container(name: str) -> JSON:
            given = {"env": [{"name": k, "value": v} for k, v in env.items()]} if env else {}
            return {
                "name": name,
                "image": image,
                **given,
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
            }

        inits = (
            {"initContainers": [container(n) for n in init_containers]} if init_containers else {}
        )
        return {
            **inits,
            "containers": [container(n) for n in containers],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "securityContext": {},
            "schedulerName": "default-scheduler",
        }

    def _new_pod_object(
        self,
        namespace: str,
        name: str,
        labels: dict[str, str],
        template_spec: JSON,
        owner: JSON | None,
        *,
        generate_name: str | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> JSON:
        meta: JSON = {"name": name}
        if generate_name:
            meta["generateName"] = generate_name
        meta["namespace"] = namespace
        meta["labels"] = labels
        if annotations:
            meta["annotations"] = dict(annotations)
        if owner is not None:
            meta["ownerReferences"] = [_owner_ref(owner)]
        spec = copy.deepcopy(template_spec)
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault(
            "tolerations",
            [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
            ],
        )
        spec.setdefault("priority", 0)
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        pod: JSON = {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": meta,
            "spec": spec,
            "status": {},
        }
        pod["status"] = self._pending_status(pod)
        return pod

    def _create_pod(self, pod: JSON) -> JSON:
        created = self._create(PODS, pod)
        self._seq += 1
        self._pod_seq[created["metadata"]["uid"]] = self._seq
        return created

    def _generated_name(self, kind: _Kind, namespace: str, prefix: str) -> str:
        store = self._store[kind.resource]
        while True:
            name = prefix + "".join(self._rng.choice(_NAME_ALPHABET) for _ in range(5))
            if (namespace, name) not in store:
                return name

    def _spawn_pod(self, owner: JSON, node: str | None = None) -> JSON:
        namespace = owner["metadata"]["namespace"]
        template = owner["spec"]["template"]
        prefix = owner["metadata"]["name"] + "-"
        spec = copy.deepcopy(template["spec"])
        if node is not None:
            spec["affinity"] = {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchFields": [
                                    {"key": "metadata.name", "operator": "In", "values": [node]}
                                ]
                            }
                        ]
                    }
                }
            }
        pod = self._new_pod_object(
            namespace,
            self._generated_name(PODS, namespace, prefix),
            dict((template.get("metadata") or {}).get("labels") or {}),
            spec,
            owner,
            generate_name=prefix,
            annotations=(template.get("metadata") or {}).get("annotations"),
        )
        created = self._create_pod(pod)
        if node is not None:
            self._pod_node[created["metadata"]["uid"]] = node
        self._note_ready_at(created)
        return created

    def _owned(self, kind: _Kind, namespace: str, owner_uid: str) -> list[JSON]:
        # Indexed by controller UID and rebuilt after any write: the controllers ask this
        # for every owner on every pass, which is quadratic over hundreds of objects.
        if self._owners is None:
            owners: dict[tuple[str, str], list[JSON]] = {}
            for resource in (PODS, REPLICASETS):
                for obj in self._items(resource, None):
                    uid = _controller_uid(obj)
                    if uid is not None:
                        owners.setdefault((resource.resource, uid), []).append(obj)
            self._owners = owners
        return [
            obj
            for obj in self._owners.get((kind.resource, owner_uid), [])
            if obj["metadata"]["namespace"] == namespace
        ]

    def _owned_pods(self, namespace: str, owner_uid: str) -> list[JSON]:
        return self._owned(PODS, namespace, owner_uid)

    def _schedule(self, pod: JSON) -> None:
        if not pod["spec"].get("nodeName"):
            pod["spec"]["nodeName"] = self._pod_node.get(pod["metadata"]["uid"], "node-0")

    def _pod_ips(self, pod: JSON) -> tuple[str, str]:
        status = pod.get("status") or {}
        if status.get("podIP"):
            return str(status["hostIP"]), str(status["podIP"])
        self._ip_count += 1
        node = pod["spec"].get("nodeName", "node-0")
        node_index = int(node.rsplit("-", 1)[-1]) if node.rsplit("-", 1)[-1].isdigit() else 0
        return (
            f"10.0.0.{10 + node_index % 240}",
            f"10.244.{self._ip_count // 250}.{2 + self._ip_count % 250}",
        )

    @staticmethod
    def _pod_condition(
        previous: Mapping[str, JSON], type_: str, status: str, now: str, **extra: str
    ) -> JSON:
        old = previous.get(type_)
        since = old["lastTransitionTime"] if old and old.get("status") == status else now
        cond: JSON = {
            "type": type_,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": since,
        }
        cond.update(extra)
        return cond

    def _pending_status(self, pod: JSON) -> JSON:
        if not pod["spec"].get("nodeName"):
            return {"phase": "Pending", "qosClass": "BestEffort"}
        now = self._now()
        previous = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}
        names = [c["name"] for c in pod["spec"]["containers"]]
        inits = pod["spec"].get("initContainers") or []
        unready = {
            "reason": "ContainersNotReady",
            "message": f"containers with unready status: [{' '.join(names)}]",
        }
        initialized = (
            self._pod_condition(
                previous,
                "Initialized",
                "False",
                now,
                reason="ContainersNotInitialized",
                message="containers with incomplete status: "
                f"[{' '.join(c['name'] for c in inits)}]",
            )
            if inits
            else self._pod_condition(previous, "Initialized", "True", now)
        )
        # The kubelet's default waiting reason; with init containers to run first, every
        # container waits on them.
        reason = "PodInitializing" if inits else "ContainerCreating"

        def waiting(c: JSON) -> JSON:
            return {
                "name": c["name"],
                "state": {"waiting": {"reason": reason}},
                "lastState": {},
                "ready": False,
                "restartCount": 0,
                "image": c["image"],
                "imageID": "",
                "started": False,
            }

        return {
            "phase": "Pending",
            "conditions": [
                self._pod_condition(previous, "PodReadyToStartContainers", "False", now),
                initialized,
                self._pod_condition(previous, "Ready", "False", now, **unready),
                self._pod_condition(previous, "ContainersReady", "False", now, **unready),
                self._pod_condition(previous, "PodScheduled", "True", now),
            ],
            "hostIP": self._pod_ips(pod)[0],
            "startTime": now,
            **({"initContainerStatuses": [waiting(c) for c in inits]} if inits else {}),
            "containerStatuses": [waiting(c) for c in pod["spec"]["containers"]],
            "qosClass": "BestEffort",
        }

    def _container_ids(self, pod: JSON, container: JSON) -> tuple[str, str]:
        seed = (pod["metadata"]["uid"] + container["name"]).encode()
        image = str(container["image"]).rsplit(":", 1)[0]
        return (
            f"{image}@sha256:{hashlib.sha256(container['image'].encode()).hexdigest()}",
            f"containerd://{hashlib.sha256(seed).hexdigest()}",
        )

    def _running_status(self, pod: JSON, *, ready: bool) -> JSON:
        now = self._now()
        old = pod.get("status") or {}
        previous = {c["type"]: c for c in old.get("conditions") or []}
        started = old.get("startTime", now)
        host_ip, pod_ip = self._pod_ips(pod)
        readiness = "True" if ready else "False"
        names = [c["name"] for c in pod["spec"]["containers"]]
        extra = (
            {}
            if ready
            else {
                "reason": "ContainersNotReady",
                "message": f"containers with unready status: [{' '.join(names)}]",
            }
        )
        inits = []
        for c in pod["spec"].get("initContainers") or []:
            image_id, container_id = self._container_ids(pod, c)
            completed = {"exitCode": 0, "reason": "Completed", "startedAt": started}
            completed.update(finishedAt=started, containerID=container_id)
            inits.append(
                {
                    "name": c["name"],
                    "state": {"terminated": completed},
                    "lastState": {},
                    "ready": True,
                    "restartCount": 0,
                    "image": c["image"],
                    "imageID": image_id,
                    "containerID": container_id,
                    "started": False,
                }
            )
        statuses = []
        for c in pod["spec"]["containers"]:
            image_id, container_id = self._container_ids(pod, c)
            statuses.append(
                {
                    "name": c["name"],
                    "state": {"running": {"startedAt": started}},
                    "lastState": {},
                    "ready": ready,
                    "restartCount": 0,
                    "image": c["image"],
                    "imageID": image_id,
                    "containerID": container_id,
                    "started": True,
                }
            )
        return {
            "observedGeneration": pod["metadata"].get("generation", 1),
            "phase": "Running",
            "conditions": [
                self._pod_condition(previous, "PodReadyToStartContainers", "True", now),
                self._pod_condition(previous, "Initialized", "True", now),
                self._pod_condition(previous, "Ready", readiness, now, **extra),
                self._pod_condition(previous, "ContainersReady", readiness, now, **extra),
                self._pod_condition(previous, "PodScheduled", "True", now),
            ],
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "startTime": started,
            **({"initContainerStatuses": inits} if inits else {}),
            "containerStatuses": statuses,
            "qosClass": "BestEffort",
        }

    def _terminated_status(self, pod: JSON, *, succeeded: bool) -> JSON:
        status = self._running_status(pod, ready=False)
        now = self._now()
        reason = "PodCompleted"
        for cond in status["conditions"]:
            if cond["type"] in ("Ready", "ContainersReady"):
                cond["reason"] = reason
                cond.pop("message", None)
            if cond["type"] == "PodReadyToStartContainers":
                cond["status"] = "False"
        status["phase"] = "Succeeded" if succeeded else "Failed"
        for cs in status["containerStatuses"]:
            cs["state"] = {
                "terminated": {
                    "exitCode": 0 if succeeded else 1,
                    "reason": "Completed" if succeeded else "Error",
                    "startedAt": status["startTime"],
                    "finishedAt": now,
                    "containerID": cs["containerID"],
                }
            }
            cs["started"] = False
        return status

    def _terminate_pod(self, pod: JSON, grace: int | None) -> JSON:
        """Delete a pod the way the registry does: at once when it is unscheduled or
        terminal (or ``grace`` is 0), otherwise gracefully (``deletionTimestamp`` set; the
        kubelet finishes it). Returns the object the DELETE call answers."""
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        phase = pod["status"].get("phase")
        period = (
            grace
            if grace is not None
            else int(pod["spec"].get("terminationGracePeriodSeconds", 30))
        )
        period = max(period, 0)
        if not pod["spec"].get("nodeName") or phase in ("Succeeded", "Failed"):
            period = 0
        if _is_terminating(pod):
            current = int(pod["metadata"].get("deletionGracePeriodSeconds") or 0)
            if period != 0 and period >= current:
                return copy.deepcopy(pod)
        if period == 0:
            return self._remove(PODS, namespace, name)
        deleting = copy.deepcopy(pod)
        meta = deleting["metadata"]
        meta["deletionTimestamp"] = _time(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=period))
        meta["deletionGracePeriodSeconds"] = period
        meta["generation"] = int(meta.get("generation", 1)) + 1
        self._update(PODS, deleting)
        return copy.deepcopy(deleting)

    # ---- controllers -----------------------------------------------------------------------

    def _inputs(self, resource: str, key: tuple[str, str]) -> tuple[str, ...]:
        """The resourceVersions a controller's view of ``key`` depends on: the object, what
        it owns, and what those own. Unchanged inputs mean nothing to reconcile."""
        obj = self._store[resource][key]
        versions = [obj["metadata"]["resourceVersion"], str(key in self._frozen_deployments)]
        uid = obj["metadata"]["uid"]
        for child_kind in (REPLICASETS, PODS):
            for child in self._owned(child_kind, key[0], uid):
                versions.append(child["metadata"]["resourceVersion"])
                for pod in self._owned(PODS, key[0], child["metadata"]["uid"]):
                    versions.append(pod["metadata"]["resourceVersion"])
        return tuple(versions)

    def _sync_if_changed(
        self, resource: str, key: tuple[str, str], sync: Callable[[tuple[str, str]], bool]
    ) -> bool:
        # Controllers are pure functions of these inputs (and of flags set by the test
        # helpers, which all write), so a settled object is skipped: hundreds of
        # Deployments then cost little per write.
        inputs = self._inputs(resource, key)
        if self._settled.get((resource, key)) == inputs:
            return False
        changed = sync(key)
        uid = self._store[resource][key]["metadata"]["uid"]
        if not changed and uid not in self._spawn_gates:
            self._settled[(resource, key)] = inputs
        return changed

    def _after_request(self) -> None:
        """Give the controllers the work a request wrote: at once with :data:`INSTANT` lags,
        else in the background, after the answer."""
        if self.lags.instant:
            self._reconcile()
        else:
            self._later(time.monotonic())

    def _later(self, due: float, action: Callable[[], None] | None = None) -> None:
        """At ``due`` (``time.monotonic()``), run ``action`` and then the controllers, in a
        background task :meth:`stop` cancels. Nothing is scheduled on a stopped server."""
        if self._runner is None or self._stopping.is_set():
            return
        task = asyncio.get_running_loop().create_task(self._wake(due, action))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _wake(self, due: float, action: Callable[[], None] | None) -> None:
        while not self._stopping.is_set() and time.monotonic() < due:
            await self._sleep(max(due - time.monotonic(), 0.001))  # timers may fire early
        if self._stopping.is_set():
            return
        try:
            if action is not None:
                action()
            self._reconcile(lagged=True)
        except Exception as exc:  # a bug in this test server: the fixtures assert on these
            self.internal_errors.append(exc)

    def _draw(self, bounds: tuple[float, float]) -> float:
        low, high = bounds
        return low if high <= low else self._rng.uniform(low, high)

    def _may_spawn(self, owner: JSON) -> bool:
        """Whether a controller short of pods creates them now. In a reconcile a request
        caused, the first time it is short it waits ``lags.pod_created_s`` instead."""
        uid = owner["metadata"]["uid"]
        now = time.monotonic()
        self._spawn_cause = None
        gate = self._spawn_gates.get(uid)
        if gate is None:
            if not self._lagged:
                return True
            due = now + self._draw(self.lags.pod_created_s)
            self._spawn_gates[uid] = (now, due)
            self._later(due)
            return False
        cause, due = gate
        if due > now:
            return False
        del self._spawn_gates[uid]
        self._spawn_cause = cause
        return True

    def _note_ready_at(self, pod: JSON) -> None:
        """A pod created for a lagging cause may not be Ready before its drawn moment."""
        cause = self._spawn_cause
        if cause is None:
            return
        low, high = self.lags.pod_ready_s
        since = time.monotonic() - cause
        due = cause + self._draw((max(low, since), max(high, since)))
        self._ready_at[pod["metadata"]["uid"]] = due
        self._later(due)

    def _status_burst(self, key: tuple[str, str], uid: str) -> None:
        """The deployment controller's ``deployments/status`` writes after a replica change."""
        due = time.monotonic()
        for _ in range(self._rng.randint(*self.lags.status_writes)):
            due += self._draw(self.lags.status_write_gap_s)
            self._status_due[uid] = self._status_due.get(uid, 0) + 1
            self._later(due, lambda: self._write_status(key, uid, scheduled=True))

    def _race_status_write(self, current: JSON, call: _Call) -> None:
        """Before a write of a Deployment guarded by the resourceVersion the client sent,
        maybe let one of its controller's pending status writes land first (see
        :attr:`Lags.busy_conflict`)."""
        meta = current["metadata"]
        sent = (call.body.get("metadata") or {}) if isinstance(call.body, dict) else {}
        if (
            sent.get("resourceVersion") == meta["resourceVersion"]
            and self._status_due.get(meta["uid"], 0) > 0
            and self._rng.random() < self.lags.busy_conflict
        ):
            self._write_status((meta["namespace"], meta["name"]), meta["uid"])

    def _write_status(self, key: tuple[str, str], uid: str, *, scheduled: bool = False) -> None:
        if scheduled and self._status_due.get(uid, 0) > 0:
            self._status_due[uid] -= 1
        d = self._store["deployments"].get(key)
        if d is None or d["metadata"]["uid"] != uid:
            return
        written = copy.deepcopy(d)
        for cond in written["status"].get("conditions") or []:
            if cond.get("type") == "Progressing":
                cond["lastUpdateTime"] = self._now()
        self._update(DEPLOYMENTS, written, force=True)
        self.status_writes += 1

    def _reconcile(self, *, lagged: bool = False) -> None:
        self._lagged = lagged and not self.lags.instant
        try:
            self._settle()
        finally:
            self._lagged = False
            self._spawn_cause = None

    def _settle(self) -> None:
        for _ in range(100):
            changed = False
            for key in list(self._store["deployments"]):
                changed |= self._sync_if_changed("deployments", key, self._sync_deployment)
            for key in list(self._store["replicasets"]):
                changed |= self._sync_if_changed("replicasets", key, self._sync_replicaset)
            for key in list(self._store["daemonsets"]):
                changed |= self._sync_daemonset(key)
            changed |= self._run_kubelet()
            for key in list(self._store["poddisruptionbudgets"]):
                changed |= self._sync_pdb(key)
            for key in list(self._store["horizontalpodautoscalers"]):
                changed |= self._sync_hpa(key)
            if not changed:
                return
        raise RuntimeError("simulated controllers did not settle")  # pragma: no cover

    def _run_kubelet(self) -> bool:
        if not self._kubelet:
            return False
        changed = False
        for pod in list(self._store["pods"].values()):
            namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
            if _is_terminating(pod):
                self._remove(PODS, namespace, name)
                changed = True
                continue
            uid = pod["metadata"]["uid"]
            if uid in self._pinned_pods or pod["status"].get("phase") != "Pending":
                continue
            if self._ready_at.get(uid, 0.0) > time.monotonic():
                if not pod["spec"].get("nodeName"):  # scheduled, its containers starting
                    starting = copy.deepcopy(pod)
                    self._schedule(starting)
                    starting["status"] = self._pending_status(starting)
                    changed |= self._update(PODS, starting)
                continue
            self._ready_at.pop(uid, None)
            running = copy.deepcopy(pod)
            self._schedule(running)
            images = {c.get("image") for c in running["spec"]["containers"]}
            running["status"] = self._running_status(
                running, ready=not images & self.failing_images
            )
            changed |= self._update(PODS, running)
        return changed

    @staticmethod
    def _fenceposts(deployment: JSON, desired: int) -> tuple[int, int]:
        """``(maxSurge, maxUnavailable)`` resolved against ``desired`` replicas."""
        strategy = deployment["spec"].get("strategy") or {}
        if strategy.get("type") == "Recreate":
            return 0, 0
        rolling = strategy.get("rollingUpdate") or {}
        surge = _scaled(rolling.get("maxSurge", "25%"), desired, round_up=True)
        unavailable = _scaled(rolling.get("maxUnavailable", "25%"), desired, round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        return surge, unavailable

    def _newest_rs_name(self, deployment: JSON) -> str:
        owned = [
            rs
            for rs in self._items(REPLICASETS, deployment["metadata"]["namespace"])
            if _controller_uid(rs) == deployment["metadata"]["uid"]
        ]
        if not owned:
            return str(deployment["metadata"]["name"])
        newest = max(
            owned, key=lambda rs: int(rs["metadata"].get("annotations", {}).get(_REVISION, "0"))
        )
        return str(newest["metadata"]["name"])

    def _deployment_condition(
        self, old: JSON | None, type_: str, status: str, reason: str, message: str
    ) -> JSON:
        if old and (old.get("status"), old.get("reason"), old.get("message")) == (
            status,
            reason,
            message,
        ):
            return old
        now = self._now()
        since = old["lastTransitionTime"] if old and old.get("status") == status else now
        return {
            "type": type_,
            "status": status,
            "lastUpdateTime": now,
            "lastTransitionTime": since,
            "reason": reason,
            "message": message,
        }

    def _sync_deployment(self, key: tuple[str, str]) -> bool:
        if key in self._frozen_deployments:
            return False
        namespace, _ = key
        d = copy.deepcopy(self._store["deployments"][key])
        spec = d["spec"]
        desired = int(spec.get("replicas", 1))
        pod_hash = _template_hash(spec["template"])
        uid = d["metadata"]["uid"]
        seen = self._seen_replicas.get(uid)
        self._seen_replicas[uid] = desired
        if self._lagged and seen is not None and seen != desired:
            self._status_burst(key, uid)
        owned = self._owned(REPLICASETS, namespace, uid)
        surge, unavailable = self._fenceposts(d, desired)
        changed = False

        def revision(rs: JSON) -> int:
            return int((rs["metadata"].get("annotations") or {}).get(_REVISION, "0"))

        new_rs = next(
            (rs for rs in owned if _labels(rs).get("pod-template-hash") == pod_hash), None
        )
        if new_rs is None and not spec.get("paused"):
            # Beside older ReplicaSets with pods it starts empty: the rollout grows it.
            first = 0 if any(int(rs["spec"].get("replicas", 0)) for rs in owned) else desired
            new_rs = self._new_replicaset(
                d, pod_hash, first, max(map(revision, owned), default=0) + 1
            )
            owned.append(new_rs)
            changed = True
        if new_rs is None and owned:
            new_rs = max(owned, key=revision)
        targets = self._rollout_targets(d, new_rs, owned, desired) if new_rs else {}
        newest = max(map(revision, owned), default=0)
        for rs in owned:
            target = targets.get(rs["metadata"]["uid"], 0)
            updated = copy.deepcopy(rs)
            if rs is new_rs and revision(rs) < newest:
                # An older template is current again (a rollback): its ReplicaSet becomes
                # the newest revision, and keeps the number it had in its history.
                annotations = updated["metadata"].setdefault("annotations", {})
                history = [h for h in annotations.get(_REVISION_HISTORY, "").split(",") if h]
                annotations[_REVISION_HISTORY] = ",".join([*history, str(revision(rs))])
                annotations[_REVISION] = str(newest + 1)
            if updated["spec"].get("replicas") != target:
                updated["spec"]["replicas"] = target
                updated["metadata"]["generation"] = (
                    int(updated["metadata"].get("generation", 1)) + 1
                )
            if target:
                annotations = updated["metadata"].setdefault("annotations", {})
                annotations[_DESIRED_REPLICAS] = str(desired)
                annotations[_MAX_REPLICAS] = str(desired + surge)
            changed |= self._update(REPLICASETS, updated)

        owned = self._owned(REPLICASETS, namespace, uid)
        new_current = next(
            (
                rs
                for rs in owned
                if new_rs is not None and rs["metadata"]["uid"] == new_rs["metadata"]["uid"]
            ),
            None,
        )

        def total(field: str) -> int:
            return sum(int(rs.get("status", {}).get(field, 0)) for rs in owned)

        replicas = total("replicas")
        updated_replicas = int(new_current["status"].get("replicas", 0)) if new_current else 0
        available = total("availableReplicas")
        spec_total = sum(int(rs["spec"].get("replicas", 0)) for rs in owned)
        generation = int(d["metadata"].get("generation", 1))
        old_conditions = {c["type"]: c for c in d.get("status", {}).get("conditions", [])}
        if available >= desired - unavailable:
            available_cond = (
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            )
        else:
            available_cond = (
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        rs_name = new_current["metadata"]["name"] if new_current else d["metadata"]["name"]
        complete = updated_replicas == desired and replicas == desired and available == desired
        if complete:
            progressing = (
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.',
            )
        else:
            progressing = ("True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.')
        status = _nonzero(
            [
                ("observedGeneration", generation),
                ("replicas", replicas),
                ("updatedReplicas", updated_replicas),
                ("readyReplicas", total("readyReplicas")),
                ("availableReplicas", available),
                ("unavailableReplicas", max(spec_total - available, 0)),
            ]
        )
        status["conditions"] = [
            self._deployment_condition(
                old_conditions.get("Available"), "Available", *available_cond
            ),
            self._deployment_condition(
                old_conditions.get("Progressing"), "Progressing", *progressing
            ),
        ]
        d["status"] = status
        if new_current is not None:
            d["metadata"].setdefault("annotations", {})[_REVISION] = str(revision(new_current))
        changed |= self._update(DEPLOYMENTS, d)
        if complete and new_current is not None:
            changed |= self._prune_history(d, owned, new_current)
        return changed

    def _prune_history(self, d: JSON, owned: list[JSON], current: JSON) -> bool:
        """Once a rollout is complete, the older ReplicaSets without pods beyond
        ``spec.revisionHistoryLimit`` (default 10) are deleted, oldest first."""
        limit = int(d["spec"].get("revisionHistoryLimit", 10))
        idle = sorted(
            (
                rs
                for rs in owned
                if rs is not current
                and rs["metadata"]["uid"] != current["metadata"]["uid"]
                and not rs["spec"].get("replicas")
                and not rs.get("status", {}).get("replicas")
            ),
            key=lambda rs: int((rs["metadata"].get("annotations") or {}).get(_REVISION, "0")),
        )
        for rs in idle[: max(0, len(idle) - limit)]:
            self._remove(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"])
        return len(idle) > limit

    def _rollout_targets(
        self, d: JSON, new_rs: JSON, owned: list[JSON], desired: int
    ) -> dict[str, int]:
        """``spec.replicas`` of each ReplicaSet (by UID), as the deployment controller sets
        them in one sync: the new one alone at ``desired`` when no older one has pods to
        replace; else, rolling, the new one grown within ``maxSurge`` and the older ones
        (oldest first, their unavailable pods first) shrunk as far as ``maxUnavailable``
        allows; with ``Recreate``, the new one only once the older ones have no pods. A
        paused Deployment's rollout is left where it is."""

        def uid(rs: JSON) -> str:
            return str(rs["metadata"]["uid"])

        def count(rs: JSON, field: str) -> int:
            source = rs["spec"] if field == "spec" else rs.get("status", {})
            return int(source.get("replicas" if field == "spec" else field, 0))

        old = sorted(
            (rs for rs in owned if uid(rs) != uid(new_rs)),
            key=lambda rs: int((rs["metadata"].get("annotations") or {}).get(_REVISION, "0")),
        )
        targets = {uid(rs): count(rs, "spec") for rs in owned}
        if not any(targets[uid(rs)] or count(rs, "replicas") for rs in old):
            return {**{uid(rs): 0 for rs in old}, uid(new_rs): desired}
        if d["spec"].get("paused"):
            return targets
        if (d["spec"].get("strategy") or {}).get("type") == "Recreate":
            drained = all(count(rs, "replicas") == 0 for rs in old)
            return {**{uid(rs): 0 for rs in old}, uid(new_rs): desired if drained else 0}
        surge, unavailable = self._fenceposts(d, desired)
        grown = min(targets[uid(new_rs)], desired)
        grown += max(0, min(desired - grown, desired + surge - sum(targets.values())))
        targets[uid(new_rs)] = grown
        min_available = desired - unavailable
        spare = sum(targets.values()) - min_available - (grown - count(new_rs, "availableReplicas"))
        for rs in old:  # pods that serve nothing go first
            cut = max(0, min(targets[uid(rs)] - count(rs, "availableReplicas"), spare))
            targets[uid(rs)] -= cut
            spare -= cut
        down = sum(count(rs, "availableReplicas") for rs in owned) - min_available
        for rs in old:
            cut = max(0, min(targets[uid(rs)], down))
            targets[uid(rs)] -= cut
            down -= cut
        return targets

    def _new_replicaset(self, d: JSON, pod_hash: str, desired: int, revision: int) -> JSON:
        surge, _ = self._fenceposts(d, desired)
        template = copy.deepcopy(d["spec"]["template"])
        template.setdefault("metadata", {})
        labels = {**(template["metadata"].get("labels") or {}), "pod-template-hash": pod_hash}
        template["metadata"]["labels"] = dict(labels)
        selector = copy.deepcopy(d["spec"].get("selector") or {})
        selector.setdefault("matchLabels", {})["pod-template-hash"] = pod_hash
        rs: JSON = {
            "kind": "ReplicaSet",
            "apiVersion": "apps/v1",
            "metadata": {
                "name": f"{d['metadata']['name']}-{pod_hash}",
                "namespace": d["metadata"]["namespace"],
                "labels": labels,
                "annotations": {
                    _DESIRED_REPLICAS: str(desired),
                    _MAX_REPLICAS: str(desired + surge),
                    _REVISION: str(revision),
                },
                "ownerReferences": [_owner_ref(d)],
            },
            "spec": {"replicas": desired, "selector": selector, "template": template},
            "status": {"replicas": 0},
        }
        return self._create(REPLICASETS, rs)

    def _deletion_rank(self, pod: JSON) -> tuple[int, int, int, int]:
        phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get(
            pod["status"].get("phase", ""), 0
        )
        return (
            1 if pod["spec"].get("nodeName") else 0,
            phase_rank,
            1 if is_pod_ready(pod) else 0,
            -self._pod_seq.get(pod["metadata"]["uid"], 0),
        )

    def _sync_replicaset(self, key: tuple[str, str]) -> bool:
        namespace, _ = key
        rs = copy.deepcopy(self._store["replicasets"][key])
        uid = rs["metadata"]["uid"]
        desired = int(rs["spec"].get("replicas", 1))
        active = [p for p in self._owned_pods(namespace, uid) if _is_active(p)]
        changed = False
        if len(active) >= desired:
            self._spawn_gates.pop(uid, None)  # no longer short: nothing is due
        if len(active) < desired and self._may_spawn(rs):
            for _ in range(desired - len(active)):
                self._spawn_pod(rs)
            changed = True
        elif len(active) > desired:
            for victim in sorted(active, key=self._deletion_rank)[: len(active) - desired]:
                self._terminate_pod(victim, None)
            changed = True
        active = [p for p in self._owned_pods(namespace, uid) if _is_active(p)]
        template_labels = (rs["spec"]["template"].get("metadata") or {}).get("labels") or {}
        ready = sum(1 for p in active if is_pod_ready(p))
        status: JSON = {"replicas": len(active)}
        status.update(
            _nonzero(
                [
                    (
                        "fullyLabeledReplicas",
                        sum(
                            1
                            for p in active
                            if all(_labels(p).get(k) == v for k, v in template_labels.items())
                        ),
                    ),
                    ("readyReplicas", ready),
                    ("availableReplicas", ready),
                    ("observedGeneration", int(rs["metadata"].get("generation", 1))),
                ]
            )
        )
        rs["status"] = status
        changed |= self._update(REPLICASETS, rs)
        return changed

    def _sync_daemonset(self, key: tuple[str, str]) -> bool:
        namespace, _ = key
        ds = copy.deepcopy(self._store["daemonsets"][key])
        uid = ds["metadata"]["uid"]
        nodes = self._ds_nodes.get(key, [])
        changed = False
        covered = {
            self._pod_node.get(p["metadata"]["uid"])
            for p in self._owned_pods(namespace, uid)
            if _is_active(p)
        }
        missing = [node for node in nodes if node not in covered]
        if not missing:
            self._spawn_gates.pop(uid, None)
        if missing and self._may_spawn(ds):
            for node in missing:
                self._spawn_pod(ds, node)
            changed = True
        active = [p for p in self._owned_pods(namespace, uid) if _is_active(p)]
        ready = sum(1 for p in active if is_pod_ready(p))
        status: JSON = {
            "currentNumberScheduled": len(nodes),
            "numberMisscheduled": 0,
            "desiredNumberScheduled": len(nodes),
            "numberReady": ready,
        }
        status.update(
            _nonzero(
                [
                    ("observedGeneration", int(ds["metadata"].get("generation", 1))),
                    ("updatedNumberScheduled", len(active)),
                    ("numberAvailable", ready),
                    ("numberUnavailable", max(len(nodes) - ready, 0)),
                ]
            )
        )
        ds["status"] = status
        changed |= self._update(DAEMONSETS, ds)
        return changed

    def _pdb_pods(self, pdb: JSON) -> list[JSON]:
        reqs = selector_requirements(pdb["spec"].get("selector"))
        if not reqs:
            return []
        return [
            p for p in self._items(PODS, pdb["metadata"]["namespace"]) if _matches(reqs, _labels(p))
        ]

    def _expected_scale(self, pods: list[JSON]) -> int:
        scales: dict[str, int] = {}
        for pod in pods:
            ref = _controller_ref(pod)
            if ref is None:
                continue  # unmanaged pods do not count
            if ref["uid"] in scales:
                continue
            namespace = pod["metadata"]["namespace"]
            if ref.get("kind") == "ReplicaSet":
                rs = self._store["replicasets"].get((namespace, ref["name"]))
                if rs is not None and rs["metadata"]["uid"] == ref["uid"]:
                    owner = _controller_ref(rs)
                    if owner is not None and owner.get("kind") == "Deployment":
                        d = self._store["deployments"].get((namespace, owner["name"]))
                        if d is not None and d["metadata"]["uid"] == owner["uid"]:
                            scales[d["metadata"]["uid"]] = int(d["spec"].get("replicas", 1))
                            continue
                    scales[rs["metadata"]["uid"]] = int(rs["spec"].get("replicas", 1))
                    continue
            if ref.get("kind") == "DaemonSet":
                raise ValueError("daemonsets.apps does not implement the scale subresource")
            raise ValueError(f'found no controllers for pod "{pod["metadata"]["name"]}"')
        return sum(scales.values())

    def _pdb_condition(self, pdb: JSON, allowed: int, observed: int) -> JSON:
        old = next(
            (c for c in pdb["status"].get("conditions") or [] if c["type"] == "DisruptionAllowed"),
            None,
        )
        status, reason = (
            ("True", "SufficientPods") if allowed > 0 else ("False", "InsufficientPods")
        )
        since = old["lastTransitionTime"] if old and old.get("status") == status else self._now()
        return {
            "type": "DisruptionAllowed",
            "status": status,
            "observedGeneration": observed,
            "lastTransitionTime": since,
            "reason": reason,
            "message": "",
        }

    def _sync_pdb(self, key: tuple[str, str]) -> bool:
        if key in self._uncomputed_pdbs:
            return False
        pdb = copy.deepcopy(self._store["poddisruptionbudgets"][key])
        spec = pdb["spec"]
        pods = self._pdb_pods(pdb)
        generation = int(pdb["metadata"].get("generation", 1))
        try:
            if spec.get("maxUnavailable") is not None:
                expected = self._expected_scale(pods)
                desired = max(
                    expected - _scaled(spec["maxUnavailable"], expected, round_up=True), 0
                )
            elif isinstance(spec.get("minAvailable"), int):
                expected = len(pods)
                desired = int(spec["minAvailable"])
            elif spec.get("minAvailable") is not None:
                expected = self._expected_scale(pods)
                desired = _scaled(spec["minAvailable"], expected, round_up=True)
            else:
                expected = desired = 0
        except ValueError as exc:
            old = pdb["status"]
            old["disruptionsAllowed"] = 0
            cond = self._pdb_condition(pdb, 0, int(old.get("observedGeneration", 0)))
            cond.update(reason="SyncFailed", message=str(exc))
            old["conditions"] = [cond]
            return self._update(PDBS, pdb)
        now = dt.datetime.now(dt.UTC)
        timeout = dt.timedelta(seconds=self.pdb_deletion_timeout_s)
        disrupted_before = pdb["status"].get("disruptedPods") or {}
        disrupted: JSON = {}
        for pod in pods:
            name = pod["metadata"]["name"]
            if _is_terminating(pod) or name not in disrupted_before:
                continue
            if _parse_time(disrupted_before[name]) + timeout > now:
                disrupted[name] = disrupted_before[name]
        healthy = sum(
            1
            for p in pods
            if not _is_terminating(p) and p["metadata"]["name"] not in disrupted and is_pod_ready(p)
        )
        allowed = healthy - desired if expected > 0 and healthy > desired else 0
        status: JSON = {"observedGeneration": generation}
        if disrupted:
            status["disruptedPods"] = disrupted
        status.update(
            disruptionsAllowed=allowed,
            currentHealthy=healthy,
            desiredHealthy=desired,
            expectedPods=expected,
        )
        status["conditions"] = [self._pdb_condition(pdb, allowed, generation)]
        pdb["status"] = status
        return self._update(PDBS, pdb)

    def _sync_hpa(self, key: tuple[str, str]) -> bool:
        due = self._hpa_gates.get(key)
        if due is not None and due > time.monotonic():
            return False  # its spec changed; the HPA controller has not synced it since
        self._hpa_gates.pop(key, None)
        namespace, _ = key
        hpa = copy.deepcopy(self._store["horizontalpodautoscalers"][key])
        spec = hpa["spec"]
        ref = spec["scaleTargetRef"]
        target = (
            self._store["deployments"].get((namespace, ref["name"]))
            if ref.get("kind") == "Deployment"
            else None
        )
        old = {c["type"]: c for c in hpa["status"].get("conditions") or []}

        def condition(type_: str, status: str, reason: str, message: str) -> JSON:
            before = old.get(type_)
            since = (
                before["lastTransitionTime"]
                if before and before.get("status") == status
                else self._now()
            )
            return {
                "type": type_,
                "status": status,
                "lastTransitionTime": since,
                "reason": reason,
                "message": message,
            }

        if target is None:
            status: JSON = {"desiredReplicas": 0}
            status["conditions"] = [
                condition(
                    "AbleToScale",
                    "False",
                    "FailedGetScale",
                    "the HPA controller was unable to get the target's current scale: "
                    f'deployments/scale.apps "{ref["name"]}" not found',
                )
            ]
        else:
            current = int(target["status"].get("replicas", 0))
            wanted = int(target["spec"].get("replicas", 1))
            desired = min(max(wanted, int(spec.get("minReplicas", 1))), int(spec["maxReplicas"]))
            if wanted not in (0, desired):
                # Outside [minReplicas, maxReplicas] the HPA controller rescales at once,
                # metrics or not ("Current number of replicas below Spec.MinReplicas").
                scaled = copy.deepcopy(target)
                scaled["spec"]["replicas"] = desired
                scaled["metadata"]["generation"] = int(target["metadata"].get("generation", 1)) + 1
                managed_fields.record_update(target, scaled, CONTROLLER_MANAGER, "scale")
                self._update(DEPLOYMENTS, scaled)
            status = _nonzero([("currentReplicas", current)])
            status["desiredReplicas"] = desired
            status["conditions"] = [
                condition(
                    "AbleToScale",
                    "True",
                    "SucceededGetScale",
                    "the HPA controller was able to get the target's current scale",
                ),
                condition(
                    "ScalingActive",
                    "False",
                    "FailedGetResourceMetric",
                    "the HPA was unable to compute the replica count: "
                    "failed to get cpu utilization: unable to get metrics for resource cpu: "
                    "unable to fetch metrics from resource "
                    "metrics API: the server could not find the requested resource "
                    "(get pods.metrics.k8s.io)",
                ),
            ]
        hpa["status"] = status
        return self._update(HPAS, hpa)

    # ---- HTTP ------------------------------------------------------------------------------

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _take_faults(self, method: str, path: str, stage: str) -> list[Fault]:
        """Consume the faults that apply at one stage of handling a request: ``network``
        (latency-only faults and drops before serving), ``status`` (the first status fault) or
        ``served`` (the first drop after serving)."""
        taken: list[Fault] = []
        for fault in self._faults:
            if not fault.matches(method, path) or fault.stage != stage:
                continue
            fault.consume()
            taken.append(fault)
            if fault.terminal:
                break
        return taken

    @staticmethod
    def _drop(request: web.Request) -> web.Response:
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=500)  # never reaches the client

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            body=body,
            content_type=request.headers.get("Content-Type", ""),
        )
        self.requests.append(record)
        for fault in self._take_faults(request.method, request.path, "network"):
            await self._sleep(fault.delay)
            if fault.drop:
                return self._drop(request)
        try:
            response = await self._serve(request, raw, body)
        except ApiError as err:
            response = self._error_response(err)
        except Exception as exc:  # a bug in this test server: answer like the API server would
            self.internal_errors.append(exc)
            message = f"{type(exc).__name__}: {exc}"
            response = self._error_response(
                ApiError(
                    500,
                    "InternalError",
                    f"Internal error occurred: {message}",
                    {"causes": [{"message": message}]},
                )
            )
        for fault in self._take_faults(request.method, request.path, "served"):
            await self._sleep(fault.delay)
            return self._drop(request)
        record.status = response.status
        return response

    async def _serve(self, request: web.Request, raw: bytes, body: Any) -> web.Response:
        query = dict(request.query)
        attrs = _Attributes.of(request.method, request.path, query)
        user = self._authenticate(request)
        if user == "system:anonymous" and request.path not in (
            "/version",
            "/healthz",
            "/livez",
            "/readyz",
        ):
            raise attrs.forbidden(user)
        faults = self._take_faults(request.method, request.path, "status")
        if faults:
            fault = faults[0]
            await self._sleep(fault.delay)
            return self._fault_response(fault, attrs, user)
        if self.rbac.objects and not self.rbac.allows(user, attrs):
            raise attrs.forbidden(user)
        return self._dispatch(
            request.method,
            request.path,
            query,
            raw,
            body,
            request.headers.get("Content-Type", ""),
            managed_fields.manager_of(query, request.headers.get("User-Agent", "")),
        )

    def _authenticate(self, request: web.Request) -> str:
        if self.token is None:
            return self.user
        header = request.headers.get("Authorization")
        if header is None and self.anonymous_auth:
            return "system:anonymous"
        if header is not None:
            scheme, _, credential = header.partition(" ")
            if scheme.lower() == "bearer" and credential.strip() == self.token:
                return self.user
        raise ApiError(401, "Unauthorized", "Unauthorized")

    @staticmethod
    def _base_headers() -> dict[str, str]:
        return {"Audit-Id": str(uuid.uuid4()), "Cache-Control": "no-cache, private"}

    def _json_response(self, obj: Any, status: int = 200) -> web.Response:
        return web.Response(
            status=status,
            body=_dumps(obj),
            content_type="application/json",
            headers=self._base_headers(),
        )

    def _error_response(self, err: ApiError) -> web.Response:
        headers = self._base_headers()
        if err.details and err.details.get("retryAfterSeconds"):
            headers["Retry-After"] = str(err.details["retryAfterSeconds"])
        headers.update(err.headers)
        if err.text is not None:
            headers["X-Content-Type-Options"] = "nosniff"
            return web.Response(
                status=err.code,
                text=err.text,
                content_type="text/plain",
                charset="utf-8",
                headers=headers,
            )
        return web.Response(
            status=err.code,
            body=_dumps(err.body()),
            content_type="application/json",
            headers=headers,
        )

    def _fault_response(self, fault: Fault, attrs: _Attributes, user: str) -> web.Response:
        code = fault.status
        assert code is not None
        headers: dict[str, str] = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        if fault.body is not None:
            if isinstance(fault.body, str):
                err = ApiError(code, None, fault.body, headers=headers, text=fault.body)
            else:
                response = self._json_response(fault.body, code)
                response.headers.update(headers)
                return response
        elif code == 403 and fault.message is None:
            err = attrs.forbidden(user)
            err.headers.update(headers)
        elif code == 429 and fault.message is None:
            headers.setdefault("Retry-After", "1")
            err = ApiError(
                429,
                "TooManyRequests",
                "",
                headers=headers,
                text="Too many requests, please try again later.\n",
            )
        else:
            reason, default = _GENERIC_MESSAGES.get(
                code, ("InternalError" if code >= 500 else "", f"injected {code}")
            )
            message = fault.message if fault.message is not None else default
            if code == 500 and fault.message is not None:
                message = f"Internal error occurred: {fault.message}"
            details: JSON | None = None
            if code == 500:
                details = {"causes": [{"message": fault.message or "injected fault"}]}
            err = ApiError(code, reason or None, message, details, headers=headers)
        return self._error_response(err)

    # ---- routing ---------------------------------------------------------------------------

    def _dispatch(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        raw: bytes,
        body: Any,
        content_type: str,
        manager: str = "unknown",
    ) -> web.Response:
        parts = [p for p in path.split("/") if p]
        if not parts:
            return self._json_response(
                {"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version"]}
            )
        if parts[0] in ("healthz", "livez", "readyz") and len(parts) == 1:
            return web.Response(
                text="ok", content_type="text/plain", charset="utf-8", headers=self._base_headers()
            )
        if parts == ["version"]:
            return self._json_response(SERVER_VERSION)
        if parts == ["api"]:
            return self._json_response(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {
                            "clientCIDR": "0.0.0.0/0",
                            "serverAddress": self.url.removeprefix("http://"),
                        }
                    ],
                }
            )
        if parts == ["apis"]:
            return self._json_response(
                {
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": [self._api_group(g) for g in ("apps", "autoscaling", "policy")],
                }
            )
        if parts[0] == "apis" and len(parts) == 2 and parts[1] in ("apps", "autoscaling", "policy"):
            return self._json_response(
                self._api_group(parts[1]) | {"kind": "APIGroup", "apiVersion": "v1"}
            )
        if parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise self._page_not_found()
        served = _SERVED.get((group, version))
        if (
            served is None
            or (group == SCALEDOBJECTS.group and not self.keda_installed)
            or (group == CERTIFICATES.group and self.cert_manager is None)
        ):
            raise self._page_not_found()
        if not rest:
            if method != "GET":
                raise self._method_not_allowed(method, path)
            return self._json_response(self._resource_list(group, version, served))
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        kind = served.get(rest[0])
        if kind is None or len(rest) > 3 or (namespace is not None and not kind.namespaced):
            raise self._resource_not_found()
        if namespace is None and kind.namespaced and len(rest) > 1:
            raise self._resource_not_found()
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        dry_run = self._dry_run(query)
        if method == "GET" and query.get("watch") in ("1", "true"):
            raise self._method_not_allowed(method, path, "watch")
        handler = self._route(kind, sub, method, bool(name))
        if handler is None:
            if sub and (kind.resource, sub) not in _SUBRESOURCE_PAIRS:
                raise self._resource_not_found()
            raise self._method_not_allowed(method, path)
        return handler(
            _Call(
                namespace=namespace,
                name=name,
                query=query,
                raw=raw,
                body=body,
                content_type=content_type,
                dry_run=dry_run,
                manager=manager,
            )
        )

    def _route(
        self, kind: _Kind, sub: str, method: str, named: bool
    ) -> Callable[[_Call], web.Response] | None:
        table: dict[tuple[str, str, str, bool], Callable[[_Call], web.Response]] = {
            ("pods", "", "DELETE", True): self._delete_pod,
            ("pods", "eviction", "POST", True): self._evict,
            ("pods", "log", "GET", True): self._read_log,
            ("events", "", "POST", False): self._create_event,
            ("deployments", "", "PATCH", True): self._patch_deployment,
            ("deployments", "scale", "GET", True): self._get_scale,
            ("deployments", "scale", "PATCH", True): self._patch_scale,
            ("deployments", "scale", "PUT", True): self._put_scale,
            ("horizontalpodautoscalers", "", "PATCH", True): self._patch_hpa,
            ("certificates", "", "PATCH", True): lambda call: self._certs().patch(call),
            ("certificates", "status", "GET", True): lambda call: self._certs().get_status(call),
            ("certificates", "status", "PATCH", True): lambda c: self._certs().patch_status(c),
        }
        handler = table.get((kind.resource, sub, method, named))
        if handler is not None:
            return handler
        if method == "GET" and not sub:
            return (
                (lambda call: self._get_one(kind, call))
                if named
                else (lambda call: self._list(kind, call))
            )
        return None

    @staticmethod
    def _dry_run(query: Mapping[str, str]) -> bool:
        value = query.get("dryRun")
        if value is None or value == "":
            return False
        if value != "All":
            raise _bad_request(f'Invalid dry run value: "{value}"; valid values are: All')
        return True

    @staticmethod
    def _page_not_found() -> ApiError:
        return ApiError(404, "NotFound", "404 page not found", text="404 page not found\n")

    @staticmethod
    def _resource_not_found() -> ApiError:
        return ApiError(404, "NotFound", "the server could not find the requested resource", {})

    @staticmethod
    def _method_not_allowed(method: str, path: str, what: str | None = None) -> ApiError:
        return ApiError(
            405,
            "MethodNotAllowed",
            f"{what or method} is not supported by the test API server on {path}",
            {},
        )

    @staticmethod
    def _api_group(group: str) -> JSON:
        version = {"apps": "v1", "autoscaling": "v2", "policy": "v1"}[group]
        versions = [{"groupVersion": f"{group}/{version}", "version": version}]
        return {"name": group, "versions": versions, "preferredVersion": versions[0]}

    @staticmethod
    def _resource_list(group: str, version: str, served: Mapping[str, _Kind]) -> JSON:
        group_version = f"{group}/{version}" if group else version
        resources: list[JSON] = []
        for kind in sorted(served.values(), key=lambda k: k.resource):
            entry: JSON = {
                "name": kind.resource,
                "singularName": kind.singular,
                "namespaced": kind.namespaced,
                "kind": kind.kind,
                "verbs": list(kind.verbs),
            }
            if kind.short_names:
                entry["shortNames"] = list(kind.short_names)
            resources.append(entry)
        resources.extend(_SUBRESOURCES.get(group_version, []))
        resources.sort(key=lambda r: str(r["name"]))
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }

    # ---- handlers: reads -------------------------------------------------------------------

    def _get_one(self, kind: _Kind, call: _Call) -> web.Response:
        return self._json_response(self._get(kind, call.namespace or "", call.name))

    def _list(self, kind: _Kind, call: _Call) -> web.Response:
        try:
            label_reqs = parse_label_selector(call.query.get("labelSelector", ""))
            field_reqs = _parse_field_selector(call.query.get("fieldSelector", ""))
        except SelectorError as exc:
            raise _bad_request(str(exc)) from None
        for field, _, _ in field_reqs:
            probe = {"metadata": {"name": "", "namespace": ""}}
            if _field_value(kind, probe, field) is None:
                raise _bad_request(f"field label not supported: {field}")
        items = [
            obj
            for obj in self._items(kind, call.namespace if kind.namespaced else None)
            if _matches(label_reqs, _labels(obj))
            and all((_field_value(kind, obj, f) == v) == equal for f, equal, v in field_reqs)
        ]
        meta: JSON = {"resourceVersion": str(self._rv)}
        start = call.query.get("continue")
        if start:
            try:
                token = json.loads(base64.b64decode(start, validate=True))
                after = str(token["start"]).rstrip("\x00")
            except (ValueError, KeyError, TypeError, binascii.Error):
                raise ApiError(
                    400,
                    "BadRequest",
                    "continue key is not valid: incorrect encoded start resourceVersion "
                    "(version meta.k8s.io/v1)",
                ) from None
            items = [o for o in items if self._list_key(kind, o) > after]
        limit_text = call.query.get("limit")
        limit = int(limit_text) if limit_text and limit_text.isdigit() else 0
        if 0 < limit < len(items):
            remaining = len(items) - limit
            items = items[:limit]
            token = {
                "v": "meta.k8s.io/v1",
                "rv": self._rv,
                "start": self._list_key(kind, items[-1]) + "\x00",
            }
            meta["continue"] = base64.b64encode(
                json.dumps(token, separators=(",", ":")).encode()
            ).decode()
            if not label_reqs and not field_reqs:
                meta["remainingItemCount"] = remaining
        listed = []
        for obj in items:
            item = {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
            listed.append(item)
        return self._json_response(
            {
                "kind": f"{kind.kind}List",
                "apiVersion": kind.api_version,
                "metadata": meta,
                "items": listed,
            }
        )

    @staticmethod
    def _list_key(kind: _Kind, obj: JSON) -> str:
        meta = obj["metadata"]
        return (
            f"{meta.get('namespace', '')}/{meta['name']}" if kind.namespaced else str(meta["name"])
        )

    # ---- handlers: pods --------------------------------------------------------------------

    @staticmethod
    def _delete_options(body: Any, query: Mapping[str, str]) -> JSON:
        options: JSON = dict(body) if isinstance(body, dict) else {}
        if body is not None and not isinstance(body, dict):
            raise _bad_request("the body of the request was in an unknown format")
        grace = query.get("gracePeriodSeconds")
        if grace is not None:
            try:
                options["gracePeriodSeconds"] = int(grace)
            except ValueError:
                raise _bad_request(f'strconv.ParseInt: parsing "{grace}": invalid syntax') from None
        return options

    def _check_preconditions(self, pod: JSON, options: JSON) -> None:
        """``rest.BeforeDelete``: UID and resourceVersion preconditions."""
        pre = options.get("preconditions") or {}
        meta = pod["metadata"]
        if pre.get("uid") is not None and pre["uid"] != meta["uid"]:
            raise _conflict(
                "",
                "Pod",
                meta["name"],
                f"the UID in the precondition ({pre['uid']}) does not match the UID in record "
                f"({meta['uid']}). The object might have been deleted and then recreated",
            )
        if (
            pre.get("resourceVersion") is not None
            and pre["resourceVersion"] != meta["resourceVersion"]
        ):
            raise _conflict(
                "",
                "Pod",
                meta["name"],
                f"the ResourceVersion in the precondition ({pre['resourceVersion']}) does not "
                f"match the ResourceVersion in record ({meta['resourceVersion']}). The object "
                "might have been modified",
            )

    def _delete_pod_now(self, pod: JSON, options: JSON, dry_run: bool) -> JSON:
        self._check_preconditions(pod, options)
        grace = options.get("gracePeriodSeconds")
        if dry_run:
            return copy.deepcopy(pod)
        answer = self._terminate_pod(pod, int(grace) if grace is not None else None)
        self._after_request()
        return answer

    def _delete_pod(self, call: _Call) -> web.Response:
        pod = self._get(PODS, call.namespace or "", call.name)
        options = self._delete_options(call.body, call.query)
        return self._json_response(self._delete_pod_now(pod, options, call.dry_run))

    def _read_log(self, call: _Call) -> web.Response:
        options = _LogOptions.of(call.query)
        errors = options.errors()
        if errors:
            raise _invalid("PodLogOptions", "", call.name, errors)
        pod = self._get(PODS, call.namespace or "", call.name)
        container = _log_container(pod, options.container)
        if not pod["spec"].get("nodeName"):
            # No node, so no kubelet to ask: the API server streams nothing.
            return web.Response(status=204, headers=self._base_headers())
        refusal = _log_refusal(pod, container, options.previous)
        if refusal is not None:
            raise _bad_request(refusal)
        # This kubelet keeps no log of a container's earlier runs.
        lines = (
            []
            if options.previous
            else self._logs.get(pod["metadata"]["uid"], {}).get(container, [])
        )
        return web.Response(
            body=_log_body(lines, options, dt.datetime.now(dt.UTC)),
            content_type="text/plain",
            headers=self._base_headers(),
        )

    def _evict(self, call: _Call) -> web.Response:
        namespace = call.namespace or ""
        body = call.body
        if not isinstance(body, dict):
            raise _bad_request("the body of the request was in an unknown format")
        meta = body.get("metadata") or {}
        if meta.get("namespace") and meta["namespace"] != namespace:
            raise _bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        if meta.get("name", "") != call.name:
            raise _bad_request("name in URL does not match name in Eviction object")
        options = dict(body.get("deleteOptions") or {})
        dry_run = call.dry_run or "All" in (options.get("dryRun") or [])
        pod = self._get(PODS, namespace, call.name)
        success = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "code": 201,
        }
        phase = pod["status"].get("phase")
        if phase in ("Pending", "Succeeded", "Failed") or _is_terminating(pod):
            self._delete_pod_now(pod, options, dry_run)
            return self._json_response(success, 201)
        pdbs = [pdb for pdb in self._items(PDBS, namespace) if self._pdb_covers(pdb, pod)]
        if len(pdbs) > 1:
            raise ApiError(
                500,
                None,
                "This pod has more than one PodDisruptionBudget, which the eviction subresource "
                "does not support.",
            )
        if pdbs:
            pdb = pdbs[0]
            st = pdb["status"]
            unready_ok = (
                not is_pod_ready(pod)
                and st.get("currentHealthy", 0) >= st.get("desiredHealthy", 0) > 0
            )
            if not unready_ok:
                self._check_and_decrement(pdb, call.name, dry_run)
        self._delete_pod_now(pod, options, dry_run)
        return self._json_response(success, 201)

    @staticmethod
    def _pdb_covers(pdb: JSON, pod: JSON) -> bool:
        reqs = selector_requirements(pdb["spec"].get("selector"))
        return bool(reqs) and _matches(reqs, _labels(pod))

    def _check_and_decrement(self, pdb: JSON, pod_name: str, dry_run: bool) -> None:
        status = pdb["status"]
        name = pdb["metadata"]["name"]
        if int(status.get("observedGeneration", 0)) < int(pdb["metadata"].get("generation", 1)):
            raise ApiError(
                429,
                "TooManyRequests",
                "Cannot evict pod as it would violate the pod's disruption budget.",
                {
                    "causes": [
                        {
                            "reason": "DisruptionBudget",
                            "message": f"The disruption budget {name} is still being "
                            "processed by the server.",
                        }
                    ],
                    "retryAfterSeconds": 10,
                },
            )
        allowed = int(status.get("disruptionsAllowed", 0))
        if allowed < 0:
            raise ApiError(
                403,
                "Forbidden",
                f'poddisruptionbudget.policy "{name}" is forbidden: '
                "pdb disruptions allowed is negative",
                _details(name, "policy", "poddisruptionbudget"),
            )
        if allowed == 0:
            raise ApiError(
                429,
                "TooManyRequests",
                "Cannot evict pod as it would violate the pod's disruption budget.",
                {
                    "causes": [
                        {
                            "reason": "DisruptionBudget",
                            "message": f"The disruption budget {name} needs "
                            f"{status.get('desiredHealthy', 0)} healthy pods and has "
                            f"{status.get('currentHealthy', 0)} currently",
                        }
                    ]
                },
            )
        if dry_run:
            return
        updated = copy.deepcopy(pdb)
        old = updated["status"]
        st: JSON = {}
        if "observedGeneration" in old:
            st["observedGeneration"] = old["observedGeneration"]
        st["disruptedPods"] = {**(old.get("disruptedPods") or {}), pod_name: self._now()}
        st["disruptionsAllowed"] = allowed - 1
        for key in ("currentHealthy", "desiredHealthy", "expectedPods", "conditions"):
            if key in old:
                st[key] = old[key]
        if st["disruptionsAllowed"] == 0:
            st["conditions"] = [
                self._pdb_condition(updated, 0, int(old.get("observedGeneration", 0)))
            ]
        updated["status"] = st
        self._update(PDBS, updated)
        self._later(time.monotonic() + self.pdb_deletion_timeout_s)  # the pod's entry expires
        self._after_request()

    # ---- handlers: events ------------------------------------------------------------------

    def _create_event(self, call: _Call) -> web.Response:
        namespace = call.namespace or ""
        body = call.body
        if ("", namespace) not in self._store["namespaces"]:
            raise _not_found(NAMESPACES, namespace)
        if not isinstance(body, dict):
            raise _bad_request("the body of the request was in an unknown format")
        meta = dict(body.get("metadata") or {})
        if meta.get("namespace") and meta["namespace"] != namespace:
            raise _bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        name = meta.get("name") or ""
        if not name and meta.get("generateName"):
            name = self._generated_name(EVENTS, namespace, str(meta["generateName"]))
        if not name:
            raise _invalid(
                "Event",
                "",
                "",
                [
                    _FieldError(
                        "metadata.name",
                        "FieldValueRequired",
                        "Required value: name or generateName is required",
                    )
                ],
            )
        involved = dict(body.get("involvedObject") or {})
        if involved.get("namespace") and involved["namespace"] != namespace:
            raise _invalid(
                "Event",
                "",
                name,
                [
                    _FieldError(
                        "involvedObject.namespace",
                        "FieldValueInvalid",
                        f"Invalid value: {_go_value(involved['namespace'])}: "
                        "does not match event.namespace",
                    )
                ],
            )
        meta.update(name=name, namespace=namespace)
        for key in ("uid", "resourceVersion", "creationTimestamp", "generation"):
            meta.pop(key, None)
        event: JSON = {
            "kind": "Event",
            "apiVersion": "v1",
            "metadata": meta,
            "involvedObject": involved,
        }
        for key in ("reason", "message"):
            if body.get(key):
                event[key] = body[key]
        event["source"] = body.get("source") or {}
        event["firstTimestamp"] = body.get("firstTimestamp")
        event["lastTimestamp"] = body.get("lastTimestamp")
        for key in ("count", "type"):
            if body.get(key):
                event[key] = body[key]
        event["eventTime"] = body.get("eventTime")
        for key in ("series", "action", "related"):
            if body.get(key):
                event[key] = body[key]
        event["reportingComponent"] = body.get("reportingComponent") or ""
        event["reportingInstance"] = body.get("reportingInstance") or ""
        if call.dry_run:
            return self._json_response(event, 201)
        created = self._create(EVENTS, event)
        return self._json_response(created, 201)

    # ---- handlers: deployments and scale ---------------------------------------------------

    def _apply_patch(self, current: JSON, call: _Call) -> JSON:
        content_type = call.content_type.split(";")[0].strip().lower()
        if content_type not in (MERGE_PATCH, STRATEGIC_MERGE_PATCH, JSON_PATCH):
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types "
                f"include: {_ACCEPTED_PATCH_TYPES}",
            )
        try:
            patch = json.loads(call.raw)
        except ValueError as exc:
            raise _bad_request(f"error decoding patch: {exc}") from None
        if content_type == JSON_PATCH:
            try:
                result = _json_patch(current, patch)
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise ApiError(
                    422,
                    "Invalid",
                    "the server rejected our request due to an error in our request",
                    {"causes": [{"reason": "UnexpectedServerResponse", "message": str(exc)}]},
                ) from None
        else:
            if not isinstance(patch, dict):
                raise _bad_request(
                    f"json: cannot unmarshal {type(patch).__name__} into Go value of type "
                    "map[string]interface {}"
                )
            if content_type == STRATEGIC_MERGE_PATCH:
                patch = _strip_directives(patch)
            result = merge_patch(current, patch)
        if not isinstance(result, dict):
            raise _bad_request("the patched object is not a JSON object")
        return result

    @staticmethod
    def _check_name(obj: JSON, name: str, namespace: str) -> None:
        meta = obj.get("metadata") or {}
        if meta.get("name", "") != name:
            raise _bad_request(
                f"the name of the object ({meta.get('name', '')}) does not match the name on "
                f"the URL ({name})"
            )
        if meta.get("namespace") and meta["namespace"] != namespace:
            raise _bad_request(
                f"the namespace of the object ({meta['namespace']}) does not match the "
                f"namespace on the request ({namespace})"
            )

    def _patch_deployment(self, call: _Call) -> web.Response:
        namespace = call.namespace or ""
        if call.content_type.split(";")[0].strip().lower() == APPLY_PATCH:
            return self._server_side_apply(call)
        current = self._get(DEPLOYMENTS, namespace, call.name)
        patched = self._apply_patch(current, call)
        self._check_name(patched, call.name, namespace)
        meta = patched.get("metadata") or {}
        rv = meta.get("resourceVersion")
        if not call.dry_run:
            self._race_status_write(current, call)
            current = self._get(DEPLOYMENTS, namespace, call.name)
        cur_meta = current["metadata"]
        if rv and rv != cur_meta["resourceVersion"]:
            raise _conflict("apps", "deployments", call.name, _OPTIMISTIC_LOCK)
        errors: list[_FieldError] = []
        if meta.get("uid") and meta["uid"] != cur_meta["uid"]:
            errors.append(
                _FieldError(
                    "metadata.uid",
                    "FieldValueInvalid",
                    f"Invalid value: {_go_value(meta['uid'])}: field is immutable",
                )
            )
        spec = patched.get("spec")
        if not isinstance(spec, dict):
            spec = {}
        spec.setdefault("replicas", 1)
        for field in ("selector", "template"):
            if not isinstance(spec.get(field), dict):
                raise _invalid(
                    "Deployment",
                    "apps",
                    call.name,
                    [_FieldError(f"spec.{field}", "FieldValueRequired", "Required value")],
                )
        replicas = spec["replicas"]
        if isinstance(replicas, bool) or not isinstance(replicas, int):
            raise _bad_request(
                'Deployment in version "v1" cannot be handled as a Deployment: json: cannot '
                f"unmarshal {type(replicas).__name__} into Go struct field "
                "DeploymentSpec.spec.replicas of type int32"
            )
        if replicas < 0:
            errors.append(
                _FieldError(
                    "spec.replicas",
                    "FieldValueInvalid",
                    f"Invalid value: {replicas}: must be greater than or equal to 0",
                )
            )
        if spec.get("selector") != current["spec"].get("selector"):
            errors.append(
                _FieldError(
                    "spec.selector", "FieldValueInvalid", "Invalid value: {}: field is immutable"
                )
            )
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not _matches(selector_requirements(spec.get("selector")), template_labels):
            errors.append(
                _FieldError(
                    "spec.template.metadata.labels",
                    "FieldValueInvalid",
                    "Invalid value: map[string]string{}: "
                    "`selector` does not match template `labels`",
                )
            )
        if errors:
            raise _invalid("Deployment", "apps", call.name, errors)
        updated = copy.deepcopy(current)
        for key in ("labels", "annotations", "ownerReferences", "finalizers"):
            if meta.get(key):
                updated["metadata"][key] = copy.deepcopy(meta[key])
            else:
                updated["metadata"].pop(key, None)
        if spec != current["spec"]:
            updated["spec"] = copy.deepcopy(spec)
            updated["metadata"]["generation"] = int(cur_meta.get("generation", 1)) + 1
        managed_fields.record_update(current, updated, call.manager)
        if call.dry_run:
            return self._json_response(updated)
        self._update(DEPLOYMENTS, updated)
        answer = copy.deepcopy(self._store["deployments"][(namespace, call.name)])
        self._after_request()
        return self._json_response(answer)

    def _server_side_apply(self, call: _Call) -> web.Response:
        """``PATCH`` of ``application/apply-patch+yaml`` on a Deployment."""
        if not call.query.get("fieldManager"):
            raise ApiError(
                422, "Invalid",
                'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is'
                " required for apply patch",
                {"group": "meta.k8s.io", "kind": "PatchOptions",
                 "causes": [{"reason": "FieldValueRequired", "field": "fieldManager",
                             "message": "Required value: is required for apply patch"}]},
            )  # fmt: skip
        try:
            config = yaml.safe_load(call.raw)
        except yaml.YAMLError as exc:
            raise _bad_request(f"error decoding YAML: {exc}") from None
        if not isinstance(config, dict):
            raise _bad_request("the body of the request was in an unknown format")
        if (config.get("apiVersion"), config.get("kind")) != ("apps/v1", "Deployment"):
            raise _bad_request(
                f"the API version in the data ({config.get('apiVersion')}) and the kind"
                f" ({config.get('kind')}) do not match the request's (apps/v1, Deployment)"
            )
        namespace = call.namespace or ""
        self._check_name(config, call.name, namespace)
        force = call.query.get("force") == "true"
        try:
            applied = self._applied(namespace, call.name, config, call.manager, force)
        except managed_fields.ApplyConflict as conflict:
            raise ApiError(409, "Conflict", conflict.message, {"causes": conflict.causes}) from None
        self._after_request()
        return self._json_response(applied)

    def _applied(self, namespace: str, name: str, config: JSON, manager: str, force: bool) -> JSON:
        """The Deployment once ``manager`` applied ``config``, stored (created if need be)."""
        current = self._store["deployments"].get((namespace, name))
        result = managed_fields.apply(current, config, manager, force)
        result["metadata"].update(name=name, namespace=namespace)
        result.setdefault("status", {})
        if current is None:
            self.add_namespace(namespace)
            self._create(DEPLOYMENTS, result)
        else:
            if result.get("spec") != current.get("spec"):
                generation = int(current["metadata"].get("generation", 1)) + 1
                result["metadata"]["generation"] = generation
            self._update(DEPLOYMENTS, result)
        return copy.deepcopy(self._get(DEPLOYMENTS, namespace, name))

    def _patch_hpa(self, call: _Call) -> web.Response:
        namespace = call.namespace or ""
        current = self._get(HPAS, namespace, call.name)
        patched = self._apply_patch(current, call)
        rv = (patched.get("metadata") or {}).get("resourceVersion")
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise _conflict("autoscaling", "horizontalpodautoscalers", call.name, _OPTIMISTIC_LOCK)
        spec = patched.get("spec") or {}
        low, high = spec.get("minReplicas", 1), spec.get("maxReplicas")
        if not isinstance(low, int) or not isinstance(high, int) or not 1 <= low <= high:
            raise _invalid(
                "HorizontalPodAutoscaler",
                "autoscaling",
                call.name,
                [
                    _FieldError(
                        "spec.minReplicas",
                        "FieldValueInvalid",
                        f"Invalid value: {_go_value(low)}: must be less than or equal to"
                        " maxReplicas",
                    )
                ],
            )
        updated = copy.deepcopy(current)
        if spec != current["spec"]:
            updated["spec"] = copy.deepcopy(spec)
            updated["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
        if call.dry_run:
            return self._json_response(updated)
        self._update(HPAS, updated)
        if updated["spec"] != current["spec"] and self.lags.hpa_sync_s > 0:
            due = time.monotonic() + self.lags.hpa_sync_s
            self._hpa_gates[(namespace, call.name)] = due
            self._later(due)
        answer = copy.deepcopy(self._store["horizontalpodautoscalers"][(namespace, call.name)])
        self._after_request()
        return self._json_response(answer)

    def _scale_of(self, d: JSON) -> JSON:
        meta = d["metadata"]
        replicas = int(d["spec"].get("replicas", 1))
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta["resourceVersion"],
                "creationTimestamp": meta["creationTimestamp"],
            },
            "spec": {"replicas": replicas} if replicas else {},
            "status": {
                "replicas": int(d.get("status", {}).get("replicas", 0)),
                "selector": selector_string(d["spec"].get("selector")),
            },
        }

    def _get_scale(self, call: _Call) -> web.Response:
        return self._json_response(
            self._scale_of(self._get(DEPLOYMENTS, call.namespace or "", call.name))
        )

    def _patch_scale(self, call: _Call) -> web.Response:
        current = self._get(DEPLOYMENTS, call.namespace or "", call.name)
        patched = self._apply_patch(self._scale_of(current), call)
        return self._write_scale(call, patched)

    def _put_scale(self, call: _Call) -> web.Response:
        self._get(DEPLOYMENTS, call.namespace or "", call.name)
        if not isinstance(call.body, dict):
            raise _bad_request("the body of the request was in an unknown format")
        return self._write_scale(call, call.body)

    def _write_scale(self, call: _Call, scale: JSON) -> web.Response:
        namespace = call.namespace or ""
        current = self._get(DEPLOYMENTS, namespace, call.name)
        self._check_name(scale, call.name, namespace)
        rv = (scale.get("metadata") or {}).get("resourceVersion")
        if not call.dry_run:
            self._race_status_write(current, call)
            current = self._get(DEPLOYMENTS, namespace, call.name)
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise _conflict("apps", "deployments", call.name, _OPTIMISTIC_LOCK)
        spec = scale.get("spec") or {}
        replicas = spec.get("replicas", 0) if isinstance(spec, dict) else 0
        if isinstance(replicas, bool) or not isinstance(replicas, int):
            raise _bad_request(
                'Scale in version "v1" cannot be handled as a Scale: json: cannot unmarshal '
                f"{type(replicas).__name__} into Go struct field ScaleSpec.spec.replicas of "
                "type int32"
            )
        if replicas < 0:
            raise _invalid(
                "Scale",
                "autoscaling",
                call.name,
                [
                    _FieldError(
                        "spec.replicas",
                        "FieldValueInvalid",
                        f"Invalid value: {replicas}: must be greater than or equal to 0",
                    )
                ],
            )
        updated = copy.deepcopy(current)
        if int(updated["spec"].get("replicas", 1)) != replicas:
            updated["spec"]["replicas"] = replicas
            updated["metadata"]["generation"] = int(updated["metadata"].get("generation", 1)) + 1
        managed_fields.record_update(current, updated, call.manager, "scale")
        if call.dry_run:
            return self._json_response(self._scale_of(updated))
        self._update(DEPLOYMENTS, updated)
        answer = self._scale_of(self._store["deployments"][(namespace, call.name)])
        self._after_request()
        return self._json_response(answer)


@dataclasses.dataclass(frozen=True)
class _Call:
    namespace: str | None
    name: str
    query: dict[str, str]
    raw: bytes
    body: Any
    content_type: str
    dry_run: bool
    manager: str = "unknown"
    """The request's field manager (``managed_fields.manager_of``)."""
