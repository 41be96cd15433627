"""How the door answers: JSON for programs, a 303 to a page for a browser posting a form.

A browser gets a redirect only when it prefers HTML (``Accept``) and the source names a page.
A form's ``_redirect`` field is honoured only when its origin and path are on the source's
allow-list; anything else falls back to the configured page. Targets are normalised URLs
without control characters, so a ``Location`` header can never be split or point elsewhere.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aiohttp import web
from yarl import URL

from service import jsoncodec
from service.config.policy import RedirectSpec, page_url_problem
from service.problems import ProblemError


def queue_down() -> ProblemError:
    """The ``503`` for a submission Redis did not store."""
    return ProblemError(
        503, "queue-unavailable", "the submission was not stored; send it again later"
    )


def closes(exc: ProblemError) -> bool:
    """Whether the answer must close the connection (the body was not read to its end)."""
    return exc.status == 408 or (exc.headers or {}).get("Connection") == "close"


def _ranges(accept: str) -> list[tuple[str, str, float]]:
    out = []
    for item in accept.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        kind, _, subtype = media.lower().partition("/")
        if not kind or not subtype:
            continue
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        out.append((kind, subtype, quality))
    return out


def _quality(ranges: list[tuple[str, str, float]], kind: str, subtype: str) -> float:
    best, specificity = 0.0, -1
    for r_kind, r_sub, quality in ranges:
        if (r_kind, r_sub) == (kind, subtype):
            level = 2
        elif r_kind == kind and r_sub == "*":
            level = 1
        elif (r_kind, r_sub) == ("*", "*"):
            level = 0
        else:
            continue
        if level > specificity:
            best, specificity = quality, level
    return best


def prefers_html(accept: str | None) -> bool:
    """True when ``Accept`` rates text/html above application/json (a browser navigating).
    Browsers and clients send a few ``Accept`` values over and over: the answer is kept (for
    values of at most 256 characters, 512 of them)."""
    if not accept:
        return False
    return _kept_prefers_html(accept) if len(accept) <= 256 else _prefers_html(accept)


@lru_cache(maxsize=512)
def _kept_prefers_html(accept: str) -> bool:
    return _prefers_html(accept)


def _prefers_html(accept: str) -> bool:
    ranges = _ranges(accept)
    html = _quality(ranges, "text", "html")
    return html > 0 and html > _quality(ranges, "application", "json")


def _normalised(text: str) -> URL | None:
    if page_url_problem(text):
        return None
    return URL(text)


def allowed_redirect(value: Any, spec: RedirectSpec) -> str | None:
    """The form's requested page when its origin and path are on the allow-list, else None."""
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str) and v), None)
    if not isinstance(value, str) or not value or not spec.allow:
        return None
    url = _normalised(value.strip())
    if url is None:
        return None
    page = str(url.with_query(None).with_fragment(None))
    for entry in spec.allow:
        if entry.endswith("/*"):
            prefix = URL(entry.removesuffix("*"))
            if page.startswith(str(prefix.with_query(None).with_fragment(None))):
                return str(url)
        elif page == str(URL(entry).with_query(None).with_fragment(None)):
            return str(url)
    return None


def see_other(location: str) -> web.Response:
    return web.Response(
        status=303,
        headers={"Location": location, "Cache-Control": "no-store"},
        text=f"See {location}\n",
    )


def browser_wants_page(request: web.Request, spec: RedirectSpec | None) -> bool:
    return spec is not None and prefers_html(request.headers.get("Accept"))


def accepted(
    request: web.Request,
    spec: RedirectSpec | None,
    sub_id: str,
    *,
    duplicate: bool,
    requested: Any = None,
) -> web.Response:
    """The answer to an accepted (or repeated) submission."""
    if spec is not None and browser_wants_page(request, spec):
        target = allowed_redirect(requested, spec) or spec.success_url
        if target:
            return see_other(target)
    if duplicate:
        return _json({"id": sub_id, "duplicate": True}, 200)
    # The id is ours (``sub_`` and Crockford base32): no JSON escaping to do.
    return web.Response(
        body=b'{"id":"' + sub_id.encode() + b'","status":"queued"}', status=202, headers=_JSON
    )


def accepted_items(results: list[tuple[str, bool]]) -> web.Response:
    """The answer to a delivery that held several submissions, once every one is stored:
    ``202 {"status": "queued", "submissions": [{"id", "status": "queued" | "duplicate"}]}``;
    ``200`` with ``"duplicate": true`` when every item was a repeat; ``200 {"status":
    "ignored", "submissions": []}`` when it held none (a Meta change that is not a lead)."""
    rows = [{"id": sub_id, "status": "queued" if new else "duplicate"} for sub_id, new in results]
    if not results:
        return _json({"status": "ignored", "submissions": []}, 200)
    if not any(new for _, new in results):
        return _json({"status": "duplicate", "duplicate": True, "submissions": rows}, 200)
    return _json({"status": "queued", "submissions": rows}, 202)


_JSON = {"Content-Type": "application/json; charset=utf-8"}


def _json(data: dict[str, Any], status: int) -> web.Response:
    return web.Response(
        body=jsoncodec.dumps(data), status=status, content_type="application/json", charset="utf-8"
    )


def refused(request: web.Request, spec: RedirectSpec | None, error: ProblemError) -> web.Response:
    """The answer to a refused submission: the error page for a browser, else problem+json."""
    if spec is not None and spec.error_url and browser_wants_page(request, spec):
        return see_other(str(URL(spec.error_url).update_query(error=error.slug)))
    return error.response()
