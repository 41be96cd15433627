"""What a source accepts at the door, as written in the sources file (immutable models).

``cors``, ``redirect``, ``honeypot``, ``captcha``, ``rate_limit``, ``files`` and
``body_limits`` of a source entry; the signature schemes (``auth``) are in ``auth/spec.py``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from yarl import URL

from service.config.secretref import SecretReference, describe_missing

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def page_url_problem(text: str) -> str | None:
    """Why ``text`` cannot be a page the receiver redirects a browser to, or None."""
    if _CONTROL.search(text):
        return "must not contain spaces or control characters"
    try:
        url = URL(text)
    except ValueError:
        return "is not a URL"
    if not url.absolute or url.scheme not in ("https", "http") or not url.host:
        return "must be an absolute https:// URL"
    if url.scheme == "http" and url.host not in LOCAL_HOSTS:
        return "must use https:// (http:// only for localhost)"
    if url.user is not None or url.password is not None:
        return "must not carry a user name or password"
    return None


def origin_problem(text: str) -> str | None:
    """Why ``text`` is not an exact origin (``scheme://host[:port]``), or None."""
    if text == "*":
        return None
    problem = page_url_problem(text)
    if problem:
        return problem.replace("must be an absolute https:// URL", "must be scheme://host[:port]")
    url = URL(text)
    if url.raw_path not in ("", "/") or url.raw_query_string or url.raw_fragment:
        return "an origin is scheme://host[:port], without a path, query or fragment"
    return None


def canonical_origin(text: str) -> str:
    """``https://Example.com:443/`` → ``https://example.com`` (how browsers send Origin)."""
    if text == "*":
        return text
    url = URL(text)
    return str(url.origin())


class CorsSpec(_Spec):
    """Cross-origin posts from pages on other origins (``fetch()``; plain forms need none)."""

    origins: tuple[str, ...] = Field(min_length=1)
    """Exact origins allowed, e.g. ``https://www.example.com``; ``*`` allows any origin (never
    together with ``credentials``)."""
    allow_headers: tuple[str, ...] = ("Content-Type", "Idempotency-Key")
    max_age_seconds: int = Field(default=600, ge=0, le=86400)
    credentials: bool = False
    """Send ``Access-Control-Allow-Credentials: true`` (cookies on the post; rarely needed)."""

    @field_validator("origins")
    @classmethod
    def _exact(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            problem = origin_problem(value)
            if problem:
                raise ValueError(f"{value!r} {problem}")
        return tuple(canonical_origin(v) for v in values)

    @field_validator("allow_headers")
    @classmethod
    def _tokens(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", value):
                raise ValueError(f"{value!r} is not a header name")
        return values

    @model_validator(mode="after")
    def _no_wildcard_with_credentials(self) -> CorsSpec:
        if self.credentials and "*" in self.origins:
            raise ValueError("a wildcard origin ('*') cannot be combined with credentials: true")
        return self

    def allows(self, origin: str) -> bool:
        return "*" in self.origins or origin in self.origins


class RedirectSpec(_Spec):
    """Where a browser goes after posting a form (answered 303 when it prefers HTML)."""

    success_url: str | None = None
    error_url: str | None = None
    """Failures go here with ``?error=<problem type>`` added; without it a problem+json."""
    allow: tuple[str, ...] = ()
    """Targets a form may choose with its ``_redirect`` field: an exact URL (origin and path)
    or a prefix ending in ``*`` (``https://www.example.com/thanks/*``)."""
    field: str = "_redirect"

    @field_validator("success_url", "error_url")
    @classmethod
    def _page(cls, value: str | None) -> str | None:
        if value is not None:
            problem = page_url_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("allow")
    @classmethod
    def _entries(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            problem = page_url_problem(value.removesuffix("*"))
            if problem:
                raise ValueError(f"{value!r} {problem}")
            if value.endswith("*") and not value.endswith("/*"):
                raise ValueError(f"{value!r}: a prefix ends with '/*' (a whole path segment)")
        return values


class HoneypotSpec(_Spec):
    """A field hidden from people: when a bot fills it, the post is answered like a success,
    recorded as ``rejected: spam`` and never sent to Close."""

    field: str = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"field": data} if isinstance(data, str) else data


_PERIODS = {"second": 1, "s": 1, "minute": 60, "min": 60, "m": 60, "hour": 3600, "h": 3600}
_PERIODS["day"] = _PERIODS["d"] = 86400
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$")


class Rate(_Spec):
    """``count`` requests per ``seconds``, with bursts of up to ``count``."""

    count: int = Field(ge=1)
    seconds: float = Field(gt=0)

    @model_validator(mode="before")
    @classmethod
    def _text(cls, data: Any) -> Any:
        if not isinstance(data, str):
            return data
        match = _RATE.match(data.lower())
        if not match or match.group(3) not in _PERIODS:
            raise ValueError(f"{data!r}: write a rate as N/second, N/minute, N/hour or N/day")
        return {
            "count": int(match.group(1)),
            "seconds": int(match.group(2) or 1) * _PERIODS[match.group(3)],
        }

    @property
    def per_second(self) -> float:
        return self.count / self.seconds


class RateLimitSpec(_Spec):
    """Token buckets in Redis (shared by every receiver process); over the limit is 429."""

    per_client: Rate | None = None
    """Per client IP address (see ``INTAKE_TRUSTED_PROXIES``), e.g. ``10/minute``."""
    per_source: Rate | None = None
    """For the whole source, every client together, e.g. ``600/minute``."""


CAPTCHA_FIELDS = {
    "turnstile": "cf-turnstile-response",
    "hcaptcha": "h-captcha-response",
    "recaptcha": "g-recaptcha-response",
}


class CaptchaSpec(_Spec):
    """Server-side CAPTCHA verification before anything is stored (failure: 403)."""

    provider: Literal["turnstile", "hcaptcha", "recaptcha"]
    secret: SecretReference
    field: str | None = None
    """The form field holding the token; default per provider (``cf-turnstile-response``...)."""
    min_score: float | None = Field(default=None, ge=0, le=1)
    """reCAPTCHA v3: the lowest score accepted."""
    hostnames: tuple[str, ...] = ()
    """Accept only tokens solved on these hosts (the provider reports the hostname)."""

    @field_validator("secret")
    @classmethod
    def _readable(cls, value: Any) -> Any:
        if not value.available:
            raise ValueError(f"cannot read {describe_missing(value)}")
        return value

    @property
    def token_field(self) -> str:
        return self.field or CAPTCHA_FIELDS[self.provider]


class BodyLimits(_Spec):
    """Bounds on what a body may contain, besides its size (``max_body_bytes``)."""

    json_depth: int = Field(default=32, ge=1, le=512)
    """Deepest nesting of JSON objects and arrays (deeper: 400)."""
    json_keys: int = Field(default=10000, ge=1)
    """Object keys and array items in the whole JSON document (more: 413)."""
    form_fields: int = Field(default=1000, ge=1, le=100000)
    """Fields of a form-encoded or multipart body (more: 413)."""


FilesPolicy = Literal["drop", "refuse"]
"""Multipart file parts: ``drop`` keeps the other fields and lists the dropped file fields
under ``_files_dropped``; ``refuse`` answers 415. File contents are never stored."""
