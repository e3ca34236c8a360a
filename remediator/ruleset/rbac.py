"""``remediator rbac``: the Kubernetes RBAC that the loaded rules' actions need, as YAML.

The union of the permissions each rule's action needs under that rule's parameters (a verb
no rule uses is not granted) and of what the evidence of its target kinds reads, granted in
each namespace of ``policy.namespaces`` only, so the grant reaches no further than the
allow-list: by default as a Role and a RoleBinding in each of them; with ``cluster_role``,
as one ClusterRole bound by a RoleBinding in each (one object to review, still no grant
outside the namespaces). The Helm chart renders the same.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import yaml

from remediator.actions.base import Permission
from remediator.ruleset.rules import RuleSet

ROLE_NAME = "remediator"
RBAC_GROUP = "rbac.authorization.k8s.io"
READ_VERBS = frozenset({"get", "list", "watch"})
#: What an action's evidence bundle reads of its target, by the target's kind
#: (``evidence/kube.py``): read-only, and only for the kinds the rules' actions act on. A
#: Pod's includes ``pods/log``: the last lines of a recycled pod's containers.
EVIDENCE_READS: dict[str, tuple[Permission, ...]] = {
    "Deployment": (
        Permission("apps", ("deployments",), ("get",)),
        Permission("apps", ("replicasets",), ("list",)),
        Permission("autoscaling", ("horizontalpodautoscalers",), ("list",)),
        Permission("", ("events",), ("list",)),
    ),
    "Pod": (
        Permission("", ("pods", "pods/log"), ("get",)),
        Permission("", ("events",), ("list",)),
    ),
    "Certificate": (
        Permission("cert-manager.io", ("certificates",), ("get",)),
        Permission("", ("events",), ("list",)),
    ),
}


def _granted(permissions: Iterable[Permission], shadow: bool) -> list[Permission]:
    """What a rule's action is granted: all it needs; a shadow rule's, only the reads of its
    precheck (it never writes until someone makes it live, and the RBAC follows then)."""
    if not shadow:
        return list(permissions)
    reads = [(p, tuple(v for v in p.verbs if v in READ_VERBS)) for p in permissions]
    return [Permission(p.api_group, p.resources, verbs) for p, verbs in reads if verbs]


def merged_rules(permissions: Iterable[Permission]) -> list[dict[str, list[str]]]:
    """RBAC rules: verbs united per (group, resource), resources grouped by equal verbs."""
    verbs: dict[tuple[str, str], set[str]] = defaultdict(set)
    for permission in permissions:
        for resource in permission.resources:
            verbs[(permission.api_group, resource)].update(permission.verbs)
    grouped: dict[tuple[str, tuple[str, ...]], list[str]] = defaultdict(list)
    for (group, resource), allowed in sorted(verbs.items()):
        grouped[(group, tuple(sorted(allowed)))].append(resource)
    return [
        {"apiGroups": [group], "resources": resources, "verbs": list(allowed)}
        for (group, allowed), resources in sorted(grouped.items())
    ]


def manifests(
    ruleset: RuleSet,
    service_account: str,
    sa_namespace: str,
    *,
    name: str = ROLE_NAME,
    cluster_role: bool = False,
) -> str:
    plans = [rule.plan for rule in ruleset.rules if rule.plan is not None]
    permissions = [
        p
        for rule in ruleset.rules
        if rule.plan is not None
        for p in _granted(rule.plan.action.permissions(rule.plan.params), rule.shadow)
    ]
    kinds = {kind for plan in plans for kind in plan.action.target_kinds}
    permissions += [p for kind in sorted(kinds) for p in EVIDENCE_READS.get(kind, ())]
    rules = merged_rules(permissions)
    role_kind = "ClusterRole" if cluster_role else "Role"
    documents: list[dict[str, object]] = []
    if cluster_role:
        documents.append(_document("ClusterRole", name, None, rules=rules))
    for namespace in ruleset.policy.namespaces:
        if not cluster_role:
            documents.append(_document("Role", name, namespace, rules=rules))
        role_ref = {"apiGroup": RBAC_GROUP, "kind": role_kind, "name": name}
        subject = {"kind": "ServiceAccount", "name": service_account, "namespace": sa_namespace}
        documents.append(
            _document("RoleBinding", name, namespace, roleRef=role_ref, subjects=[subject])
        )
    return yaml.safe_dump_all(documents, sort_keys=False)


def _document(kind: str, name: str, namespace: str | None, **body: object) -> dict[str, object]:
    metadata: dict[str, str] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": f"{RBAC_GROUP}/v1", "kind": kind, "metadata": metadata, **body}
