"""The Mapper: default template, user templates, rejections with reasons, config errors."""

from __future__ import annotations

from typing import Any

import pytest

from service.config.presets import load_presets
from service.errors import ConfigError, MappingRejected
from service.mapping import LeadTemplate, Mapper, MappingSpec, NoteSpec, preview, validate_spec
from tests.mapping import envelope

PRESETS = load_presets()


def mapper(**spec: Any) -> Mapper:
    return Mapper(MappingSpec.model_validate(spec), source="website", presets=PRESETS)


FULL_FORM = {
    "first_name": "Ann",
    "last_name": "Lee",
    "email": "Ann.Lee@Example.com",
    "phone": "(202) 555-0143",
    "company": "Lee Widgets",
    "job_title": "CTO",
    "website": "leewidgets.example",
    "message": "Please call me.",
    "address": "1 Main St",
    "city": "Springfield",
    "state": "IL",
    "zip": "62701",
    "country": "United States",
    "utm_source": "google",
    "favourite_colour": "teal",
}


def test_default_template_builds_full_lead() -> None:
    mapped = mapper(preset="generic-form", default_region="US").map(envelope(FULL_FORM))
    contact = {
        "name": "Ann Lee",
        "title": "CTO",
        "emails": [{"email": "ann.lee@example.com", "type": "office"}],
        "phones": [{"phone": "+12025550143", "type": "office"}],
    }
    assert mapped.lead == {
        "name": "Lee Widgets",
        "url": "https://leewidgets.example",
        "description": "Please call me.",
        "contacts": [contact],
        "addresses": [
            {
                "label": "business",
                "address_1": "1 Main St",
                "city": "Springfield",
                "state": "IL",
                "zipcode": "62701",
                "country": "US",
            }
        ],
    }
    assert mapped.contact == contact
    assert (mapped.identity.email, mapped.identity.phone) == ("ann.lee@example.com", "+12025550143")
    assert mapped.record["attribution"] == {"utm_source": "google"}
    assert mapped.warnings == ()


@pytest.mark.parametrize(
    ("body", "name"),
    [
        ({"company": "Co", "name": "Ann", "email": "a@example.com"}, "Co"),
        ({"first_name": "Ann", "email": "a@example.com"}, "Ann"),
        ({"email": "a@example.com"}, "a@example.com"),
    ],
)
def test_default_lead_name_rule(body: dict[str, str], name: str) -> None:
    assert mapper(preset="generic-form").map(envelope(body)).lead["name"] == name


def test_phone_only_lead_has_no_empty_keys() -> None:
    mapped = mapper(preset="generic-form", default_region="GB").map(
        envelope({"tel": "07911 123456"})
    )
    assert mapped.lead == {"contacts": [{"phones": [{"phone": "+447911123456", "type": "office"}]}]}


def test_template_overrides_literals_null_and_contact_options() -> None:
    lead = {
        "name": "join_any(' / ', company, 'Website')",
        "description": None,
        "url": "'https://fixed.example'",
        "contact": {"phone_type": "mobile", "urls": "extra.links", "title": "upper(title)"},
        "address_label": "mailing",
    }
    mapped = mapper(
        preset="generic-form",
        default_region="US",
        extract={"extra.links": "split(body.links, ' ')"},
        lead=lead,
    ).map(envelope({**FULL_FORM, "links": "https://a.example notaurl https://b.example"}))
    assert mapped.lead["name"] == "Lee Widgets / Website"
    assert "description" not in mapped.lead
    assert mapped.lead["url"] == "https://fixed.example"
    assert mapped.lead["contacts"][0]["title"] == "CTO"
    assert mapped.lead["contacts"][0]["phones"] == [{"phone": "+12025550143", "type": "mobile"}]
    assert mapped.lead["contacts"][0]["urls"] == [
        {"url": "https://a.example", "type": "url"},
        {"url": "https://b.example", "type": "url"},
    ]
    assert mapped.lead["addresses"][0]["label"] == "mailing"
    assert mapped.warnings == ("website is not a usable URL; left out of the lead",)


def test_message_mapped_elsewhere_and_contact_left_out() -> None:
    lead = {
        "description": "join_any(' | ', message, attribution.utm_source)",
        "include_contact": False,
    }
    mapped = mapper(preset="generic-form", lead=lead).map(envelope(FULL_FORM))
    assert mapped.lead["description"] == "Please call me. | google"
    assert "contacts" not in mapped.lead
    assert mapped.contact is None


