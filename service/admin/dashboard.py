"""The admin dashboard at ``/admin``: server-rendered pages behind the admin token.

Pages: ``/admin`` (counts per state, queue depth, delivery status, the last 24 hours per hour
by state and source, recent submissions), ``/admin/dead`` (dead letters, a replay button each
and one for all), ``/admin/search?q=`` (a person's submissions, by email, phone, submission id
or lead id: ``people.py``), ``/admin/links`` (possible duplicates: the flagged identity links,
``links_html.py``), and ``/admin/submissions/{id}`` (one record with its payload and history;
replay and erase). Only that last page shows personal data; the search page shows the
searched email or phone back, and rows without payloads.

Sessions (``sessions.py``). ``POST /admin/login`` with one of the admin tokens sets a signed
cookie (never the token) that every replica accepts, until it expires
(``INTAKE_ADMIN_SESSION_SECONDS``), its token is withdrawn, or it logs out (revoked on every
replica); wrong tokens are throttled per client (429). The cookie is HttpOnly,
SameSite=Strict, limited to ``/admin``, and Secure when the page came over https (directly, or
per ``X-Forwarded-Proto`` from a trusted proxy).

CSRF. Besides SameSite=Strict, every POST form carries the session's CSRF token, an HMAC of
the session's signature under the same admin token, compared in constant time. Pages send a
Content-Security-Policy without any script source, ``no-store`` and ``no-referrer``.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import MultiDict, MultiDictProxy
from redis.exceptions import RedisError

from service.admin import dashboard_html as html
from service.admin import links_html
from service.admin.activity import hourly_activity
from service.admin.context import ADMIN, AdminContext, context, matching_token, request_text
from service.admin.params import MAX_LIMIT
from service.admin.people import BadQuery
from service.admin.sessions import (
    COOKIE,
    Session,
    attempts_wait,
    revoke,
    session_cookie,
    session_of,
    wrong_token,
)
from service.admin.views import queue_overview
from service.problems import ProblemError, retry_after
from service.queue import Selection
from service.queue.records import STATES, as_state
from service.times import BadTime, parse_time

logger = logging.getLogger(__name__)

RECENT = 50
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_NEXT = re.compile(r"/admin(?:/dead|/links|/submissions/[A-Za-z0-9_-]{1,100})?")
_COUNT = re.compile(r"[0-9]{1,6}")
MAX_FORM_FIELDS = 20
"""The dashboard's forms have a handful of fields; more is not one of them."""
_FORM = web.RequestKey("form", MultiDictProxy[str])
MESSAGES = {
    "replayed": "Queued again: the person is looked up in Close again before anything is made.",
    "in-progress": "Not replayed: the submission is still in progress.",
    "erased": "Personal data erased; the tombstone stays until the record expires.",
    "already-erased": "The submission had already been erased.",
    "unknown": "No such submission (unknown or expired).",
    "unconfirmed": "Not erased: tick the box to confirm.",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- sessions and CSRF (the sessions themselves: sessions.py) ------------------------------


def _https(request: web.Request) -> bool:
    if request.secure:
        return True
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    if proto != "https":
        return False
    try:
        peer = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return False
    return any(peer in network for network in context(request).trusted_proxies)


def _safe_next(value: object) -> str:
    """Where to go after login or an action: only our own pages (never another site)."""
    return value if isinstance(value, str) and _NEXT.fullmatch(value) else "/admin"


# -- answers ------------------------------------------------------------------------------------


def _page(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", headers=HEADERS)


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, **HEADERS})


async def _form(request: web.Request) -> MultiDictProxy[str]:
    """The fields of the dashboard's forms (url-encoded, as browsers post them); any other body
    counts as an empty form. A body that cannot be read is a ``400`` problem."""
    if _FORM in request:  # a button's check and its handler both look at the form
        return request[_FORM]
    if request.content_type != "application/x-www-form-urlencoded":
        return MultiDictProxy(MultiDict())
    text = await request_text(request, "the form")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except ValueError:
        raise ProblemError(400, "malformed-body", "not a form of this dashboard") from None
    request[_FORM] = form = MultiDictProxy(MultiDict(pairs))
    return form


