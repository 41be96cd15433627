"""The mapping engine's fast paths give exactly what the plain implementations give:
expressions run as closures (vs jmespath's interpreter), ``cannot_fail`` (never wrong about an
expression that can raise), the memoised ``key_token`` and the one-pass ``clean_text``."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.mapping import load_presets
from service.mapping.engine import root_document
from service.mapping.functions import (
    OPTIONS,
    _cached_key_token,
    cannot_fail,
    compile_expression,
    evaluator,
    key_token,
)
from service.mapping.normalize import _CONTROL, _INVISIBLE, clean_text
from tests.mapping import envelope, payload
from tests.mapping.test_engine import ODD_BODIES

PRESETS = load_presets()

#: Every node type, the added functions and some standard ones, including ways to fail.
EXPRESSIONS = [
    "a",
    "a.b",
    "a.b.c",
    'a."b.c"',
    "a[0]",
    "a[-1].b",
    "a[0][1]",
    "a | [0]",
    "a.b | c",
    "[a, b]",
    "[a, b][0]",
    "{x: a, y: b.c}",
    "a || b",
    "a && b",
    "!a",
    "!b.c",
    "a[*].b",
    "a[*].b[0]",
    "a[?b == 'x'].c",
    "a[?b != `1`]",
    "a[?b < `2`]",
    "a[?b >= c]",
    "a[?b == c] | [0]",
    "a.*",
    "a[]",
    "a[1:3]",
    "a[::-1]",
    "`[1, 2]`",
    '`{"k": null}`',
    "'lit'",
    "@",
    "@.a",
    "length(a)",
    "join(', ', a)",
    "to_string(a)",
    "contains(a, 'x')",
    "contains(lower(b) || '', 'x')",
    "sort_by(a, &b)",
    "map(&b, a)",
    "merge(a, b)",
    "not_null(a, b, `1`)",
    "abs(a)",
    "first(a, b, c)",
    "pick(a, 'email', 'e-mail')",
    "pick([a, b, c], 'x', 'k')",
    "pick(a, b)",
    "pick(a, 'x', b)",
    "join_any(' ', a, b)",
    "join_any(a, b)",
    "lower(a)",
    "upper(b)",
    "trim(a)",
    "split_name(a)",
    "e164(a, 'US')",
    "e164(a, b)",
    "domain(a)",
    "lookup(a, b, 'd')",
    'lookup(a, `{"x": 1, "K": 2}`)',
    "parse_json(a)",
    "parse_json(a).b",
    "to_object(a, &k, &v)",
    "to_object(a, &[0], &[1].b)",
    "to_object(a, k, &v)",
    "items(a)",
    "find(a, &k, 'x')",
    "find(a, &k, b)",
    "relabel(a, b)",
    "rename_keys(a, '^x', 'y')",
    "rename_keys(a, '^(x)', '\\\\2')",
    "keep_keys(a, 'e')",
    "keep_keys(a, '(')",
    "split(a, ',')",
    "split(a, '')",
    "url_param(a, 'q')",
    "first(pick(a, 'k'), b.c, url_param(c, 'x'))",
]

_KEYS = st.sampled_from(["a", "b", "c", "k", "v", "x", "X", "e-mail", "email", "b.c", "q"])
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(
        ["", " ", "x", "K", "a,b", "Ann Lee", "a@example.com", '{"b": [1]}', "https://e.com/?q=1"]
    ),
    st.text(max_size=6),
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=20,
)
_DOCUMENTS = st.dictionaries(_KEYS, _JSON, max_size=6)


def _compiled(expression: str) -> Any:
    compiled, problem = compile_expression(expression)
    assert problem is None, (expression, problem)
    return compiled


def _outcome(run: Any, document: Any) -> tuple[Any, ...]:
    try:
        return ("value", run(document))
    except Exception as exc:  # any difference counts
        return ("error", type(exc), str(exc))


def _preset_expressions() -> list[str]:
    found: set[str] = set()
    for preset in PRESETS:
        found.update(preset.extract.values())
        found.update(e for e in (preset.event_id, preset.note_fields) if e)
    return sorted(found)


COMPILED = [(e, _compiled(e)) for e in EXPRESSIONS]
PRESET_COMPILED = [(e, _compiled(e)) for e in _preset_expressions()]


def _agree(pairs: list[tuple[str, Any]], document: Any) -> None:
    for expression, compiled in pairs:
        fast = _outcome(evaluator(compiled), document)
        reference = _outcome(lambda d, c=compiled: c.search(d, options=OPTIONS), document)
        assert fast == reference, expression
        if cannot_fail(compiled):
            assert fast[0] == "value", (expression, fast)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=_DOCUMENTS)
def test_closures_match_the_interpreter_on_random_documents(document: dict[str, Any]) -> None:
    _agree(COMPILED, document)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_JSON | _DOCUMENTS)
def test_preset_expressions_match_the_interpreter_on_random_bodies(body: Any) -> None:
    _agree(PRESET_COMPILED, root_document(envelope(body, headers={"referer": "https://e.com/"})))


@pytest.mark.parametrize("name", PRESETS.names())
def test_preset_expressions_match_the_interpreter_on_examples_and_odd_bodies(name: str) -> None:
    headers = {"referer": "https://www.example.com/?utm_source=x", "origin": "null"}
    for body in [payload(name), *ODD_BODIES]:
        _agree(PRESET_COMPILED, root_document(envelope(body, headers=headers)))


@pytest.mark.parametrize(
    "expression",
    [
        "join(', ', a)",
        "length(a)",
        "a[?b < `2`]",
        "a[1:3]",
        "pick(a, b)",
        "pick(a, 'x', b)",
        "join_any(a, b)",
        "lookup(a, `{}`)",
        "e164(a, 'US')",
        "find(a, &k, 'x')",
        "to_object(a, &length(k), &v)",
        "rename_keys(a, '^(x)', '\\\\2')",
        "first(a, abs(b))",
    ],
)
def test_expressions_that_can_fail_are_not_called_safe(expression: str) -> None:
    assert not cannot_fail(_compiled(expression))


def test_simple_preset_expressions_are_called_safe() -> None:
    generic = PRESETS.get("generic-form").extract.values()
    assert all(cannot_fail(_compiled(e)) for e in generic)
    assert cannot_fail(_compiled("body.customer.contact.email"))


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
