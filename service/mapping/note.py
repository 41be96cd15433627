"""The submission note: a plain-text account of the submission for the salesperson.

Close stores a plain ``note`` with HTML escaped and newlines turned into ``<br />``, so the
note is plain text: a title line, when it was received, the page, the attribution, every
submitted field as ``key: value`` (nested JSON flattened to dotted keys, in order), and the
warnings (with the values as submitted, e.g. a phone that could not be read).

Every note, templated or not, ends with the marker line :func:`note_marker` (``Lead Intake
submission sub_...``), kept whatever the size cap cuts: after a lost answer the worker lists the
lead's recent notes and looks for it (:func:`has_marker`) before posting again.
"""

from __future__ import annotations

import html
import math
import re
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from service.mapping.normalize import Notice, clean_text, cut
from service.mapping.spec import ATTRIBUTION_FIELDS, PERSON_FIELDS, MappingLimits
from service.mapping.text import scalar_text

_MAX_DEPTH = 12
_MAX_FIELDS = 1_000
BASE_PLACEHOLDERS = frozenset(
    {"title", "source", "received_at", "page_url", "attribution", "fields", "warnings"}
    | {"submission_id"}
)
#: The person's fields by name; the person's ``title`` is ``${job_title}`` (``${title}`` is
#: the note's title line).
PERSON_PLACEHOLDERS = {("job_title" if name == "title" else name): name for name in PERSON_FIELDS}
NOTE_PLACEHOLDERS = BASE_PLACEHOLDERS | frozenset(PERSON_PLACEHOLDERS)
MARKER_PREFIX = "Lead Intake submission "


def note_marker(submission_id: str) -> str:
    """The last line of every note a submission posts: names the submission to a rep, and lets
    the worker find the note after a lost answer."""
    return f"{MARKER_PREFIX}{submission_id}"


def has_marker(text: str, submission_id: str) -> bool:
    """Whether ``text`` (a note's ``note`` or ``note_html`` as Close returns it: plain, or
    with HTML escaped and ``<br />`` for line breaks) carries this submission's marker, the id
    whole (``sub_1`` is not found in ``sub_12``)."""
    pattern = re.escape(note_marker(submission_id)) + r"(?![0-9A-Za-z_])"
    return re.search(pattern, html.unescape(text)) is not None


def template_problem(template: str) -> str | None:
    """Why a note template cannot be used, or None."""
    parsed = string.Template(template)
    if not parsed.is_valid():
        return "invalid placeholder syntax (use ${name}; write $$ for a dollar sign)"
    unknown = sorted(set(parsed.get_identifiers()) - NOTE_PLACEHOLDERS)
    if unknown:
        known = ", ".join(sorted(NOTE_PLACEHOLDERS))
        return f"unknown placeholder(s) {', '.join(unknown)}; known: {known}"
    return None


def utc_text(timestamp: float) -> str:
    """``2024-05-01 12:00:00 UTC`` (the raw number if it is not a usable time)."""
    try:
        moment = datetime.fromtimestamp(timestamp, UTC)
    except (OverflowError, OSError, ValueError):
        return str(timestamp)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


_LAST_SECOND: list[tuple[float, str]] = [(math.nan, "")]
"""The last whole second :func:`iso_utc` wrote, and its text (the pair replaced whole, so
never read half-written): the door maps every request (``received_at`` in the mapping's
document), and most requests fall in the same second."""


def iso_utc(timestamp: float) -> str:
    """``2024-05-01T12:00:00Z`` (the number as text if it is not a usable time)."""
    whole = math.floor(timestamp) if math.isfinite(timestamp) else math.nan
    # Only a fraction that cannot round up to the next second (to microseconds, as
    # fromtimestamp does) is the cached second's.
    cacheable = timestamp - whole < 0.999999
    last, last_text = _LAST_SECOND[0]
    if cacheable and last == whole:
        return last_text
    try:
        moment = datetime.fromtimestamp(timestamp, UTC)
    except (OverflowError, OSError, ValueError):
        return str(timestamp)
    text = moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    if cacheable:
        _LAST_SECOND[0] = (whole, text)
    return text


def flatten(value: Any, prefix: str = "", depth: int = 0) -> Iterator[tuple[str, str]]:
    """``(dotted key, text)`` for every non-empty leaf, in order; lists of scalars joined."""
    pairs: list[tuple[str, str]] = []
    _flatten_into(pairs, value, prefix, depth)
    return iter(pairs)