def _message(request: web.Request) -> str | None:
    query = request.query
    replayed, failed = query.get("replayed", ""), query.get("failed", "")
    if _COUNT.fullmatch(replayed):
        text = f"{int(replayed)} queued again."
        if _COUNT.fullmatch(failed) and int(failed):
            text += f" {int(failed)} not (in progress, erased or expired)."
        return text
    return MESSAGES.get(query.get("done", ""))


def _pages(handler: Callable[[web.Request, Session], Awaitable[web.Response]]) -> Handler:
    """A logged-in page: no session → the login page; Redis down → a 503 page."""

    @functools.wraps(handler)
    async def page(request: web.Request) -> web.StreamResponse:
        try:
            session = await session_of(request)
            if session is None:
                if request.path == "/admin":
                    return _login_form(request, error=None, next_path=request.query.get("next"))
                return _see_other(f"/admin?next={_safe_next(request.path)}")
            return await handler(request, session)
        except (RedisError, OSError):
            return _page(html.message_page("Unavailable", "Redis is unreachable."), 503)

    return page


def _actions(handler: Callable[[web.Request, Session], Awaitable[web.Response]]) -> Handler:
    """A button: a valid session and the session's CSRF token, else 403 and nothing done."""

    @functools.wraps(handler)
    async def action(request: web.Request) -> web.StreamResponse:
        form = await _form(request)
        try:
            session = await session_of(request)
        except (RedisError, OSError):
            text = "Redis is unreachable; nothing was changed."
            return _page(html.message_page("Unavailable", text), 503)
        given = form.get("csrf")
        if (
            session is None
            or not isinstance(given, str)
            or not hmac.compare_digest(given.encode(), session.csrf.encode())
        ):
            text = "The form has expired or did not come from this dashboard: reload the page."
            return _page(html.message_page("Refused", text), 403)
        try:
            return await handler(request, session)
        except (RedisError, OSError):
            text = "Redis is unreachable; nothing was changed."
            return _page(html.message_page("Unavailable", text, csrf=session.csrf), 503)

    return action


def _login_form(request: web.Request, *, error: str | None, next_path: object) -> web.Response:
    configured = bool(context(request).tokens)
    text = html.login_page(error=error, next_path=_safe_next(next_path), configured=configured)
    return _page(text, 401 if error else 200)


# -- handlers -----------------------------------------------------------------------------------


