"""Mapper.check, the receiver's door check: it rejects exactly when Mapper.map rejects, with
the same reason, on every preset's example payload, odd bodies, random form posts and
mappings whose expressions can fail."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.config.presets import load_presets
from service.envelope import Envelope
from service.errors import MappingRejected
from service.mapping import Mapper, MappingSpec
from tests.mapping import envelope, payload
from tests.mapping.test_engine import FULL_FORM, ODD_BODIES

PRESETS = load_presets()
REFERER = {"referer": "https://www.example.co.uk/contact?utm_source=linkedin"}


def mapper(**spec: Any) -> Mapper:
    return Mapper(MappingSpec.model_validate(spec), source="website", presets=PRESETS)


def outcome(run: Callable[[Envelope], Any], env: Envelope) -> str | None:
    """None when accepted, else the rejection's reason."""
    try:
        run(env)
    except MappingRejected as exc:
        return exc.reason
    return None


def assert_agrees(m: Mapper, env: Envelope) -> str | None:
    decided = outcome(m.map, env)
    assert outcome(m.check, env) == decided
    return decided


THIN = ("hubspot", "meta-lead-ads")  # their examples name only ids: the person is fetched


@pytest.mark.parametrize("name", [n for n in PRESETS.names() if n not in THIN])
def test_check_accepts_every_preset_example(name: str) -> None:
    m = mapper(preset=name, default_region="US")
    env = envelope(payload(name), source=name, headers=REFERER)
    assert m.check(env) is None
    assert assert_agrees(m, env) is None


@pytest.mark.parametrize("name", THIN)
def test_check_and_map_agree_that_a_thin_example_needs_its_fetch(name: str) -> None:
    m = mapper(preset=name, default_region="US")
    env = envelope(m.split(envelope(payload(name)))[0], source=name)
    with pytest.raises(MappingRejected) as caught:
        m.check(env)
    assert caught.value.code == "ids-only"
    assert_agrees(m, env)


@pytest.mark.parametrize("name", PRESETS.names())
def test_check_agrees_on_odd_bodies(name: str) -> None:
    m = mapper(preset=name, default_region="US")
    rejected = 0
    for body in ODD_BODIES:
        for headers in ({}, {"referer": "::::[", "origin": "null"}):
            rejected += assert_agrees(m, envelope(body, headers=headers)) is not None
    assert rejected


@pytest.mark.parametrize(
    ("spec", "body"),
    [
        ({"preset": "generic-form"}, {"message": "hi", "company": "Co"}),
        ({"preset": "generic-form"}, {"email": "nope"}),
        ({"preset": "generic-form", "default_region": "US"}, {"phone": "12", "email": "x@"}),
        ({"preset": "generic-form"}, {"first_name": "Ann"}),
        ({"preset": "generic-form", "required": ["full_name"]}, {"last_name": "Lee"}),
        ({"preset": "generic-form", "required": ["first_name"]}, {"name": "Dr Ann Lee"}),
        (
            {"preset": "generic-form", "required": ["email", ["company", "website"]]},
            {"email": "a@example.com", "name": "Ann"},
        ),
        (
            {"preset": "generic-form", "required": ["email", ["company", "website"]]},
            {"email": "a@example.com", "website": "not a url"},
        ),
        (
            {
                "preset": "generic-form",
                "required": ["address.city", "extra.plan"],
                "extract": {"extra.plan": "body.plan"},
            },
            {"city": "Oslo"},
        ),
        (
            {
                "preset": "generic-form",
                "required": ["extra.plan"],
                "extract": {"extra.plan": "body.plan"},
            },
            {"email": "a@example.com", "plan": {"tier": "  "}},
        ),
        (
            {"preset": "generic-form", "required": ["company"], "limits": {"text": 16}},
            {"company": "\x00" * 40},
        ),
        # A failing extract expression for a field that is not required.
        (
            {"preset": "generic-form", "extract": {"extra.tags": "join(', ', body.tags)"}},
            {"email": "a@example.com", "tags": "a,b"},
        ),
        (
            {"preset": "generic-form", "extract": {"extra.tags": "join(', ', body.tags)"}},
            {"email": "a@example.com", "tags": ["a", "b"]},
        ),
        # Two failing expressions: the first in extract order names the reason.
        (
            {
                "preset": "generic-form",
                "extract": {"extra.a": "length(body.n)", "extra.b": "abs(body.n)"},
            },
            {"email": "a@example.com", "n": "x"},
        ),
        # A failing extract expression wins over a missing required field.
        (
            {"preset": "generic-form", "extract": {"extra.a": "abs(body.n)"}},
            {"n": "x"},
        ),
        # Template expressions that can fail: checked by the whole mapping.
        (
            {"preset": "generic-form", "lead": {"name": "lookup(company, company)"}},
            {"email": "a@example.com", "company": "Co"},
        ),
        (
            {"preset": "generic-form", "lead": {"custom": {"cf_x": "to_number(extra.n)"}}},
            {"email": "a@example.com"},
        ),
        (
            {
                "preset": "generic-form",
                "lead": {"contact": {"custom": {"cf_y": "abs(company)"}}},
            },
            {"company": "Co", "email": "a@example.com"},
        ),
        (
            # No contact (title alone): the contact's custom fields are not evaluated.
            {
                "preset": "generic-form",
                "required": ["company"],
                "lead": {"contact": {"custom": {"cf_y": "abs(company)"}}},
            },
            {"company": "Co", "job_title": "CEO"},
        ),
        # Template expressions that cannot fail are skipped.
        (
            {
                "preset": "generic-form",
                "lead": {
                    "name": "join_any(' / ', company, full_name)",
                    "status": "'Potential'",
                    "custom": {"cf_src": "attribution.utm_source"},
                },
            },
            {"email": "a@example.com", "company": "Co", "utm_source": "ads"},
        ),
        ({"preset": "generic-form", "default_region": "US"}, FULL_FORM),
    ],
)
def test_check_agrees_with_map(spec: dict[str, Any], body: Any) -> None:
    assert_agrees(mapper(**spec), envelope(body))


