"""Static checks of JMESPath expressions, done once when a mapping is loaded.

``compile_expression`` parses an expression and rejects unknown functions and wrong argument
counts before any payload arrives. The rest read a parsed expression's syntax tree: whether
it is a plain literal (``literal_value``), which input field it starts from (``root_field``)
or reads at all (``reads_field``), which top-level fields it reads (``top_fields``), and
whether it can raise on some input (``cannot_fail``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jmespath
from jmespath import exceptions as jexc
from jmespath.parser import ParsedResult

from service.mapping.jmes.compiler import EQUALITY_OPS
from service.mapping.jmes.functions import (
    FUNCTIONS,
    MAX_ARGS,
    FunctionFailed,
    arity_ok,
    compiled_regex,
)


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(child for child in current.get("children", []) if isinstance(child, dict))


def _check_calls(parsed: dict[str, Any]) -> str | None:
    for node in _walk(parsed):
        if node.get("type") != "function_expression":
            continue
        name = node["value"]
        spec = FUNCTIONS.FUNCTION_TABLE.get(name)
        if spec is None:
            return f"unknown function {name}()"
        signature = spec["signature"]
        given = len(node["children"])
        variadic = bool(signature) and bool(signature[-1].get("variadic"))
        if (variadic and given < len(signature)) or (not variadic and given != len(signature)):
            wanted = f"at least {len(signature)}" if variadic else str(len(signature))
            return f"{name}() takes {wanted} argument(s), {given} given"
        if given > MAX_ARGS.get(name, given):
            return f"{name}() takes at most {MAX_ARGS[name]} arguments, {given} given"
    return None


def compile_expression(expression: str) -> tuple[ParsedResult | None, str | None]:
    """(compiled expression, None) or (None, why it is invalid): syntax, functions, arity."""
    if not expression or not expression.strip():
        return None, "empty expression"
    try:
        compiled = jmespath.compile(expression)
    except jexc.JMESPathError as exc:
        return None, f"invalid JMESPath: {' '.join(str(exc).split())}"
    problem = _check_calls(dict(compiled.parsed))
    return (None, problem) if problem else (compiled, None)


def literal_value(compiled: ParsedResult) -> tuple[bool, Any]:
    """(True, value) when the whole expression is a literal, else (False, None)."""
    node = compiled.parsed
    if node.get("type") == "literal":
        return True, node.get("value")
    return False, None


def root_field(compiled: ParsedResult) -> str | None:
    """The first field an expression reads from its input (``a`` in ``a.b``), if simple."""
    node = compiled.parsed
    while node.get("type") in {"subexpression", "index_expression"} and node["children"]:
        node = node["children"][0]
    return node["value"] if node.get("type") == "field" else None


def reads_field(compiled: ParsedResult, name: str) -> bool:
    """True when the expression reads ``name`` from its input anywhere (``name``, ``f(name)``),
    not as a sub-field (``extra.name``)."""
    stack: list[tuple[dict[str, Any], bool]] = [(dict(compiled.parsed), False)]
    while stack:
        node, is_subfield = stack.pop()
        if node.get("type") == "field" and node.get("value") == name and not is_subfield:
            return True
        children = [c for c in node.get("children", []) if isinstance(c, dict)]
        chained = node.get("type") in {"subexpression", "projection", "value_projection"}
        stack.extend((child, chained and index > 0) for index, child in enumerate(children))
    return False


#: Nodes whose first child runs on the input and the rest on what it gives (``a.b``, ``a[0]``,
#: ``a | b``, ``a[*].b``, ``a[?b == 'c'].d``).
_INPUT_FIRST = frozenset(
    {"subexpression", "index_expression", "pipe", "projection", "filter_projection"}
)
#: Nodes whose every child runs on the input.
_INPUT_ALL = frozenset(
    {
        "function_expression",
        "multi_select_list",
        "multi_select_dict",
        "key_val_pair",
        "or_expression",
        "and_expression",
        "not_expression",
        "comparator",
    }
)


def top_fields(compiled: ParsedResult) -> frozenset[str] | None:
    """The fields an expression reads from the top of its input (``body`` and ``headers`` in
    ``first(body.email, headers.from)``): a document holding only those gives the same result.
    None when it may read more than named fields (``@``, an ``&expr``, a slice or anything
    else not known here), so the input must be whole."""
    found: set[str] = set()
    stack: list[Any] = [compiled.parsed]
    while stack:
        node = stack.pop()
        kind = node.get("type") if isinstance(node, dict) else None
        children = node.get("children", []) if kind is not None else []
        if kind == "field":
            found.add(str(node["value"]))
        elif kind == "literal":
            continue
        elif kind in _INPUT_FIRST and children:
            stack.append(children[0])
        elif kind in _INPUT_ALL:
            stack.extend(children)
        else:
            return None
    return frozenset(found)


def _field_chain(node: dict[str, Any]) -> list[str] | None:
    """``["body", "payload", "data"]`` for a chain of plain fields, else None."""
    if node.get("type") == "field":
        return [str(node["value"])]
    if node.get("type") != "subexpression":
        return None
    chain: list[str] = []
    for child in node.get("children", []):
        part = _field_chain(child) if isinstance(child, dict) else None
        if part is None:
            return None
        chain += part
    return chain


def read_paths(compiled: ParsedResult, roots: tuple[str, ...]) -> tuple[str, ...]:
    """The dotted paths an expression reads from the top of its input, those starting with
    one of ``roots``, in order (``pick(body.payload.data, 'email')`` reads
    ``body.payload.data``): where a rejection says it looked."""
    found: list[str] = []
    stack: list[dict[str, Any]] = [dict(compiled.parsed)]
    while stack:
        node = stack.pop()
        chain = _field_chain(node)
        if chain is not None:
            if chain[0] in roots and ".".join(chain) not in found:
                found.append(".".join(chain))
            continue
        children = [c for c in node.get("children", []) if isinstance(c, dict)]
        stack.extend(reversed(children))
    return tuple(found)


# --- Expressions that cannot fail ---------------------------------------------------------
# Mapper.check skips the extract and template expressions it does not need, but only those
# that cannot raise on any input: otherwise map() would reject a payload that check() accepts.

#: Added functions that raise for no argument values, given the string literals their
#: signature asks for (``rename_keys``/``keep_keys`` only with a valid pattern and a plain
#: replacement; ``lookup``, ``find``, ``e164`` and the standard functions are left out).
_TOTAL_FUNCTIONS = frozenset(
    {
        "first",
        "pick",
        "answer_text",
        "split_name",
        "join_any",
        "lower",
        "upper",
        "trim",
        "domain",
        "parse_json",
        "items",
        "relabel",
        "split",
        "url_param",
        "to_object",
        "rename_keys",
        "keep_keys",
    }
)
_SAFE_NODES = frozenset(
    {
        "field",
        "subexpression",
        "index_expression",
        "index",
        "pipe",
        "identity",
        "current",
        "literal",
        "multi_select_list",
        "multi_select_dict",
        "key_val_pair",
        "or_expression",
        "and_expression",
        "not_expression",
        "projection",
        "filter_projection",
        "value_projection",
        "flatten",
        "expref",
    }
)


def cannot_fail(compiled: ParsedResult) -> bool:
    """True when evaluating the expression cannot raise, whatever the input (JSON values).

    Conservative: anything not known to be safe (ordering comparators, slices, standard
    functions, functions given a non-literal where a string is required...) counts as able
    to fail.
    """
    return _node_cannot_fail(compiled.parsed)


def _node_cannot_fail(node: Any) -> bool:
    if not isinstance(node, dict):
        return False
    kind = node.get("type")
    children = node.get("children", [])
    if kind == "comparator":
        # == and != never raise on a scalar literal; ordering of a string and a number does.
        if node.get("value") not in EQUALITY_OPS:
            return False
        if not any(_scalar_literal(child) for child in children):
            return False
    elif kind == "function_expression":
        if not _function_cannot_fail(node):
            return False
    elif kind not in _SAFE_NODES:
        return False
    return all(_node_cannot_fail(child) for child in children)


def _regex_arguments_safe(arguments: list[Any]) -> bool:
    """rename_keys/keep_keys cannot fail: the pattern compiles, the replacement has no
    backslash (no group reference that could be invalid)."""
    pattern = arguments[0].get("value") if arguments else None
    if not isinstance(pattern, str):
        return False
    try:
        compiled_regex(pattern)
    except FunctionFailed:
        return False
    return all("\\" not in str(argument.get("value")) for argument in arguments[1:])


def _scalar_literal(node: Any) -> bool:
    return (
        isinstance(node, dict)
        and node.get("type") == "literal"
        and not isinstance(node.get("value"), (list, dict))
    )


def _function_cannot_fail(node: Any) -> bool:
    name = node.get("value")
    spec = FUNCTIONS.FUNCTION_TABLE.get(name)
    if name not in _TOTAL_FUNCTIONS or spec is None:
        return False
    signature = spec["signature"]
    children = node["children"]
    if not arity_ok(signature, len(children)) or len(children) > MAX_ARGS.get(name, len(children)):
        return False
    if name in {"rename_keys", "keep_keys"} and not _regex_arguments_safe(children[1:]):
        return False
    for position, child in enumerate(children):
        types = signature[min(position, len(signature) - 1)]["types"]
        if types == ["string"]:
            # Also past the arguments jmespath checks (a variadic tail is not checked).
            if not (_scalar_literal(child) and isinstance(child["value"], str)):
                return False
        elif types == ["expref"]:
            if child.get("type") != "expref":
                return False
        elif types:
            return False
    return True
