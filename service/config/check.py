"""Everything ``lead-intake check-config`` reports about a sources file, in one run.

Each source is validated on its own (``sources.validate_sources``), and the mapping of each
valid one is compiled against Close's schema (custom field names, status labels). A source
whose settings fail validation (a ``kind`` typo, a bad ``phone_type``) still has its mapping
checked: the failing values are left out (so their defaults apply) and what remains is compiled
like any other mapping, so its expressions, preset, fields and statuses are reported in the
same run instead of after the first problems are fixed.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from service.config.presets import PresetRegistry, bundled_presets
from service.config.sources import (
    SOURCE_NAME_PATTERN,
    Sources,
    build_mappers_issues,
    validate_sources,
)
from service.errors import ConfigError, ConfigIssue
from service.mapping import CloseSchema, Mapper, MappingSpec

_ROUNDS = 8


def _drop(data: Any, loc: tuple[int | str, ...]) -> bool:
    """Remove the value at ``loc`` (or the deepest container item on its way); False when
    nothing could be removed."""
    parent: Any = None
    step: int | str | None = None
    node = data
    for part in loc:
        has = (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        )
        if not has:
            break  # a union member's tag or a missing key: drop what holds it
        parent, step, node = node, part, node[part]
    if parent is None or step is None:
        return False
    del parent[step]
    return True


def mapping_part(entry: Any) -> MappingSpec | None:
    """The mapping of a source entry that failed validation: its mapping keys, without the
    values that fail (None when nothing usable is left)."""
    if not isinstance(entry, dict):
        return None
    data = copy.deepcopy({k: v for k, v in entry.items() if k in MappingSpec.model_fields})
    for _ in range(_ROUNDS):
        try:
            return MappingSpec.model_validate(data)
        except ValidationError as exc:
            dropped = [_drop(data, err["loc"]) for err in exc.errors()]
            if not any(dropped):
                return None
    return None


def _partial_issues(
    data: Any, valid: Sources, schema: CloseSchema | None, presets: PresetRegistry
) -> list[ConfigIssue]:
    entries = data.get("sources") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        return []
    issues: list[ConfigIssue] = []
    for name, entry in entries.items():
        if not isinstance(name, str) or not re.match(SOURCE_NAME_PATTERN, name):
            continue
        if valid.get(name) is not None:
            continue
        spec = mapping_part(entry)
        if spec is None:
            continue
        try:
            Mapper(spec, source=name, presets=presets, schema=schema)
        except ConfigError as exc:
            issues.extend(exc.issues)
    return issues


def check_sources(
    data: Any,
    *,
    file: str,
    schema: CloseSchema | None,
    presets: PresetRegistry | None = None,
) -> tuple[Sources, list[ConfigIssue]]:
    """The valid sources, and every problem of every source (settings and mappings)."""
    presets = presets or bundled_presets()
    sources, issues = validate_sources(data, file=file, presets=presets)
    found = build_mappers_issues(sources, schema) + _partial_issues(data, sources, schema, presets)
    reported = {issue.path for issue in issues}  # a value that failed is not reported twice
    for issue in dict.fromkeys(found):
        if issue.path not in reported:
            issues.append(ConfigIssue(issue.path, issue.message, issue.file or file))
    return sources, sorted(issues, key=_in_file_order(data))


def _in_file_order(data: Any) -> Callable[[ConfigIssue], int]:
    """Issues grouped by source, in the order the file lists the sources (stable within)."""
    entries = data.get("sources") if isinstance(data, dict) else None
    order = {f"sources.{name}": i for i, name in enumerate(entries or ())}

    def position(issue: ConfigIssue) -> int:
        head = ".".join(issue.path.split(".", 2)[:2]).split("[", 1)[0]
        return order.get(head, -1)

    return position
