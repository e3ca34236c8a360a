"""The operator console's routes, ``/ui/``: sign in and out, "Now", an episode's story, the
brakes, the approvals (approve and deny for an approver) and the rules with an explain box.

Where it sits: ``runtime.app`` adds these routes beside the API; each page reads what it
shows from the store, the rule set and the settings, and ``console.pages`` renders it.
Every answer carries a strict Content-Security-Policy (scripts and styles from ``/ui/static``
only, nothing framed, forms posted here only); every page but the sign-in needs a session
(``runtime.sessions``), a page asked without one is sent to the sign-in; every ``POST`` is
refused without the session's CSRF token (or, signing in, from another origin); a form's
body is read strictly and small, and a refusal is a page that says why, never an echo of
what was sent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

from aiohttp import web

from remediator.approve.approvals import Approvals
from remediator.approve.approvers import Approvers
from remediator.audit.api import approval_json, record_json, rules_json
from remediator.config import Settings
from remediator.console import brakes, episodes, pages
from remediator.core.clock import Clock
from remediator.core.errors import RequestRejected, StoreUnavailable
from remediator.core.model import Severity
from remediator.ingest.auth import BearerAuth
from remediator.ingest.webhook import WebhookState
from remediator.ruleset.active import ActiveRules
from remediator.ruleset.rules import RuleSet
from remediator.runtime.approvals import bounded_body, checked_answer, positive_id
from remediator.runtime.objects import Objects
from remediator.runtime.reload import Reloader
from remediator.runtime.sessions import COOKIE, Role, Session, Sessions
from remediator.store.contract import AuditQuery, Store

log = logging.getLogger(__name__)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
    " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # same-origin, not no-referrer: with no-referrer a form posts "Origin: null", refused.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
MAX_FORM_BYTES = 16_384
FORM_FIELDS = 8
REFRESH_S = 5
MAX_LABELS = 64
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
STORY_LIMIT = 1000
ANSWERED = 20


class Parts(Protocol):
    """What the console reads of the running service (``runtime.app.Services``)."""

    store: Store
    clock: Clock
    approvals: Approvals | None
    approvers: Approvers | None
    objects: Objects | None
    webhook: WebhookState
    """Its ``auth`` knows the service's bearer tokens."""


@dataclass(frozen=True, slots=True)
class Wiring:
    settings: Settings
    rules: ActiveRules
    reloader: Reloader
    parts: Callable[[], Parts]
    """The service's parts, once its start has made them."""
    sessions: Sessions


CONSOLE = web.AppKey("console", Wiring)
Page = Callable[[web.Request, Wiring, Session, Mapping[str, str]], Awaitable[web.Response]]
"""A page of a signed-in session: the request, the wiring, the session, and the form a
POST sent (empty for a GET)."""


def add_routes(app: web.Application, wiring: Wiring) -> None:
    app[CONSOLE] = wiring
    app.router.add_get("/ui", _to_console)
    app.router.add_get("/ui/login", _login_form)
    app.router.add_post("/ui/login", _login)
    app.router.add_post("/ui/logout", _signed_in(_logout))
    app.router.add_get("/ui/", _signed_in(_now))
    app.router.add_get("/ui/fragments/now", _signed_in(_now_rows, fragment=True))
    app.router.add_get("/ui/episodes/{id}", _signed_in(_episode))
    app.router.add_get("/ui/brakes", _signed_in(_brakes))
    app.router.add_get("/ui/approvals", _signed_in(_approvals))
    app.router.add_post("/ui/approvals/{id}", _signed_in(_answer))
    app.router.add_get("/ui/rules", _signed_in(_rules))
    app.router.add_get("/ui/static/{name}", _static)


# --------------------------------------------------------------------------- answers


def _secured(response: web.Response) -> web.Response:
    response.headers.update(HEADERS)
    return response


def _html(text: str, status: int = 200) -> web.Response:
    return _secured(web.Response(text=text, status=status, content_type="text/html"))


def _see(location: str) -> web.Response:
    return _secured(web.Response(status=303, headers={"Location": location}))


def _page(
    request: web.Request,
    template: str,
    session: Session | None,
    status: int = 200,
    notice: str = "",
    **values: Any,
) -> web.Response:
    wiring = request.app[CONSOLE]
    text = pages.render(
        template, session=session, dry_run=wiring.settings.dry_run, notice=notice, **values
    )
    return _html(text, status)


def _refusal(request: web.Request, session: Session | None, exc: RequestRejected) -> web.Response:
    return _page(request, "refused.html", session, exc.status, title="Refused", page="",
                 detail=exc.detail)  # fmt: skip


