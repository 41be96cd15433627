"""Static checks of expressions: early rejection of bad calls, what cannot fail, field use."""

from __future__ import annotations

from typing import Any

import pytest

from service.config.presets import load_presets
from service.mapping.jmes import (
    cannot_fail,
    compile_expression,
    literal_value,
    reads_field,
    root_field,
    top_fields,
)

PRESETS = load_presets()


def _compiled(expression: str) -> Any:
    compiled, problem = compile_expression(expression)
    assert problem is None, (expression, problem)
    return compiled


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("nope(a)", "unknown function nope()"),
        ("e164()", "e164() takes at least 1 argument(s), 0 given"),
        ("lookup(a, b, c, d)", "lookup() takes at most 3 arguments, 4 given"),
        ("split_name(a, b)", "split_name() takes 1 argument(s), 2 given"),
        ("", "empty expression"),
    ],
)
def test_compile_rejects_bad_calls_early(expression: str, problem: str) -> None:
    assert compile_expression(expression) == (None, problem)


def test_compile_reports_syntax_errors() -> None:
    compiled, problem = compile_expression("body.[")
    assert compiled is None
    assert problem is not None
    assert problem.startswith("invalid JMESPath:")


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


def test_literal_value_only_for_a_whole_literal() -> None:
    assert literal_value(_compiled("'Website'")) == (True, "Website")
    assert literal_value(_compiled("`null`")) == (True, None)
    assert literal_value(_compiled("company")) == (False, None)


@pytest.mark.parametrize(
    ("expression", "root"),
    [("company", "company"), ("a.b", "a"), ("a[0].b", "a"), ("lower(a)", None), ("'x'", None)],
)
def test_root_field_of_simple_paths(expression: str, root: str | None) -> None:
    assert root_field(_compiled(expression)) == root


@pytest.mark.parametrize(
    ("expression", "reads"),
    [
        ("message || company", True),
        ("join_any(' ', message, extra.message)", True),
        ("extra.message", False),
        ("a[*].message", False),
        ("company", False),
    ],
)
def test_reads_field_ignores_sub_fields(expression: str, reads: bool) -> None:
    assert reads_field(_compiled(expression), "message") is reads


@pytest.mark.parametrize(
    ("expression", "fields"),
    [
        ("body.a.b", {"body"}),
        ("first(body.a, headers.x, url_param(headers.referer, 'u'))", {"body", "headers"}),
        ("pick(body, 'email', 'mail')", {"body"}),
        ("body[0].x | y", {"body"}),
        ("body[*].x", {"body"}),
        ("body[?a == query.b].c", {"body"}),
        ("{a: body.a, b: query.b}", {"body", "query"}),
        ("[body.a, client_ip] || !fetched", {"body", "client_ip", "fetched"}),
        ("body[1:2]", {"body"}),
        ("'literal'", set()),
        ("@", None),
        ("@.body", None),
        ("sort_by(body, &a)", None),
        ("body.*", None),
        ("body[]", None),
        ("[0]", None),
    ],
)
def test_top_fields_names_what_an_expression_reads_from_its_input(
    expression: str, fields: set[str] | None
) -> None:
    found = top_fields(_compiled(expression))
    assert found == (frozenset(fields) if fields is not None else None)
