"""Expressions and text templates over the canonical record, for the follow-ups of a source
(owner rules, task text, opportunity value and note, custom activity fields).

- :class:`RecordExpr`: a JMESPath expression over the canonical record (``address.country``,
  ``to_number(extra.budget)``, ``'Website'`` for a literal), compiled once; it reads the same
  fields and functions as the lead template.
- :class:`RecordText`: a ``string.Template`` text whose placeholders are canonical fields,
  dotted ones included: ``Call ${full_name}: ${message}``, ``${address.city}``,
  ``${attribution.utm_campaign}``, ``${extra.plan}``. A missing field is empty.

Both are checked when the sources file is loaded (:func:`expression_problem`,
:func:`text_problem`), so a typo is a configuration error with its key path, never a failure on
a submission.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.mapping.jmes import Evaluator, compile_expression, evaluator, literal_value, root_field
from service.mapping.spec import RECORD_ROOTS, canonical_field_error
from service.mapping.template import DATA_ERRORS
from service.mapping.text import scalar_text

SPECIAL_FIELDS = frozenset({"source", "received_at", "submission_id"})
"""Record fields that are not extracted: the source's name, the receipt time, the id."""


def expression_problem(text: str) -> str | None:
    """Why ``text`` is not a usable expression over the canonical record, or None."""
    compiled, problem = compile_expression(text)
    if compiled is None:
        return problem or "invalid expression"
    root = root_field(compiled)
    if root is not None and root not in RECORD_ROOTS:
        known = ", ".join(sorted(RECORD_ROOTS))
        return (
            f"reads record field {root!r}, which does not exist (known: {known}); for a "
            f"literal text write '{root}' in single quotes"
        )
    return None


@dataclass(frozen=True, slots=True)
class RecordExpr:
    """A compiled expression over the canonical record."""

    text: str
    run: Evaluator
    literal: Any = None
    """The value when the whole expression is a literal (known before any submission)."""

    @classmethod
    def compile(cls, text: str) -> RecordExpr:
        """Compile ``text`` (ValueError with the problem when it is not usable)."""
        problem = expression_problem(text)
        compiled, _ = compile_expression(text)
        if problem or compiled is None:
            raise ValueError(problem or "invalid expression")
        return cls(text, evaluator(compiled), literal_value(compiled)[1])

    def value(self, record: Mapping[str, Any]) -> Any:
        """The expression's value on ``record``; None when it fails on this data."""
        try:
            return self.run(dict(record))
        except DATA_ERRORS:
            return None

    def holds(self, record: Mapping[str, Any]) -> bool:
        """Whether the expression is true on ``record`` (JMESPath truth: not null, false, empty)."""
        return self.value(record) not in (None, False, "", [], {})


class _Dotted(string.Template):
    idpattern = r"(?a:[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)?)"
    flags = re.RegexFlag(0)


def _field_problem(name: str) -> str | None:
    if name in SPECIAL_FIELDS:
        return None
    return canonical_field_error(name)


def text_problem(text: str) -> str | None:
    """Why ``text`` is not a usable template over the canonical record, or None."""
    parsed = _Dotted(text)
    if not parsed.is_valid():
        return "invalid placeholder syntax (use ${field}; write $$ for a dollar sign)"
    for name in parsed.get_identifiers():
        problem = _field_problem(name)
        if problem:
            return f"placeholder ${{{name}}}: {problem}"
    return None


@dataclass(frozen=True, slots=True)
class RecordText:
    """A text template over the canonical record."""

    text: str

    def render(self, record: Mapping[str, Any], *, limit: int | None = None) -> str:
        values: dict[str, str] = {}
        for name in _Dotted(self.text).get_identifiers():
            group, _, field = name.partition(".")
            value = record.get(group)
            if field:
                value = value.get(field) if isinstance(value, Mapping) else None
            values[name] = (scalar_text(value) or "") if value is not None else ""
        rendered = _Dotted(self.text).safe_substitute(values).strip()
        return rendered[:limit] if limit is not None else rendered
