"""Signature schemes: HMACs over the raw body (and what else the sender signed).

Every verifier tries every configured secret against every signature the request carries
(rotation on both sides), in constant time, and checks the timestamp window where the scheme
has a timestamp. Verification never parses the body, except that the Stripe-style scheme reads
the event id from the already verified, parsed body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any

from service.config.auth import (
    HmacAuth,
    HubSpotAuth,
    MetaAuth,
    NetlifyAuth,
    StandardWebhooksAuth,
    TimestampedAuth,
    standard_key,
)
from service.receiver.auth.base import (
    AuthFailed,
    SignedRequest,
    Verifier,
    check_window,
    constant_time_any,
)

_SPLIT = re.compile(r"[\s,]+")


_IPAD = bytes(byte ^ 0x36 for byte in range(256))
_OPAD = bytes(byte ^ 0x5C for byte in range(256))
_KEYED: dict[tuple[str, bytes], tuple[Any, Any]] = {}
"""Each (algorithm, key) signed with so far: the hash states after its inner and outer padded
key blocks (a source's few secrets; emptied past :data:`_KEYED_MAX`)."""
_KEYED_MAX = 256


def _pads(algorithm: str, key: bytes) -> tuple[Any, Any]:
    block = hashlib.new(algorithm).block_size
    if len(key) > block:
        key = hashlib.new(algorithm, key).digest()
    key = key.ljust(block, b"\0")
    return hashlib.new(algorithm, key.translate(_IPAD)), hashlib.new(
        algorithm, key.translate(_OPAD)
    )


def _sign(algorithm: str, key: bytes, *message: bytes) -> bytes:
    """HMAC (RFC 2104) of the parts of ``message`` joined, as ``hmac.digest`` gives it, with
    the key's padded blocks hashed once per key rather than on every request."""
    pads = _KEYED.get((algorithm, key))
    if pads is None:
        if len(_KEYED) >= _KEYED_MAX:
            _KEYED.clear()
        pads = _KEYED[(algorithm, key)] = _pads(algorithm, key)
    inner = pads[0].copy()
    for part in message:
        inner.update(part)
    outer = pads[1].copy()
    outer.update(inner.digest())
    return outer.digest()  # type: ignore[no-any-return]


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _hex(text: str) -> bytes | None:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def _header(request: SignedRequest, name: str) -> str:
    value = request.headers.get(name, "").strip()
    if not value:
        raise AuthFailed("missing-signature")
    return value


class StandardWebhooksVerifier(Verifier):
    """``<prefix>-id``, ``<prefix>-timestamp`` (seconds), ``<prefix>-signature`` with one or
    more space-separated ``v1,<base64>``; signed content ``id.timestamp.body``."""

    def __init__(self, spec: StandardWebhooksAuth) -> None:
        self.spec = spec
        self.scheme = spec.scheme
        self.secrets = tuple(spec.secret_values())
        self.keys = [key for key in (standard_key(s) for s in self.secrets) if key]
        prefix = spec.header_prefix
        self._names = (f"{prefix}-signature", f"{prefix}-id", f"{prefix}-timestamp")

    def verify(self, request: SignedRequest) -> str | None:
        signature_header, id_header, timestamp_header = self._names
        signatures = _header(request, signature_header)
        msg_id = request.headers.get(id_header, "").strip()
        stamp = request.headers.get(timestamp_header, "").strip()
        if not msg_id:
            raise AuthFailed("malformed-signature")
        if not stamp:
            raise AuthFailed("missing-timestamp")
        given = []
        for item in signatures.split():
            version, _, value = item.partition(",")
            decoded = _b64(value) if version == "v1" else None
            if decoded:
                given.append(decoded)
        if not given:
            raise AuthFailed("malformed-signature")
        signed = f"{msg_id}.{stamp}.".encode()
        expected = [_sign("sha256", key, signed, request.body) for key in self.keys]
        if not constant_time_any(expected, given):
            raise AuthFailed("bad-signature")
        check_window(stamp, request.now, self.spec.tolerance_seconds)
        return msg_id


class HmacVerifier(Verifier):
    """One header with ``prefix + hex|base64(HMAC(secret, body))`` (or of timestamp +
    separator + body); GitHub, Typeform, Tally, Cal.com, Webflow and any ``hmac`` sender."""

    def __init__(self, spec: HmacAuth) -> None:
        self.spec = spec
        self.scheme = spec.scheme
        self.secrets = tuple(spec.secret_values())

    def _given(self, header: str) -> list[bytes]:
        decode = _hex if self.spec.encoding == "hex" else _b64
        given = []
        for item in _SPLIT.split(header):
            if not item.startswith(self.spec.prefix):
                continue
            value = decode(item[len(self.spec.prefix) :])
            if value:
                given.append(value)
        return given

    def verify(self, request: SignedRequest) -> str | None:
        spec = self.spec
        given = self._given(_header(request, spec.header))
        if not given:
            raise AuthFailed("malformed-signature")
        message = request.body
        stamp = None
        if spec.signed == "timestamp+body":
            stamp = request.headers.get(spec.timestamp_header or "", "").strip()
            if not stamp:
                raise AuthFailed("missing-timestamp")
            message = f"{stamp}{spec.separator}".encode() + request.body
        expected = [_sign(spec.algorithm, s.encode(), message) for s in self.secrets]
        if not constant_time_any(expected, given):
            raise AuthFailed("bad-signature")
        if stamp is not None:
            check_window(
                stamp, request.now, spec.tolerance_seconds, millis=spec.timestamp_unit == "ms"
            )
        if spec.id_header:
            return request.headers.get(spec.id_header, "").strip() or None
        return None


class TimestampedVerifier(Verifier):
    """``t=<unix>,v1=<hex>[,v1=<hex>...]`` over ``<t>.<body>`` (Stripe, Calendly)."""

    def __init__(self, spec: TimestampedAuth) -> None:
        self.spec = spec
        self.scheme = spec.scheme
        self.secrets = tuple(spec.secret_values())

    def verify(self, request: SignedRequest) -> str | None:
        stamp: str | None = None
        given: list[bytes] = []
        for item in _header(request, self.spec.header).split(","):
            key, _, value = item.strip().partition("=")
            if key == "t" and stamp is None:
                stamp = value
            elif key == "v1" and (decoded := _hex(value)):
                given.append(decoded)
        if stamp is None or not given:
            raise AuthFailed("malformed-signature")
        message = f"{stamp}.".encode() + request.body
        expected = [_sign("sha256", s.encode(), message) for s in self.secrets]
        if not constant_time_any(expected, given):
            raise AuthFailed("bad-signature")
        check_window(stamp, request.now, self.spec.tolerance_seconds)
        return None

    def after_parse(self, body: Any) -> tuple[Any, str | None]:
        field = self.spec.id_field
        value = body.get(field) if field and isinstance(body, dict) else None
        return body, value if isinstance(value, str) and value else None


# HubSpot decodes these escapes in the URI before signing it.
_HUBSPOT_DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_HUBSPOT_ESCAPE = re.compile("|".join(_HUBSPOT_DECODED), re.IGNORECASE)


def hubspot_uri(url: str) -> str:
    return _HUBSPOT_ESCAPE.sub(lambda m: _HUBSPOT_DECODED[m.group(0).upper()], url)


class HubSpotVerifier(Verifier):
    """HubSpot v1, v2 and v3 (``HubSpotAuth``): every accepted version whose headers the
    request carries must verify (v3 first); a request with none of them is refused."""

    signs_url = True

    def __init__(self, spec: HubSpotAuth) -> None:
        self.spec = spec
        self.scheme = spec.scheme
        self.secrets = tuple(spec.secret_values())

    def _url(self, request: SignedRequest) -> str:
        url = request.url
        if self.spec.url:
            _, query_sep, query = url.partition("?")
            url = self.spec.url + (f"?{query}" if query_sep else "")
        return url

    def verify(self, request: SignedRequest) -> str | None:
        spec = self.spec
        checked = False
        if "v3" in spec.versions and request.headers.get(spec.header, "").strip():
            self._v3(request)
            checked = True
        legacy = request.headers.get(spec.legacy_header, "").strip()
        version = request.headers.get(spec.version_header, "").strip().lower() or "v1"
        if legacy and version in spec.versions and version in ("v1", "v2"):
            self._v1_v2(request, legacy, version)
            checked = True
        if not checked:
            raise AuthFailed("missing-signature")
        return None

    def _v3(self, request: SignedRequest) -> None:
        signature = _b64(_header(request, self.spec.header))
        if not signature:
            raise AuthFailed("malformed-signature")
        stamp = request.headers.get(self.spec.timestamp_header, "").strip()
        if not stamp:
            raise AuthFailed("missing-timestamp")
        message = (
            request.method.upper().encode()
            + hubspot_uri(self._url(request)).encode()
            + request.body
            + stamp.encode()
        )
        expected = [_sign("sha256", s.encode(), message) for s in self.secrets]
        if not constant_time_any(expected, [signature]):
            raise AuthFailed("bad-signature")
        check_window(stamp, request.now, self.spec.tolerance_seconds, millis=True)

    def _v1_v2(self, request: SignedRequest, header: str, version: str) -> None:
        given = _hex(header)
        if not given:
            raise AuthFailed("malformed-signature")
        signed = request.body
        if version == "v2":
            signed = request.method.upper().encode() + self._url(request).encode() + request.body
        expected = [hashlib.sha256(s.encode() + signed).digest() for s in self.secrets]
        if not constant_time_any(expected, [given]):
            raise AuthFailed("bad-signature")


class MetaVerifier(Verifier):
    """Meta's ``X-Hub-Signature-256: sha256=<hex>`` (HMAC of the body with the App Secret)
    and its subscription handshake (``hub.mode``, ``hub.verify_token``, ``hub.challenge``)."""

    handshakes = True

    def __init__(self, spec: MetaAuth) -> None:
        self.spec = spec
        self.scheme = spec.scheme
        self.secrets = tuple(spec.secret_values())
        self.verify_tokens = tuple(spec.verify_token_values())

    def verify(self, request: SignedRequest) -> str | None:
        algorithm, _, value = _header(request, self.spec.header).partition("=")
        given = _hex(value.strip())
        if algorithm.strip().lower() != "sha256" or not given:
            raise AuthFailed("malformed-signature")
        expected = [_sign("sha256", s.encode(), request.body) for s in self.secrets]
        if not constant_time_any(expected, [given]):
            raise AuthFailed("bad-signature")
        return None

    def handshake(self, query: Mapping[str, str]) -> str:
        token = query.get("hub.verify_token", "")
        challenge = query.get("hub.challenge", "")
        if query.get("hub.mode") != "subscribe" or not token or not challenge:
            raise AuthFailed("missing-credentials")
        known = [t.encode() for t in self.verify_tokens]
        if not constant_time_any(known, [token.encode()]):
            raise AuthFailed("bad-credentials")
        return challenge


def _b64url_json(segment: str) -> Any:
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    return json.loads(raw)


class NetlifyVerifier(Verifier):
    """``X-Webhook-Signature``: an HS256 JWS with claims ``iss`` and ``sha256`` (of the body)."""

    def __init__(self, spec: NetlifyAuth) -> None:
        self.spec = spec
        self.scheme = spec.scheme
        self.secrets = tuple(spec.secret_values())

    def verify(self, request: SignedRequest) -> str | None:
        token = _header(request, self.spec.header)
        parts = token.split(".")
        if len(parts) != 3:
            raise AuthFailed("malformed-signature")
        try:
            header, claims = _b64url_json(parts[0]), _b64url_json(parts[1])
            signature = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
        except (binascii.Error, ValueError):
            raise AuthFailed("malformed-signature") from None
        if not isinstance(header, dict) or header.get("alg") != "HS256":
            raise AuthFailed("malformed-signature")
        signed = f"{parts[0]}.{parts[1]}".encode()
        expected = [_sign("sha256", s.encode(), signed) for s in self.secrets]
        if not constant_time_any(expected, [signature]):
            raise AuthFailed("bad-signature")
        digest = hashlib.sha256(request.body).hexdigest().encode()
        claimed = str(claims.get("sha256", "")) if isinstance(claims, dict) else ""
        issuer = claims.get("iss") if isinstance(claims, dict) else None
        if issuer != self.spec.issuer or not hmac.compare_digest(digest, claimed.encode()):
            raise AuthFailed("bad-signature")
        return None
