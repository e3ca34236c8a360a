"""The Kubernetes API through kubernetes-asyncio: the only module that imports it.

Calls return plain values of ours (``Deployment``, ``Pod``, ``Scale``) and raise our errors:
404 → ``NotFound`` (``NotServed`` when the answer names no object: a custom resource whose
CRD is not installed), 409 → ``Conflict``, 401/403 → ``Forbidden``, 429 → ``Throttled`` (or
``DisruptionBlocked`` when a PodDisruptionBudget refused an eviction), 5xx and network
failures → ``Transient``. Only ``Transient`` and generic ``Throttled`` are retried, a
bounded number of times within a bounded time, honouring ``Retry-After``; a guarded write
that meets ``Conflict`` is the caller's to read again and retry, paced by
:func:`conflict_attempts`. A call that fails
in the end is logged here, once, with the API server's answer: at warning, unless the
answer is one the actions expect and act on (``EXPECTED``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import types
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client import ApiException
from kubernetes_asyncio.client.exceptions import OpenApiException
from kubernetes_asyncio.client.rest import RESTResponse
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, stop_after_delay
from tenacity.wait import wait_base

from remediator.core.errors import (
    ApiError,
    ConfigError,
    Conflict,
    DisruptionBlocked,
    Forbidden,
    NotFound,
    NotServed,
    Throttled,
    Transient,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

REQUEST_TIMEOUT_S = 10.0
MAX_READ_BYTES = 4 * 1024 * 1024
"""Most of one answer read as evidence (a namespace's Events can be many): the rest is cut."""
READ_CHUNK_BYTES = 64 * 1024
RETRY_ATTEMPTS = 4
RETRY_WITHIN_S = 15.0
BACKOFF_S = (0.2, 0.5, 1.0, 2.0)
CONFLICT_WAITS_S = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
"""The wait before each try of a guarded write. After every replica change the deployment
controller writes the Deployment's status for up to about 1.6 s, each write a new
``resourceVersion``: tries in quick succession all meet 409, so they back off (as client-go's
``RetryOnConflict`` does) and span 3 s in all."""
PDB_MESSAGE = "disruption budget"
#: Answers the actions expect and handle as outcomes: gone, changed meanwhile, a PDB refusal.
EXPECTED: tuple[type[ApiError], ...] = (NotFound, Conflict, DisruptionBlocked)


class _Checked:
    """A value read from the API server, each field of its declared type (an answer whose
    fields are missing or of other types is refused where it is read, ``_read``)."""

    __slots__ = ()

    def __post_init__(self) -> None:
        for name, kind in _hints(type(self)).items():
            value = getattr(self, name)
            if not _is(value, kind):
                raise TypeError(f"{type(self).__name__}.{name} is {value!r:.80}, not {kind}")


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _is(value: Any, kind: Any) -> bool:
    if typing.get_origin(kind) in (types.UnionType, typing.Union):
        return any(_is(value, k) for k in typing.get_args(kind))
    if typing.get_origin(kind) is tuple:  # tuple[X, ...]
        member = typing.get_args(kind)[0]
        return isinstance(value, tuple) and all(_is(v, member) for v in value)
    if typing.get_origin(kind) is Mapping:
        return isinstance(value, Mapping) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        )
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


@dataclass(frozen=True, slots=True)
class Owner(_Checked):
    kind: str
    name: str
    uid: str


@dataclass(frozen=True, slots=True)
class FieldOwner(_Checked):
    """A ``metadata.managedFields`` entry that holds a field: who wrote it, and how."""

    manager: str
    operation: str
    """``Apply`` (server-side apply) or ``Update`` (any other write)."""
    subresource: str = ""
    """``scale`` for a write through the scale subresource; empty for the object itself."""


@dataclass(frozen=True, slots=True)
class Deployment(_Checked):
    namespace: str
    name: str
    uid: str
    resource_version: str
    generation: int
    observed_generation: int
    replicas: int
    ready_replicas: int
    updated_replicas: int
    annotations: Mapping[str, str]
    selector: Mapping[str, str]
    replicas_owners: tuple[FieldOwner, ...] = ()
    """The managedFields entries that hold ``spec.replicas``."""
    template_owners: tuple[FieldOwner, ...] = ()
    """The managedFields entries that hold (part of) ``spec.template``."""
    paused: bool = False

    @property
    def rolling_out(self) -> bool:
        return self.observed_generation < self.generation or self.updated_replicas < self.replicas


