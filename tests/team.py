"""A sales team for the follow-up tests: four reps and a deactivated one, a group, a sequence,
a pipeline and a custom activity type, as the emulator's organisation (also written as an
organisation file for the process-level tests), and a source whose follow-ups use all of it."""

from __future__ import annotations

import copy
from typing import Any

from close_emulator import EmulatorState
from close_emulator.org import parse_org

REPS = [f"rep{n}@team.example" for n in range(1, 5)]
GONE = "gone@team.example"
MANAGER = "manager@team.example"

ORG: dict[str, Any] = {
    "organization": {"name": "Team (emulated)"},
    "users": [
        {"email": "api@team.example", "name": "Api User"},
        *({"email": email, "name": f"Rep {n}"} for n, email in enumerate(REPS, 1)),
        {"email": GONE, "name": "Gone Rep", "active": False},
        {"email": MANAGER, "name": "The Manager"},
    ],
    "custom_fields": {
        "lead": [
            {"name": "Lead Owner", "type": "user"},
            {"name": "Plan", "type": "choices", "choices": ["Pro", "Team", "Other"]},
            {
                "name": "Interests",
                "type": "choices",
                "choices": ["Product", "Pricing", "Support"],
                "accepts_multiple_values": True,
            },
            {"name": "External ID", "type": "text"},
        ],
        "contact": [],
    },
    "groups": [{"name": "Inbound Reps", "members": [*REPS, GONE]}],
    "sequences": [{"name": "Inbound nurture"}],
    "pipelines": [
        {
            "name": "Sales",
            "statuses": [
                {"label": "Demo requested"},
                {"label": "Won", "type": "won"},
                {"label": "Lost", "type": "lost"},
            ],
        },
        {"name": "Partners", "statuses": [{"label": "New partner"}]},
    ],
    "custom_activity_types": [
        {
            "name": "Web Form Submission",
            "fields": [
                {"name": "Source", "required": True},
                {"name": "Page"},
                {"name": "UTM Campaign"},
                {"name": "Message"},
                {"name": "Plan"},
                {"name": "Submission ID"},
            ],
        }
    ],
}


def use_team(state: EmulatorState, **more: Any) -> None:
    """Give the emulator the team's organisation (users, fields, sequences...)."""
    state.configure(**parse_org(copy.deepcopy(ORG)), **more)


def user_id(state: EmulatorState, email: str) -> str:
    return next(u.id for u in state.options.users if u.email == email)


EXTRACT = {
    "email": "body.email",
    "full_name": "body.name",
    "phone": "body.phone",
    "company": "body.company",
    "message": "body.message",
    "address.country": "body.country",
    "attribution.page_url": "body.page",
    "attribution.utm_campaign": "body.utm_campaign",
    "extra.plan": "body.plan",
    "extra.budget": "body.budget",
    "extra.interest": "body.interest",
    "extra.external_id": "body.external_id",
}


def followup_source(**changes: Any) -> dict[str, Any]:
    """A webhook source with the whole follow-up: owner round-robin over the group, a call
    task, the sequence, an opportunity, the submission as a custom activity."""
    followup: dict[str, Any] = {
        "owner": {
            "field": "Lead Owner",
            "rules": [{"if": "address.country == 'DE'", "user": MANAGER}],
            "pool": "inbound",
            "pools": {"inbound": {"group": "Inbound Reps"}},
            "default": MANAGER,
        },
        "task": {"text": "Call ${full_name}: ${message}", "due_in": "15m"},
        "sequence": {"name": "Inbound nurture"},
        "opportunity": {
            "pipeline": "Sales",
            "status": "Demo requested",
            "value": "extra.budget",
            "value_period": "monthly",
            "note": "Demo request from ${full_name}",
        },
        "activity": {
            "type": "Web Form Submission",
            "fields": {
                "Source": "source",
                "Page": "attribution.page_url",
                "UTM Campaign": "attribution.utm_campaign",
                "Message": "message",
                "Plan": "extra.plan",
            },
            "marker_field": "Submission ID",
        },
    }
    for key, value in changes.items():
        if value is None:
            followup.pop(key, None)
        else:
            followup[key] = value
    return {
        "kind": "webhook",
        "default_region": "US",
        "extract": EXTRACT,
        "lead": {
            "custom": {
                "Plan": "extra.plan",
                "Interests": "extra.interest",
                "External ID": "extra.external_id",
            }
        },
        "followup": followup,
    }
