"""The ``auth`` block of a source (or of a provider preset): which scheme proves the sender.

Every scheme takes ``secrets``: one or more references (``env:NAME``, ``file:/path``), several
while a secret is rotated. A preset's ``auth`` names the scheme and its headers; a source that
uses the preset adds its ``secrets`` (and may override any other key). Provider names
(``github``, ``typeform``, ``stripe``...) are the generic schemes with the provider's headers
and encodings filled in.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails

from service.config.secretref import SecretRef, SecretReference, describe_missing

TOLERANCE = Field(default=300, ge=1, le=24 * 3600)


def readable(refs: tuple[SecretRef, ...], info: ValidationInfo) -> tuple[SecretRef, ...]:
    """``refs`` when each can be read, or when the source starts without them anyway."""
    missing = [describe_missing(ref) for ref in refs if not ref.available]
    if missing and info.data.get("if_secret_missing", "fail-start") == "fail-start":
        raise ValueError(
            f"cannot read {'; '.join(missing)}. Provide it, or set if_secret_missing: "
            "refuse-requests to start with this source closed (401)"
        )
    return refs


class _AuthBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    if_secret_missing: Literal["fail-start", "refuse-requests"] = "fail-start"  # noqa: S105
    """``fail-start``: a secret that cannot be read stops the start (and fails check-config).
    ``refuse-requests``: start anyway, with this source answering 401 until the secret is
    there at the next start (for example configurations and development machines)."""
    secrets: tuple[SecretReference, ...] = ()

    @field_validator("secrets")
    @classmethod
    def _readable(cls, refs: tuple[SecretRef, ...], info: ValidationInfo) -> tuple[SecretRef, ...]:
        return readable(refs, info)

    def secret_values(self) -> list[str]:
        return [ref.value.get_secret_value() for ref in self.secrets if ref.value is not None]


class StandardWebhooksAuth(_AuthBase):
    """https://www.standardwebhooks.com: ``webhook-id``, ``webhook-timestamp`` and
    ``webhook-signature: v1,<base64> v1,<base64>``; secrets are ``whsec_<base64 key>``."""

    scheme: Literal["standard-webhooks"]
    header_prefix: str = Field(default="webhook", pattern=r"^[A-Za-z0-9-]+$")
    """``svix`` reads ``svix-id``/``svix-timestamp``/``svix-signature`` (Svix senders)."""
    tolerance_seconds: int = TOLERANCE

    @model_validator(mode="after")
    def _keys_decode(self) -> StandardWebhooksAuth:
        for ref in self.secrets:
            if ref.value is not None and standard_key(ref.value.get_secret_value()) is None:
                raise ValueError(f"secrets: {ref.ref} is not a whsec_<base64> signing secret")
        return self


def standard_key(secret: str) -> bytes | None:
    """The HMAC key of a Standard Webhooks secret (``whsec_`` + base64), or None."""
    text = secret.strip().removeprefix("whsec_")
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return key or None


HMAC_PROVIDERS: Mapping[str, Mapping[str, Any]] = {
    "github": {
        "header": "X-Hub-Signature-256",
        "prefix": "sha256=",
        "encoding": "hex",
        "id_header": "X-GitHub-Delivery",
    },
    "typeform": {"header": "Typeform-Signature", "prefix": "sha256=", "encoding": "base64"},
    "tally": {"header": "Tally-Signature", "encoding": "base64"},
    "calcom": {"header": "X-Cal-Signature-256", "encoding": "hex"},
    "webflow": {
        "header": "X-Webflow-Signature",
        "encoding": "hex",
        "signed": "timestamp+body",
        "timestamp_header": "X-Webflow-Timestamp",
        "timestamp_unit": "ms",
        "separator": ":",
    },
}


class HmacAuth(_AuthBase):
    """An HMAC of the raw body (or of timestamp + separator + body) in one header."""

    scheme: Literal["hmac", "github", "typeform", "tally", "calcom", "webflow"]
    header: str = ""
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    """Text before the signature, e.g. ``sha256=``. Several signatures may be sent in one
    header, separated by spaces or commas (each with the prefix)."""
    signed: Literal["body", "timestamp+body"] = "body"
    timestamp_header: str | None = None
    timestamp_unit: Literal["s", "ms"] = "s"
    separator: str = "."
    tolerance_seconds: int = TOLERANCE
    id_header: str | None = None
    """A header carrying the sender's event id (delivery dedup), e.g. ``X-GitHub-Delivery``."""

    @model_validator(mode="before")
    @classmethod
    def _provider_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("scheme") in HMAC_PROVIDERS:
            return {**HMAC_PROVIDERS[data["scheme"]], **data}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> HmacAuth:
        if not self.header:
            raise ValueError("header: name the header that carries the signature")
        if self.signed == "timestamp+body" and not self.timestamp_header:
            raise ValueError("timestamp_header: required with signed: timestamp+body")
        if self.signed == "body" and self.timestamp_header:
            raise ValueError(
                "timestamp_header: only read with signed: timestamp+body (an unsigned "
                "timestamp proves nothing)"
            )
        return self