@dataclass(frozen=True, slots=True)
class Pod(_Checked):
    namespace: str
    name: str
    uid: str
    phase: str
    ready: bool
    restarts: int
    created: datetime
    owner: Owner | None
    labels: Mapping[str, str] = field(default_factory=dict)
    terminating: bool = False
    """A deletion is under way (``deletionTimestamp`` set)."""


@dataclass(frozen=True, slots=True)
class Autoscaler(_Checked):
    namespace: str
    name: str
    min_replicas: int
    max_replicas: int
    resource_version: str
    uid: str = ""


@dataclass(frozen=True, slots=True)
class ScaledObject(_Checked):
    """A KEDA ScaledObject (``keda.sh/v1alpha1``) that scales a Deployment."""

    namespace: str
    name: str
    annotations: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Scale(_Checked):
    replicas: int
    resource_version: str


@dataclass(frozen=True, slots=True)
class Certificate(_Checked):
    """A cert-manager Certificate (``cert-manager.io/v1``): its metadata checked here, its
    status as the API server sent it (``None`` when it has none), for the action to read
    strictly (``actions/renew_certificate``): a status it cannot read is its refusal."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    generation: int
    annotations: Mapping[str, str]
    status: object


def _retry_after(exc: ApiException) -> float | None:
    headers: Any = exc.headers or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        body = {}
    text = body.get("message") if isinstance(body, dict) else None
    return str(text or exc.reason or f"HTTP {exc.status}")


NOT_SERVED = "the server could not find the requested resource"
"""The API server's message for a resource a served group does not have."""


def _not_served(exc: ApiException) -> bool:
    """Whether a 404 says the path is not served at all, as the API server answers for a
    group it does not serve (a bare "404 page not found", no Status) or a resource a group
    does not have (a Status naming no object), rather than for an object that is missing
    (a Status whose details name it)."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        return True
    if not isinstance(body, dict):
        return True
    details = body.get("details")
    return body.get("message") == NOT_SERVED and not (
        isinstance(details, dict) and details.get("name")
    )


def translate(exc: ApiException) -> ApiError:
    """An ApiException as one of our errors, with the API server's own message."""
    status, message = exc.status or 0, _message(exc)
    if status == 404:
        return NotServed(message, status) if _not_served(exc) else NotFound(message, status)
    if status == 409:
        return Conflict(message, status)
    if status in (401, 403):
        return Forbidden(message, status)
    if status == 429:
        if PDB_MESSAGE in message:
            return DisruptionBlocked(message, status, _retry_after(exc))
        return Throttled(message, status, _retry_after(exc))
    return Transient(message, status)


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, Transient) or (
        isinstance(exc, Throttled) and not isinstance(exc, DisruptionBlocked)
    )


class _WaitRetryAfter(wait_base):
    """The server's Retry-After when it gave one (capped), else a short backoff."""

    def __call__(self, retry_state: Any) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, Throttled) and exc.retry_after_s is not None:
            return min(exc.retry_after_s, RETRY_WITHIN_S)
        return BACKOFF_S[min(retry_state.attempt_number - 1, len(BACKOFF_S) - 1)]


async def _once(call: Callable[[], Awaitable[T]]) -> T:
    try:
        return await call()
    except ApiException as exc:
        raise translate(exc) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise Transient(f"{type(exc).__name__}: {exc}") from None
    except (ValueError, TypeError) as exc:
        if isinstance(exc, OpenApiException):  # the client refused our arguments: a bug
            raise
        raise _malformed(exc) from None


def _read(what: str, convert: Callable[[], T]) -> T:
    """``convert`` of an answer to ``what``; an answer without the fields it needs, or with
    fields of other types, is an API error (logged as the others are), never a bug of ours
    surfacing as an AttributeError in an action."""
    try:
        return convert()
    except (AttributeError, TypeError, ValueError, KeyError) as exc:
        error = _malformed(exc)
    with logged(what):
        raise error


