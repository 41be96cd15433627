"""Advanced Filtering queries (``POST /data/search/``) used to find a person's existing lead."""

from __future__ import annotations

from typing import Any

LEAD_FIELDS = ["id", "display_name", "date_created", "date_updated"]
MAX_CANDIDATES = 25


def _contact_value(related: str, field_name: str, value: str) -> dict[str, Any]:
    """Leads having a contact whose ``related`` object (email or phone) equals ``value``."""
    return {
        "type": "has_related",
        "this_object_type": "lead",
        "related_object_type": "contact",
        "related_query": {
            "type": "has_related",
            "this_object_type": "contact",
            "related_object_type": related,
            "related_query": {
                "type": "field_condition",
                "field": {
                    "type": "regular_field",
                    "object_type": related,
                    "field_name": field_name,
                },
                "condition": {"type": "text", "mode": "exact_value", "value": value},
            },
        },
    }


def leads_by_contact(kind: str, value: str) -> dict[str, Any]:
    """The search body for leads with a contact email (lower-cased) or E.164 phone."""
    if kind == "email":
        condition = _contact_value("contact_email", "email", value.lower())
    elif kind == "phone":
        condition = _contact_value("contact_phone", "phone", value)
    else:
        raise ValueError(f"unknown identity kind {kind!r}")
    return {
        "query": {
            "type": "and",
            "queries": [{"type": "object_type", "object_type": "lead"}, condition],
        },
        "_fields": {"lead": LEAD_FIELDS},
        "_limit": MAX_CANDIDATES,
        "results_limit": MAX_CANDIDATES,
        "sort": [
            {
                "field": {
                    "type": "regular_field",
                    "object_type": "lead",
                    "field_name": "date_updated",
                },
                "direction": "desc",
            }
        ],
    }