TIMESTAMPED_PROVIDERS: Mapping[str, Mapping[str, Any]] = {
    "stripe": {"header": "Stripe-Signature", "id_field": "id"},
    "calendly": {"header": "Calendly-Webhook-Signature", "tolerance_seconds": 180},
}


class TimestampedAuth(_AuthBase):
    """``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` (Stripe, Calendly); several
    ``v1`` values are allowed (the sender rotating its secret)."""

    scheme: Literal["stripe", "calendly"]
    header: str = ""
    tolerance_seconds: int = TOLERANCE
    id_field: str | None = None
    """A top-level field of the JSON body holding the event id (Stripe: ``id``)."""

    @model_validator(mode="before")
    @classmethod
    def _provider_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("scheme") in TIMESTAMPED_PROVIDERS:
            return {**TIMESTAMPED_PROVIDERS[data["scheme"]], **data}
        return data


HubSpotVersion = Literal["v1", "v2", "v3"]


class HubSpotAuth(_AuthBase):
    """HubSpot's request signatures, every version whose headers a request carries checked:

    - v1: ``X-HubSpot-Signature`` = hex SHA-256 of client secret + body (no timestamp);
    - v2: the same header = hex SHA-256 of client secret + method + URL + body;
    - v3: ``X-HubSpot-Signature-v3`` = base64 HMAC-SHA256 of method + URL + body + timestamp
      (``X-HubSpot-Request-Timestamp``, milliseconds, within ``tolerance_seconds``).

    ``hubspot`` accepts all three (app webhooks sign with v1); ``hubspot-v3`` only v3.
    """

    scheme: Literal["hubspot", "hubspot-v3"]
    versions: tuple[HubSpotVersion, ...] = ()
    """The versions accepted (default: v1, v2 and v3 for ``hubspot``, v3 for ``hubspot-v3``)."""
    header: str = "X-HubSpot-Signature-v3"
    timestamp_header: str = "X-HubSpot-Request-Timestamp"
    legacy_header: str = "X-HubSpot-Signature"
    """v1 and v2's signature; ``X-HubSpot-Signature-Version`` says which (v1 when absent)."""
    version_header: str = "X-HubSpot-Signature-Version"
    tolerance_seconds: int = TOLERANCE
    url: str | None = None
    """The endpoint's URL as HubSpot calls it (``https://intake.example.com/hooks/hubspot``);
    needed behind a proxy or load balancer, where the receiver sees another scheme or host.
    The request's query string is added to it."""

    @model_validator(mode="after")
    def _default_versions(self) -> HubSpotAuth:
        if not self.versions:
            versions: tuple[HubSpotVersion, ...] = (
                ("v3",) if self.scheme == "hubspot-v3" else ("v1", "v2", "v3")
            )
            object.__setattr__(self, "versions", versions)
        return self


class MetaAuth(_AuthBase):
    """Meta (Facebook / Instagram) webhooks: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of
    the body>`` keyed with the App Secret (``secrets``: several while it is rotated), and the
    subscription handshake: ``GET /hooks/<source>?hub.mode=subscribe&hub.verify_token=...&
    hub.challenge=...`` is answered with the challenge when the token is one of
    ``verify_tokens``."""

    scheme: Literal["meta"]
    header: str = "X-Hub-Signature-256"
    verify_tokens: tuple[SecretReference, ...] = ()
    """The Verify Token(s) set in the app's webhook settings (references, like secrets)."""

    @field_validator("verify_tokens")
    @classmethod
    def _tokens_readable(
        cls, refs: tuple[SecretRef, ...], info: ValidationInfo
    ) -> tuple[SecretRef, ...]:
        return readable(refs, info)

    def verify_token_values(self) -> list[str]:
        return [r.value.get_secret_value() for r in self.verify_tokens if r.value is not None]


