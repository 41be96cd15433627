"""Who sent it: the signature and token schemes a source can require.

``service/config/auth.py`` holds what the sources file says (``auth:``); ``signatures`` and
``tokens`` are the verifiers, ``base`` what they share. :func:`build_verifier` turns a
validated spec into the verifier the receiver runs on every request of the source.
"""

from __future__ import annotations

from service.config.auth import (
    AuthSpec,
    BasicAuth,
    BearerAuth,
    BodyKeyAuth,
    HmacAuth,
    HubSpotAuth,
    MetaAuth,
    NetlifyAuth,
    StandardWebhooksAuth,
    TimestampedAuth,
)
from service.receiver.auth.base import (
    REASONS,
    AuthFailed,
    SignedRequest,
    Verifier,
)
from service.receiver.auth.signatures import (
    HmacVerifier,
    HubSpotVerifier,
    MetaVerifier,
    NetlifyVerifier,
    StandardWebhooksVerifier,
    TimestampedVerifier,
)
from service.receiver.auth.tokens import BasicVerifier, BearerVerifier, BodyKeyVerifier


def build_verifier(spec: AuthSpec) -> Verifier:
    """The verifier for one source's ``auth`` block."""
    if isinstance(spec, StandardWebhooksAuth):
        return StandardWebhooksVerifier(spec)
    if isinstance(spec, HmacAuth):
        return HmacVerifier(spec)
    if isinstance(spec, TimestampedAuth):
        return TimestampedVerifier(spec)
    if isinstance(spec, HubSpotAuth):
        return HubSpotVerifier(spec)
    if isinstance(spec, MetaAuth):
        return MetaVerifier(spec)
    if isinstance(spec, NetlifyAuth):
        return NetlifyVerifier(spec)
    if isinstance(spec, BearerAuth):
        return BearerVerifier(spec)
    if isinstance(spec, BasicAuth):
        return BasicVerifier(spec)
    if isinstance(spec, BodyKeyAuth):
        return BodyKeyVerifier(spec)
    raise TypeError(f"no verifier for {type(spec).__name__}")  # pragma: no cover


def verify(verifier: Verifier, request: SignedRequest) -> str | None:
    """Run ``verifier``; a source whose secrets could not be read refuses everything."""
    if not verifier.secrets:
        raise AuthFailed("no-secret")
    return verifier.verify(request)


__all__ = [
    "REASONS",
    "AuthFailed",
    "AuthSpec",
    "SignedRequest",
    "Verifier",
    "build_verifier",
    "verify",
]
