"""Which provider a source's ``hydrate`` block fetches from, and what it fetched."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from service.config.hydration import HydrateSpec
from service.providers import calendly, hubspot, meta
from service.providers.http import ProviderHTTP
from service.times import iso


@dataclass(frozen=True, slots=True)
class Fetched:
    """One person fetched from a provider: what was asked (no token) and what came back."""

    provider: str
    request: str
    at: float
    body: Any
    pause: float = 0.0
    """Seconds the source's fetches should pause now (the provider's usage is high)."""

    def to_record(self) -> dict[str, Any]:
        """As the submission record keeps it (``Record.fetched``)."""
        return {
            "provider": self.provider,
            "request": self.request,
            "at": iso(self.at),
            "body": self.body,
        }


class ProviderClients:
    """The provider clients, on one shared HTTP session."""

    def __init__(
        self, http: ProviderHTTP, *, meta_url: str, hubspot_url: str, calendly_url: str
    ) -> None:
        self.http = http
        self.urls = {"meta-lead-ads": meta_url, "hubspot": hubspot_url, "calendly": calendly_url}

    def base_url(self, spec: HydrateSpec) -> str:
        return (spec.base_url or self.urls[spec.provider]).rstrip("/")

    async def fetch(self, spec: HydrateSpec, thin_id: str, token: SecretStr) -> Fetched:
        """Fetch the person ``thin_id`` names; a FetchError kind when that fails."""
        base = self.base_url(spec)
        secret = token.get_secret_value()
        if spec.provider == "meta-lead-ads":
            body, pause, shown = await meta.fetch_lead(
                self.http, base, thin_id, secret, spec.fields
            )
        elif spec.provider == "hubspot":
            body, pause, shown = await hubspot.fetch_contact(
                self.http, base, thin_id, secret, spec.fields
            )
        else:
            body, pause, shown = await calendly.fetch_invitee(self.http, base, thin_id, secret)
        return Fetched(spec.provider, shown, time.time(), body, pause)


def request_of(provider: str, base_url: str, thin_id: str, fields: Sequence[str] = ()) -> str:
    """The request a fetch of ``thin_id`` makes (without the token), for previews."""
    base = base_url.rstrip("/")
    if provider == "meta-lead-ads":
        return f"GET {base}/{thin_id}?fields={','.join(fields or meta.DEFAULT_FIELDS)}"
    if provider == "hubspot":
        wanted = ",".join(fields or hubspot.DEFAULT_PROPERTIES)
        return f"GET {base}/crm/v3/objects/contacts/{thin_id}?properties={wanted}"
    url = calendly.invitee_url(thin_id, base)
    return f"GET {url}" if url else f"nothing: {thin_id!r} is not a Calendly invitee URI"
