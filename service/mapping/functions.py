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
from jmespath import functions
from jmespath.parser import ParsedResult

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


def key_token(name: str) -> str:
    """A key compared loosely: lower-case, letters and digits only ("E-Mail" -> "email")."""
    return "".join(ch for ch in name.casefold() if ch.isalnum())


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
                token = key_token(str(key))
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
    """A function evaluating ``compiled`` with the added functions."""
    return functools.partial(compiled.search, options=OPTIONS)
