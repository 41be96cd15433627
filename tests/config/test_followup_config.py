"""The shape of a source's ``followup:`` section, checked when the sources file loads: every
problem named with its key path, before anything is resolved against Close."""

from __future__ import annotations

from typing import Any

import pytest

from service.config.followup import duration_seconds
from service.config.sources import validate_sources


def issues_of(followup: dict[str, Any]) -> dict[str, str]:
    source = {"kind": "webhook", "extract": {"email": "body.email"}, "followup": followup}
    _, issues = validate_sources({"sources": {"web": source}})
    return {issue.path: issue.message for issue in issues}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (0, 0.0),
        ("90", 90.0),
        ("30s", 30.0),
        ("15m", 900.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1.5h", 5400.0),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert duration_seconds(text) == seconds


def test_a_valid_section_has_no_issue() -> None:
    assert (
        issues_of(
            {
                "on_match": True,
                "owner": {
                    "field": "Lead Owner",
                    "rules": [{"if": "address.country == 'DE'", "pool": "dach"}],
                    "user": "ann@acme.example",
                    "pools": {
                        "dach": {
                            "users": ["bo@acme.example", {"user": "cy@acme.example", "weight": 3}]
                        }
                    },
                },
                "task": {"text": "Call ${full_name} (${address.city}): ${message}", "due_in": "2h"},
                "sequence": {"name": "Nurture", "sender": "ann@acme.example"},
                "update": {
                    "fields": {"Plan": "append"},
                    "status": [{"from": ["Lost"], "to": "New"}],
                },
                "opportunity": {"value": "to_number(extra.budget)", "value_period": "annual"},
                "activity": {"type": "Web Form", "fields": {"Page": "attribution.page_url"}},
            }
        )
        == {}
    )


def test_every_problem_has_its_key_path() -> None:
    found = issues_of(
        {
            "owner": {"field": "Owner", "pool": "nope", "pools": {"a": {}}},
            "task": {"text": "Hi ${nick}", "due_in": "soon", "type": "email"},
            "sequence": {"name": ""},
            "update": {"fields": {"Plan": "replace"}},
            "opportunity": {"value": "sum(", "confidence": 150, "policy": "sometimes"},
            "activity": {"type": "Form", "fields": {"Page": "page"}},
            "extra": 1,
        }
    )
    prefix = "sources.web.followup"
    assert set(found) >= {
        f"{prefix}.owner.pools.a",
        f"{prefix}.task.text",
        f"{prefix}.task.due_in",
        f"{prefix}.task.type",
        f"{prefix}.sequence.name",
        f"{prefix}.update.fields.Plan",
        f"{prefix}.opportunity.value",
        f"{prefix}.opportunity.confidence",
        f"{prefix}.opportunity.policy",
        f"{prefix}.activity.fields",
        f"{prefix}.extra",
    }, found
    assert "${nick}" in found[f"{prefix}.task.text"]
    assert "either 'users' or 'group'" in found[f"{prefix}.owner.pools.a"]


def test_naming_the_owner_needs_an_owner_section_and_pools_must_exist() -> None:
    found = issues_of({"task": {"text": "Call"}, "sequence": {"name": "Nurture"}})
    assert "task.assign_to, sequence.sender name the owner" in found["sources.web.followup"]
    found = issues_of({"owner": {"field": "Owner", "pool": "inbound"}})
    assert "unknown pool(s) inbound" in found["sources.web.followup.owner"]
