"""Errors raised inside Lead Intake.

One base class, and one split the worker lives by: a ``TransientError`` means "try again
later" (the submission goes back to the retry schedule), a ``PermanentError`` means "this can
never succeed as sent" (the submission ends ``rejected`` or ``dead``)::

    IntakeError
    ├── ConfigError            bad settings or sources file; lists every issue with its key path
    ├── OverLimit              a door rate limit refused the request (answered 429)
    ├── TransientError         retry later
    │   ├── CloseUnavailable   5xx, timeout, connection lost: outcome of a POST unknown
    │   ├── CloseRateLimited   429 after the in-request retries
    │   ├── CloseAuthFailed    401/403: delivery pauses, nothing is dead-lettered
    │   └── FetchError (transient kinds)  hydration: fetching the person from a provider
    │       ├── FetchUnavailable   5xx, timeout, connection lost
    │       │   └── FetchNotFound  the person is not there (yet): a few tries, then dead
    │       ├── FetchRateLimited   the provider asked us to slow down (shared pause)
    │       └── FetchAuthFailed    the provider refused the token: the source's delivery pauses
    └── PermanentError         never succeeds as sent
        ├── Rejected           the payload itself is unusable (state ``rejected``)
        │   └── MappingRejected  a mapping expression failed or a required field is missing
        ├── FetchRefused       the provider will never give this person (state ``dead``)
        └── CloseRefused       Close answered 400/402/404/405/415 (state ``dead``)

A rejection carries a stable reason ``code`` (``REJECTION_CODES``) beside its sentence, so an
operator (and the dashboard) can tell "this provider sends only ids" from "the form was empty".

Redis out of reach is redis-py's ``RedisError`` (or an ``OSError``), caught where it matters: the
door answers 503, the worker leaves the entry pending for another attempt.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


class IntakeError(Exception):
    """Base class of every error Lead Intake raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a configuration file: where (file and key path) and what."""

    path: str
    message: str
    file: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}: " if self.file else ""
        return f"{where}{self.path or '<root>'}: {self.message}"


class ConfigError(IntakeError):
    """Unusable configuration; ``issues`` lists every problem found, not only the first."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues: tuple[ConfigIssue, ...] = tuple(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


class OverLimit(IntakeError):
    """A rate limit of the door refused the request: ``kind`` says whose (``client``, the
    sender's address; ``source``, the endpoint as a whole), ``wait`` how many seconds until a
    token is there again."""

    def __init__(self, kind: str, wait: float) -> None:
        self.kind = kind
        self.wait = wait
        super().__init__(f"over the {kind} rate limit; a token in {wait:.3f} s")


class TransientError(IntakeError):
    """The attempt failed for a reason that may go away: schedule a retry."""


class PermanentError(IntakeError):
    """The submission can never succeed as sent."""


REJECTION_CODES: dict[str, str] = {
    "missing-required": "a required field (email, phone, name...) is missing or unusable",
    "empty-payload": "the payload holds no answer at all",
    "ids-only": "the provider sends only ids and the source does not fetch the person",
    "no-person": "the provider's submission names no person (nobody to fetch)",
    "expression-failed": "a mapping expression failed on this payload",
    "not-found": "the provider says the person to fetch does not exist",
    "fetch-refused": "the provider refuses to give this person (permissions)",
    "corrupt-envelope": "the stored submission could not be read",
    "source-removed": "the submission's source is no longer configured",
    "spam": "the honeypot field was filled",
}
"""Every stable reason code a rejection (or a permanent fetch failure) carries."""


class Rejected(PermanentError):
    """The payload is unusable; ``reason`` names what is wrong in words a user understands,
    ``code`` (one of ``REJECTION_CODES``) says it for programs."""

    def __init__(
        self, reason: str, detail: dict[str, Any] | None = None, *, code: str = "missing-required"
    ) -> None:
        self.reason = reason
        self.code = code
        self.detail: dict[str, Any] = {"code": code, **(detail or {})}
        """What the history event and the record's ``last_error`` show (``code`` first)."""
        super().__init__(reason)


