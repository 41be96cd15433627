"""The JMESPath functions Lead Intake adds, and expression compilation with early checks.

Every added function is forgiving about odd input (it returns ``null`` rather than failing on
a number where a string was expected), so a strange payload ends as "missing required field"
instead of a crash. The standard JMESPath functions keep their strict type checks.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jmespath
import phonenumbers
from jmespath import exceptions as jexc
from jmespath import functions, visitor
from jmespath.parser import ParsedResult
from jmespath.visitor import TreeInterpreter

_ANY: list[str] = []  # no type restriction
_HONORIFICS = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "madam"})


class FunctionFailed(jexc.JMESPathError):
    """An added function could not compute its result from valid-typed arguments."""


def is_empty(value: Any) -> bool:
    """None, an empty or blank string, an empty list or object."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, dict)):
        return not value
    return False


def _text(value: Any) -> str | None:
    """A scalar as text (numbers without a trailing .0), else None."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value
    return None


#: Deletes every ASCII character that is not a lower-case letter or a digit.
_ASCII_NOT_ALNUM = dict.fromkeys(
    code for code in range(128) if not (chr(code).isdigit() or "a" <= chr(code) <= "z")
)
#: Keys longer than this are not memoised (keys are sender data: the cache stays small).
_TOKEN_CACHE_KEY_LIMIT = 64


def _key_token(name: str) -> str:
    if name.isascii():  # casefold is lower() and isalnum() is [A-Za-z0-9] for ASCII
        return name.lower().translate(_ASCII_NOT_ALNUM)
    return "".join(ch for ch in name.casefold() if ch.isalnum())


_cached_key_token = functools.lru_cache(maxsize=4096)(_key_token)


def key_token(name: str) -> str:
    """A key compared loosely: lower-case, letters and digits only ("E-Mail" -> "email").

    Memoised (bounded: 4,096 keys of at most 64 characters), since pick() tokenises every
    key of the object it searches on every call."""
    if len(name) <= _TOKEN_CACHE_KEY_LIMIT:
        return _cached_key_token(name)
    return _key_token(name)


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise FunctionFailed(f"invalid regular expression {pattern!r}: {exc}") from exc


def split_full_name(full: str) -> tuple[str | None, str | None]:
    """("Jane", "van der Berg") from "Jane van der Berg"; handles "Last, First" and titles."""
    text = " ".join(full.split())
    if "," in text:
        last, _, first = text.partition(",")
        return (first.strip() or None, last.strip() or None)
    words = text.split(" ")
    while len(words) > 1 and key_token(words[0]) in _HONORIFICS:
        words = words[1:]
    if not words or not words[0]:
        return (None, None)
    return (words[0], " ".join(words[1:]) or None)


def to_e164(value: Any, region: str | None) -> str | None:
    """E.164 for a valid phone number, else None (no exception for any input)."""
    text = _text(value)
    if text is None or not text.strip():
        return None
    try:
        number = phonenumbers.parse(text, region.upper() if region else None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def host_of(value: str) -> str | None:
    """Lower-case host of an email address or URL, without a leading ``www.``."""
    text = value.strip()
    if "@" in text and "/" not in text.split("@", 1)[0]:
        host = text.rsplit("@", 1)[1]
    else:
        if "//" not in text:
            text = "//" + text
        try:
            host = urlsplit(text).hostname or ""
        except ValueError:
            return None
    host = host.strip().strip(".").lower()
    host = host.removeprefix("www.")
    return host if "." in host and " " not in host else None


#: Most arguments a variadic added function takes (JMESPath only checks the minimum).
MAX_ARGS: dict[str, int] = {"e164": 2, "lookup": 3}


def _at_most(name: str, given: int) -> None:
    if given > MAX_ARGS[name]:
        raise FunctionFailed(f"{name}() takes at most {MAX_ARGS[name]} arguments, {given} given")


class IntakeFunctions(functions.Functions):
    """Functions added to JMESPath for Lead Intake mappings."""

    @functions.signature({"types": _ANY, "variadic": True})
    def _func_first(self, *values: Any) -> Any:
        for value in values:
            if not is_empty(value):
                return value
        return None

    @functions.signature({"types": _ANY}, {"types": ["string"], "variadic": True})
    def _func_pick(self, obj: Any, *names: str) -> Any:
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

    @functions.signature({"types": _ANY})
    def _func_split_name(self, value: Any) -> Any:
        text = _text(value)
        if text is None or not text.strip():
            return None
        first, last = split_full_name(text)
        return {"first": first, "last": last}

    @functions.signature({"types": ["string"]}, {"types": _ANY, "variadic": True})
    def _func_join_any(self, sep: str, *values: Any) -> Any:
        parts: list[str] = []
        for value in values:
            for item in value if isinstance(value, list) else [value]:
                text = _text(item)
                if text is not None and text.strip():
                    parts.append(text.strip())
        return sep.join(parts) if parts else None

    @functions.signature({"types": _ANY})
    def _func_lower(self, value: Any) -> Any:
        text = _text(value)
        return None if text is None else text.lower()

    @functions.signature({"types": _ANY})
    def _func_upper(self, value: Any) -> Any:
        text = _text(value)
        return None if text is None else text.upper()

    @functions.signature({"types": _ANY})
    def _func_trim(self, value: Any) -> Any:
        text = _text(value)
        return None if text is None else " ".join(text.split()) or None

    @functions.signature({"types": _ANY, "variadic": True})
    def _func_e164(self, value: Any, *region: Any) -> Any:
        _at_most("e164", 1 + len(region))
        default = region[0] if region and isinstance(region[0], str) else None
        return to_e164(value, default)

    @functions.signature({"types": _ANY})
    def _func_domain(self, value: Any) -> Any:
        text = _text(value)
        return None if text is None else host_of(text)

    @functions.signature({"types": _ANY}, {"types": _ANY, "variadic": True})
    def _func_lookup(self, value: Any, table: Any, *default: Any) -> Any:
        _at_most("lookup", 2 + len(default))
        if not isinstance(table, dict):
            raise FunctionFailed("lookup() needs an object as its table (second argument)")
        fallback = default[0] if default else None
        text = _text(value)
        if text is None:
            return fallback
        if text in table:
            return table[text]
        wanted = key_token(text)
        for key, mapped in table.items():
            if key_token(key) == wanted:
                return mapped
        return fallback

    @functions.signature({"types": _ANY})
    def _func_parse_json(self, value: Any) -> Any:
        if not isinstance(value, str):
            return None
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return None

    @functions.signature({"types": _ANY}, {"types": ["expref"]}, {"types": ["expref"]})
    def _func_to_object(self, items: Any, key_ref: Any, value_ref: Any) -> Any:
        if not isinstance(items, list):
            return None
        result: dict[str, Any] = {}
        for item in items:
            key = _text(key_ref.visit(key_ref.expression, item))
            if key is not None and key not in result:
                result[key] = value_ref.visit(value_ref.expression, item)
        return result

    @functions.signature({"types": _ANY}, {"types": ["expref"]}, {"types": _ANY})
    def _func_find(self, items: Any, key_ref: Any, wanted: Any) -> Any:
        if not isinstance(items, list) or wanted is None:
            return None
        for item in items:
            if key_ref.visit(key_ref.expression, item) == wanted:
                return item
        return None

    @functions.signature({"types": _ANY}, {"types": ["string"]}, {"types": ["string"]})
    def _func_rename_keys(self, obj: Any, pattern: str, replacement: str) -> Any:
        if not isinstance(obj, dict):
            return None
        regex = _regex(pattern)
        result: dict[str, Any] = {}
        for key, value in obj.items():
            new_key = regex.sub(replacement, str(key))
            if new_key not in result:
                result[new_key] = value
        return result

    @functions.signature({"types": _ANY}, {"types": ["string"]})
    def _func_keep_keys(self, obj: Any, pattern: str) -> Any:
        if not isinstance(obj, dict):
            return None
        regex = _regex(pattern)
        return {key: value for key, value in obj.items() if regex.search(str(key))}

    @functions.signature({"types": _ANY}, {"types": _ANY})
    def _func_relabel(self, obj: Any, labels: Any) -> Any:
        if not isinstance(obj, dict):
            return None
        table = labels if isinstance(labels, dict) else {}
        result: dict[str, Any] = {}
        for key, value in obj.items():
            label = _text(table.get(key)) or str(key)
            if label not in result:
                result[label] = value
        return result

    @functions.signature({"types": _ANY})
    def _func_items(self, obj: Any) -> Any:
        if not isinstance(obj, dict):
            return None
        return [[key, value] for key, value in obj.items()]

    @functions.signature({"types": _ANY}, {"types": ["string"]})
    def _func_split(self, value: Any, sep: str) -> Any:
        text = _text(value)
        if text is None:
            return None
        parts = text.split(sep) if sep else text.split()
        return [part.strip() for part in parts if part.strip()]

    @functions.signature({"types": _ANY}, {"types": ["string"]})
    def _func_url_param(self, value: Any, name: str) -> Any:
        text = _text(value)
        if not text:
            return None
        try:
            values = parse_qs(urlsplit(text.strip()).query).get(name)
        except ValueError:
            return None
        return values[0] if values else None


FUNCTIONS = IntakeFunctions()
OPTIONS = jmespath.Options(custom_functions=FUNCTIONS)
FUNCTION_NAMES: frozenset[str] = frozenset(FUNCTIONS.FUNCTION_TABLE)


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


Evaluator = Callable[[Any], Any]


def evaluator(compiled: ParsedResult) -> Evaluator:
    """A function evaluating ``compiled`` with the added functions.

    Same results and errors as ``compiled.search(value, options=OPTIONS)``, but the syntax
    tree is turned into nested closures once (see ``_closure``) instead of being walked node
    by node on every call; node types without a closure are run by the JMESPath interpreter.
    """
    return _closure(compiled.parsed)


# --- Expressions as closures --------------------------------------------------------------
# jmespath's TreeInterpreter dispatches every node through Visitor.visit and type-checks every
# function argument on each call. The closures below do what the TreeInterpreter's visit_*
# methods do (jmespath 1.x, visitor.py), node for node, so results and errors are the same;
# a function's argument types are checked once here when the argument is a scalar literal.

_INTERPRETER = TreeInterpreter(OPTIONS)
_SEQUENCE = frozenset({"subexpression", "index_expression", "pipe"})
_EQUALITY_OPS = frozenset({"eq", "ne"})  # TreeInterpreter._EQUALITY_OPS
# jmespath internals the closures reuse so that they behave exactly as the interpreter (the
# type stubs leave them out).
_jmespath_visitor: Any = visitor
_type_check_single: Callable[[Any, list[str], str], None] = getattr(  # noqa: B009
    FUNCTIONS, "_type_check_single"
)


class _Expression(visitor._Expression):
    """An ``&expr`` argument: what the interpreter passes, but running the closure.

    The class keeps jmespath's name on purpose: function signatures check argument types by
    the class name (``_Expression`` is the ``expref`` type).
    """

    def __init__(self, expression: Any, run: Evaluator) -> None:
        super().__init__(expression, _INTERPRETER)
        self._run = run

    def visit(self, node: Any, *args: Any, **kwargs: Any) -> Any:
        if node is self.expression and len(args) == 1 and not kwargs:
            return self._run(args[0])
        return self.interpreter.visit(node, *args, **kwargs)


def _is_false(value: Any) -> bool:
    """JMESPath falsiness, exactly as TreeInterpreter._is_false."""
    return value == "" or value == [] or value == {} or value is None or value is False  # noqa: PLR1714


def _interpreted(node: Any) -> Evaluator:
    def run(value: Any) -> Any:
        return _INTERPRETER.visit(node, value)

    return run


def _closure(node: Any) -> Evaluator:
    """A closure evaluating ``node`` as TreeInterpreter.visit(node, value) does."""
    kind = node.get("type")
    children: list[Any] = node.get("children", [])
    if kind == "field":
        return _field_chain((node["value"],))
    if kind in _SEQUENCE:
        if all(isinstance(c, dict) and c.get("type") == "field" for c in children):
            return _field_chain(tuple(c["value"] for c in children))
        return _sequence([_closure(child) for child in children])
    if kind == "literal":
        constant = node["value"]
        return lambda value: constant
    if kind in {"identity", "current"}:
        return lambda value: value
    if kind == "index":
        return _index(node["value"])
    if kind == "function_expression":
        return _function(node)
    if kind == "expref":
        expref = _Expression(children[0], _closure(children[0]))
        return lambda value: expref
    if kind == "multi_select_list":
        return _multi_select_list([_closure(child) for child in children])
    if kind in {"or_expression", "and_expression"}:
        return _logical(kind == "or_expression", _closure(children[0]), _closure(children[1]))
    if kind == "not_expression":
        return _not(_closure(children[0]))
    if kind == "projection":
        return _projection(_closure(children[0]), _closure(children[1]), None)
    if kind == "filter_projection":
        base, each, condition = (_closure(child) for child in children)
        return _projection(base, each, condition)
    if kind == "comparator" and node["value"] in _EQUALITY_OPS:
        return _equality(node["value"] == "eq", _closure(children[0]), _closure(children[1]))
    return _interpreted(node)  # ordering comparators, slices, flatten, multi-select hashes...


def _field_chain(names: tuple[str, ...]) -> Evaluator:
    # TreeInterpreter.visit_field: value.get(name), None when the value has no .get. Once the
    # result is None every further field is None too, so the chain can stop there.
    if len(names) == 1:
        (name,) = names

        def field(value: Any) -> Any:
            try:
                return value.get(name)
            except AttributeError:
                return None

        return field

    def fields(value: Any) -> Any:
        for name in names:
            try:
                value = value.get(name)
            except AttributeError:
                return None
        return value

    return fields


def _sequence(steps: list[Evaluator]) -> Evaluator:
    def sequence(value: Any) -> Any:
        for step in steps:
            value = step(value)
        return value

    return sequence


def _index(position: int) -> Evaluator:
    def index(value: Any) -> Any:
        if not isinstance(value, list):
            return None
        try:
            return value[position]
        except IndexError:
            return None

    return index


def _multi_select_list(items: list[Evaluator]) -> Evaluator:
    def multi_select_list(value: Any) -> Any:
        if value is None:
            return None
        return [item(value) for item in items]

    return multi_select_list


def _logical(is_or: bool, left: Evaluator, right: Evaluator) -> Evaluator:
    if is_or:

        def or_expression(value: Any) -> Any:
            matched = left(value)
            return right(value) if _is_false(matched) else matched

        return or_expression

    def and_expression(value: Any) -> Any:
        matched = left(value)
        return matched if _is_false(matched) else right(value)

    return and_expression


def _not(operand: Evaluator) -> Evaluator:
    def not_expression(value: Any) -> Any:
        result = operand(value)
        if _jmespath_visitor._is_actual_number(result) and result == 0:
            return False
        return not result

    return not_expression


def _projection(base: Evaluator, each: Evaluator, condition: Evaluator | None) -> Evaluator:
    def projection(value: Any) -> Any:
        items = base(value)
        if not isinstance(items, list):
            return None
        collected = []
        for item in items:
            if condition is not None and _is_false(condition(item)):
                continue
            current = each(item)
            if current is not None:
                collected.append(current)
        return collected

    return projection


def _equality(equal: bool, left: Evaluator, right: Evaluator) -> Evaluator:
    def equality(value: Any) -> Any:
        same = _jmespath_visitor._equals(left(value), right(value))
        return same if equal else not same

    return equality


def _function(node: Any) -> Evaluator:
    name: str = node["value"]
    children: list[dict[str, Any]] = node["children"]
    spec = FUNCTIONS.FUNCTION_TABLE.get(name)
    if spec is None or not _arity_ok(spec["signature"], len(children)):
        return _interpreted(node)  # raises as the interpreter does
    function = spec["function"]
    arguments = [_closure(child) for child in children]
    # Functions._type_check checks the first len(signature) arguments, in order, once all
    # are evaluated; a scalar literal's type is known now.
    checks: list[tuple[int, list[str]]] = []
    for position, argument in enumerate(spec["signature"]):
        types = argument["types"]
        if types and not _literal_fits(children[position], types, name):
            checks.append((position, types))
    check = _type_check_single

    def call(value: Any) -> Any:
        resolved = [argument(value) for argument in arguments]
        for position, types in checks:
            check(resolved[position], types, name)
        return function(FUNCTIONS, *resolved)

    return call


def _arity_ok(signature: Any, given: int) -> bool:
    if signature and signature[-1].get("variadic"):
        return given >= len(signature)
    return given == len(signature)


def _literal_fits(node: Any, types: list[str], name: str) -> bool:
    """True when ``node`` is a scalar literal of an allowed type (no check needed per call)."""
    if node.get("type") != "literal" or isinstance(node["value"], (list, dict)):
        return False
    try:
        _type_check_single(node["value"], types, name)
    except jexc.JMESPathTypeError:
        return False
    return True


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
        if node.get("value") not in _EQUALITY_OPS:
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
        _regex(pattern)
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
    if not _arity_ok(signature, len(children)) or len(children) > MAX_ARGS.get(name, len(children)):
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