def test_check_reason_names_dropped_values_and_failing_expressions() -> None:
    with pytest.raises(MappingRejected) as caught:
        mapper(preset="generic-form").check(envelope({"email": "nope"}))
    assert caught.value.reason == (
        "missing required field: one of email, phone, name "
        "(email is not a valid address; left out of the lead); looked for in body"
    )
    m = mapper(preset="generic-form", extract={"extra.tags": "join(', ', body.tags)"})
    with pytest.raises(MappingRejected) as caught:
        m.check(envelope({"email": "a@example.com", "tags": "a,b"}))
    assert caught.value.reason.startswith(
        "mapping expression sources.website.extract.extra.tags failed: "
    )


def test_check_of_generic_form_reads_only_required_fields() -> None:
    plan = mapper(preset="generic-form")._check
    assert plan is not None
    assert plan.failing == ()
    assert plan.document == ("body",)  # the attribution fields read headers: not needed here
    assert set(plan.fields) == {"email", "phone", "full_name", "first_name", "last_name"}
    failing = mapper(preset="generic-form", lead={"name": "lookup(company, company)"})
    assert failing._check is None  # the whole mapping decides


_FIELD_NAMES = st.sampled_from(
    [
        "email",
        "E-Mail",
        "your-email",
        "name",
        "Full Name",
        "first_name",
        "last",
        "phone",
        "Tel",
        "company",
        "website",
        "message",
        "city",
        "country",
        "utm_source",
        "page_url",
        "other",
    ]
)
_FIELD_VALUES = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "ann@example.com",
            "ANN@EXAMPLE.COM ",
            "nope",
            "a@b",
            "(202) 555-0143",
            "+44 20 7946 0958",
            "12",
            "Ann Lee",
            "Dr Lee",
            "Lee, Ann",
            "\x00\u202e",
            "https://example.com/?utm_source=x",
        ]
    ),
    st.text(max_size=12),
)
_FORM_BODIES = st.dictionaries(
    _FIELD_NAMES,
    st.one_of(_FIELD_VALUES, st.lists(_FIELD_VALUES, max_size=3)),
    max_size=8,
)


REQUIRED: list[list[Any] | None] = [
    None,
    ["email"],
    ["phone", ["company", "website"]],
    [["phone", "name", "email"]],
    [["full_name", "company"], "email"],
    ["first_name"],
    [["last_name", "phone"]],
    [["address.city", "address.country", "name"]],
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_FORM_BODIES, region=st.sampled_from([None, "US", "GB"]))
def test_check_agrees_on_random_form_posts(body: dict[str, Any], region: str | None) -> None:
    for required in REQUIRED:
        spec: dict[str, Any] = {"preset": "generic-form", "default_region": region}
        if required is not None:
            spec["required"] = required
        assert_agrees(mapper(**spec), envelope(body, headers=REFERER))


@pytest.mark.parametrize(
    ("extract", "parts"),
    [
        ({"email": 'first(query.email, headers."x-email")'}, ("headers", "query")),
        ({"email": "body.email", "extra.tags": "join(', ', body.tags)"}, ("body",)),
        ({"email": "@.body.email"}, None),  # reads the document whole
        ({"email": "body.email", "phone": "sort_by(body.phones, &n)[0].v"}, None),
    ],
)
def test_check_reads_the_parts_of_the_document_its_fields_read(
    extract: dict[str, str], parts: tuple[str, ...] | None
) -> None:
    m = mapper(extract=extract)
    assert m._check is not None
    assert m._check.document == parts
    bodies = [{"email": "a@example.com"}, {"email": "nope", "tags": "x"}, {"tags": ["a"]}, {}]
    for body in bodies:
        for query, headers in (({"email": "q@example.com"}, {}), ({}, {"x-email": "no"})):
            assert_agrees(m, envelope(body, query=query, headers=headers))