def _flatten_into(pairs: list[tuple[str, str]], value: Any, prefix: str, depth: int) -> None:
    # One list filled by plain recursion: nested generators cost a frame switch per level
    # for every leaf.
    if depth > _MAX_DEPTH:
        pairs.append((prefix or "value", "(nested too deep)"))
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten_into(pairs, item, f"{prefix}.{key}" if prefix else str(key), depth + 1)
        return
    if isinstance(value, list):
        if all(not isinstance(item, (Mapping, list)) for item in value):
            text = scalar_text(value)
            if text:
                pairs.append((prefix or "value", text))
            return
        for index, item in enumerate(value):
            _flatten_into(pairs, item, f"{prefix}[{index}]", depth + 1)
        return
    text = scalar_text(value)
    if text is not None and text.strip():
        pairs.append((prefix or "value", text))


def _line(key: str, text: str, limit: int) -> str:
    value, _ = cut(clean_text(text, multiline=True), limit)
    return f"{clean_text(key)}: " + value.replace("\n", "\n    ")


@dataclass(frozen=True)
class NoteContext:
    """Everything a note shows."""

    title: str
    source: str
    submission_id: str
    received_at: float
    fields: Any
    record: Mapping[str, Any] = field(default_factory=dict)
    notices: tuple[Notice, ...] = ()


class NoteRenderer:
    """Renders notes for one source (template and limits fixed at construction)."""

    def __init__(self, template: str | None, limits: MappingLimits) -> None:
        self._template = string.Template(template) if template is not None else None
        self._limits = limits

    def render(self, ctx: NoteContext) -> str:
        attribution = ctx.record.get("attribution") or {}
        parts: dict[str, str] = {
            "title": ctx.title,
            "source": ctx.source,
            "submission_id": ctx.submission_id,
            "received_at": utc_text(ctx.received_at),
            "page_url": str(attribution.get("page_url") or ""),
            "attribution": "\n".join(
                f"{name}: {attribution[name]}"
                for name in ATTRIBUTION_FIELDS
                if name != "page_url" and attribution.get(name)
            ),
            "warnings": "\n".join(_warning_line(n) for n in ctx.notices),
        }
        for placeholder, name in PERSON_PLACEHOLDERS.items():
            parts[placeholder] = str(ctx.record.get(name) or "")
        marker = note_marker(ctx.submission_id)
        limit = self._limits.note - len(marker) - 2
        fixed = self._assemble(parts, "")
        budget = limit - len(fixed) - 80
        parts["fields"] = self._fields(ctx.fields, budget)
        text = self._assemble(parts, parts["fields"])
        body = cut(text, limit)[0]
        return f"{body}\n\n{marker}" if body else marker

    def _fields(self, fields: Any, budget: int) -> str:
        lines: list[str] = []
        used = 0
        pairs = list(flatten(fields))
        for count, (key, text) in enumerate(pairs[:_MAX_FIELDS]):
            line = _line(key, text, self._limits.note_value)
            if used + len(line) + 1 > budget:
                lines.append(f"... {len(pairs) - count} more field(s) not shown (note size limit)")
                break
            lines.append(line)
            used += len(line) + 1
        else:
            if len(pairs) > _MAX_FIELDS:
                lines.append(f"... {len(pairs) - _MAX_FIELDS} more field(s) not shown")
        return "\n".join(lines)

    def _assemble(self, parts: dict[str, str], fields: str) -> str:
        if self._template is not None:
            return self._template.safe_substitute({**parts, "fields": fields}).strip()
        blocks = [
            "\n".join(
                line
                for line in (
                    parts["title"],
                    f"Received: {parts['received_at']}",
                    f"Page: {parts['page_url']}" if parts["page_url"] else "",
                )
                if line
            )
        ]
        for heading, body in (
            ("Attribution", parts["attribution"]),
            ("Submitted fields", fields),
            ("Warnings", parts["warnings"]),
        ):
            if body:
                blocks.append(f"{heading}:\n{body}")
        return "\n\n".join(blocks)


def _warning_line(notice: Notice) -> str:
    if notice.value is None:
        return f"- {notice.message}"
    shown = cut(clean_text(notice.value), 200)[0]
    return f"- {notice.message} (as submitted: {shown})"
