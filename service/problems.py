"""RFC 9457 problem details: every error the HTTP surface answers, with a stable ``type``."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

PROBLEM_TYPE_BASE = "urn:lead-intake:problem:"

TITLES: dict[str, str] = {
    "malformed-body": "The request body could not be parsed",
    "unauthorized": "Missing or invalid credentials",
    "unknown-source": "No such source",
    "not-found": "Not found",
    "method-not-allowed": "Method not allowed",
    "too-large": "Request body too large",
    "unsupported-media-type": "Unsupported content type",
    "unprocessable": "The payload can never be turned into a lead",
    "rate-limited": "Too many requests",
    "request-timeout": "The request body did not arrive in time",
    "origin-not-allowed": "Cross-origin request refused",
    "handshake-refused": "The endpoint verification was refused",
    "captcha-failed": "The CAPTCHA was not solved",
    "captcha-unavailable": "The CAPTCHA cannot be checked right now",
    "queue-unavailable": "Submissions cannot be accepted right now",
    "not-ready": "Not ready",
    "conflict": "The request conflicts with the submission's state",
    "invalid-parameter": "Invalid parameter",
    "internal": "Internal error",
}


def problem(
    status: int,
    slug: str,
    detail: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + slug,
        "title": TITLES.get(slug, slug.replace("-", " ").capitalize()),
        "status": status,
    }
    if detail:
        body["detail"] = detail
    body.update(extra)
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type="application/problem+json",
        headers=headers,
    )


class ProblemError(Exception):
    """Raised inside a handler to answer with a problem document."""

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        self.status = status
        self.slug = slug
        self.detail = detail
        self.headers = headers
        self.extra = extra
        super().__init__(detail or slug)

    def response(self) -> web.Response:
        return problem(self.status, self.slug, self.detail, headers=self.headers, **self.extra)


def retry_after(wait: float) -> int:
    """A ``Retry-After`` in whole seconds (at least 1) for a wait of ``wait`` seconds."""
    return max(1, math.ceil(wait))


def rate_limited(
    wait: float, detail: str, headers: Mapping[str, str] | None = None
) -> ProblemError:
    """The ``429`` for a client that must wait ``wait`` seconds, with ``Retry-After`` (beside
    any other ``headers``)."""
    seconds = retry_after(wait)
    return ProblemError(
        429,
        "rate-limited",
        f"{detail}; try again in {seconds} s",
        headers={**(headers or {}), "Retry-After": str(seconds)},
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_SLUG_BY_STATUS = {
    404: "not-found",
    405: "method-not-allowed",
    413: "too-large",
    415: "unsupported-media-type",
    400: "malformed-body",
}


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn ProblemError and aiohttp's own HTTP errors into problem+json answers."""
    try:
        return await handler(request)
    except ProblemError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return http_problem(exc)


def http_problem(exc: web.HTTPException) -> web.Response:
    """aiohttp's own HTTP error (status 400 or above) as problem+json."""
    slug = _SLUG_BY_STATUS.get(exc.status, "internal" if exc.status >= 500 else "not-found")
    headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
    return problem(exc.status, slug, exc.reason, headers=headers or None)