def _malformed(exc: Exception) -> ApiError:
    """An answer that is not the object asked for (a proxy's HTML page, a truncated or
    foreign body): an API error, not retried; the caller's doubt is its own to handle."""
    return ApiError(f"the answer is not the object asked for: {type(exc).__name__}: {exc}")


@contextlib.contextmanager
def logged(what: str) -> Iterator[None]:
    """Log an API error once, as it leaves the client, with the server's answer."""
    try:
        yield
    except ApiError as exc:
        level = logging.DEBUG if isinstance(exc, EXPECTED) else logging.WARNING
        fields = {"call": what, "error": str(exc), "status": exc.status,
                  "kind": type(exc).__name__}  # fmt: skip
        log.log(level, "Kubernetes API: %s failed: %s", what, exc, extra={"fields": fields})
        raise


async def call_with_retries(what: str, call: Callable[[], Awaitable[T]]) -> T:
    retrying = AsyncRetrying(
        retry=retry_if_exception(_retryable),
        stop=stop_after_attempt(RETRY_ATTEMPTS) | stop_after_delay(RETRY_WITHIN_S),
        wait=_WaitRetryAfter(),
        reraise=True,
    )
    with logged(what):
        async for attempt in retrying:
            with attempt:
                return await _once(call)
    raise AssertionError("unreachable")  # pragma: no cover - tenacity reraises


async def conflict_attempts() -> AsyncIterator[int]:
    """Attempt numbers 0, 1, ... of a guarded read-decide-write, each after its wait in
    :data:`CONFLICT_WAITS_S`; the caller reads again in every attempt after the first."""
    for attempt, wait_s in enumerate(CONFLICT_WAITS_S):
        if wait_s:
            await asyncio.sleep(wait_s)
        yield attempt


def _owner(metadata: Any) -> Owner | None:
    for ref in metadata.owner_references or []:
        if ref.controller:
            return Owner(ref.kind, ref.name, ref.uid)
    return None


def _pod(item: Any) -> Pod:
    status = item.status
    conditions = status.conditions or [] if status else []
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    restarts = sum(c.restart_count or 0 for c in (status.container_statuses or [])) if status else 0
    created = item.metadata.creation_timestamp or datetime.fromtimestamp(0, UTC)
    return Pod(
        namespace=item.metadata.namespace,
        name=item.metadata.name,
        uid=item.metadata.uid,
        phase=(status.phase if status else None) or "Unknown",
        ready=ready,
        restarts=restarts,
        created=created,
        owner=_owner(item.metadata),
        labels=dict(item.metadata.labels or {}),
        terminating=item.metadata.deletion_timestamp is not None,
    )


def _deployment(item: Any) -> Deployment:
    status = item.status
    return Deployment(
        namespace=item.metadata.namespace,
        name=item.metadata.name,
        uid=item.metadata.uid,
        resource_version=item.metadata.resource_version,
        generation=item.metadata.generation or 0,
        observed_generation=(status.observed_generation if status else None) or 0,
        replicas=item.spec.replicas if item.spec.replicas is not None else 1,
        ready_replicas=(status.ready_replicas if status else None) or 0,
        updated_replicas=(status.updated_replicas if status else None) or 0,
        annotations=dict(item.metadata.annotations or {}),
        selector=dict(item.spec.selector.match_labels or {}),
        replicas_owners=_spec_owners(item.metadata.managed_fields or [], "f:replicas"),
        template_owners=_spec_owners(item.metadata.managed_fields or [], "f:template"),
        paused=bool(item.spec.paused),
    )


def _spec_owners(entries: list[Any], field: str) -> tuple[FieldOwner, ...]:
    """The managedFields entries whose field set holds ``f:spec`` → ``field``."""
    owners = []
    for entry in entries:
        fields = entry.fields_v1 or {}
        spec = fields.get("f:spec") or {} if isinstance(fields, dict) else None
        if not isinstance(spec, dict):  # who owns what cannot be read: doubt, not "nobody"
            raise TypeError(f"managedFields of {entry.manager!r} are not a field set")
        if field in spec:
            owners.append(FieldOwner(entry.manager, entry.operation, entry.subresource or ""))
    return tuple(owners)