class MappingRejected(Rejected):
    """Mapping the payload to a lead failed (missing required field, failing expression...)."""


@dataclass(frozen=True, slots=True)
class CloseResponseInfo:
    """What Close answered, kept in the submission record."""

    status: int
    body: Any
    endpoint: str


class CloseError(IntakeError):
    """Base of the errors that carry Close's answer."""

    def __init__(self, message: str, response: CloseResponseInfo | None = None) -> None:
        self.response = response
        super().__init__(message)


class CloseUnavailable(CloseError, TransientError):
    """5xx, timeout or connection lost: whether a POST took effect is unknown, unless
    ``maybe_applied`` is False (the connection failed before anything was sent)."""

    def __init__(
        self, message: str, response: CloseResponseInfo | None = None, *, maybe_applied: bool = True
    ) -> None:
        self.maybe_applied = maybe_applied
        super().__init__(message, response)


class CloseRateLimited(CloseError, TransientError):
    """Close kept answering 429 after the in-request retries."""

    def __init__(
        self, message: str, response: CloseResponseInfo | None = None, *, retry_after: float
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, response)


class CloseAuthFailed(CloseError, TransientError):
    """401/403: the API key is wrong or revoked. Delivery pauses; nothing is dead-lettered."""


class CloseRefused(CloseError, PermanentError):
    """Close refused the request for good (400, 402, 404, 405, 415)."""


class FetchError(IntakeError):
    """Base of the errors of a provider fetch (hydration); ``provider`` names the provider,
    ``status`` and ``body`` what it answered (when it answered)."""

    def __init__(
        self, message: str, *, provider: str, status: int | None = None, body: Any = None
    ) -> None:
        self.provider = provider
        self.status = status
        self.body = body
        super().__init__(message)

    def as_detail(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"error": str(self), "provider": self.provider}
        if self.status is not None:
            detail["status"] = self.status
        return detail


class FetchUnavailable(FetchError, TransientError):
    """The provider did not answer usefully (5xx, timeout, connection, a 404 that may be a
    race with the webhook): try again later."""


class FetchNotFound(FetchUnavailable):
    """The provider says the person does not exist (yet): tried again a few times (a webhook
    can arrive before the person is readable), then ``dead`` with ``not-found``."""


class FetchRateLimited(FetchError, TransientError):
    """The provider asked us to slow down; ``retry_after`` seconds (a shared pause)."""

    def __init__(self, message: str, *, provider: str, retry_after: float, **kw: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, provider=provider, **kw)


class FetchAuthFailed(FetchError, TransientError):
    """The provider refused the token (expired, revoked, missing): the source's delivery
    pauses until a fetch succeeds again; nothing is used up."""


class FetchRefused(FetchError, PermanentError):
    """The provider will never give this person as asked (not found after retries,
    permission denied): the submission ends ``dead`` with ``code`` (replayable)."""

    def __init__(self, message: str, *, provider: str, code: str, **kw: Any) -> None:
        self.code = code
        super().__init__(message, provider=provider, **kw)

    def as_detail(self) -> dict[str, Any]:
        return {"code": self.code, "reason": str(self), **super().as_detail()}


def field_errors(body: Any) -> Sequence[str]:
    """Flatten Close's ``errors``/``field-errors`` body into readable lines (nested per index)."""
    lines: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for msg in node.get("errors", []) if isinstance(node.get("errors"), list) else []:
                lines.append(f"{prefix or '<lead>'}: {msg}")
            fe = node.get("field-errors")
            if isinstance(fe, dict):
                for key, value in fe.items():
                    path = f"{prefix}.{key}" if prefix else str(key)
                    if isinstance(value, dict):
                        nested = value.get("errors")
                        if isinstance(nested, dict):
                            for index, child in nested.items():
                                walk(child, f"{path}[{index}]")
                        else:
                            walk(value, path)
                    else:
                        lines.append(f"{path}: {value}")
            if isinstance(node.get("error"), str):
                lines.append(f"{prefix or '<request>'}: {node['error']}")

    walk(body, "")
    return lines
