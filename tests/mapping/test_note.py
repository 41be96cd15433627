"""The submission note: readable plain text with every submitted field, capped in size."""

from __future__ import annotations

from typing import Any

import pytest

from service.config.presets import load_presets
from service.mapping import Mapper, MappingLimits, MappingSpec, NoteSpec
from service.mapping.note import flatten, has_marker, iso_utc
from tests.mapping import envelope

PRESETS = load_presets()


def _note(body: Any, **spec: Any) -> str:
    mapping = MappingSpec.model_validate({"preset": "generic-form", **spec})
    headers = {"referer": "https://example.com/contact?utm_source=ads"}
    note = (
        Mapper(mapping, source="website", presets=PRESETS).map(envelope(body, headers=headers)).note
    )
    assert note is not None
    return note


def test_default_note_layout() -> None:
    body = {
        "name": "Ann Lee",
        "email": "ann@example.com",
        "phone": "12",
        "message": "Line one\r\nLine two",
        "utm_campaign": "spring",
        "empty": "",
        "interests": ["CRM", "Calling"],
    }
    assert _note(body, default_region="US") == (
        "Web form submission \u2014 website\n"
        "Received: 2023-11-14 22:13:20 UTC\n"
        "Page: https://example.com/contact?utm_source=ads\n"
        "\n"
        "Attribution:\n"
        "utm_source: ads\n"
        "utm_campaign: spring\n"
        "\n"
        "Submitted fields:\n"
        "name: Ann Lee\n"
        "email: ann@example.com\n"
        "phone: 12\n"
        "message: Line one\n"
        "    Line two\n"
        "utm_campaign: spring\n"
        "interests: CRM, Calling\n"
        "\n"
        "Warnings:\n"
        "- phone is not a valid number (default region US); left out of the contact "
        "(as submitted: 12)\n"
        "\n"
        "Lead Intake submission sub_01TEST"
    )


def test_flatten_nested_json_with_dotted_keys_in_order() -> None:
    body = {
        "b": 1,
        "a": {"y": True, "x": None, "z": [1, 2]},
        "rows": [{"k": "v"}, ["p", "q"]],
        "": "blank key",
    }
    assert list(flatten(body)) == [
        ("b", "1"),
        ("a.y", "yes"),
        ("a.z", "1, 2"),
        ("rows[0].k", "v"),
        ("rows[1]", "p, q"),
        ("value", "blank key"),
    ]


def test_note_template_placeholders() -> None:
    template = "New lead for ${company} (${email}) from ${source}\n${attribution}\n--\n${fields}"
    note = _note(
        {"email": "a@example.com", "company": "Co"},
        note=NoteSpec(template=template, fields="{company: body.company}"),
    )
    assert note == (
        "New lead for Co (a@example.com) from website\nutm_source: ads\n--\ncompany: Co\n"
        "\nLead Intake submission sub_01TEST"
    )


def test_note_size_is_capped() -> None:
    body = {f"field_{i:03}": "x" * 50 for i in range(300)}
    body["email"] = "a@example.com"
    note = _note(body, limits=MappingLimits(note=2_000, note_value=40))
    assert len(note) <= 2_000
    assert "field_000: " + "x" * 39 + "\u2026" in note
    assert "more field(s) not shown (note size limit)" in note
    assert note.endswith("\n\nLead Intake submission sub_01TEST")


def test_the_marker_survives_a_template_longer_than_the_cap() -> None:
    note = _note(
        {"email": "a@example.com"},
        note=NoteSpec(template="x" * 400),
        limits=MappingLimits(note=256),
    )
    assert len(note) == 256
    assert note.endswith("x\u2026\n\nLead Intake submission sub_01TEST")
    assert has_marker(note, "sub_01TEST")


def test_an_empty_template_leaves_the_marker_alone() -> None:
    note = _note({"email": "a@example.com"}, note=NoteSpec(template="$warnings"))
    assert note == "Lead Intake submission sub_01TEST"


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("Web form\n\nLead Intake submission sub_01TEST", True),
        # Close's note_html: HTML escaped, newlines as <br />.
        ("<body>a &amp; b<br /><br />Lead Intake submission sub_01TEST</body>", True),
        ("Lead Intake submission sub_01TEST2", False),
        ("Lead Intake submission sub_01TES", False),
        ("Submission: sub_01TEST", False),
        ("", False),
    ],
)
def test_has_marker_finds_the_whole_id_in_plain_and_html_text(text: str, found: bool) -> None:
    assert has_marker(text, "sub_01TEST") is found


def test_failing_note_fields_expression_falls_back_to_body() -> None:
    note = _note({"email": "a@example.com"}, note=NoteSpec(fields="join(',', body.email)"))
    assert "email: a@example.com" in note
    assert "- note fields expression sources.website.note.fields failed; showing the body" in note


@pytest.mark.parametrize(
    ("first", "then", "expected"),
    [
        (1714564800.2, 1714564800.7, "2024-05-01T12:00:00Z"),  # the same second, from the cache
        # A fraction that rounds (to microseconds) into the next second is that second's.
        (1714564800.2, 1714564800.9999996, "2024-05-01T12:00:01Z"),
        (1714564800.9999996, 1714564800.5, "2024-05-01T12:00:00Z"),
        (1714564800.2, -1.5, "1969-12-31T23:59:58Z"),
        (1714564800.2, float("inf"), "inf"),
    ],
)
def test_iso_utc_answers_as_datetime_does_whatever_came_before(
    first: float, then: float, expected: str
) -> None:
    iso_utc(first)
    assert iso_utc(then) == expected