def _scale(item: Any) -> Scale:
    return Scale(item.spec.replicas or 0, item.metadata.resource_version)


def _autoscalers(found: Any, namespace: str, deployment: str) -> list[Autoscaler]:
    """The HPAs of ``found`` whose scaleTargetRef names Deployment ``deployment``."""
    return [
        Autoscaler(
            namespace=namespace,
            name=hpa.metadata.name,
            min_replicas=hpa.spec.min_replicas or 1,
            max_replicas=hpa.spec.max_replicas,
            resource_version=hpa.metadata.resource_version,
            uid=hpa.metadata.uid or "",
        )
        for hpa in found.items
        if hpa.spec.scale_target_ref.kind == "Deployment"
        and hpa.spec.scale_target_ref.name == deployment
    ]


KEDA = ("keda.sh", "v1alpha1", "scaledobjects")
"""KEDA's ScaledObject: group, version, plural."""


def _scaled_objects(found: Any, namespace: str, deployment: str) -> list[ScaledObject]:
    """The ScaledObjects of ``found`` (a list as JSON) whose scaleTargetRef names Deployment
    ``deployment`` (KEDA's defaults: kind Deployment, apiVersion apps/v1)."""
    scaling = []
    for item in found["items"]:
        target = item["spec"]["scaleTargetRef"]
        kind = target.get("kind") or "Deployment"
        group = str(target.get("apiVersion") or "apps/v1").partition("/")[0]
        if kind == "Deployment" and group == "apps" and target["name"] == deployment:
            metadata = item["metadata"]
            annotations = metadata.get("annotations") or {}
            scaling.append(ScaledObject(namespace, metadata["name"], dict(annotations)))
    return scaling


CERT_MANAGER = ("cert-manager.io", "v1", "certificates")
MERGE_PATCH = "application/merge-patch+json"
"""cert-manager's Certificate: group, version, plural."""


def _certificate(item: Any) -> Certificate:
    metadata = item["metadata"]
    return Certificate(
        namespace=metadata["namespace"],
        name=metadata["name"],
        uid=metadata["uid"],
        resource_version=metadata["resourceVersion"],
        generation=metadata.get("generation") or 0,
        annotations=dict(metadata.get("annotations") or {}),
        status=item.get("status"),
    )


def label_selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


