"""Rejections that explain themselves: a stable code and a sentence naming what was missing
and where the mapping looked for it.

A submission without its required fields is not always "an empty form": a thin provider
notification carries only ids (the person must be fetched: hydration), a provider submission
may name nobody at all, a payload may hold no answer, or its values were there but unusable
(an invalid email). Each gets its own code (``service.errors.REJECTION_CODES``) so an operator,
the dashboard and a program can tell them apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jmespath

from service.errors import MappingRejected
from service.mapping.jmes import read_paths
from service.mapping.normalize import Notice
from service.mapping.spec import DOCUMENT_ROOTS, NAME_ALIAS
from service.mapping.template import CompiledTemplate, id_text
from service.mapping.text import is_empty

NAME_FIELDS = ("full_name", "first_name", "last_name")


def where_looked(template: CompiledTemplate) -> dict[str, tuple[str, ...]]:
    """For each extracted field, the document paths its expression reads."""
    roots = tuple(root for root in DOCUMENT_ROOTS if root not in ("source", "submission_id"))
    return {
        path: read_paths(jmespath.compile(expr.text), roots)
        for path, expr in template.extract.items()
    }


def _members(name: str) -> tuple[str, ...]:
    return NAME_FIELDS if name == NAME_ALIAS else (name,)


def _has_answers(value: Any, depth: int = 0) -> bool:
    """True when ``value`` holds any non-empty scalar (a payload with some answer)."""
    if depth > 16:
        return True
    if isinstance(value, dict):
        return any(_has_answers(item, depth + 1) for item in value.values())
    if isinstance(value, list):
        return any(_has_answers(item, depth + 1) for item in value)
    return not is_empty(value) and value is not False


def _joined(items: Iterable[str]) -> str:
    return ", ".join(items)


def missing_required(
    group: tuple[str, ...],
    notices: list[Notice],
    *,
    template: CompiledTemplate,
    where: Mapping[str, tuple[str, ...]],
    document: Mapping[str, Any],
    provider: str | None,
) -> MappingRejected:
    """The rejection for a required group with no member present; ``notices`` in extract
    order (those about the group's fields are named in the reason)."""
    wanted = f"'{group[0]}'" if len(group) == 1 else "one of " + _joined(group)
    related = [n.message for n in notices if n.message.split(" ", 1)[0] in group]
    reason = f"missing required field: {wanted}"
    if related:
        reason += " (" + "; ".join(related) + ")"
    looked: list[str] = []
    absent: list[str] = []
    for name in group:
        members = [m for m in _members(name) if m in where]
        if not members:
            absent.append(name)
        for member in members:
            looked += [p for p in where[member] if p not in looked]
    if looked:
        reason += f"; looked for in {_joined(looked)}"
    if absent:
        reason += f"; this source does not extract {_joined(absent)}"
    detail: dict[str, Any] = {
        "missing": list(group),
        "looked_in": looked,
        "warnings": [n.message for n in notices],
    }
    code = "missing-required"
    fetch = template.fetch_id
    who = provider or "this provider"
    if fetch is not None and document.get("fetched") is None:
        thin = id_text(fetch.run, document)
        if thin:
            code = "ids-only"
            detail["fetch_id"] = thin
            reason = (
                f"{who} sends only ids ({fetch.text}: {thin}), not the person: configure "
                "hydration on this source (a 'hydrate' block with the provider's token) so "
                "the person is fetched before mapping"
            )
        else:
            code = "no-person"
            reason = (
                f"the {who} submission names no person to fetch ({fetch.text} is empty) and "
                f"its own answers hold none: {reason}"
            )
    elif not _has_answers(document.get("body")) and not _has_answers(document.get("fetched")):
        code = "empty-payload"
        reason = f"the payload holds no answer at all (every field is empty): {reason}"
    return MappingRejected(reason, detail, code=code)
