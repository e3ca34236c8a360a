"""The approval routes: ``GET /api/v1/approvals`` (``?state=pending``), ``GET`` and ``POST
/api/v1/approvals/<id>``; and the Approve and Deny clicks of a Slack page (``runtime.acks``
verifies them and hands them here).

Where it sits: a read takes the service's bearer token or an approver's; an answer
(``{"decision": "approve"|"deny", "reason": "..."}``) only an approver's token, which says
who answers (``approve.approvers``); a Slack click, the signed Slack user ID the approvers
file maps to an approver. ``approve.approvals`` keeps the answer and runs or refuses the
claim. The body is read strictly and small; every refusal is one JSON sentence that echoes
nothing of the request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Literal

from aiohttp import web

from remediator.approve.approvals import REASON_CHARS, Approvals
from remediator.approve.approvers import Approver, Approvers
from remediator.audit.api import approval_json
from remediator.core.errors import RequestRejected
from remediator.core.vocab import ApprovalState
from remediator.escalate.acks import SlackVote
from remediator.ingest import webhook
from remediator.ingest.auth import offered_token
from remediator.ingest.payload import decode_json
from remediator.store.contract import Store

#: An answer is a word and a sentence: a larger body is not one.
MAX_BODY_BYTES = 16_384
LISTED = 200
READ_TIMEOUT_S = 10.0
DECISIONS: Mapping[str, Literal["approve", "deny"]] = {"approve": "approve", "deny": "deny"}
VIA = ("api", "cli")


def _no_approvals() -> RequestRejected:
    return RequestRejected(404, "no_approvals", "No --approvers-file is configured.")


def approver_of(request: web.Request, approvers: Approvers | None) -> Approver:
    """The approver whose token the request's one ``Authorization: Bearer`` carries."""
    if approvers is None:
        raise _no_approvals()
    return approvers.by_token(offered_token(webhook.authorization(request)))


def positive_id(text: str) -> int | None:
    """``text`` as an id: a positive number of at most 18 ASCII digits, no leading zero."""
    if text.isascii() and text.isdigit() and 0 < len(text) <= 18 and text[0] != "0":
        return int(text)
    return None


def claim_id_of(request: web.Request) -> int:
    claim_id = positive_id(request.match_info["id"])
    if claim_id is None:
        raise RequestRejected(404, "unknown_approval", "An approval's id is a positive number.")
    return claim_id


async def listing(request: web.Request, store: Store) -> web.Response:
    """``GET /api/v1/approvals``: the newest first; ``state`` one of the states, or all."""
    unknown = sorted(set(request.query) - {"state"})
    state = request.query.get("state")
    if unknown or (state is not None and state not in {s.value for s in ApprovalState}):
        known = ", ".join(s.value for s in ApprovalState)
        raise RequestRejected(400, "invalid_query", f"Give state= one of {known}, or nothing.")
    found = await store.approvals(state, LISTED)
    return web.json_response({"approvals": [approval_json(a) for a in found]})


async def one(request: web.Request, store: Store) -> web.Response:
    claim_id = claim_id_of(request)
    approval = await store.approval(claim_id)
    if approval is None:
        raise RequestRejected(404, "unknown_approval", f"No approval has id {claim_id}.")
    return web.json_response(approval_json(approval))


async def bounded_body(
    request: web.Request, limit: int = MAX_BODY_BYTES, what: str = "body"
) -> bytes:
    """The whole body, however it is framed, within ``READ_TIMEOUT_S`` (aiohttp has no body
    timeout of its own): 413 once it passes ``limit`` bytes (or says it will), 408 when it
    is late. ``what`` names it in the sentence ("body", "form")."""
    too_large = RequestRejected(413, "body_too_large", f"The {what} is over {limit} bytes.")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    body = bytearray()
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            while chunk := await request.content.readany():
                body += chunk
                if len(body) > limit:
                    raise too_large
    except TimeoutError:
        detail = f"The {what} did not arrive in time."
        raise RequestRejected(408, "read_timeout", detail) from None
    return bytes(body)


async def _answer_body(request: web.Request) -> tuple[Literal["approve", "deny"], str, str]:
    if request.content_type != "application/json":
        raise RequestRejected(415, "unsupported_media_type", "Send application/json.")
    body = await bounded_body(request)
    document: Any = decode_json(body)
    if not isinstance(document, dict) or set(document) - {"decision", "reason", "via"}:
        detail = 'The body is {"decision": "approve"|"deny", "reason": "..."} and nothing else.'
        raise RequestRejected(400, "invalid_answer", detail)
    decision, reason = checked_answer(document.get("decision"), document.get("reason", ""))
    via = document.get("via", "api")
    if via not in VIA:
        raise RequestRejected(400, "invalid_answer", 'via is "api" or "cli".')
    return decision, reason, str(via)


def checked_answer(given: object, reason: object) -> tuple[Literal["approve", "deny"], str]:
    """An answer's decision and reason (stripped), as the API and the console take them:
    ``approve`` or ``deny``, and one line of at most ``REASON_CHARS`` characters that a
    deny may not leave empty; 400 ``invalid_answer`` otherwise."""
    decision = DECISIONS.get(given) if isinstance(given, str) else None  # a list is no key
    if decision is None:
        raise RequestRejected(400, "invalid_answer", 'decision is "approve" or "deny".')
    if not isinstance(reason, str) or len(reason) > REASON_CHARS:
        detail = f"reason is a string of at most {REASON_CHARS} characters."
        raise RequestRejected(400, "invalid_answer", detail)
    if any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in reason):
        raise RequestRejected(400, "invalid_answer", "reason holds a control character.")
    if decision == "deny" and not reason.strip():
        raise RequestRejected(400, "invalid_answer", "A deny needs a reason.")
    return decision, reason.strip()


async def answer(
    request: web.Request, approvals: Approvals | None, approvers: Approvers | None
) -> web.Response:
    """``POST /api/v1/approvals/<id>``: an approver approves or denies."""
    approver = approver_of(request, approvers)
    assert approvals is not None  # with an approvers file, the service has them
    claim_id = claim_id_of(request)
    decision, reason, via = await _answer_body(request)
    answered = await approvals.answer(approver, claim_id, decision, via, reason)
    return web.json_response({"status": answered.answer, **approval_json(answered.approval)})


async def slack_vote(
    vote: SlackVote, sink: str, approvals: Approvals | None, approvers: Approvers | None
) -> web.Response:
    """A signed Approve or Deny click: the approver the Slack user ID is."""
    if approvers is None or approvals is None:
        raise _no_approvals()
    approver = approvers.by_slack_user(vote.user_id)
    if approver is None:
        raise RequestRejected(403, "not_an_approver", "That Slack user is no approver.")
    reason = "denied in Slack" if vote.vote == "deny" else ""
    answered = await approvals.answer(approver, vote.claim_id, vote.vote, f"slack:{sink}", reason)
    return web.json_response({"status": answered.answer, "id": vote.claim_id})
