"""The action kinds this build knows, by name. Rule files may only name these."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from remediator.actions.base import AnyAction
from remediator.actions.kill_query import KillQuery
from remediator.actions.log_only import LogOnly
from remediator.actions.recycle_pod import RecyclePod
from remediator.actions.renew_certificate import RenewCertificate
from remediator.actions.restart_rollout import RestartRollout
from remediator.actions.rollback import Rollback
from remediator.actions.scale_out import ScaleOut
from remediator.clients.k8s import KubeHandle
from remediator.clients.postgres import DatabaseHandle


def default_registry(
    kube: KubeHandle | None = None, databases: DatabaseHandle | None = None
) -> Mapping[str, AnyAction]:
    """Every action; each acts through its handle once the app has connected it."""
    cluster = kube or KubeHandle()
    actions: list[AnyAction] = [
        LogOnly(),
        ScaleOut(cluster),
        RecyclePod(cluster),
        Rollback(cluster),
        RestartRollout(cluster),
        RenewCertificate(cluster),
        KillQuery(databases or DatabaseHandle()),
    ]
    return MappingProxyType({action.kind: action for action in actions})