async def login(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    given, next_path = form.get("token"), form.get("next")
    try:
        wait = await attempts_wait(request)
        if wait > 0:
            return _too_many_attempts(wait)
        token = _matching(given, context(request).tokens)
        if not token:
            await wrong_token(request)
    except (RedisError, OSError):
        return _page(html.message_page("Unavailable", "Redis is unreachable."), 503)
    if not token:
        logger.warning("dashboard: login refused (not an admin token)")
        return _login_form(request, error="That is not an admin token.", next_path=next_path)
    response = _see_other(_safe_next(next_path))
    response.set_cookie(
        COOKIE,
        session_cookie(token),
        max_age=context(request).session_seconds,
        path="/admin",
        httponly=True,
        secure=_https(request),
        samesite="Strict",
    )
    return response


def _matching(given: object, tokens: tuple[str, ...]) -> str | None:
    return matching_token(given.strip(), tokens) if isinstance(given, str) else None


def _too_many_attempts(wait: float) -> web.Response:
    seconds = retry_after(wait)
    text = f"Too many wrong tokens from your address; try again in {seconds} s."
    response = _page(html.message_page("Too many attempts", text), 429)
    response.headers["Retry-After"] = str(seconds)
    return response


@_actions
async def logout(request: web.Request, session: Session) -> web.Response:
    """Ends the session on every replica (the cookie is revoked), not only in this browser."""
    await revoke(request, session)
    response = _see_other("/admin")
    response.del_cookie(COOKIE, path="/admin")
    return response


@_pages
async def overview(request: web.Request, session: Session) -> web.Response:
    admin = context(request)
    queue = admin.the_queue()
    states = tuple(
        dict.fromkeys(as_state(s) for s in request.query.getall("state", []) if s in STATES)
    )
    figures, activity, view = await asyncio.gather(
        queue_overview(queue), hourly_activity(queue), admin.shown()
    )
    records, more = await queue.index.page(Selection(states=states, limit=RECENT))
    text = html.overview_page(
        figures, activity, records, view, states=states, more=more, csrf=session.csrf
    )
    return _page(text)


@_pages
async def search(request: web.Request, session: Session) -> web.Response:
    """A person's submissions, by email, phone, submission id or lead id."""
    admin = context(request)
    text = request.query.get("q", "").strip()[:200]
    try:
        query = admin.people.parse(text)
    except BadQuery as exc:
        page = html.search_page(text, None, str(exc), await admin.shown(), csrf=session.csrf)
        return _page(page, 400)
    found = await admin.people.find(admin.the_queue(), query)
    page = html.search_page(text, found, None, await admin.shown(), csrf=session.csrf)
    return _page(page)


@_pages
async def dead_letters(request: web.Request, session: Session) -> web.Response:
    admin = context(request)
    selection = Selection(states=("dead",), limit=MAX_LIMIT)
    records, more = await admin.the_queue().index.page(selection)
    text = html.dead_page(
        records, await admin.shown(), more=more, csrf=session.csrf, message=_message(request)
    )
    return _page(text)


@_pages
async def possible_duplicates(request: web.Request, session: Session) -> web.Response:
    """The flagged identity links, newest first, a page at a time (``?before=``)."""
    admin = context(request)
    raw = request.query.get("before")
    try:
        before = parse_time(raw) if raw is not None else None
    except BadTime as exc:
        text = html.message_page("Not a page", f"before: {exc}", csrf=session.csrf)
        return _page(text, 400)
    links, more = await admin.the_queue().links.page("flagged", RECENT * 2, before=before)
    next_before = float(links[-1]["at"]) if more else None
    text = links_html.links_page(
        links, admin.lead_url, next_before=next_before, first=before is None, csrf=session.csrf
    )
    return _page(text)


@_pages
async def submission(request: web.Request, session: Session) -> web.Response:
    admin = context(request)
    record = await admin.the_queue().records.get(request.match_info["id"])
    if record is None:
        text = html.message_page("Not found", MESSAGES["unknown"], csrf=session.csrf)
        return _page(text, 404)
    page = html.submission_page(
        record, await admin.shown(), csrf=session.csrf, message=_message(request)
    )
    return _page(page)


@_actions
async def replay(request: web.Request, session: Session) -> web.Response:
    sub_id = request.match_info["id"]
    outcome = await context(request).the_queue().records.replay(sub_id)
    form = await _form(request)
    back = _safe_next(form.get("next") or f"/admin/submissions/{sub_id}")
    if back == "/admin/dead" and outcome == "replayed":
        return _see_other("/admin/dead?replayed=1")
    return _see_other(f"{back}?done={outcome}")


@_actions
async def replay_dead(request: web.Request, session: Session) -> web.Response:
    queue = context(request).the_queue()
    results, _ = await queue.replay_selected(Selection(states=("dead",), limit=MAX_LIMIT))
    replayed = sum(1 for _, outcome in results if outcome == "replayed")
    return _see_other(f"/admin/dead?replayed={replayed}&failed={len(results) - replayed}")


@_actions
async def erase(request: web.Request, session: Session) -> web.Response:
    sub_id = request.match_info["id"]
    form = await _form(request)
    if form.get("confirm") != "yes":
        return _see_other(f"{_safe_next(f'/admin/submissions/{sub_id}')}?done=unconfirmed")
    outcome = await context(request).the_queue().records.erase(sub_id)
    if outcome == "erased":
        logger.info("dashboard: submission %s erased", sub_id)
    return _see_other(f"{_safe_next(f'/admin/submissions/{sub_id}')}?done={outcome}")


async def trailing_slash(request: web.Request) -> web.StreamResponse:
    return _see_other("/admin")


def create_dashboard_app(admin: AdminContext) -> web.Application:
    """The ``/admin`` sub-application."""
    app = web.Application()
    app[ADMIN] = admin
    app.router.add_get("", overview)
    app.router.add_get("/", trailing_slash)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/dead", dead_letters)
    app.router.add_get("/search", search)
    app.router.add_get("/links", possible_duplicates)
    app.router.add_post("/dead/replay", replay_dead)
    app.router.add_get("/submissions/{id}", submission)
    app.router.add_post("/submissions/{id}/replay", replay)
    app.router.add_post("/submissions/{id}/erase", erase)
    return app
