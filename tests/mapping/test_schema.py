"""Custom fields and statuses: by id or by name/label, resolved through the Close schema."""

from __future__ import annotations

from typing import Any

import pytest

from service.config.presets import load_presets
from service.errors import ConfigError
from service.mapping import CloseSchema, LeadTemplate, Mapper, MappingSpec
from tests.mapping import envelope

PRESETS = load_presets()

CUSTOM_FIELD_SCHEMA = {
    "fields": [
        {
            "id": "cf_src",
            "name": "Lead Source",
            "type": "choices",
            "choices": ["Website", "Partner", "Ads"],
            "accepts_multiple_values": False,
        },
        {"id": "cf_camp", "name": "UTM Campaign", "type": "text", "choices": None},
        {"id": "cf_seats", "name": "Seats", "type": "number"},
        {
            "id": "cf_int",
            "name": "Interests",
            "type": "choices",
            "choices": ["CRM", "Calling", "Email"],
            "accepts_multiple_values": True,
        },
        {"id": "lcf_old", "name": "Legacy Field", "type": "text"},
        {"name": "no id, skipped"},
    ]
}
STATUSES = {
    "has_more": False,
    "data": [
        {"id": "stat_potential", "label": "Potential", "organization_id": "orga_1"},
        {"id": "stat_qualified", "label": "Qualified", "organization_id": "orga_1"},
    ],
}
CONTACT_FIELD_SCHEMA = {"fields": [{"id": "cf_linkedin", "name": "LinkedIn", "type": "text"}]}
SCHEMA = CloseSchema.from_api(
    CUSTOM_FIELD_SCHEMA, STATUSES, contact_field_schema=CONTACT_FIELD_SCHEMA
)
BODY = {
    "email": "ann@example.com",
    "name": "Ann Lee",
    "source": "partner",
    "utm_campaign": "spring",
    "seats": "1,200",
    "interests": ["crm", "Fax", "Email"],
    "linkedin": "https://linkedin.com/in/annlee",
    "stage": "qualified",
}


def _mapper(lead: dict[str, Any], schema: CloseSchema | None = SCHEMA) -> Mapper:
    spec = MappingSpec(
        preset="generic-form",
        extract={
            "extra.source": "body.source",
            "extra.seats": "body.seats",
            "extra.interests": "body.interests",
            "extra.linkedin": "body.linkedin",
            "extra.stage": "body.stage",
            "attribution.utm_campaign": "body.utm_campaign",
        },
        lead=LeadTemplate.model_validate(lead),
    )
    return Mapper(spec, source="website", presets=PRESETS, schema=schema)


def test_schema_from_api_skips_malformed_rows() -> None:
    assert [f.id for f in SCHEMA.lead_fields] == [
        "cf_src",
        "cf_camp",
        "cf_seats",
        "cf_int",
        "lcf_old",
    ]
    assert SCHEMA.find_field("lead source") is SCHEMA.lead_fields[0]
    assert SCHEMA.find_field("cf_seats") is SCHEMA.lead_fields[2]
    assert SCHEMA.find_field("LinkedIn", contact=True) is SCHEMA.contact_fields[0]
    assert SCHEMA.find_status("QUALIFIED") == SCHEMA.statuses[1]
    assert CloseSchema.from_api({}, {}).lead_fields == ()


def test_custom_fields_by_name_and_id_resolve_to_ids() -> None:
    lead = {
        "custom": {
            "Lead Source": 'lookup(extra.source, `{"partner": "Partner", "web": "Website"}`)',
            "cf_camp": "attribution.utm_campaign",
            "seats": "extra.seats",
            "Interests": "extra.interests",
            "lcf_old": "'constant'",
        },
        "contact": {"custom": {"LinkedIn": "extra.linkedin"}},
        "status": "extra.stage",
    }
    mapped = _mapper(lead).map(envelope(BODY))
    assert mapped.lead == {
        "name": "Ann Lee",
        "status_id": "stat_qualified",
        "contacts": [
            {
                "name": "Ann Lee",
                "emails": [{"email": "ann@example.com", "type": "office"}],
                "custom.cf_linkedin": "https://linkedin.com/in/annlee",
            }
        ],
        "custom.cf_src": "Partner",
        "custom.cf_camp": "spring",
        "custom.cf_seats": 1200,
        "custom.cf_int": ["CRM", "Email"],
        "custom.lcf_old": "constant",
    }
    assert mapped.warnings == (
        "value is not a choice of custom field 'Interests' ('CRM', 'Calling', 'Email')",
    )


