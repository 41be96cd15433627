"""Normalisation: phones to E.164, emails checked, text cleaned and cut, through the Mapper."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.config.presets import load_presets
from service.mapping import Mapper, MappingLimits, MappingSpec
from service.mapping.normalize import (
    _CONTROL,
    _INVISIBLE,
    clean_text,
    country_code,
    cut,
    normalize_email,
    normalize_phone,
    normalize_url,
)
from tests.mapping import envelope

PRESETS = load_presets()


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("(202) 555-0143", "US", "+12025550143"),
        ("202.555.0143", "US", "+12025550143"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("+44 20 7946 0958", None, "+442079460958"),
        ("0044 20 7946 0958", "DE", "+442079460958"),
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("030 901820", "DE", "+4930901820"),
        ("03-1234-5678", "JP", "+81312345678"),
        ("(11) 91234-5678", "BR", "+5511912345678"),
        (4930901820, "DE", "+4930901820"),
        ("tel:+12025550143", None, "+12025550143"),
    ],
)
def test_phone_to_e164_in_several_regions(raw: Any, region: str | None, expected: str) -> None:
    assert normalize_phone(raw, region) == (expected, None)


@pytest.mark.parametrize(
    ("raw", "region", "message"),
    [
        ("12", "US", "phone is not a valid number (default region US); left out of the contact"),
        ("call me", "US", "phone could not be read (default region US); left out of the contact"),
        (
            "020 7946 0958",
            None,
            "phone could not be read (no default region set); left out of the contact",
        ),
    ],
)
def test_unusable_phone_gives_notice_with_value(raw: str, region: str | None, message: str) -> None:
    value, notice = normalize_phone(raw, region)
    assert value is None
    assert notice is not None
    assert (notice.message, notice.value) == (message, raw)


def test_possible_check_keeps_numbers_the_strict_check_drops() -> None:
    assert normalize_phone("15550000000", "US")[0] is None
    assert normalize_phone("15550000000", "US", "possible") == ("+15550000000", None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Jane.Doe@Example.COM ", "jane.doe@example.com"),
        ("mailto:a@b.co", "a@b.co"),
        ("Jane Doe <Jane@Example.com>", "jane@example.com"),
        (["", "first@example.com", "second@example.com"], "first@example.com"),
        ("josé@bücher.de", "josé@bücher.de"),
    ],
)
def test_email_trimmed_lowercased(raw: Any, expected: str) -> None:
    assert normalize_email(raw) == (expected, None)


@pytest.mark.parametrize(
    "raw",
    ["not-an-email", "a@b", "a@@b.com", "a b@c.com", "a@-b.com", "a..b@c.com", "a@c.1", "@c.com"],
)
def test_invalid_email_is_dropped_with_notice(raw: str) -> None:
    value, notice = normalize_email(raw)
    assert value is None
    assert notice is not None
    assert notice.message == "email is not a valid address; left out of the lead"


def test_clean_text_removes_control_and_invisible_characters() -> None:
    assert clean_text("  Jane\x00 \u202eDoe\x07\t\n Smith ") == "Jane Doe Smith"
    assert clean_text("line 1\r\nline 2\x1b\n\n\n\nline 3", multiline=True) == (
        "line 1\nline 2\n\nline 3"
    )
    assert clean_text("Cafe\u0301") == "Caf\u00e9"


def test_cut_marks_truncation() -> None:
    assert cut("abcdef", 10) == ("abcdef", False)
    assert cut("abcdefghijkl", 5) == ("abcd\u2026", True)


def test_url_gets_scheme_or_is_refused() -> None:
    assert normalize_url("example.com") == ("https://example.com", None)
    assert normalize_url("http://example.com/x") == ("http://example.com/x", None)
    value, notice = normalize_url("ftp thing")
    assert value is None
    assert notice is not None


@pytest.mark.parametrize(
    ("text", "code"),
    [("us", "US"), ("United States", "US"), ("Deutschland", "DE"), ("UK", "GB"), ("Narnia", None)],
)
def test_country_names_become_codes(text: str, code: str | None) -> None:
    assert country_code(text) == code


def _map(body: Any, **spec: Any) -> Any:
    mapping = MappingSpec(preset="generic-form", **spec)
    return Mapper(mapping, source="website", presets=PRESETS).map(envelope(body))


def test_unparseable_phone_dropped_kept_in_note_and_warned() -> None:
    mapped = _map({"email": "a@example.com", "phone": "+1 (555) 0"}, default_region="US")
    assert "phones" not in mapped.lead["contacts"][0]
    assert mapped.identity.phone is None
    assert mapped.warnings == (
        "phone is not a valid number (default region US); left out of the contact",
    )
    assert mapped.note is not None
    assert "phone: +1 (555) 0" in mapped.note
    assert "(as submitted: +1 (555) 0)" in mapped.note


def test_invalid_email_with_name_still_makes_a_lead() -> None:
    mapped = _map({"email": "jane at example", "name": "Jane Doe"})
    assert mapped.lead == {"name": "Jane Doe", "contacts": [{"name": "Jane Doe"}]}
    assert mapped.identity.email is None
    assert mapped.warnings == ("email is not a valid address; left out of the lead",)


def test_over_long_values_are_cut_to_limits() -> None:
    limits = MappingLimits(text=20, message=30)
    body = {"email": "a@example.com", "company": "C" * 50, "message": "m" * 100}
    mapped = _map(body, limits=limits)
    assert mapped.lead["name"] == "C" * 19 + "\u2026"
    assert mapped.lead["description"] == "m" * 29 + "\u2026"
    assert mapped.warnings == (
        "company was cut to 20 characters",
        "message was cut to 30 characters",
    )


def test_repeated_form_field_uses_first_email_and_joins_text() -> None:
    body = {"email": ["", "b@example.com"], "message": ["one", "two"], "name": "Bo"}
    mapped = _map(body)
    assert mapped.identity.email == "b@example.com"
    assert mapped.lead["description"] == "one, two"


def test_first_and_last_name_make_full_name_and_back() -> None:
    assert _map({"first_name": "Ann", "last_name": "Lee"}).record["full_name"] == "Ann Lee"
    record = _map({"name": "Ann Lee"}).record
    assert (record["first_name"], record["last_name"]) == ("Ann", "Lee")


def _reference_clean_text(text: str, *, multiline: bool = False) -> str:
    """clean_text as first written: one character at a time."""
    text = unicodedata.normalize("NFC", text).translate(_INVISIBLE)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n")
    if not multiline:
        return " ".join(
            "".join(ch for ch in text if unicodedata.category(ch) != "Cc" or ch.isspace()).split()
        )
    kept = "".join(ch for ch in text if unicodedata.category(ch) != "Cc" or ch in "\n\t")
    lines = [line.rstrip() for line in kept.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def test_control_characters_are_exactly_category_cc() -> None:
    everything = (chr(code) for code in range(0x110000))
    assert [ord(ch) for ch in everything if unicodedata.category(ch) == "Cc"] == _CONTROL


#: Characters clean_text treats specially: controls, white space, separators, invisible ones,
#: and combining marks (NFC).
_SPECIAL = sorted(
    {chr(c) for c in _CONTROL}
    | {chr(c) for c in range(0x3100) if chr(c).isspace()}
    | {chr(c) for c in _INVISIBLE}
    | set("\u2028\u2029\u3000\ufeff\u0301\u0308e\u00e9 ab\r\n\t")
)


@pytest.mark.parametrize("special", _SPECIAL)
def test_clean_text_matches_the_plain_definition_for_each_special_character(special: str) -> None:
    for text in (special, f"a{special}b", f" a {special}\nb ", f"x{special}\r\n\n\n{special}y "):
        for multiline in (False, True):
            expected = _reference_clean_text(text, multiline=multiline)
            assert clean_text(text, multiline=multiline) == expected


@settings(max_examples=500)
@given(text=st.text(st.sampled_from(_SPECIAL) | st.characters(), max_size=20))
def test_clean_text_matches_the_plain_definition(text: str) -> None:
    for multiline in (False, True):
        assert clean_text(text, multiline=multiline) == _reference_clean_text(
            text, multiline=multiline
        )