def test_extract_overrides_extends_and_switches_off_preset_fields() -> None:
    mapped = mapper(
        preset="generic-form",
        extract={
            "company": "body.favourite_colour",
            "phone": "",
            "extra.colour": "body.favourite_colour",
        },
    ).map(envelope(FULL_FORM))
    assert mapped.lead["name"] == "teal"
    assert "phones" not in mapped.lead["contacts"][0]
    assert mapped.record["extra"] == {"colour": "teal"}


def test_extract_reads_headers_query_and_metadata() -> None:
    spec = {
        "extract": {
            "email": "query.e",
            "extra.agent": 'headers."user-agent"',
            "extra.ip": "client_ip",
            "extra.at": "received_at",
            "extra.src": "source",
        }
    }
    env = envelope({}, headers={"User-Agent": "curl/8"}, query={"e": "q@example.com"})
    record = mapper(**spec).map(env).record
    assert record["email"] == "q@example.com"
    assert record["extra"] == {
        "agent": "curl/8",
        "ip": "203.0.113.7",
        "at": "2023-11-14T22:13:20Z",
        "src": "website",
    }


def test_missing_required_rejects_with_reason() -> None:
    with pytest.raises(MappingRejected) as caught:
        mapper(preset="generic-form").map(envelope({"message": "hi", "company": "Co"}))
    assert caught.value.reason == (
        "missing required field: one of email, phone, name; looked for in body"
    )
    assert caught.value.code == "missing-required"
    assert caught.value.detail["missing"] == ["email", "phone", "name"]
    assert caught.value.detail["looked_in"] == ["body"]


def test_an_empty_payload_is_told_apart_from_a_missing_field() -> None:
    with pytest.raises(MappingRejected) as caught:
        mapper(preset="generic-form").map(envelope({"email": "", "message": " "}))
    assert caught.value.code == "empty-payload"
    assert caught.value.reason.startswith("the payload holds no answer at all")


def test_missing_required_reason_mentions_dropped_values() -> None:
    with pytest.raises(MappingRejected) as caught:
        mapper(preset="generic-form").map(envelope({"email": "nope"}))
    assert caught.value.reason == (
        "missing required field: one of email, phone, name "
        "(email is not a valid address; left out of the lead); looked for in body"
    )


def test_source_declared_required_fields() -> None:
    m = mapper(preset="generic-form", required=["email", ["company", "website"]])
    with pytest.raises(MappingRejected) as caught:
        m.map(envelope({"email": "a@example.com", "name": "Ann"}))
    assert caught.value.reason == (
        "missing required field: one of company, website; looked for in body"
    )
    with pytest.raises(MappingRejected) as caught:
        m.map(envelope({"company": "Co"}))
    assert caught.value.reason == "missing required field: 'email'; looked for in body"


def test_failing_expression_rejects_with_expression_and_error() -> None:
    m = mapper(preset="generic-form", extract={"extra.tags": "join(', ', body.tags)"})
    assert m.map(envelope({"email": "a@example.com", "tags": ["a", "b"]})).record["extra"] == {
        "tags": "a, b"
    }
    with pytest.raises(MappingRejected) as caught:
        m.map(envelope({"email": "a@example.com", "tags": "a,b"}))
    assert caught.value.reason == (
        "mapping expression sources.website.extract.extra.tags failed: "
        "\"join(', ', body.tags)\": In function join(), invalid type for value: a,b, "
        "expected one of: ['array-string'], received: \"string\""
    )
    assert caught.value.detail["expression"] == "join(', ', body.tags)"


def test_failing_template_expression_rejects() -> None:
    m = mapper(preset="generic-form", lead={"name": "lookup(company, company)"})
    with pytest.raises(MappingRejected) as caught:
        m.map(envelope({"email": "a@example.com", "company": "Co"}))
    assert caught.value.reason.startswith(
        "mapping expression sources.website.lead.name failed: 'lookup(company, company)': "
        "lookup() needs an object"
    )


