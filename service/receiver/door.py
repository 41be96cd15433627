"""The checks ``POST /hooks/{source}`` runs before a submission is accepted, and their state.

Reading the body (bounded in size and time), who the client is, who signed the request. The
order of the whole walk is in ``app.receive``; every step here raises ``ProblemError``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from service import httpbody
from service.clientip import Network, client_ip
from service.config.sources import SourceConfig, Sources
from service.mapping import Mapper
from service.problems import ProblemError
from service.queue import Throttle
from service.receiver.auth import (
    AuthFailed,
    SignedRequest,
    Verifier,
    build_verifier,
    verify,
)
from service.receiver.bodies import ParseLimits
from service.receiver.items import refuses_unmappable
from service.receiver.spam import throttles
from service.receiver.state import METRICS

logger = logging.getLogger(__name__)

VERIFIERS = web.AppKey("verifiers", dict[str, Verifier])
TRUSTED_PROXIES = web.AppKey("trusted_proxies", tuple[Network, ...])
PARSE_LIMITS = web.AppKey("parse_limits", dict[str, ParseLimits])
DOORS: web.AppKey[dict[str, Door]] = web.AppKey("doors")

UNAUTHORIZED_DETAIL = "the request could not be authenticated"
NO_QUERY: MultiDictProxy[str] = MultiDictProxy(MultiDict())
"""The query of a request without one (``request.query`` would parse the empty string)."""


def build_verifiers(sources: Sources) -> dict[str, Verifier]:
    """One verifier per source with ``auth``; says at start which sources are closed or open."""
    verifiers: dict[str, Verifier] = {}
    for name, source in sources.items():
        if source.auth is None:
            signs = sources.presets.auth_of(source.preset)
            if signs:
                logger.warning(
                    "source %s: the %s preset signs its requests (%s) but the source names no "
                    "secret (auth: {secrets: [env:...]}); posts are not verified",
                    name,
                    source.preset,
                    signs.get("scheme"),
                )
            elif source.kind == "webhook":
                logger.warning(
                    "source %s: no auth configured; anyone who knows the URL can post", name
                )
            continue
        verifier = build_verifier(source.auth)
        if not verifier.secrets:
            missing = ", ".join(ref.ref for ref in source.auth.secrets)
            logger.warning(
                "source %s: its secret cannot be read (%s); every request is refused (401) "
                "until it is set and the service restarted",
                name,
                missing,
            )
        verifiers[name] = verifier
    return verifiers


def build_parse_limits(sources: Sources) -> dict[str, ParseLimits]:
    """Each source's parse limits (its ``body_limits`` and ``files``), built once at start."""
    return {
        name: ParseLimits(
            json_depth=source.body_limits.json_depth,
            json_keys=source.body_limits.json_keys,
            form_fields=source.body_limits.form_fields,
            files=source.files,
        )
        for name, source in sources.items()
    }


@dataclass(frozen=True, slots=True)
class Door:
    """What the walk of a request needs of one source, worked out once at start."""

    name: str
    source: SourceConfig
    verifier: Verifier | None
    limits: ParseLimits
    mapper: Mapper | None
    checks_mapping: bool
    """Whether a payload that can never map is refused with 422 (``items.refuses_unmappable``)."""
    private_query: frozenset[str]
    """Query parameters that carry credentials: never stored."""
    redirect_field: str | None
    token_field: str | None
    """The form's ``_redirect`` field and the CAPTCHA token's field, if the source has them."""
    dropped: frozenset[str]
    """Fields left out of the stored body: those two and the honeypot."""
    throttles: dict[str | None, tuple[Throttle, ...]] = field(default_factory=dict)
    """The rate-limit buckets by client address, as named so far (:meth:`throttles_of`)."""

    def throttles_of(self, client: str | None) -> tuple[Throttle, ...]:
        """``spam.throttles`` of this source for ``client``, named once per address (the
        cache starts again past :data:`THROTTLE_CACHE` addresses)."""
        found = self.throttles.get(client)
        if found is None:
            if len(self.throttles) >= THROTTLE_CACHE:
                self.throttles.clear()
            found = self.throttles[client] = throttles(self.name, client, self.source.rate_limit)
        return found

    def controls(self, body: Any) -> tuple[Any, Any, Any]:
        """The form's control fields (``_redirect``, the CAPTCHA token) and the body without
        them (nor the honeypot): ``(requested page, token, body to store)``."""
        if not isinstance(body, dict):
            return None, None, body
        requested = body.get(self.redirect_field) if self.redirect_field else None
        token = body.get(self.token_field) if self.token_field else None
        if self.dropped:
            body = {key: value for key, value in body.items() if key not in self.dropped}
        return requested, token, body


