"""A Deployment's rollout as the API server shows it: its pod template and its revisions.

Where it sits: the prechecks of ``rollback`` and ``restart_rollout`` read the Deployment and
its ReplicaSets as documents (plain JSON, so a template written back is the one read, fields
the client's models do not know included) and :func:`read_rollout` turns them into a
:class:`Rollout`. Each ReplicaSet the Deployment controls is one revision of the pod
template (``deployment.kubernetes.io/revision``); the current one is the one whose template,
without its ``pod-template-hash`` label, is the Deployment's, as ``kubectl rollout`` finds
it. An answer that does not read as these objects is an ``ApiError`` naming what is wrong:
the precheck refuses, nothing is written.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from remediator.core.errors import ApiError

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
"""Set by the deployment controller on a ReplicaSet made current again (a rollback): the
revision numbers it had before."""
TEMPLATE_HASH = "pod-template-hash"
MAX_REVISION = 2**63 - 1
"""Revisions are int64 in the deployment controller."""


@dataclass(frozen=True, slots=True)
class Revision:
    """One ReplicaSet of the Deployment: one revision of its pod template."""

    number: int
    name: str
    uid: str
    created: datetime
    template: Mapping[str, Any]
    """Its pod template without the ``pod-template-hash`` label: what a rollback writes."""
    replicas: int
    """``spec.replicas``: the pods the deployment controller wants of it."""
    pods: int
    ready: int
    restored: bool
    """Made current again after a newer revision (it carries ``revision-history``)."""

    @property
    def key(self) -> str:
        return f"ReplicaSet {self.name} (revision {self.number})"


@dataclass(frozen=True, slots=True)
class Rollout:
    namespace: str
    name: str
    uid: str
    resource_version: str
    generation: int
    observed_generation: int
    desired: int
    ready: int
    updated: int
    template: Mapping[str, Any]
    revisions: tuple[Revision, ...]
    """Newest first."""
    recreate: bool = False
    """``strategy.type: Recreate``: every old pod goes before a new one starts."""
    max_surge: int | str = "25%"
    max_unavailable: int | str = "25%"

    def unavailable_at_once(self) -> int:
        """The replicas a rollout may take down at once, as the deployment controller
        resolves its fenceposts: all of them under ``Recreate``; else ``maxUnavailable`` of
        the desired (a share rounds down), or 1 when it and ``maxSurge`` both resolve to 0."""
        if self.recreate:
            return self.desired
        surge = _resolved(self.max_surge, self.desired, round_up=True)
        unavailable = _resolved(self.max_unavailable, self.desired, round_up=False)
        return 1 if surge == 0 and unavailable == 0 else min(unavailable, self.desired)

    @property
    def key(self) -> str:
        return f"{self.namespace}/Deployment/{self.name}"

    def current(self) -> Revision | None:
        """The revision whose template is the Deployment's; None until the controller made it."""
        return next((r for r in self.revisions if r.template == self.template), None)

    def previous(self, current: Revision) -> Revision | None:
        """The newest revision older than ``current``: what ``kubectl rollout undo`` restores."""
        return next((r for r in self.revisions if r.number < current.number), None)

    def serves(self, revision: Revision) -> bool:
        """The controller saw the latest spec, ``revision`` is current, and every replica is
        of it and Ready: a rollout of ``revision`` that completed."""
        return (
            self.observed_generation >= self.generation
            and self.current() == revision
            and self.updated == self.desired
            and revision.ready >= self.desired
            and self.ready >= self.desired
        )


