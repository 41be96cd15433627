"""Advanced Filtering queries (``POST /data/search/``) used to find a person's existing lead.

One query per person: leads having a contact with the person's email (lower-cased) *or* their
E.164 phone, newest update first, with the leads' contacts (their emails and phones) in
``_fields``, so the caller sees which of the two each lead matched and decides the priority
itself (``service/worker/lookup.py``).
"""

from __future__ import annotations

from typing import Any

LEAD_FIELDS = ["id", "display_name", "date_created", "date_updated", "contacts"]
"""The fields of each lead found: what choosing among several needs, and the contacts (with
their emails and phones) that say whether the email or the phone matched."""
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


def leads_of_person(email: str | None, phone: str | None) -> dict[str, Any]:
    """The search body for leads with a contact having this email or this E.164 phone."""
    conditions = []
    if email:
        conditions.append(_contact_value("contact_email", "email", email.lower()))
    if phone:
        conditions.append(_contact_value("contact_phone", "phone", phone))
    if not conditions:
        raise ValueError("a person's search needs an email or a phone")
    condition = conditions[0] if len(conditions) == 1 else {"type": "or", "queries": conditions}
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
