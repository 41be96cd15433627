"""Shared-secret schemes without a signature: a bearer token, HTTP Basic, a key in the body."""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any

from service.config.auth import BasicAuth, BearerAuth, BodyKeyAuth
from service.receiver.auth.base import AuthFailed, SignedRequest, Verifier, constant_time_any


class BearerVerifier(Verifier):
    """``Authorization: Bearer <token>``, a bare token in another header, or in the query."""

    def __init__(self, spec: BearerAuth) -> None:
        self.spec = spec
        self.scheme = spec.scheme
        self.secrets = tuple(spec.secret_values())

    def verify(self, request: SignedRequest) -> str | None:
        if self.spec.query_param:
            token = request.query.get(self.spec.query_param, "")
        else:
            token = request.headers.get(self.spec.header, "").strip()
            if self.spec.header.lower() == "authorization":
                kind, _, token = token.partition(" ")
                token = token.strip() if kind.lower() == "bearer" else ""
        if not token:
            raise AuthFailed("missing-credentials")
        if not constant_time_any((s.encode() for s in self.secrets), [token.encode()]):
            raise AuthFailed("bad-credentials")
        return None

    def private_query(self) -> frozenset[str]:
        return frozenset({self.spec.query_param}) if self.spec.query_param else frozenset()


class BasicVerifier(Verifier):
    """``Authorization: Basic base64(username:password)``; any secret is a valid password."""

    def __init__(self, spec: BasicAuth) -> None:
        self.spec = spec
        self.scheme = spec.scheme
        self.secrets = tuple(spec.secret_values())

    def verify(self, request: SignedRequest) -> str | None:
        kind, _, encoded = request.headers.get("Authorization", "").strip().partition(" ")
        if kind.lower() != "basic" or not encoded.strip():
            raise AuthFailed("missing-credentials")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise AuthFailed("bad-credentials") from None
        user, sep, password = decoded.partition(":")
        user_ok = hmac.compare_digest(user.encode(), self.spec.username.encode())
        password_ok = constant_time_any((s.encode() for s in self.secrets), [password.encode()])
        if not (sep and user_ok and password_ok):
            raise AuthFailed("bad-credentials")
        return None


class BodyKeyVerifier(Verifier):
    """A key inside the JSON body (Google Ads lead forms send ``google_key``). It can only be
    read once the body is parsed; it is removed from what is stored."""

    def __init__(self, spec: BodyKeyAuth) -> None:
        self.spec = spec
        self.scheme = spec.scheme
        self.secrets = tuple(spec.secret_values())

    def verify(self, request: SignedRequest) -> str | None:
        return None

    def after_parse(self, body: Any) -> tuple[Any, str | None]:
        key = body.get(self.spec.field) if isinstance(body, dict) else None
        if not isinstance(key, str) or not key:
            raise AuthFailed("missing-credentials")
        if not constant_time_any((s.encode() for s in self.secrets), [key.encode()]):
            raise AuthFailed("bad-credentials")
        return {k: v for k, v in body.items() if k != self.spec.field}, None
