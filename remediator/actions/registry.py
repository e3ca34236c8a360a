"""The action kinds this build knows, by name. Rule files may only name these."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from remediator.actions.base import Action
from remediator.actions.log_only import LogOnly


def default_registry() -> Mapping[str, Action]:
    actions: list[Action] = [LogOnly()]
    return MappingProxyType({action.kind: action for action in actions})
