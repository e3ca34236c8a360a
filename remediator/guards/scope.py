"""Scope: act only on targets in namespaces the operator allowed. Labels are untrusted."""

from __future__ import annotations

from collections.abc import Collection

from remediator.core.model import ALLOW, Target, Verdict, refuse
from remediator.core.vocab import StopReason

#: Database targets are in scope by configuration: only named targets exist at all.
UNNAMESPACED_KINDS = frozenset({"Database"})


def decide(target: Target, allowed_namespaces: Collection[str]) -> Verdict:
    if target.kind in UNNAMESPACED_KINDS or target.namespace in allowed_namespaces:
        return ALLOW
    return refuse(
        StopReason.OUT_OF_SCOPE,
        f"Namespace {target.namespace!r} is not in the allow-list, so {target.key} is not touched.",
    )
