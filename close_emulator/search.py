"""``POST /data/search/`` of the Close emulator: a lagging index and the query language subset.

Supported query nodes (close-api.md §3b): ``and``, ``or``, ``object_type``, ``has_related``
(lead→contact, contact→lead, contact→contact_email, contact→contact_phone) and
``field_condition`` on a ``regular_field`` or ``custom_field`` with a ``text`` condition
(``exact_value``, ``phrase``, ``full_words``), ``term`` (``values``) or ``reference``
(``object_ids``); ``negate: true`` on any node. Anything else is a 400, so a client never
silently relies on something the emulator does not model. Text matching ignores case; phone
fields compare E.164 forms. ``phrase``/``full_words`` are word-based approximations.

``_fields`` picks the fields of each result from the object as it is now (a lead's
``contacts`` come with their emails and phones), while the match itself is decided on the
version the lagging index holds. Exact contact emails and phones, and lead ids, are looked up
in the index (``search_index.py``) instead of scanning every lead.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from close_emulator.fields import JSONObject, ValidationFailed, normalize_phone
from close_emulator.options import EmulatorOptions
from close_emulator.search_index import SearchIndex

_FIELDS: dict[str, frozenset[str]] = {
    "lead": frozenset(
        {"id", "name", "display_name", "url", "description", "status_id", "status_label"}
        | {"date_created", "date_updated", "organization_id", "html_url"}
    ),
    "contact": frozenset(
        {"id", "name", "title", "display_name", "lead_id", "date_created", "date_updated"}
    ),
    "contact_email": frozenset({"email", "type"}),
    "contact_phone": frozenset({"phone", "type"}),
}
_RELATIONS: dict[tuple[str, str], Callable[[SearchObject], list[SearchObject]]] = {}
_RESULT_TYPES = ("lead", "contact")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class SearchObject:
    type: str
    data: JSONObject
    lead: JSONObject


def _children(kind: str, key: str) -> Callable[[SearchObject], list[SearchObject]]:
    def related(obj: SearchObject) -> list[SearchObject]:
        return [SearchObject(kind, item, obj.lead) for item in obj.data.get(key) or []]

    return related


_RELATIONS[("lead", "contact")] = _children("contact", "contacts")
_RELATIONS[("contact", "contact_email")] = _children("contact_email", "emails")
_RELATIONS[("contact", "contact_phone")] = _children("contact_phone", "phones")
_RELATIONS[("contact", "lead")] = lambda obj: [SearchObject("lead", obj.lead, obj.lead)]


Predicate = Callable[[SearchObject], bool]


def _fail(message: str) -> ValidationFailed:
    return ValidationFailed({"errors": [message], "field-errors": {}})


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def _text_matcher(condition: JSONObject, phone: bool, region: str) -> Callable[[Any], bool]:
    mode = condition.get("mode", "full_words")
    value = condition.get("value")
    if not isinstance(value, str):
        raise _fail("A text condition needs a string 'value'.")
    if mode == "exact_value":
        wanted = value.casefold()
        if phone:
            wanted = (normalize_phone(value, region) or (value,))[0]
        return lambda found: isinstance(found, str) and found.casefold() == wanted.casefold()
    wanted_words = _words(value)
    if mode == "phrase":
        size = len(wanted_words)

        def phrase(found: Any) -> bool:
            words = _words(found) if isinstance(found, str) else []
            return any(words[i : i + size] == wanted_words for i in range(len(words) - size + 1))

        return phrase
    if mode == "full_words":
        return lambda found: isinstance(found, str) and set(wanted_words) <= set(_words(found))
    raise _fail(f"Unsupported text mode {mode!r}.")


def _condition(condition: Any, phone: bool, region: str) -> Callable[[Any], bool]:
    if not isinstance(condition, dict):
        raise _fail("A field_condition needs a 'condition' object.")
    kind = condition.get("type")
    if kind == "text":
        match = _text_matcher(condition, phone, region)
    elif kind in ("term", "reference"):
        values = condition.get("values" if kind == "term" else "object_ids")
        if not isinstance(values, list):
            raise _fail(f"A {kind} condition needs a list of values.")
        allowed = {json.dumps(item) for item in values}

        def match(found: Any) -> bool:
            return json.dumps(found) in allowed

    else:
        raise _fail(f"Unsupported condition type {kind!r}.")
    return lambda found: any(map(match, found)) if isinstance(found, list) else match(found)


def _field(node: JSONObject, options: EmulatorOptions) -> tuple[str | None, str, bool]:
    """(object type or None for custom fields, stored key, is a phone field)."""
    field = node.get("field")
    if not isinstance(field, dict):
        raise _fail("A field_condition needs a 'field' object.")
    if field.get("type") == "regular_field":
        object_type, name = field.get("object_type"), field.get("field_name")
        if object_type not in _FIELDS or name not in _FIELDS[str(object_type)]:
            raise _fail(f"Unsupported field {object_type}.{name}.")
        return str(object_type), str(name), object_type == "contact_phone" and name == "phone"
    if field.get("type") == "custom_field":
        field_id = field.get("custom_field_id")
        known = options.lead_custom_fields + options.contact_custom_fields
        if not any(spec.id == field_id for spec in known):
            raise _fail(f"Custom field {field_id!r} does not exist.")
        return None, f"custom.{field_id}", False
    raise _fail(f"Unsupported field type {field.get('type')!r}.")


def _combine(node: JSONObject, options: EmulatorOptions) -> Predicate:
    kind = node["type"]
    parts = node.get("queries")
    if not isinstance(parts, list):
        raise _fail(f"An '{kind}' query needs a 'queries' list.")
    compiled = [compile_query(part, options) for part in parts]
    combine = all if kind == "and" else any

    def predicate(obj: SearchObject) -> bool:
        return combine(part(obj) for part in compiled)

    return predicate


def _object_type(node: JSONObject) -> Predicate:
    wanted = str(node.get("object_type"))
    if wanted not in _RESULT_TYPES:
        raise _fail(f"The emulator only searches {' and '.join(_RESULT_TYPES)} objects.")

    def predicate(obj: SearchObject) -> bool:
        return obj.type == wanted

    return predicate


def _has_related(node: JSONObject, options: EmulatorOptions) -> Predicate:
    this, other = node.get("this_object_type"), node.get("related_object_type")
    relation = _RELATIONS.get((str(this), str(other)))
    if relation is None:
        raise _fail(f"Unsupported relation {this} -> {other}.")
    inner = compile_query(node.get("related_query"), options)

    def predicate(obj: SearchObject) -> bool:
        return obj.type == this and any(map(inner, relation(obj)))

    return predicate


def _field_condition(node: JSONObject, options: EmulatorOptions) -> Predicate:
    object_type, key, phone = _field(node, options)
    match = _condition(node.get("condition"), phone, options.default_region)

    def predicate(obj: SearchObject) -> bool:
        if object_type is not None and obj.type != object_type:
            return False
        return key in obj.data and match(obj.data[key])

    return predicate


def compile_query(node: Any, options: EmulatorOptions) -> Predicate:
    """Turn a query tree into a predicate; raises ``ValidationFailed`` for what is unsupported."""
    if not isinstance(node, dict):
        raise _fail("Every query node must be an object.")
    kind = node.get("type")
    if kind in ("and", "or"):
        predicate = _combine(node, options)
    elif kind == "object_type":
        predicate = _object_type(node)
    elif kind == "has_related":
        predicate = _has_related(node, options)
    elif kind == "field_condition":
        predicate = _field_condition(node, options)
    else:
        raise _fail(f"Unsupported query type {kind!r}.")
    if node.get("negate") is True:
        return lambda obj: not predicate(obj)
    return predicate


def _candidates(leads: Iterator[JSONObject]) -> Iterator[SearchObject]:
    for lead in leads:
        yield SearchObject("lead", lead, lead)
        for contact in lead.get("contacts") or []:
            yield SearchObject("contact", contact, lead)


def _int(body: JSONObject, key: str, low: int, high: int | None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValidationFailed.single(key, f"Must be an integer of at least {low}.")
    if high is not None and value > high:
        raise ValidationFailed.single(key, f"Must be at most {high}.")
    return value


def _decode_cursor(cursor: Any) -> int:
    if cursor is None:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(str(cursor).encode()))["offset"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ValidationFailed.single("cursor", "Invalid cursor.") from None
    if not isinstance(offset, int) or offset < 0:
        raise ValidationFailed.single("cursor", "Invalid cursor.")
    return offset


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _sort(hits: list[SearchObject], sort: Any) -> list[SearchObject]:
    if sort is None:
        return hits  # creation order; Close's default order is UNKNOWN
    if not isinstance(sort, list):
        raise ValidationFailed.single("sort", "Must be a list.")
    for spec in reversed(sort):
        field = spec.get("field") if isinstance(spec, dict) else None
        name = field.get("field_name") if isinstance(field, dict) else None
        if not isinstance(name, str):
            raise ValidationFailed.single("sort", "Each sort needs field.field_name.")
        reverse = spec.get("direction", "asc") == "desc"
        hits = sorted(hits, key=lambda obj: str(obj.data.get(name) or ""), reverse=reverse)
    return hits


def _project(obj: SearchObject, fields: Any, live: Callable[[str, str], JSONObject | None]) -> Any:
    item: JSONObject = {"__object_type": obj.type, "id": obj.data["id"]}
    wanted = fields.get(obj.type) if isinstance(fields, dict) else None
    if not wanted:
        return item
    source = live(obj.type, obj.data["id"]) or obj.data
    for name in wanted:
        if name == "custom":
            item.update({k: v for k, v in source.items() if k.startswith("custom.")})
        else:
            item[name] = copy.deepcopy(source.get(name))
    return item


def narrow(node: Any, index: SearchIndex, region: str) -> set[str] | None:
    """Ids of the leads that hold every object ``node`` can match (the lead itself, its
    contacts, their emails and phones), from the index; None when the index cannot tell (the
    query then scans every lead). Called on a query ``compile_query`` accepted."""
    if not isinstance(node, dict) or node.get("negate") is True:
        return None
    kind = node.get("type")
    if kind in ("and", "or"):
        parts = [narrow(part, index, region) for part in node["queries"]]
        known = [part for part in parts if part is not None]
        if kind == "and":
            return set.intersection(*known) if known else None
        return set().union(*known) if len(known) == len(parts) and known else None
    if kind == "has_related":
        # Every relation stays inside one lead: a contact's lead, a lead's contacts, their
        # emails and phones.
        return narrow(node.get("related_query"), index, region)
    if kind != "field_condition":
        return None
    field, condition = node["field"], node["condition"]
    if field.get("type") != "regular_field":
        return None
    where = (field.get("object_type"), field.get("field_name"))
    if condition.get("type") == "text" and condition.get("mode") == "exact_value":
        value = str(condition.get("value"))
        if where == ("contact_email", "email"):
            return index.with_email(value)
        if where == ("contact_phone", "phone"):
            return index.with_phone(value, region)
    if where in (("lead", "id"), ("contact", "lead_id")) and condition.get("type") in (
        "term",
        "reference",
    ):
        return index.known(condition.get("values" if condition["type"] == "term" else "object_ids"))
    return None


def run_search(
    body: JSONObject,
    index: SearchIndex,
    now: float,
    options: EmulatorOptions,
    live: Callable[[str, str], JSONObject | None],
) -> JSONObject:
    """Answer one search request over the leads ``index`` shows at ``now``; ``live`` fetches
    ``_fields`` (from the objects as they are, not as the index saw them)."""
    if "query" not in body:
        raise ValidationFailed.single("query", "This field is required.")
    predicate = compile_query(body["query"], options)
    limit = _int(body, "_limit", 1, options.max_search_limit)
    if limit is None:
        limit = min(100, options.max_search_limit)  # Close's default _limit is UNKNOWN
    results_limit = _int(body, "results_limit", 0, None)
    offset = _decode_cursor(body.get("cursor"))
    fields = body.get("_fields")
    if fields is not None and not isinstance(fields, dict):
        raise ValidationFailed.single("_fields", "Must be an object keyed by object type.")
    leads = index.visible(now, narrow(body["query"], index, options.default_region))
    matches = [obj for obj in _candidates(leads) if obj.type in _RESULT_TYPES and predicate(obj)]
    hits = _sort(matches, body.get("sort"))
    if results_limit is not None:
        hits = hits[:results_limit]
    page = hits[offset : offset + limit]
    more = offset + limit < len(hits)
    answer: JSONObject = {
        "data": [_project(obj, fields, live) for obj in page],
        "cursor": _encode_cursor(offset + limit) if more else None,
    }
    if body.get("include_counts") is True:
        answer["count"] = {"total": len(matches)}
    return answer
