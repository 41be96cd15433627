"""Provider API clients: fetching the person a thin webhook names (hydration).

Outbound HTTP clients, like ``service/close/``: ``http`` (one GET with its in-request retries),
``meta`` (Graph API leads), ``hubspot`` (CRM contacts), ``calendly`` (invitees), ``clients``
(which one a source's ``hydrate`` block uses), ``pauses`` (the shared state in Redis: a
refused token pauses a source's delivery, a rate limit pauses its fetches). Every failure is
one of the ``FetchError`` kinds of ``service/errors.py``; the worker's hydrate step
(``service/worker/hydrate.py``) decides what it means for the submission.
"""

from service.providers.clients import Fetched, ProviderClients, request_of
from service.providers.http import Answer, ProviderHTTP
from service.providers.pauses import ProviderPauses, refresh_hydration_metrics

__all__ = [
    "Answer",
    "Fetched",
    "ProviderClients",
    "ProviderHTTP",
    "ProviderPauses",
    "refresh_hydration_metrics",
    "request_of",
]
