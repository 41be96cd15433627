"""Expressions run as closures give exactly what jmespath's interpreter gives (values and
errors), and ``cannot_fail`` is never wrong about an expression that can raise."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.config.presets import load_presets
from service.mapping.engine import root_document
from service.mapping.jmes import OPTIONS, cannot_fail, compile_expression, evaluator, top_fields
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


def _only_what_it_reads(pairs: list[tuple[str, Any]], document: dict[str, Any]) -> None:
    for expression, compiled in pairs:
        fields = top_fields(compiled)
        if fields is None:
            continue
        part = {key: value for key, value in document.items() if key in fields}
        run = evaluator(compiled)
        assert _outcome(run, part) == _outcome(run, document), expression


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=_DOCUMENTS)
def test_a_document_of_the_fields_an_expression_reads_gives_the_same(
    document: dict[str, Any],
) -> None:
    _only_what_it_reads(COMPILED, document)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_JSON | _DOCUMENTS)
def test_preset_expressions_read_only_their_top_fields(body: Any) -> None:
    headers = {"referer": "https://e.com/?utm_source=x", "origin": "null"}
    _only_what_it_reads(PRESET_COMPILED, root_document(envelope(body, headers=headers)))
