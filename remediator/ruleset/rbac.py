"""``remediator rbac``: the Kubernetes RBAC that the loaded rules' actions need, as YAML.

One ClusterRole holding the union of the permissions each rule's action needs under that
rule's parameters (a verb no rule uses is not granted), bound with a RoleBinding
in each namespace of ``policy.namespaces`` only, so the grant reaches no further than the
allow-list.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import yaml

from remediator.actions.base import Permission
from remediator.ruleset.rules import RuleSet

ROLE_NAME = "remediator"


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


def manifests(ruleset: RuleSet, service_account: str, sa_namespace: str) -> str:
    plans = [rule.plan for rule in ruleset.rules if rule.plan is not None]
    permissions = [p for plan in plans for p in plan.action.permissions(plan.params)]
    documents: list[dict[str, object]] = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": ROLE_NAME},
            "rules": merged_rules(permissions),
        }
    ]
    for namespace in ruleset.policy.namespaces:
        documents.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": ROLE_NAME, "namespace": namespace},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": ROLE_NAME,
                },
                "subjects": [
                    {"kind": "ServiceAccount", "name": service_account, "namespace": sa_namespace}
                ],
            }
        )
    return yaml.safe_dump_all(documents, sort_keys=False)
