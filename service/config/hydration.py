"""The ``hydrate`` block of a source (or of a provider preset): fetch the person a thin
payload names from the provider's API before mapping.

Some providers' webhooks carry only ids (Meta Lead Ads: ``leadgen_id``; HubSpot: the contact's
``objectId``; a Calendly routing form: the ``submitter`` URI). A preset names the provider and
where the id is (``id``, and for Meta the page whose token reads it: ``account``); a source
adds the credentials, references like every secret (``env:NAME``, ``file:/path``)::

    hydrate:
      tokens: {"104857600": env:META_PAGE_TOKEN_ACME}   # a token per account (Meta: page id)
      token: env:META_SYSTEM_USER_TOKEN                 # every other account

What the worker fetched is kept in the submission record (``fetched``) and read by the
mapping as ``fetched``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from service.config.secretref import SecretRef, SecretReference, describe_missing

Provider = Literal["meta-lead-ads", "hubspot", "calendly"]
PROVIDER_TITLES: Mapping[str, str] = {
    "meta-lead-ads": "Meta Lead Ads",
    "hubspot": "HubSpot",
    "calendly": "Calendly",
}


class HydrateSpec(BaseModel):
    """How a source fetches the person its thin payloads name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Provider
    id: str = Field(min_length=1)
    """JMESPath over the document: the id (or URI) of the person to fetch."""
    account: str | None = None
    """JMESPath over the document: whose token reads it (Meta: the page id)."""
    when_id_missing: Literal["reject", "map"] = "reject"
    """No id in the payload: reject it (``no-person``), or map the payload as it is (a Calendly
    routing form without a booking still has its answers)."""
    if_token_missing: Literal["fail-start", "pause"] = "fail-start"  # noqa: S105
    """``fail-start``: a token that cannot be read stops the start (and fails check-config).
    ``pause``: start anyway; the source's submissions wait (paused, nothing used up) until
    the token is there at the next start."""
    token: SecretReference | None = None
    """The token for every account without its own: a HubSpot private-app token, a Calendly
    personal access token, a Meta system-user token."""
    tokens: dict[str, SecretReference] = Field(default_factory=dict)
    """A token per account (``account``): Meta's Page access token of each page id, a HubSpot
    private-app token per portal id."""
    fields: tuple[str, ...] = ()
    """What to ask for (Meta lead fields, HubSpot contact properties); empty: the usual ones."""
    base_url: str | None = None
    """The provider API's address (default: the ``INTAKE_*_API_URL`` setting)."""

    @field_validator("token", "tokens")
    @classmethod
    def _readable(cls, value: Any, info: ValidationInfo) -> Any:
        refs: list[SecretRef] = []
        if isinstance(value, SecretRef):
            refs = [value]
        elif isinstance(value, dict):
            refs = list(value.values())
        missing = [describe_missing(ref) for ref in refs if not ref.available]
        if missing and info.data.get("if_token_missing", "fail-start") == "fail-start":
            raise ValueError(
                f"cannot read {'; '.join(missing)}. Provide it, or set if_token_missing: pause "
                "to start with this source's submissions waiting for it"
            )
        return value

    @model_validator(mode="after")
    def _has_credentials(self) -> HydrateSpec:
        if self.token is None and not self.tokens:
            raise ValueError(
                "name the provider's token: token: env:NAME, or one per account (Meta: page "
                "id): tokens: {<account>: env:NAME}"
            )
        return self

    def token_for(self, account: str | None) -> SecretStr | None:
        """The token that reads ``account``'s people (its own, else ``token``), if readable."""
        ref = self.tokens.get(account) if account else None
        ref = ref or self.token
        return ref.value if ref is not None else None

    @property
    def title(self) -> str:
        return PROVIDER_TITLES[self.provider]


def inherit_preset_hydrate(data: Any, base: Mapping[str, Any] | None) -> Any:
    """Fill a source's ``hydrate`` from its preset's: the preset gives the provider and where
    the id is, the source its tokens and any override."""
    if not isinstance(data, dict) or not base:
        return data
    own = data.get("hydrate")
    if not isinstance(own, dict):
        return data
    return {**data, "hydrate": {**base, **own}}


def preset_hydrate_problem(block: Mapping[str, Any]) -> str | None:
    """Why a preset's ``hydrate`` block is unusable (presets name no tokens)."""
    if block.keys() & {"token", "tokens", "if_token_missing"}:
        return "a preset never holds tokens: each source names its own"
    if block.get("provider") not in PROVIDER_TITLES:
        return f"provider must be one of {', '.join(PROVIDER_TITLES)}"
    if not isinstance(block.get("id"), str) or not block["id"].strip():
        return "id: the JMESPath expression of the id to fetch"
    return None
