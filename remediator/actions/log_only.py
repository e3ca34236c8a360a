"""``log_only``: records what it was asked to do and touches nothing.

It lets a rule exercise the whole pipeline (claim, guards, audit) before a real action is
trusted with the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from remediator.actions.base import (
    Action,
    ActionRequest,
    ActionResult,
    Checked,
    Nothing,
    Permission,
    Reconciled,
    VerifyResult,
)
from remediator.core.model import ALLOW


class LogOnlyParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    note: str = ""
    """Free text copied into the audit record, e.g. the runbook step a human would take."""


Request = ActionRequest[LogOnlyParams, Nothing]


class LogOnly(Action[LogOnlyParams, None, Nothing, Nothing]):
    kind: ClassVar[str] = "log_only"
    params_model: ClassVar[type[LogOnlyParams]] = LogOnlyParams
    intent_model: ClassVar[type[Nothing]] = Nothing
    undo_model: ClassVar[type[Nothing]] = Nothing
    target_kinds: ClassVar[frozenset[str]] = frozenset()
    destructive: ClassVar[bool] = False

    def available(self) -> bool:
        return True

    def permissions(self, params: LogOnlyParams) -> Sequence[Permission]:
        return ()

    async def precheck(self, request: Request) -> Checked[None]:
        return Checked(ALLOW)

    async def run(self, request: Request, facts: None) -> ActionResult[Nothing]:
        note = f" ({request.params.note})" if request.params.note else ""
        return ActionResult(
            succeeded=True,
            sentence=f"log_only recorded the request for {request.target.key}{note}; nothing"
            " was changed.",
            details={"note": request.params.note},
        )

    async def verify(self, request: Request, result: ActionResult[Nothing]) -> VerifyResult:
        return VerifyResult.UNKNOWN

    async def undo(self, request: Request, state: Nothing) -> ActionResult[Nothing]:
        return ActionResult(True, f"{self.kind} leaves nothing to undo.")

    async def reconcile(self, request: Request, intent: Nothing) -> Reconciled[Nothing]:
        return Reconciled(True, "log_only changes nothing.", ActionResult(True, "Recorded."))