class NetlifyAuth(_AuthBase):
    """Netlify: a JWS (HS256) whose claims are ``iss: netlify`` and the body's SHA-256."""

    scheme: Literal["netlify"]
    header: str = "X-Webhook-Signature"
    issuer: str = "netlify"


class BearerAuth(_AuthBase):
    """A shared token: ``Authorization: Bearer <token>``, another header holding the bare
    token, or (for senders that cannot set headers) a query parameter."""

    scheme: Literal["bearer"]
    header: str = "Authorization"
    query_param: str | None = None
    """Read the token from this query parameter instead (it is never stored)."""


class BasicAuth(_AuthBase):
    """HTTP Basic: ``username`` and one of ``secrets`` as the password."""

    scheme: Literal["basic"]
    username: str = Field(min_length=1)


class BodyKeyAuth(_AuthBase):
    """A shared key inside the JSON body (Google Ads' ``google_key``); removed before storing."""

    scheme: Literal["body-key"]
    field: str = "google_key"


_FAMILIES: Mapping[str, str] = {
    "standard-webhooks": "standard-webhooks",
    **{name: "hmac" for name in ("hmac", *HMAC_PROVIDERS)},
    **{name: "timestamped" for name in TIMESTAMPED_PROVIDERS},
    "hubspot-v3": "hubspot-v3",
    "hubspot": "hubspot-v3",
    "meta": "meta",
    "netlify": "netlify",
    "bearer": "bearer",
    "basic": "basic",
    "body-key": "body-key",
}
SCHEMES: tuple[str, ...] = tuple(_FAMILIES)


def _family(value: Any) -> str | None:
    scheme = value.get("scheme") if isinstance(value, dict) else getattr(value, "scheme", None)
    return _FAMILIES.get(scheme) if isinstance(scheme, str) else None


AuthSpec = Annotated[
    Annotated[StandardWebhooksAuth, Tag("standard-webhooks")]
    | Annotated[HmacAuth, Tag("hmac")]
    | Annotated[TimestampedAuth, Tag("timestamped")]
    | Annotated[HubSpotAuth, Tag("hubspot-v3")]
    | Annotated[MetaAuth, Tag("meta")]
    | Annotated[NetlifyAuth, Tag("netlify")]
    | Annotated[BearerAuth, Tag("bearer")]
    | Annotated[BasicAuth, Tag("basic")]
    | Annotated[BodyKeyAuth, Tag("body-key")],
    Discriminator(
        _family,
        custom_error_type="auth_scheme",
        custom_error_message=(
            "auth needs a scheme (or a preset that declares one), one of: " + ", ".join(SCHEMES)
        ),
    ),
]
"""One source's signature or token scheme, chosen by ``scheme``."""


def validate_source_auth(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Validate a source's ``auth``: errors name ``auth.<key>`` (not the union's internal
    tag), and a source must name at least one secret."""
    try:
        auth = handler(value)
    except ValidationError as exc:
        raise _without_tags(exc) from None
    if auth is not None and not auth.secrets:
        raise ValueError(
            "auth.secrets: name at least one secret (env:NAME or file:/path); several while "
            "rotating"
        )
    return auth


def _without_tags(exc: ValidationError) -> ValidationError:
    tags = set(_FAMILIES.values())
    errors = exc.errors(include_url=False)
    if not all(err["loc"] and err["loc"][0] in tags for err in errors):
        return exc
    details = [
        InitErrorDetails(
            type=err["type"],
            loc=err["loc"][1:],
            input=err["input"],
            ctx=err.get("ctx", {}),
        )
        for err in errors
    ]
    return ValidationError.from_exception_data(exc.title, details)


def preset_auth_problem(block: Mapping[str, Any]) -> str | None:
    """Why a preset's ``auth`` block is unusable (presets name schemes, never secrets)."""
    if "secrets" in block or "if_secret_missing" in block:
        return "a preset never holds secrets: each source names its own"
    return None