def test_config_error_lists_every_problem_with_key_paths() -> None:
    spec = MappingSpec.model_validate(
        {
            "preset": "acme-crm",
            "extract": {
                "emial": "body.email",
                "email": "body.[",
                "phone": "e164(body.p, 'US', `1`)",
                "company": "company_name",
            },
            "lead": {"status": "Potential", "custom": {"cf_x": "nope(email)"}},
            "note": {"template": "${title} ${colour}"},
            "default_region": "XX",
            "required": ["fax"],
        }
    )
    issues = validate_spec(spec, source="web", presets=PRESETS)
    paths = [issue.path for issue in issues]
    assert paths == [
        "sources.web.preset",
        "sources.web.default_region",
        "sources.web.required[0]",
        "sources.web.extract.emial",
        "sources.web.extract.email",
        "sources.web.extract.phone",
        "sources.web.extract.company",
        "sources.web.lead.status",
        "sources.web.lead.custom.cf_x",
        "sources.web.note.template",
    ]
    messages = {issue.path: issue.message for issue in issues}
    assert messages["sources.web.preset"].startswith("unknown preset 'acme-crm'; known: calcom,")
    assert messages["sources.web.lead.status"].startswith(
        "reads record field 'Potential', which does not exist"
    )
    assert messages["sources.web.lead.status"].endswith(
        "for a literal text write 'Potential' in single quotes"
    )
    assert messages["sources.web.extract.phone"] == "e164() takes at most 2 arguments, 3 given"
    assert messages["sources.web.extract.company"] == (
        "reads 'company_name' from the top of the document, which has only body, fetched, "
        "headers, query, client_ip, received_at, source, submission_id; did you mean "
        "body.company_name?"
    )
    assert messages["sources.web.lead.custom.cf_x"] == "unknown function nope()"
    assert "unknown placeholder(s) colour" in messages["sources.web.note.template"]
    with pytest.raises(ConfigError) as caught:
        Mapper(spec, source="web", presets=PRESETS)
    assert list(caught.value.issues) == issues


def test_valid_spec_has_no_issues() -> None:
    spec = MappingSpec(preset="typeform", lead=LeadTemplate(name="company"))
    assert validate_spec(spec, source="tf", presets=PRESETS) == []


def test_note_disabled_and_preview() -> None:
    m = mapper(preset="generic-form", note=NoteSpec(enabled=False))
    mapped = m.map(envelope({"email": "a@example.com", "phone": "x"}))
    assert mapped.note is None
    assert preview(mapped) == {
        "lead": {
            "name": "a@example.com",
            "contacts": [{"emails": [{"email": "a@example.com", "type": "office"}]}],
        },
        "contact": {"emails": [{"email": "a@example.com", "type": "office"}]},
        "note": None,
        "identity": {"email": "a@example.com", "phone": None},
        "record": {
            "email": "a@example.com",
            "source": "website",
            "received_at": "2023-11-14T22:13:20Z",
            "submission_id": "sub_01TEST",
        },
        "warnings": ["phone could not be read (no default region set); left out of the contact"],
    }


ODD_BODIES: list[Any] = [
    None,
    0,
    -1.5,
    True,
    "",
    "just text",
    [],
    [None, 1, "a", {"email": 3}],
    {},
    {"email": None, "phone": True, "name": 12},
    {"email": ["a@example.com", ["nested"]], "name": {"first": None}},
    {"email": {"deep": [{"deeper": {"x": 1}}]}},
    {"email": "a@example.com", "phone": "9" * 500, "name": "\x00\u202e" * 300},
    {"data.json": "not json", "rawRequest": "[1]", "payload": [1, 2]},
    {
        "form_response": {
            "answers": [None, 5, {"field": None}],
            "definition": {"fields": [{"title": 1}]},
        }
    },
    {"data": {"fields": [{"label": None, "value": None}, "x"]}, "user_column_data": {"a": 1}},
    {"payload": {"responses": "x", "questions_and_answers": [None, {"question": 1}]}},
]


@pytest.mark.parametrize("preset", PRESETS.names())
def test_odd_bodies_only_ever_reject(preset: str) -> None:
    m = mapper(preset=preset, default_region="US")
    nested: dict[str, Any] = {}
    cursor = nested
    for _ in range(300):
        cursor["a"] = {}
        cursor = cursor["a"]
    outcomes = set()
    for body in [*ODD_BODIES, nested]:
        for headers in ({}, {"referer": "::::[", "origin": "null"}):
            try:
                preview(m.map(envelope(body, headers=headers)))
                outcomes.add("mapped")
            except MappingRejected:
                outcomes.add("rejected")
            m.event_id(envelope(body))
    assert "rejected" in outcomes


def test_message_used_by_a_custom_field_is_not_also_the_description() -> None:
    lead = {"custom": {"cf_inquiry": "trim(message)"}}
    mapped = mapper(preset="generic-form", lead=lead).map(envelope(FULL_FORM))
    assert "description" not in mapped.lead
    assert mapped.lead["custom.cf_inquiry"] == "Please call me."


def test_returned_contact_is_independent_of_the_lead_body() -> None:
    mapped = mapper(preset="generic-form").map(envelope(FULL_FORM))
    assert mapped.contact == mapped.lead["contacts"][0]
    assert mapped.contact is not mapped.lead["contacts"][0]


def test_title_alone_is_not_a_contact() -> None:
    m = mapper(preset="generic-form", required=["company"])
    mapped = m.map(envelope({"company": "Co", "job_title": "CEO", "email": "x"}))
    assert mapped.lead == {"name": "Co"}
    assert mapped.contact is None
