"""Values as text: one conversion for the JMESPath functions, the record and the note."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.config.presets import load_presets
from service.mapping import Mapper, MappingSpec
from service.mapping.jmes import compile_expression, evaluator
from service.mapping.note import flatten
from service.mapping.text import (
    _cached_key_token,
    first_scalar,
    host_of,
    is_empty,
    key_token,
    scalar_text,
    split_full_name,
    text_of,
    to_e164,
)
from tests.mapping import envelope

PRESETS = load_presets()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("x", "x"),
        ("", ""),
        (True, "yes"),
        (False, "no"),
        (0, "0"),
        (42, "42"),
        (3.0, "3"),
        (2.5, "2.5"),
        (None, None),
        ([1], None),
        ({"a": 1}, None),
    ],
)
def test_text_of_scalars(value: Any, text: str | None) -> None:
    assert text_of(value) == text


def test_scalar_text_joins_lists_and_objects() -> None:
    assert scalar_text(["a", "", None, 2, True]) == "a, 2, yes"
    assert scalar_text(["a", "b"], joiner=" / ") == "a / b"
    assert scalar_text({"first": "Ann", "last": "Lee", "vip": False}) == "Ann Lee no"
    assert scalar_text([]) is None
    assert scalar_text(None) is None


def test_is_empty_and_first_scalar() -> None:
    assert all(is_empty(v) for v in (None, "", "  ", [], {}))
    assert not any(is_empty(v) for v in (0, False, "x", [None], {"a": None}))
    assert first_scalar(["", None, ["x"], "a@example.com", "b"]) == "a@example.com"
    assert first_scalar([None, ""]) is None
    assert first_scalar("x") == "x"


def test_split_full_name_host_of_and_to_e164() -> None:
    assert split_full_name("Prof. Jane van der Berg") == ("Jane", "van der Berg")
    assert split_full_name("Doe, Jane") == ("Jane", "Doe")
    assert split_full_name("  ") == (None, None)
    assert host_of("ann@WWW.Example.com") == "example.com"
    assert host_of("https://www.example.com/x") == "example.com"
    assert host_of("localhost") is None
    assert to_e164("(202) 555-0143", "us") == "+12025550143"
    assert to_e164(True, "US") is None
    assert to_e164("12", None) is None


def _reference_key_token(name: str) -> str:
    return "".join(ch for ch in name.casefold() if ch.isalnum())


@given(name=st.text(max_size=80))
def test_key_token_matches_the_plain_definition(name: str) -> None:
    assert key_token(name) == _reference_key_token(name)
    assert key_token(name) == _reference_key_token(name)  # cached answer


def test_key_token_cache_is_bounded_and_skips_long_keys() -> None:
    assert _cached_key_token.cache_info().maxsize == 4096
    before = _cached_key_token.cache_info().currsize
    assert key_token("Long-Key " * 20) == "longkey" * 20
    assert _cached_key_token.cache_info().currsize == before
    assert key_token("E-Mail") == "email"
    assert key_token("Straße") == "strasse"


@pytest.mark.parametrize("flag", [True, False])
def test_a_boolean_reads_the_same_through_a_function_the_record_and_the_note(flag: bool) -> None:
    expected = "yes" if flag else "no"
    compiled, _ = compile_expression("join_any(' ', flag)")
    assert compiled is not None
    assert evaluator(compiled)({"flag": flag}) == expected
    assert list(flatten({"flag": flag})) == [("flag", expected)]

    spec = MappingSpec.model_validate(
        {
            "preset": "generic-form",
            "extract": {"company": "lower(body.flag)", "title": "body.flag"},
        }
    )
    mapped = Mapper(spec, source="website", presets=PRESETS).map(
        envelope({"email": "a@example.com", "flag": flag})
    )
    assert mapped.record["company"] == expected  # a JMESPath function's text
    assert mapped.record["title"] == expected  # normalisation's text
    assert mapped.note is not None
    assert f"flag: {expected}" in mapped.note.splitlines()  # the note's text