class KubeClient:
    """One shared ``ApiClient``; the app's cleanup context opens and closes it."""

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api
        self._core = client.CoreV1Api(api)
        self._apps = client.AppsV1Api(api)
        self._autoscaling = client.AutoscalingV2Api(api)
        self._custom = client.CustomObjectsApi(api)

    @classmethod
    async def connect(cls, kubeconfig: Path | None, context: str | None) -> KubeClient:
        """From a kubeconfig file, or in-cluster from the ServiceAccount when none is given."""
        configuration = client.Configuration()
        try:
            if kubeconfig is None:
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            else:
                await config.load_kube_config(
                    config_file=str(kubeconfig),
                    context=context,
                    client_configuration=configuration,
                    persist_config=False,
                )
        except (OSError, ValueError, config.ConfigException) as exc:
            where = kubeconfig or "the in-cluster ServiceAccount"
            raise ConfigError(f"cannot use the cluster configuration from {where}: {exc}") from exc
        return cls(client.ApiClient(configuration=configuration))

    async def close(self) -> None:
        await self._api.close()

    async def deployment(self, namespace: str, name: str) -> Deployment:
        what = f"read deployment {namespace}/{name}"
        item = await call_with_retries(
            what,
            lambda: self._apps.read_namespaced_deployment(
                name, namespace, _request_timeout=REQUEST_TIMEOUT_S
            ),
        )
        return _read(what, lambda: _deployment(item))

    async def scale(self, namespace: str, name: str) -> Scale:
        what = f"read the scale of {namespace}/{name}"
        item = await call_with_retries(
            what,
            lambda: self._apps.read_namespaced_deployment_scale(
                name, namespace, _request_timeout=REQUEST_TIMEOUT_S
            ),
        )
        return _read(what, lambda: _scale(item))

    async def set_replicas(
        self, namespace: str, name: str, replicas: int, resource_version: str
    ) -> Scale:
        """Absolute replicas, only if nobody wrote since ``resource_version`` (else Conflict)."""
        body = {"metadata": {"resourceVersion": resource_version}, "spec": {"replicas": replicas}}
        what = f"scale {namespace}/{name} to {replicas}"
        item = await call_with_retries(
            what,
            lambda: self._apps.patch_namespaced_deployment_scale(
                name, namespace, body, _request_timeout=REQUEST_TIMEOUT_S
            ),
        )
        return _read(what, lambda: _scale(item))

    async def set_pod_template(
        self, namespace: str, name: str, template: Mapping[str, Any], resource_version: str
    ) -> Deployment:
        """Replace the pod template whole, as ``kubectl rollout undo`` does (a JSON patch, so
        nothing of the template written over survives), only if nobody wrote the Deployment
        since ``resource_version`` (else Conflict)."""
        body = [
            {"op": "replace", "path": "/metadata/resourceVersion", "value": resource_version},
            {"op": "replace", "path": "/spec/template", "value": dict(template)},
        ]
        return await self._patch_deployment(f"roll back {namespace}/{name}", namespace, name, body)

    async def set_template_annotation(
        self, namespace: str, name: str, key: str, value: str, resource_version: str
    ) -> Deployment:
        """One annotation of the pod template, as ``kubectl rollout restart`` writes
        ``kubectl.kubernetes.io/restartedAt``, only if nobody wrote the Deployment since
        ``resource_version`` (else Conflict)."""
        body = {
            "metadata": {"resourceVersion": resource_version},
            "spec": {"template": {"metadata": {"annotations": {key: value}}}},
        }
        return await self._patch_deployment(
            f"restart the pods of {namespace}/{name}", namespace, name, body
        )

    async def _patch_deployment(
        self, what: str, namespace: str, name: str, body: Any
    ) -> Deployment:
        item = await call_with_retries(
            what,
            lambda: self._apps.patch_namespaced_deployment(
                name, namespace, body, _request_timeout=REQUEST_TIMEOUT_S
            ),
        )
        return _read(what, lambda: _deployment(item))

    async def hpas_for(self, namespace: str, deployment: str) -> list[Autoscaler]:
        """The HorizontalPodAutoscalers that scale ``deployment``."""
        what = f"list the autoscalers in {namespace}"
        found = await call_with_retries(
            what,
            lambda: self._autoscaling.list_namespaced_horizontal_pod_autoscaler(
                namespace, _request_timeout=REQUEST_TIMEOUT_S
            ),
        )
        return _read(what, lambda: _autoscalers(found, namespace, deployment))

    async def scaled_objects_for(self, namespace: str, deployment: str) -> list[ScaledObject]:
        """The KEDA ScaledObjects that scale ``deployment``; none where KEDA's resource is
        not served (its CRD not installed: the API server answers 404 for the list)."""
        what = f"list the KEDA ScaledObjects in {namespace}"
        group, version, plural = KEDA
        try:
            found = await call_with_retries(
                what,
                lambda: self._custom.list_namespaced_custom_object(
                    group, version, namespace, plural, _request_timeout=REQUEST_TIMEOUT_S
                ),
            )
        except NotFound:
            return []
        return _read(what, lambda: _scaled_objects(found, namespace, deployment))

    async def set_hpa_min(self, hpa: Autoscaler, min_replicas: int) -> None:
        """``minReplicas``, only if nobody wrote the HPA since it was read (else Conflict)."""
        body = {
            "metadata": {"resourceVersion": hpa.resource_version},
            "spec": {"minReplicas": min_replicas},
        }
        await call_with_retries(
            f"set minReplicas of {hpa.namespace}/{hpa.name}",
            lambda: self._autoscaling.patch_namespaced_horizontal_pod_autoscaler(
                hpa.name, hpa.namespace, body, _request_timeout=REQUEST_TIMEOUT_S
            ),
        )

    async def certificate(self, namespace: str, name: str) -> Certificate:
        """A cert-manager Certificate; ``NotServed`` where cert-manager is not installed."""
        what = f"read certificate {namespace}/{name}"
        group, version, plural = CERT_MANAGER
        item = await call_with_retries(
            what,
            lambda: self._custom.get_namespaced_custom_object(
                group, version, namespace, plural, name, _request_timeout=REQUEST_TIMEOUT_S
            ),
        )
        return _read(what, lambda: _certificate(item))

    async def set_certificate_status(
        self, certificate: Certificate, status: Mapping[str, Any]
    ) -> Certificate:
        """Merge ``status`` into the Certificate's status subresource (as ``cmctl renew``'s
        UpdateStatus does), only if nobody wrote it since it was read (else Conflict)."""
        body = {"metadata": {"resourceVersion": certificate.resource_version}, "status": status}
        what = f"patch the status of certificate {certificate.namespace}/{certificate.name}"
        group, version, plural = CERT_MANAGER
        # The client would send a dict as a JSON patch (the first type the API lists), which
        # a dict is not; its signature leaves out the _content_type it takes.
        item = await call_with_retries(
            what,
            lambda: self._custom.patch_namespaced_custom_object_status(  # type: ignore[call-arg]
                group, version, certificate.namespace, plural, certificate.name, body,
                _content_type=MERGE_PATCH, _request_timeout=REQUEST_TIMEOUT_S,
            ),
        )  # fmt: skip
        return _read(what, lambda: _certificate(item))

    async def certificate_document(self, namespace: str, name: str) -> Any:
        group, version, plural = CERT_MANAGER
        return await self.document(
            f"read certificate {namespace}/{name}", self._custom.get_namespaced_custom_object,
            group, version, namespace, plural, name,
        )  # fmt: skip

    async def pod(self, namespace: str, name: str) -> Pod:
        what = f"read pod {namespace}/{name}"
        item = await call_with_retries(
            what,
            lambda: self._core.read_namespaced_pod(
                name, namespace, _request_timeout=REQUEST_TIMEOUT_S
            ),
        )
        return _read(what, lambda: _pod(item))

    async def pods(self, namespace: str, selector: Mapping[str, str]) -> list[Pod]:
        what = f"list pods in {namespace}"
        found = await call_with_retries(
            what,
            lambda: self._core.list_namespaced_pod(
                namespace,
                label_selector=label_selector(selector),
                _request_timeout=REQUEST_TIMEOUT_S,
            ),
        )
        return _read(what, lambda: [_pod(item) for item in found.items])

    async def owner_of_replicaset(self, namespace: str, name: str) -> Owner | None:
        what = f"read replica set {namespace}/{name}"
        item = await call_with_retries(
            what,
            lambda: self._apps.read_namespaced_replica_set(
                name, namespace, _request_timeout=REQUEST_TIMEOUT_S
            ),
        )
        return _read(what, lambda: _owner(item.metadata))

    async def document(
        self, what: str, call: Callable[..., Awaitable[Any]], *args: Any, **kw: Any
    ) -> Any:
        """An object or list as the API server sent it (plain JSON, fields this client's
        models do not know included), for evidence: ``call`` is one of the generated API's
        methods, given ``args`` and ``kw``. An answer over ``MAX_READ_BYTES`` is refused as
        ``Transient`` rather than cut (cut JSON is no document)."""
        body = await self._raw(what, call, *args, **kw)
        if len(body) > MAX_READ_BYTES:
            raise Transient(f"the answer to {what} is over {MAX_READ_BYTES} bytes")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise _malformed(exc) from None

    async def deployment_document(self, namespace: str, name: str) -> Any:
        return await self.document(
            f"read deployment {namespace}/{name}", self._apps.read_namespaced_deployment,
            name, namespace,
        )  # fmt: skip

    async def replicasets_document(self, namespace: str, selector: Mapping[str, str]) -> Any:
        return await self.document(
            f"list replica sets in {namespace}", self._apps.list_namespaced_replica_set,
            namespace, label_selector=label_selector(selector),
        )  # fmt: skip

    async def events_document(self, namespace: str, kind: str, name: str) -> Any:
        """The Events about object ``kind``/``name``, as ``kubectl describe`` shows them."""
        fields = f"involvedObject.kind={kind},involvedObject.name={name}"
        return await self.document(
            f"list the events of {kind} {namespace}/{name}", self._core.list_namespaced_event,
            namespace, field_selector=fields,
        )  # fmt: skip

    async def hpas_document(self, namespace: str) -> Any:
        return await self.document(
            f"list the autoscalers in {namespace}",
            self._autoscaling.list_namespaced_horizontal_pod_autoscaler, namespace,
        )  # fmt: skip

    async def pod_document(self, namespace: str, name: str) -> Any:
        return await self.document(
            f"read pod {namespace}/{name}", self._core.read_namespaced_pod, name, namespace
        )

    async def pod_log(
        self, namespace: str, name: str, container: str, tail_lines: int, limit_bytes: int
    ) -> str:
        """The last ``tail_lines`` lines of ``container``'s log, at most ``limit_bytes``
        (a cut inside a character shows as U+FFFD). Needs ``get`` on ``pods/log``."""
        body = await self._raw(
            f"read the log of {namespace}/{name} ({container})",
            self._core.read_namespaced_pod_log, name, namespace, container=container,
            tail_lines=tail_lines, limit_bytes=limit_bytes,
        )  # fmt: skip
        return body[:limit_bytes].decode("utf-8", "replace")

    async def _raw(
        self, what: str, call: Callable[..., Awaitable[Any]], *args: Any, **kw: Any
    ) -> bytes:
        """The body of ``call``'s answer, unparsed, at most ``MAX_READ_BYTES`` + 1 bytes.
        Unpreloaded, the generated client raises for no status: an error is raised here."""

        async def read() -> bytes:
            response = await call(
                *args, **kw, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S
            )
            try:
                chunks: list[bytes] = []
                size = 0
                while size <= MAX_READ_BYTES:
                    chunk = await response.content.read(READ_CHUNK_BYTES)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                body = b"".join(chunks)
                if not 200 <= response.status <= 299:
                    # What the client itself raises with (its annotation says otherwise).
                    raise ApiException(http_resp=RESTResponse(response, body))  # type: ignore[arg-type]
                return body
            finally:
                response.release()

        return await call_with_retries(what, read)

    async def evict(self, namespace: str, name: str, uid: str) -> None:
        """Evict through the Eviction API, only the pod with ``uid`` (else Conflict).

        A 5xx or a generic 429 is retried like any call (the UID precondition makes a
        second eviction of the same pod harmless); a PDB refusal is ``DisruptionBlocked``,
        not retried here, for the caller to decide.
        """
        body = client.V1Eviction(
            metadata=client.V1ObjectMeta(name=name, namespace=namespace),
            delete_options=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid)),
        )
        await call_with_retries(
            f"evict pod {namespace}/{name}",
            lambda: self._core.create_namespaced_pod_eviction(
                name, namespace, body, _request_timeout=REQUEST_TIMEOUT_S
            ),
        )

    async def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        body = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid))
        with logged(f"delete pod {namespace}/{name}"):
            await _once(
                lambda: self._core.delete_namespaced_pod(
                    name, namespace, body=body, _request_timeout=REQUEST_TIMEOUT_S
                )
            )

    async def record_event(
        self, namespace: str, kind: str, name: str, uid: str, reason: str, message: str
    ) -> None:
        """A Kubernetes Event on the object; best effort, failures are only logged."""
        now = datetime.now(UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name="remediator-", namespace=namespace),
            involved_object=client.V1ObjectReference(
                kind=kind, name=name, namespace=namespace, uid=uid
            ),
            reason=reason,
            message=message[:1024],
            type="Normal",
            source=client.V1EventSource(component="remediator"),
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        try:
            await _once(
                lambda: self._core.create_namespaced_event(
                    namespace, event, _request_timeout=REQUEST_TIMEOUT_S
                )
            )
        except ApiError as exc:
            log.warning("could not record a Kubernetes event on %s/%s: %s", namespace, name, exc)


class KubeHandle:
    """The cluster connection once the app has opened it; ``None`` while there is none, and
    then Kubernetes actions are planned and audited as dry-run."""

    def __init__(self) -> None:
        self.client: KubeClient | None = None