THROTTLE_CACHE = 4096


def build_doors(
    sources: Sources,
    mappers: dict[str, Mapper],
    verifiers: dict[str, Verifier],
    limits: dict[str, ParseLimits],
) -> dict[str, Door]:
    """Each source's :class:`Door`."""
    doors = {}
    for name, source in sources.items():
        mapper = mappers.get(name)
        verifier = verifiers.get(name)
        redirect = source.redirect.field if source.redirect else None
        token = source.captcha.token_field if source.captcha else None
        honeypot = source.honeypot.field if source.honeypot else None
        doors[name] = Door(
            name=name,
            source=source,
            verifier=verifier,
            limits=limits[name],
            mapper=mapper,
            checks_mapping=mapper is not None and refuses_unmappable(sources, source, mapper),
            private_query=verifier.private_query() if verifier else frozenset(),
            redirect_field=redirect,
            token_field=token,
            dropped=frozenset(n for n in (redirect, token, honeypot) if n),
        )
    return doors


def request_client(request: web.Request) -> str | None:
    """The client address (``X-Forwarded-For`` only from a trusted proxy)."""
    trusted: tuple[Network, ...] = request.app[TRUSTED_PROXIES]
    if not trusted:
        return client_ip(request.remote, (), ())
    return client_ip(request.remote, request.headers.getall("X-Forwarded-For", []), trusted)


async def read_body(request: web.Request, limit: int, within: float) -> bytes:
    """The raw body, its ``Content-Encoding`` decoded (``service/httpbody.py``): 413 past
    ``limit`` bytes, 408 when it does not arrive within ``within`` seconds, 400 when it is
    broken, 415 for an encoding that is not decoded."""
    try:
        return await httpbody.read_body(request, limit, within)
    except httpbody.BodyError as exc:
        headers = {"Connection": "close"} if exc.status == 408 else None
        raise ProblemError(exc.status, exc.slug, exc.detail, headers=headers) from None


def _refuse(request: web.Request, source: str, verifier: Verifier, reason: str) -> ProblemError:
    request.app[METRICS].auth_failures.labels(source, reason).inc()
    logger.warning(
        "source %s: request refused by %s auth: %s (client %s)",
        source,
        verifier.scheme,
        reason,
        request_client(request),
    )
    return ProblemError(401, "unauthorized", UNAUTHORIZED_DETAIL)


def authenticate(request: web.Request, source: str, verifier: Verifier, raw: bytes) -> str | None:
    """Verify the raw request before anything parses it; the sender's event id if any."""
    signed = SignedRequest(
        method=request.method,
        url=f"{request.scheme}://{request.host}{request.raw_path}" if verifier.signs_url else "",
        headers=request.headers,
        query=request.query if request.query_string else NO_QUERY,
        body=raw,
        now=time.time(),
    )
    try:
        return verify(verifier, signed)
    except AuthFailed as exc:
        raise _refuse(request, source, verifier, exc.reason) from None


def authenticate_body(
    request: web.Request, source: str, verifier: Verifier, body: Any
) -> tuple[Any, str | None]:
    """The checks that need the parsed body (a key inside it): the body to store, an id."""
    try:
        return verifier.after_parse(body)
    except AuthFailed as exc:
        raise _refuse(request, source, verifier, exc.reason) from None
