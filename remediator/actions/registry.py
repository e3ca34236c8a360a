"""The action kinds this build knows, by name. Rule files may only name these."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from remediator.actions.base import Action
from remediator.actions.log_only import LogOnly
from remediator.actions.recycle_pod import RecyclePod
from remediator.actions.scale_out import ScaleOut
from remediator.clients.k8s import KubeHandle


def default_registry(kube: KubeHandle | None = None) -> Mapping[str, Action]:
    """Every action; the Kubernetes ones act through ``kube`` once it is connected."""
    handle = kube or KubeHandle()
    actions: list[Action] = [LogOnly(), ScaleOut(handle), RecyclePod(handle)]
    return MappingProxyType({action.kind: action for action in actions})