def test_invalid_choice_from_payload_drops_field_warns_and_keeps_note() -> None:
    mapped = _mapper({"custom": {"Lead Source": "extra.source"}}).map(
        envelope({**BODY, "source": "Billboard"})
    )
    assert "custom.cf_src" not in mapped.lead
    assert mapped.warnings == (
        "value is not a choice of custom field 'Lead Source' ('Website', 'Partner', 'Ads')",
    )
    assert mapped.note is not None
    assert "source: Billboard" in mapped.note
    assert "(as submitted: Billboard)" in mapped.note


def test_non_number_for_number_field_is_dropped() -> None:
    mapped = _mapper({"custom": {"Seats": "extra.seats"}}).map(envelope({**BODY, "seats": "lots"}))
    assert "custom.cf_seats" not in mapped.lead
    assert mapped.warnings == ("custom field 'Seats' needs a number",)


def test_status_by_label_literal_and_by_id() -> None:
    by_label = _mapper({"status": "'potential'"}).map(envelope(BODY))
    assert by_label.lead["status_id"] == "stat_potential"
    by_id = _mapper({"status": "'stat_qualified'"}).map(envelope(BODY))
    assert by_id.lead["status_id"] == "stat_qualified"


def test_unknown_status_from_payload_uses_default_with_warning() -> None:
    mapped = _mapper({"status": "extra.stage"}).map(envelope({**BODY, "stage": "Hot"}))
    assert "status_id" not in mapped.lead
    assert "status" not in mapped.lead
    assert mapped.warnings == (
        "status is not a lead status of this organisation; the default status is used",
    )


def test_without_schema_ids_pass_names_wait_and_labels_go_as_status() -> None:
    lead = {"custom": {"cf_camp": "attribution.utm_campaign", "Lead Source": "'Website'"}}
    mapped = _mapper({**lead, "status": "'Potential'"}, schema=None).map(envelope(BODY))
    assert mapped.lead["custom.cf_camp"] == "spring"
    assert "custom.Lead Source" not in mapped.lead
    assert mapped.lead["status"] == "Potential"
    assert mapped.warnings == (
        "custom field 'Lead Source' given by name; resolved when a Close schema is available",
    )
    with_id = _mapper({"status": "'stat_x'"}, schema=None).map(envelope(BODY))
    assert with_id.lead["status_id"] == "stat_x"


@pytest.mark.parametrize(
    ("lead", "path", "message"),
    [
        (
            {"custom": {"Lead Sauce": "'Website'"}},
            "sources.website.lead.custom.Lead Sauce",
            "unknown custom field 'Lead Sauce'; this organisation has: 'Interests', "
            "'Lead Source', 'Legacy Field', 'Seats', 'UTM Campaign'",
        ),
        (
            {"custom": {"cf_nope": "'x'"}},
            "sources.website.lead.custom.cf_nope",
            "unknown custom field 'cf_nope'; this organisation has: 'Interests', "
            "'Lead Source', 'Legacy Field', 'Seats', 'UTM Campaign'",
        ),
        (
            {"custom": {"Lead Source": "'Billboard'"}},
            "sources.website.lead.custom.Lead Source",
            "'Billboard': value is not a choice of custom field 'Lead Source' "
            "('Website', 'Partner', 'Ads')",
        ),
        (
            {"status": "'Hot'"},
            "sources.website.lead.status",
            "unknown lead status 'Hot'; this organisation has: 'Potential', 'Qualified'",
        ),
    ],
)
def test_static_invalid_names_and_choices_are_config_errors(
    lead: dict[str, Any], path: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _mapper(lead)
    assert [(i.path, i.message) for i in caught.value.issues] == [(path, message)]


def test_with_schema_rebuilds_and_rechecks() -> None:
    mapper = _mapper({"custom": {"Lead Source": "'Website'"}}, schema=None)
    resolved = mapper.with_schema(SCHEMA)
    assert resolved.map(envelope(BODY)).lead["custom.cf_src"] == "Website"
    renamed = CloseSchema.from_api({"fields": []}, STATUSES)
    with pytest.raises(ConfigError):
        mapper.with_schema(renamed)