def read_rollout(deployment: Any, replicasets: Any) -> Rollout:
    """The rollout of ``deployment`` (a Deployment document) among ``replicasets`` (a
    ReplicaSetList document): the ReplicaSets it controls, by owner UID."""
    try:
        meta, spec = deployment["metadata"], deployment["spec"]
        status = deployment.get("status") or {}
        uid = _text(meta["uid"], "metadata.uid")
        revisions = [
            _revision(item)
            for item in _items(replicasets)
            if _controller_uid(item.get("metadata")) == uid
        ]
        return Rollout(
            namespace=_text(meta["namespace"], "metadata.namespace"),
            name=_text(meta["name"], "metadata.name"),
            uid=uid,
            resource_version=_text(meta["resourceVersion"], "metadata.resourceVersion"),
            generation=_count(meta.get("generation", 0), "metadata.generation"),
            observed_generation=_count(
                status.get("observedGeneration", 0), "status.observedGeneration"
            ),
            desired=_count(spec.get("replicas", 1), "spec.replicas"),
            ready=_count(status.get("readyReplicas", 0), "status.readyReplicas"),
            updated=_count(status.get("updatedReplicas", 0), "status.updatedReplicas"),
            template=_object(spec["template"], "spec.template"),
            revisions=tuple(sorted(revisions, key=lambda r: r.number, reverse=True)),
            **_strategy(spec.get("strategy") or {}),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ApiError(f"the Deployment or its ReplicaSets do not read as such: {exc!r}") from None


def _strategy(strategy: Any) -> dict[str, Any]:
    rolling = _object(strategy, "spec.strategy").get("rollingUpdate") or {}
    return {
        "recreate": strategy.get("type") == "Recreate",
        "max_surge": _fencepost(_object(rolling, "rollingUpdate").get("maxSurge", "25%")),
        "max_unavailable": _fencepost(rolling.get("maxUnavailable", "25%")),
    }


def _fencepost(value: Any) -> int | str:
    """An IntOrString of the strategy: a count, or a percentage such as "25%"."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_REVISION:
        return value
    digits = value.removesuffix("%") if isinstance(value, str) else ""
    if digits and digits != value and digits.isascii() and digits.isdigit() and len(digits) < 10:
        return str(value)
    raise TypeError(f"the rollout strategy's {value!r:.40} is neither a count nor a percentage")


def _resolved(value: int | str, total: int, *, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    share = int(value[:-1]) * total
    return -(-share // 100) if round_up else share // 100


def _revision(item: Any) -> Revision:
    meta, spec = item["metadata"], item["spec"]
    status = item.get("status") or {}
    annotations = meta.get("annotations") or {}
    name = _text(meta["name"], "ReplicaSet metadata.name")
    template = copy.deepcopy(_object(spec["template"], f"the template of {name}"))
    labels = (template.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(TEMPLATE_HASH, None)
    return Revision(
        number=_number(annotations.get(REVISION), name),
        name=name,
        uid=_text(meta["uid"], f"the uid of {name}"),
        created=_moment(meta.get("creationTimestamp"), name),
        template=template,
        replicas=_count(spec.get("replicas", 1), f"spec.replicas of {name}"),
        pods=_count(status.get("replicas", 0), f"status.replicas of {name}"),
        ready=_count(status.get("readyReplicas", 0), f"status.readyReplicas of {name}"),
        restored=bool(annotations.get(REVISION_HISTORY)),
    )


def _items(found: Any) -> Sequence[Any]:
    items = found["items"]
    if not isinstance(items, list):
        raise TypeError("the ReplicaSet list has no items list")
    return items


def _controller_uid(meta: Any) -> str | None:
    for ref in (meta or {}).get("ownerReferences") or []:
        if ref.get("controller") is True:
            return str(ref.get("uid"))
    return None


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{what} is not a name")
    return value


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{what} is not an object")
    return value


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REVISION:
        raise TypeError(f"{what} is not a count")
    return value


def _number(value: Any, name: str) -> int:
    """A revision annotation: decimal digits, 1 to int64's largest."""
    text = value if isinstance(value, str) else ""
    if not (text.isascii() and text.isdigit() and 0 < len(text) <= 19 and int(text) > 0):
        raise TypeError(f"the revision of {name} is {value!r:.40}, not a revision number")
    if int(text) > MAX_REVISION:
        raise TypeError(f"the revision of {name} is over int64")
    return int(text)


def _moment(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise TypeError(f"the creationTimestamp of {name} is not a time")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise TypeError(f"the creationTimestamp of {name} is not a time") from None
    if moment.tzinfo is None:
        raise TypeError(f"the creationTimestamp of {name} has no zone")
    return moment
