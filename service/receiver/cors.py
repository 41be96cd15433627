"""CORS for ``/hooks/{source}``: the preflight answer and the headers on every answer.

Only origins on the source's list get CORS headers; any other origin gets none (the browser
then keeps the answer from the page) and its preflight is refused with 403. Every answer of a
source with CORS settings carries ``Vary: Origin``, so caches never hand one origin's answer
to another.
"""

from __future__ import annotations

from aiohttp import web

from service.config.policy import CorsSpec
from service.problems import problem
from service.receiver.state import SOURCES

ALLOWED_METHODS = "POST"
EXPOSED_HEADERS = "Retry-After"


def _add_vary(response: web.StreamResponse) -> None:
    present = response.headers.get("Vary")
    if present is None:  # nearly every answer: nothing to merge
        response.headers["Vary"] = "Origin"
        return
    vary = [v.strip() for v in present.split(",") if v.strip()]
    if "origin" not in {v.lower() for v in vary}:
        response.headers["Vary"] = ", ".join([*vary, "Origin"])


def decorate(request: web.Request, response: web.StreamResponse, cors: CorsSpec | None) -> None:
    """Add the CORS headers an answer to ``request`` needs (none for other origins)."""
    if cors is None:
        return
    _add_vary(response)
    origin = request.headers.get("Origin")
    if not origin or not cors.allows(origin):
        return
    wildcard = "*" in cors.origins and not cors.credentials
    response.headers["Access-Control-Allow-Origin"] = "*" if wildcard else origin
    response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    if cors.credentials:
        response.headers["Access-Control-Allow-Credentials"] = "true"


def _refused(detail: str) -> web.Response:
    response = problem(403, "origin-not-allowed", detail)
    _add_vary(response)
    return response


async def preflight(request: web.Request) -> web.StreamResponse:
    """``OPTIONS /hooks/{source}``: allow a POST from a listed origin, refuse anything else."""
    name = request.match_info["source"]
    source = request.app[SOURCES].get(name)
    if source is None:
        return problem(404, "unknown-source", f"there is no source named {name!r}")
    cors = source.cors
    origin = request.headers.get("Origin", "")
    method = request.headers.get("Access-Control-Request-Method", "")
    if cors is None:
        return _refused(f"source {name!r} takes no cross-origin requests")
    if not origin or not cors.allows(origin):
        return _refused(f"origin {origin or '(none)'!r} may not post to source {name!r}")
    if method.upper() != ALLOWED_METHODS:
        return _refused(f"only {ALLOWED_METHODS} is allowed, not {method or '(none)'!r}")
    response = web.Response(status=204)
    decorate(request, response, cors)
    response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
    response.headers["Access-Control-Allow-Headers"] = ", ".join(cors.allow_headers)
    response.headers["Access-Control-Max-Age"] = str(cors.max_age_seconds)
    return response
