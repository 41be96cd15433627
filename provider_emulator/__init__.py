"""A built-in emulator of the provider APIs hydration reads, for tests and ``make run``.

A sibling of ``service/`` (and of ``close_emulator/``) that imports nothing from it (an
import-linter contract keeps it so): it answers as the providers document, from fixtures,
with their error and rate-limit answers, so the service's clients are tested against the
providers' behaviour rather than against their own assumptions.

- Meta's Graph API: ``GET /meta/<version>/<leadgen_id>?access_token=...&fields=...``
- HubSpot's CRM API: ``GET /hubspot/crm/v3/objects/contacts/<id>?properties=...`` (Bearer)
- Calendly's API: ``GET /calendly/scheduled_events/<uuid>/invitees/<uuid>`` (Bearer)

``state.py`` holds the fixtures, tokens, faults and the request log; ``app.py`` the routes
and the ``/_emulator/`` control routes (no authentication: local use only).
"""

from provider_emulator.app import PROVIDER_STATE, create_provider_emulator_app
from provider_emulator.state import ProviderFault, ProviderOptions, ProviderState

__all__ = [
    "PROVIDER_STATE",
    "ProviderFault",
    "ProviderOptions",
    "ProviderState",
    "create_provider_emulator_app",
]
