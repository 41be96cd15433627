"""The JMESPath functions Lead Intake adds to the standard ones.

Every added function is forgiving about odd input (it returns ``null`` rather than failing on
a number where a string was expected), so a strange payload ends as "missing required field"
instead of a crash. The standard JMESPath functions keep their strict type checks. Scalars
become text as everywhere else in mapping (``service.mapping.text.text_of``: a boolean reads
``yes``/``no``).
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jmespath
from jmespath import exceptions as jexc
from jmespath import functions

from service.mapping.text import host_of, is_empty, key_token, split_full_name, text_of, to_e164

_ANY: list[str] = []  # no type restriction


class FunctionFailed(jexc.JMESPathError):
    """An added function could not compute its result from valid-typed arguments."""


@functools.lru_cache(maxsize=256)
def compiled_regex(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled (memoised), or FunctionFailed naming the problem."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise FunctionFailed(f"invalid regular expression {pattern!r}: {exc}") from exc


#: Most arguments a variadic added function takes (JMESPath only checks the minimum).
MAX_ARGS: dict[str, int] = {"e164": 2, "lookup": 3}


def _at_most(name: str, given: int) -> None:
    if given > MAX_ARGS[name]:
        raise FunctionFailed(f"{name}() takes at most {MAX_ARGS[name]} arguments, {given} given")


def arity_ok(signature: Any, given: int) -> bool:
    """True when ``given`` arguments suit a function's signature (JMESPath's own rule)."""
    if signature and signature[-1].get("variadic"):
        return given >= len(signature)
    return given == len(signature)


#: What a key means, read from its loose token (``key_token``): a pattern it must match, one
#: it must not, and for emails and phones what the value must look like.
MEANINGS: dict[str, tuple[str, str | None, str | None]] = {
    "email": (r"e?mail", None, r"@"),
    "phone": (r"phone|tel|mobile|cell|whatsapp", r"email", r"\d(?:\D*\d){5}"),
    "first_name": (r"(?:first|given|fore)name|^fname$|^first$", None, None),
    "last_name": (r"(?:last|sur|family)name|^lname$|^surname$|^last$", None, None),
    "full_name": (
        r"^(?:full|your|contact)?name\d*$|fullname",
        r"first|last|sur|company|business|user|file|form|page|site|domain",
        None,
    ),
    "company": (r"company|organi[sz]ation|business|employer", r"size|type|email|url|site", None),
    "website": (r"website|homepage|domain|^url\d*$|^site$", r"email", None),
}


def _meaning_matches(meaning: str, key: str, value: Any) -> bool:
    include, exclude, looks = MEANINGS[meaning]
    token = key_token(key)
    if not re.search(include, token) or (exclude and re.search(exclude, token)):
        return False
    if looks is None:
        return True
    text = text_of(value)
    return text is not None and re.search(looks, text) is not None


def pick_ranks(names: tuple[str, ...]) -> dict[str, int]:
    """Each of pick()'s names as its loose token, and its place among them (0, 1, 2...: a
    token named twice keeps its first place)."""
    ranks: dict[str, int] = {}
    for name in names:
        ranks.setdefault(key_token(name), len(ranks))
    return ranks


def pick_ranked(obj: Any, ranks: dict[str, int]) -> Any:
    """pick(): in the first object (of ``obj``, or of the list ``obj``) that has one, the
    value of the first of the names (``ranks``) whose key is there with a value that is not
    empty; of several keys with the same token, the first with a value. The names' tokens
    are made once (a compiled pick() of literal names makes them when it is compiled)."""
    unranked = len(ranks)
    for candidate in obj if isinstance(obj, list) else [obj]:
        if not isinstance(candidate, dict):
            continue
        best, found = unranked, None
        for key, value in candidate.items():
            place = ranks.get(key_token(key if type(key) is str else str(key)), unranked)
            if place < best and not is_empty(value):
                best, found = place, value
                if not place:
                    break
        if best < unranked:
            return found
    return None


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
        return pick_ranked(obj, pick_ranks(names))

    @functions.signature({"types": _ANY}, {"types": ["string"]})
    def _func_pick_like(self, obj: Any, meaning: str) -> Any:
        if meaning not in MEANINGS:
            raise FunctionFailed(f"pick_like() knows {', '.join(MEANINGS)}, not {meaning!r}")
        for candidate in obj if isinstance(obj, list) else [obj]:
            if not isinstance(candidate, dict):
                continue
            for key, value in candidate.items():
                if not is_empty(value) and _meaning_matches(meaning, str(key), value):
                    return value
        return None

    @functions.signature({"types": _ANY})
    def _func_answer_text(self, answer: Any) -> Any:
        if not isinstance(answer, dict):
            return answer
        value = answer.get("value")
        texts = _texts(answer.get("options"))
        if isinstance(value, list) and texts:
            return ", ".join(texts.get(str(item), text_of(item) or "") for item in value) or None
        rows, columns = _texts(answer.get("rows")), _texts(answer.get("columns"))
        if isinstance(value, dict) and (rows or columns):
            parts = []
            for row, chosen in value.items():
                picked = chosen if isinstance(chosen, list) else [chosen]
                names = ", ".join(columns.get(str(c), text_of(c) or "") for c in picked)
                parts.append(f"{rows.get(str(row), str(row))}: {names}")
            return "; ".join(parts) or None
        return value

    @functions.signature({"types": _ANY})
    def _func_split_name(self, value: Any) -> Any:
        text = text_of(value)
        if text is None or not text.strip():
            return None
        first, last = split_full_name(text)
        return {"first": first, "last": last}

    @functions.signature({"types": ["string"]}, {"types": _ANY, "variadic": True})
    def _func_join_any(self, sep: str, *values: Any) -> Any:
        parts: list[str] = []
        for value in values:
            for item in value if isinstance(value, list) else [value]:
                text = text_of(item)
                if text is not None and text.strip():
                    parts.append(text.strip())
        return sep.join(parts) if parts else None

    @functions.signature({"types": _ANY})
    def _func_lower(self, value: Any) -> Any:
        text = text_of(value)
        return None if text is None else text.lower()

    @functions.signature({"types": _ANY})
    def _func_upper(self, value: Any) -> Any:
        text = text_of(value)
        return None if text is None else text.upper()

    @functions.signature({"types": _ANY})
    def _func_trim(self, value: Any) -> Any:
        text = text_of(value)
        return None if text is None else " ".join(text.split()) or None

    @functions.signature({"types": _ANY, "variadic": True})
    def _func_e164(self, value: Any, *region: Any) -> Any:
        _at_most("e164", 1 + len(region))
        default = region[0] if region and isinstance(region[0], str) else None
        return to_e164(value, default)

    @functions.signature({"types": _ANY})
    def _func_domain(self, value: Any) -> Any:
        text = text_of(value)
        return None if text is None else host_of(text)

    @functions.signature({"types": _ANY}, {"types": _ANY, "variadic": True})
    def _func_lookup(self, value: Any, table: Any, *default: Any) -> Any:
        _at_most("lookup", 2 + len(default))
        if not isinstance(table, dict):
            raise FunctionFailed("lookup() needs an object as its table (second argument)")
        fallback = default[0] if default else None
        text = text_of(value)
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
            key = text_of(key_ref.visit(key_ref.expression, item))
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
        regex = compiled_regex(pattern)
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
        regex = compiled_regex(pattern)
        return {key: value for key, value in obj.items() if regex.search(str(key))}

    @functions.signature({"types": _ANY}, {"types": _ANY})
    def _func_relabel(self, obj: Any, labels: Any) -> Any:
        if not isinstance(obj, dict):
            return None
        table = labels if isinstance(labels, dict) else {}
        result: dict[str, Any] = {}
        for key, value in obj.items():
            label = text_of(table.get(key)) or str(key)
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
        text = text_of(value)
        if text is None:
            return None
        parts = text.split(sep) if sep else text.split()
        return [part.strip() for part in parts if part.strip()]

    @functions.signature({"types": _ANY}, {"types": ["string"]})
    def _func_url_param(self, value: Any, name: str) -> Any:
        text = text_of(value)
        if not text:
            return None
        try:
            values = parse_qs(urlsplit(text.strip()).query).get(name)
        except ValueError:
            return None
        return values[0] if values else None


def _texts(options: Any) -> dict[str, str]:
    """``{id: text}`` of a list of ``{id, text}`` options (Tally choices, matrix rows...)."""
    if not isinstance(options, list):
        return {}
    return {
        str(o["id"]): str(o.get("text") or o.get("label") or o["id"])
        for o in options
        if isinstance(o, dict) and "id" in o
    }


FUNCTIONS = IntakeFunctions()
OPTIONS = jmespath.Options(custom_functions=FUNCTIONS)
FUNCTION_NAMES: frozenset[str] = frozenset(FUNCTIONS.FUNCTION_TABLE)
