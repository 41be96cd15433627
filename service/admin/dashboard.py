"""The admin dashboard at ``/admin``: server-rendered pages behind the admin token.

Pages: ``/admin`` (counts per state, queue depth, delivery status, the last 24 hours per hour
by state and source, recent submissions), ``/admin/dead`` (dead letters, a replay button each
and one for all), ``/admin/search?q=`` (a person's submissions, by email, phone, submission id
or lead id: ``people.py``), and ``/admin/submissions/{id}`` (one record with its payload and
history; replay and erase). Only that last page shows personal data; the search page shows the
searched email or phone back, and rows without payloads.

Sessions. ``POST /admin/login`` with one of the admin tokens sets the cookie
``intake_admin=<issued>.<HMAC-SHA256(token, issued)>``: never the token, and nothing stored on
the server, so every receiver replica with the same tokens accepts it. It lasts 12 hours;
taking a token out of ``INTAKE_ADMIN_TOKEN`` ends the sessions opened with it. The cookie is
HttpOnly, SameSite=Strict, limited to ``/admin``, and Secure when the page came over https
(directly, or per ``X-Forwarded-Proto`` from a trusted proxy).

CSRF. Besides SameSite=Strict, every POST form carries the session's CSRF token, an HMAC of
the session's signature under the same admin token, compared in constant time. Pages send a
Content-Security-Policy without any script source, ``no-store`` and ``no-referrer``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import ipaddress
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import MultiDict, MultiDictProxy
from redis.exceptions import RedisError

from service.admin import dashboard_html as html
from service.admin.activity import hourly_activity
from service.admin.context import ADMIN, AdminContext, context, matching_token
from service.admin.params import MAX_LIMIT
from service.admin.people import BadQuery
from service.admin.views import queue_overview
from service.queue import Selection
from service.queue.records import STATES, as_state

logger = logging.getLogger(__name__)

COOKIE = "intake_admin"
SESSION_SECONDS = 12 * 3600
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
_NEXT = re.compile(r"/admin(?:/dead|/submissions/[A-Za-z0-9_-]{1,100})?")
_SESSION = re.compile(r"([0-9]{1,12})\.([0-9a-f]{64})")
_COUNT = re.compile(r"[0-9]{1,6}")
MESSAGES = {
    "replayed": "Queued again: the person is looked up in Close again before anything is made.",
    "in-progress": "Not replayed: the submission is still in progress.",
    "erased": "Personal data erased; the tombstone stays until the record expires.",
    "already-erased": "The submission had already been erased.",
    "unknown": "No such submission (unknown or expired).",
    "unconfirmed": "Not erased: tick the box to confirm.",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- sessions and CSRF --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Session:
    csrf: str


def _mac(token: str, message: str) -> str:
    return hmac.new(token.encode(), message.encode(), hashlib.sha256).hexdigest()


def session_cookie(token: str, now: float | None = None) -> str:
    issued = int(time.time() if now is None else now)
    return f"{issued}.{_mac(token, f'lead-intake dashboard session|{issued}')}"


def session_of(request: web.Request) -> Session | None:
    """The request's valid session, or None (no cookie, forged, expired, token withdrawn)."""
    match = _SESSION.fullmatch(request.cookies.get(COOKIE, ""))
    if match is None:
        return None
    issued, signature = int(match[1]), match[2]
    now = time.time()
    if not now - SESSION_SECONDS <= issued <= now + 60:
        return None
    found = None
    for token in context(request).tokens:
        expected = _mac(token, f"lead-intake dashboard session|{issued}")
        if hmac.compare_digest(expected, signature):
            found = token
    if found is None:
        return None
    return Session(csrf=_mac(found, f"lead-intake dashboard csrf|{signature}")[:32])


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


async def _form(request: web.Request) -> MultiDictProxy[Any]:
    """The fields of the dashboard's forms (url-encoded, as browsers post them); any other body
    counts as an empty form."""
    if request.content_type == "application/x-www-form-urlencoded":
        try:
            return await request.post()
        except ValueError:  # bytes that are not UTF-8
            pass
    return MultiDictProxy(MultiDict())


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
        session = session_of(request)
        if session is None:
            if request.path == "/admin":
                return _login_form(request, error=None, next_path=request.query.get("next"))
            return _see_other(f"/admin?next={_safe_next(request.path)}")
        try:
            return await handler(request, session)
        except (RedisError, OSError):
            return _page(html.message_page("Unavailable", "Redis is unreachable."), 503)

    return page


def _actions(handler: Callable[[web.Request, Session], Awaitable[web.Response]]) -> Handler:
    """A button: a valid session and the session's CSRF token, else 403 and nothing done."""

    @functools.wraps(handler)
    async def action(request: web.Request) -> web.StreamResponse:
        session = session_of(request)
        form = await _form(request)
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
    tokens = context(request).tokens
    token = matching_token(given.strip(), tokens) if isinstance(given, str) else None
    if not token:
        logger.warning("dashboard: login refused (not an admin token)")
        return _login_form(request, error="That is not an admin token.", next_path=next_path)
    response = _see_other(_safe_next(next_path))
    response.set_cookie(
        COOKIE,
        session_cookie(token),
        max_age=SESSION_SECONDS,
        path="/admin",
        httponly=True,
        secure=_https(request),
        samesite="Strict",
    )
    return response


@_actions
async def logout(request: web.Request, session: Session) -> web.Response:
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
    app.router.add_post("/dead/replay", replay_dead)
    app.router.add_get("/submissions/{id}", submission)
    app.router.add_post("/submissions/{id}/replay", replay)
    app.router.add_post("/submissions/{id}/erase", erase)
    return app
