"""The JMESPath functions Lead Intake adds, each with its one-line use."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.mapping.jmes import FUNCTION_NAMES, compile_expression, evaluator
from service.mapping.jmes.functions import pick_ranked, pick_ranks
from service.mapping.text import is_empty, key_token


def run(expression: str, data: Any) -> Any:
    compiled, problem = compile_expression(expression)
    assert problem is None, problem
    assert compiled is not None
    return evaluator(compiled)(data)


ADDED = {
    "first",
    "pick",
    "split_name",
    "join_any",
    "lower",
    "upper",
    "trim",
    "e164",
    "domain",
    "lookup",
    "parse_json",
    "to_object",
    "items",
    "find",
    "relabel",
    "rename_keys",
    "keep_keys",
    "split",
    "url_param",
}


def test_added_functions_are_registered_with_the_standard_ones() -> None:
    assert ADDED <= FUNCTION_NAMES
    assert {"join", "to_string", "contains", "merge"} <= FUNCTION_NAMES


@pytest.mark.parametrize(
    ("expression", "data", "expected"),
    [
        ("first(a, b, c)", {"a": "", "b": "  ", "c": "x"}, "x"),
        ("first(a, b)", {"a": [], "b": {}}, None),
        ("first(a, b)", {"a": 0, "b": 1}, 0),
        ("first(a, b)", {"a": False}, False),
    ],
)
def test_first_returns_first_non_empty(expression: str, data: Any, expected: Any) -> None:
    assert run(expression, data) == expected


def test_pick_matches_keys_loosely_and_searches_several_objects() -> None:
    body = {"E-Mail": "a@example.com", "First Name": "Ann", "phone": ""}
    assert run("pick(@, 'email')", body) == "a@example.com"
    assert run("pick(@, 'first_name')", body) == "Ann"
    assert run("pick(@, 'phone', 'tel')", body) is None
    assert run("pick([b, c], 'email')", {"b": None, "c": {"EMAIL": "x@y.co"}}) == "x@y.co"
    assert run("pick(@, 'email')", ["not", "an", "object"]) is None


@pytest.mark.parametrize(
    ("full", "first", "last"),
    [
        ("Jane Doe", "Jane", "Doe"),
        ("  Jane   van der Berg ", "Jane", "van der Berg"),
        ("Doe, Jane", "Jane", "Doe"),
        ("Dr. Jane Doe", "Jane", "Doe"),
        ("Cher", "Cher", None),
    ],
)
def test_split_name(full: str, first: str, last: str | None) -> None:
    assert run("split_name(n)", {"n": full}) == {"first": first, "last": last}


def test_split_name_of_nothing_is_null() -> None:
    assert run("split_name(n)", {"n": " "}) is None
    assert run("split_name(n).first", {}) is None


def test_join_any_skips_empty_values_and_stringifies_numbers() -> None:
    data = {"a": "Jane", "b": None, "c": ["", 42, "x"]}
    assert run("join_any(' ', a, b, c)", data) == "Jane 42 x"
    assert run("join_any(' ', b)", data) is None


def test_lower_upper_trim() -> None:
    data = {"s": "  Mixed   Case  ", "n": 12}
    assert run("lower(s)", data) == "  mixed   case  "
    assert run("upper(n)", data) == "12"
    assert run("trim(s)", data) == "Mixed Case"
    assert run("trim(missing)", data) is None


def test_e164_with_and_without_region() -> None:
    data = {"p": "(202) 555-0143", "intl": "+44 20 7946 0958", "bad": "12"}
    assert run("e164(p, 'US')", data) == "+12025550143"
    assert run("e164(p)", data) is None
    assert run("e164(intl)", data) == "+442079460958"
    assert run("e164(bad, 'US')", data) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Jane@Sub.Example.COM", "sub.example.com"),
        ("https://www.example.com/path?q=1", "example.com"),
        ("example.org", "example.org"),
        ("not a domain", None),
    ],
)
def test_domain(value: str, expected: str | None) -> None:
    assert run("domain(v)", {"v": value}) == expected


def test_lookup_table_with_default() -> None:
    table = '`{"Small": "1-10", "large": "200+"}`'
    assert run(f"lookup(v, {table})", {"v": "small"}) == "1-10"
    assert run(f"lookup(v, {table}, 'unknown')", {"v": "medium"}) == "unknown"
    assert run(f"lookup(v, {table})", {}) is None


def test_parse_json() -> None:
    assert run("parse_json(s).a", {"s": '{"a": [1]}'}) == [1]
    assert run("parse_json(s)", {"s": "{broken"}) is None
    assert run("parse_json(s)", {"s": 5}) is None


def test_to_object_items_find_relabel() -> None:
    rows = [{"k": "email", "v": "a@b.co"}, {"k": "name", "v": "Ann"}, {"k": None, "v": 1}]
    assert run("to_object(@, &k, &v)", rows) == {"email": "a@b.co", "name": "Ann"}
    assert run("items(@)", {"a": 1}) == [["a", 1]]
    assert run("find(@, &k, 'name').v", rows) == "Ann"
    assert run("find(@, &k, 'nope')", rows) is None
    assert run("relabel(a, b)", {"a": {"x1": 1, "y": 2}, "b": {"x1": "Question"}}) == {
        "Question": 1,
        "y": 2,
    }


def test_rename_and_keep_keys() -> None:
    raw = {"q3_fullName3": "x", "q4_email4": "y", "slug": "z"}
    assert run("rename_keys(@, '^q[0-9]+_|[0-9]+$', '')", raw) == {
        "fullName": "x",
        "email": "y",
        "slug": "z",
    }
    assert run("keep_keys(@, '^q[0-9]+_')", raw) == {"q3_fullName3": "x", "q4_email4": "y"}


def test_split_and_url_param() -> None:
    assert run("split(s, ',')", {"s": "a, b,,c"}) == ["a", "b", "c"]
    url = "https://example.com/p?utm_source=news&utm_source=x&gclid=G"
    assert run("url_param(u, 'utm_source')", {"u": url}) == "news"
    assert run("url_param(u, 'fbclid')", {"u": url}) is None
    assert run("url_param(u, 'a')", {"u": "::::["}) is None


def test_booleans_read_yes_and_no_as_text() -> None:
    data = {"t": True, "f": False, "rows": [{"k": True, "v": 1}]}
    assert run("lower(t)", data) == "yes"
    assert run("upper(f)", data) == "NO"
    assert run("join_any(', ', t, f)", data) == "yes, no"
    assert run("split_name(t)", data) == {"first": "yes", "last": None}
    assert run("to_object(rows, &k, &v)", data) == {"yes": 1}
    assert run('lookup(t, `{"yes": "Opted in"}`)', data) == "Opted in"


def reference_pick(obj: Any, *names: str) -> Any:
    """pick() as it was before its names' tokens could be made once, when it is compiled."""
    for candidate in obj if isinstance(obj, list) else [obj]:
        if not isinstance(candidate, dict):
            continue
        index: dict[str, Any] = {}
        for key, value in candidate.items():
            token = key_token(key if type(key) is str else str(key))
            if token not in index or is_empty(index[token]):
                index[token] = value
        for name in names:
            value = index.get(key_token(name))
            if not is_empty(value):
                return value
    return None


