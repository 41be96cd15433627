"""The document extract expressions read: a submission's envelope as JMESPath input.

``root_document`` builds it whole (``body``, ``fetched``, ``headers``, ``query``,
``client_ip``, ``received_at``, ``source``, ``submission_id``) or only the parts an expression
reads (``parts_read``, from ``jmes.top_fields``): the door's check builds only those.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from service.envelope import Envelope
from service.mapping.note import iso_utc
from service.mapping.spec import DOCUMENT_ROOTS
from service.mapping.template import Expr

_PARTS: dict[str, Callable[[Envelope], Any]] = {
    "body": lambda envelope: envelope.body,
    "fetched": lambda envelope: envelope.fetched,
    "headers": lambda envelope: {str(k).lower(): v for k, v in envelope.headers.items()},
    "query": lambda envelope: dict(envelope.query),
    "client_ip": lambda envelope: envelope.client_ip,
    "received_at": lambda envelope: iso_utc(envelope.received_at),
    "source": lambda envelope: envelope.source,
    "submission_id": lambda envelope: envelope.id,
}


def root_document(envelope: Envelope, parts: tuple[str, ...] | None = None) -> dict[str, Any]:
    """What extract expressions read: body, fetched (hydration), headers, query, client_ip,
    received_at, source, submission_id. ``parts``: only those (the others are left out; an
    expression that reads no other gives the same result)."""
    if parts is not None:
        return {part: _PARTS[part](envelope) for part in parts}
    return {
        "body": envelope.body,
        "fetched": envelope.fetched,
        "headers": {str(k).lower(): v for k, v in envelope.headers.items()},
        "query": dict(envelope.query),
        "client_ip": envelope.client_ip,
        "received_at": iso_utc(envelope.received_at),
        "source": envelope.source,
        "submission_id": envelope.id,
    }


def parts_of(fields: frozenset[str] | None) -> tuple[str, ...] | None:
    """The document's parts among ``fields`` (the top-level fields read), in document order;
    None (the whole document) when ``fields`` is None."""
    if fields is None:
        return None
    return tuple(part for part in DOCUMENT_ROOTS if part in fields)


def parts_read(expr: Expr) -> tuple[str, ...] | None:
    """The document's parts ``expr`` reads (None: the whole document)."""
    return parts_of(expr.reads)