def _signed_in(
    page: Page, *, fragment: bool = False
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """``page`` for a live session; without one, the sign-in (a fragment: 401). A POST needs
    the session's CSRF token in its form, which ``page`` is given."""

    async def handle(request: web.Request) -> web.Response:
        wiring = request.app[CONSOLE]
        session = wiring.sessions.find(request.cookies.get(COOKIE))
        if session is None:
            if fragment or request.method != "GET":
                return _html("Sign in again.", 401)
            return _see("/ui/login?" + urlencode({"next": request.path_qs}))
        try:
            form: dict[str, str] = {}
            if request.method == "POST":
                form = await read_form(request)
                if not session.csrf_matches(form.get("csrf", "")):
                    raise RequestRejected(403, "csrf", "The form's CSRF token is missing or wrong.")
            return await page(request, wiring, session, form)
        except RequestRejected as exc:
            return _refusal(request, session, exc)
        except StoreUnavailable:
            detail = "The state store cannot be reached; try again."
            return _refusal(request, session, RequestRejected(503, "store_unavailable", detail))

    return handle


async def read_form(request: web.Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body of at most ``MAX_FORM_BYTES`` and
    ``FORM_FIELDS`` fields, in UTF-8, each field once; from this origin when it says one."""
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != request.host:
        raise RequestRejected(403, "cross_origin", "A form from another site is refused.")
    if request.content_type != "application/x-www-form-urlencoded":
        raise RequestRejected(415, "unsupported_media_type", "Post the page's own form.")
    body = await bounded_body(request, MAX_FORM_BYTES, "form")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body),
            max_num_fields=FORM_FIELDS, errors="strict",
        )  # fmt: skip
    except (UnicodeDecodeError, ValueError):
        raise RequestRejected(400, "invalid_form", "The form does not read.") from None
    form = dict(pairs)
    if len(form) != len(pairs):
        raise RequestRejected(400, "invalid_form", "A field is given twice.")
    return form


# --------------------------------------------------------------------------- signing in


async def _to_console(_: web.Request) -> web.Response:
    return _see("/ui/")


def _next_of(text: str) -> str:
    """A page of the console to go to after signing in: a path under ``/ui/``, nothing
    else (never another site, never ``//host``)."""
    parts = urlsplit(text)
    if parts.scheme or parts.netloc or not parts.path.startswith("/ui/") or "\\" in text:
        return "/ui/"
    return text


async def _login_form(request: web.Request) -> web.Response:
    wiring = request.app[CONSOLE]
    if wiring.sessions.find(request.cookies.get(COOKIE)) is not None:
        return _see("/ui/")
    nxt = _next_of(request.query.get("next", "/ui/"))
    return _page(request, "login.html", None, title="Sign in", page="login", next=nxt)


async def _login(request: web.Request) -> web.Response:
    wiring = request.app[CONSOLE]
    try:
        form = await read_form(request)
        token = form.get("token", "").strip().encode("utf-8", "surrogateescape")
        name, role = _who(wiring, token)
    except RequestRejected as exc:
        log.warning("console sign-in refused: %s", exc.detail)
        nxt = "/ui/"
        return _page(request, "login.html", None, exc.status, notice=exc.detail,
                     title="Sign in", page="login", next=nxt)  # fmt: skip
    session = wiring.sessions.open(name, role)
    log.info("console sign-in: %s (%s)", name, role, extra={"fields": {"who": name, "role": role}})
    response = _see(_next_of(form.get("next", "/ui/")))
    response.set_cookie(
        COOKIE, session.id, httponly=True, secure=True, samesite="Strict", path="/ui/",
        max_age=int(wiring.sessions.ttl_s),
    )  # fmt: skip
    return response


def _who(wiring: Wiring, token: bytes) -> tuple[str, Role]:
    """(name, role) of the token: an approver's first, then the service's bearer token."""
    parts = wiring.parts()
    approvers = parts.approvers
    if approvers is not None and token:
        try:
            return approvers.by_token(token).name, "approver"
        except RequestRejected:
            pass
    auth = parts.webhook.auth
    if not token and isinstance(auth, BearerAuth):
        raise RequestRejected(401, "unauthorized", "Give a token.")
    try:
        auth.check(["Bearer " + token.decode("utf-8", "surrogateescape")])
    except RequestRejected:
        raise RequestRejected(
            401, "unauthorized", "That token is not one this service knows."
        ) from None
    return "viewer", "viewer"


async def _logout(
    request: web.Request, wiring: Wiring, session: Session, form: Mapping[str, str]
) -> web.Response:
    wiring.sessions.close(session.id)
    response = _see("/ui/login")
    response.del_cookie(COOKIE, path="/ui/")
    return response


# --------------------------------------------------------------------------- now


def _filters(query: Mapping[str, str]) -> episodes.Filters:
    """The filters of "Now"; a value that is none of the known ones is no filter (the form
    offers only known ones)."""
    severity = query.get("severity", "")
    state = query.get("state", "")
    show = query.get("show", "open")
    return episodes.Filters(
        severity=severity if severity in {s.value for s in Severity} else "",
        namespace=query.get("namespace", "")[:253],
        rule=query.get("rule", "")[:256],
        state=state if state in episodes.STATE_NAMES else "",
        show=show if show in ("open", "all") else "open",
    )


async def _now_values(request: web.Request, wiring: Wiring) -> dict[str, Any]:
    parts = wiring.parts()
    newest = await parts.store.decisions(AuditQuery(newest_first=True, limit=episodes.HORIZON))
    every = episodes.episodes(newest)
    chosen = _filters(request.query)
    kept = {k: v for k, v in asdict(chosen).items() if v and not (k == "show" and v == "open")}
    return {
        "rows": [row for row in every if chosen.keeps(row)],
        "filters": chosen,
        "query": ("?" + urlencode(kept)) if kept else "",
        "severities": [s.value for s in Severity],
        "namespaces": sorted({r.namespace for r in every if r.namespace}),
        "rules": sorted({r.rule for r in every if r.rule}),
        "states": episodes.STATE_NAMES,
        "now": parts.clock.now(),
        "horizon": episodes.HORIZON,
        "refresh_s": REFRESH_S,
    }


async def _now(
    request: web.Request, wiring: Wiring, session: Session, form: Mapping[str, str]
) -> web.Response:
    values = await _now_values(request, wiring)
    return _page(request, "now.html", session, title="Now", page="now", **values)


async def _now_rows(
    request: web.Request, wiring: Wiring, session: Session, form: Mapping[str, str]
) -> web.Response:
    values = await _now_values(request, wiring)
    return _html(pages.render("now_rows.html", **values))


# --------------------------------------------------------------------------- a story


def _id_of(request: web.Request, what: str) -> int:
    """The path's ``{id}``: a positive number of at most 18 digits (404 otherwise)."""
    found = positive_id(request.match_info["id"])
    if found is None:
        raise RequestRejected(404, f"unknown_{what}", f"An {what}'s id is a positive number.")
    return found


async def _episode(
    request: web.Request, wiring: Wiring, session: Session, form: Mapping[str, str]
) -> web.Response:
    episode_id = _id_of(request, "episode")
    parts = wiring.parts()
    records = await parts.store.decisions(AuditQuery(episode_id=episode_id, limit=STORY_LIMIT))
    if not records:
        raise RequestRejected(404, "unknown_episode", f"No decisions of episode {episode_id}.")
    shown: list[dict[str, Any]] = [record_json(r) for r in records]
    if parts.objects is not None:
        shown = await parts.objects.linked(shown)
    [row] = episodes.episodes(reversed(records))
    return _page(
        request, "episode.html", session, title=f"Episode {episode_id}", page="episode",
        episode=episode_id, row=row, decisions=shown,
        notifications=[d for d in shown if d["step"] == "notified"],
    )  # fmt: skip


# --------------------------------------------------------------------------- brakes


async def _brakes(
    request: web.Request, wiring: Wiring, session: Session, form: Mapping[str, str]
) -> web.Response:
    parts = wiring.parts()
    ruleset = wiring.rules.current
    now = parts.clock.now()
    since = now - timedelta(seconds=brakes.lookback_s(ruleset))
    dry_run = wiring.settings.dry_run
    claims = await parts.store.recent_claims(since, dry_run, brakes.MAX_CLAIMS)
    # No target is "": what storm_add would count for it, less itself, is the window's count.
    storm = await parts.store.storm_peek("", now, ruleset.policy.storm.window_s) - 1
    ineffective = await parts.store.decisions(
        AuditQuery(reason="ineffective_remediation", newest_first=True, limit=20)
    )
    state = brakes.brakes(ruleset, claims, storm, now, dry_run)
    return _page(request, "brakes.html", session, title="Brakes", page="brakes", brakes=state,
                 ineffective=ineffective)  # fmt: skip


# --------------------------------------------------------------------------- approvals


NOTICES = {
    "counted": "Your approval is counted; it needs more.",
    "approved": "Approved: the action runs now.",
    "denied": "Denied: no action, the incident goes on as paged.",
}


async def _approvals(
    request: web.Request,
    wiring: Wiring,
    session: Session,
    form: Mapping[str, str],
    notice: str = "",
    status: int = 200,
) -> web.Response:
    parts = wiring.parts()
    configured = parts.approvers is not None
    pending: list[dict[str, Any]] = []
    answered: list[dict[str, Any]] = []
    if configured:
        pending = [approval_json(a) for a in await parts.store.approvals("pending", 200)]
        recent = await parts.store.approvals(None, ANSWERED + len(pending))
        answered = [approval_json(a) for a in recent if a.state != "pending"][:ANSWERED]
    if not notice:
        notice = NOTICES.get(request.query.get("answered", ""), "")
    return _page(request, "approvals.html", session, status, notice=notice, title="Approvals",
                 page="approvals", configured=configured, pending=pending,
                 answered=answered)  # fmt: skip


async def _answer(
    request: web.Request, wiring: Wiring, session: Session, form: Mapping[str, str]
) -> web.Response:
    """An approver's Approve or Deny, as ``POST /api/v1/approvals/<id>`` answers it,
    audited with the approver's name and ``console`` as where it came from."""
    parts = wiring.parts()
    if session.role != "approver" or parts.approvers is None or parts.approvals is None:
        raise RequestRejected(403, "not_an_approver", "Only an approver may answer.")
    approver = parts.approvers.by_name(session.name)
    if approver is None:
        raise RequestRejected(403, "not_an_approver", f"{session.name} is no longer an approver.")
    decision, reason = checked_answer(form.get("decision"), form.get("reason", ""))
    claim_id = _id_of(request, "approval")
    try:
        answered = await parts.approvals.answer(approver, claim_id, decision, "console", reason)
    except RequestRejected as exc:
        return await _approvals(request, wiring, session, form, exc.detail, exc.status)
    return _see("/ui/approvals?" + urlencode({"answered": answered.answer}))


# --------------------------------------------------------------------------- rules


def _labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > MAX_LABELS:
        raise RequestRejected(400, "invalid_labels", f"At most {MAX_LABELS} labels.")
    for line in lines:
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not LABEL_NAME.fullmatch(name):
            raise RequestRejected(400, "invalid_labels", "Each line is name=value, a label name"
                                  " being letters, digits and _.")  # fmt: skip
        if name in labels:
            raise RequestRejected(400, "invalid_labels", f"Label {name} is given twice.")
        labels[name] = value.strip().removeprefix('"').removesuffix('"')
    return labels


async def _rules(
    request: web.Request, wiring: Wiring, session: Session, form: Mapping[str, str]
) -> web.Response:
    ruleset = wiring.rules.current
    text = request.query.get("labels", "")[:MAX_FORM_BYTES]
    explained: list[tuple[str, str]] = []
    error = ""
    if text.strip():
        try:
            explained = _explain(ruleset, _labels(text))
        except RequestRejected as exc:
            error = exc.detail
    last = wiring.reloader.last
    return _page(
        request, "rules.html", session, 400 if error else 200, title="Rules", page="rules",
        ruleset=rules_json(wiring.rules), last_reload=last.json() if last else None,
        labels_text=text, explained=explained, explain_error=error,
    )  # fmt: skip


def _explain(ruleset: RuleSet, labels: Mapping[str, str]) -> list[tuple[str, str]]:
    """What the table says of an alert with ``labels``: the first live rule it meets and
    what that rule does (the guards that need the store are ``remediator explain``'s)."""
    rule = ruleset.classify(labels)
    said = [
        ("rule", f"{rule.name} ({rule.file})"),
        ("severity", rule.severity.value),
        ("action", f"{rule.plan.name} ({rule.plan.kind})" if rule.plan else "none: escalate"),
        ("escalation", rule.escalation),
        ("approval", "required" if rule.approval else "not asked"),
    ]
    shadow = ruleset.shadow_of(labels)
    if shadow is not None:
        said.append(("shadow rule", f"{shadow.name}: decides alongside, does nothing"))
    return said


# --------------------------------------------------------------------------- static


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    body = pages.static(name)
    if body is None:
        return _html("Not found.", 404)
    response = web.Response(body=body, content_type=pages.STATIC_FILES[name])
    _secured(response)
    response.headers["Cache-Control"] = "no-cache"
    return response