# Keys whose loose tokens collide ("E-Mail", "email", "e_mail"), values that are empty in each
# way (None, "", "  ", [], {}) and ones that are not (0, False, text).
_PICK_KEYS = st.sampled_from(["email", "E-Mail", "e_mail", "Mail", "name", "NAME", "tel", "x", 1])
_PICK_VALUES = st.sampled_from([None, "", "  ", [], {}, 0, False, "a", "b", ["c"], {"d": 1}])
_PICK_OBJECTS = st.dictionaries(_PICK_KEYS, _PICK_VALUES, max_size=6)
_PICK_NAMES = st.lists(st.sampled_from(["email", "e-mail", "mail", "name", "tel", "x", "1"]))


@settings(max_examples=1000)
@given(
    obj=_PICK_OBJECTS | st.lists(_PICK_OBJECTS | _PICK_VALUES, max_size=3) | _PICK_VALUES,
    names=_PICK_NAMES.filter(bool),
)
def test_pick_answers_as_before_compiled_or_not(obj: Any, names: list[str]) -> None:
    expected = reference_pick(obj, *names)
    literal = ", ".join(f"'{name}'" for name in names)
    compiled = run(f"pick(o, {literal})", {"o": obj})  # literal names: ranked when compiled
    read = ", ".join(f"n[{index}]" for index in range(len(names)))
    called = run(f"pick(o, {read})", {"o": obj, "n": names})  # names read from the input
    for answer in (compiled, called, pick_ranked(obj, pick_ranks(tuple(names)))):
        assert answer == expected
        assert type(answer) is type(expected)
