"""Local redirects for `lead-intake dev`: a browser posting a form lands on a page of the
service itself, not on the production site the sources file names.

A source's ``redirect`` pages (and ``allow`` entries) that are not on this machine are replaced,
for the dev stack only, by ``/thanks`` (success) and ``/thanks/problem`` (failure, with the
``?error=<problem type>`` the receiver adds), served by the same receiver. Pages on localhost
(a site under development) are kept. The banner lists what was replaced.
"""

from __future__ import annotations

from html import escape

from aiohttp import web
from yarl import URL

from service.config.policy import LOCAL_HOSTS, RedirectSpec
from service.config.sources import Sources

THANKS = "/thanks"
PROBLEM = "/thanks/problem"


def _local(url: str) -> bool:
    host = URL(url.removesuffix("*")).host or ""
    return host in LOCAL_HOSTS or host.endswith(".localhost")


def _localised(spec: RedirectSpec, base: str) -> RedirectSpec | None:
    """``spec`` with its remote pages replaced (None when every page is local already)."""
    changes: dict[str, object] = {}
    if spec.success_url and not _local(spec.success_url):
        changes["success_url"] = base + THANKS
    if spec.error_url and not _local(spec.error_url):
        changes["error_url"] = base + PROBLEM
    kept = tuple(entry for entry in spec.allow if _local(entry))
    if kept != spec.allow:
        changes["allow"] = kept
    return spec.model_copy(update=changes) if changes else None


def local_redirects(sources: Sources, base: str) -> tuple[Sources, list[str]]:
    """The sources with remote redirect pages pointed at this service, and what changed."""
    changed: list[str] = []
    by_name = {}
    for name, source in sources.items():
        spec = source.redirect
        local = _localised(spec, base) if spec is not None else None
        by_name[name] = source
        if local is not None:
            by_name[name] = source.model_copy(update={"redirect": local})
            changed.append(name)
    return Sources(by_name, sources.path, sources.presets), changed


def _page(title: str, text: str) -> web.Response:
    body = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>body{{font-family:system-ui,sans-serif;"
        "max-width:36rem;margin:3rem auto;line-height:1.5}</style></head><body>"
        f"<h1>{escape(title)}</h1>{text}<p><small>Lead Intake (dev): this page stands in for "
        "the source's <code>redirect</code> page while running locally.</small></p></body></html>"
    )
    return web.Response(text=body, content_type="text/html")


async def thanks(request: web.Request) -> web.Response:
    return _page("Thank you", "<p>Your submission was received.</p>")


async def problem(request: web.Request) -> web.Response:
    error = request.query.get("error", "")[:100]
    detail = f" (<code>{escape(error)}</code>)" if error else ""
    return _page("Something went wrong", f"<p>The submission was not accepted{detail}.</p>")


def add_thanks_routes(app: web.Application) -> None:
    app.router.add_get(THANKS, thanks)
    app.router.add_get(PROBLEM, problem)
