"""What the door's mapping check (``Mapper.check``) evaluates, worked out once per mapping.

The extract expressions that can fail (always evaluated, as ``map`` does), the fields each
required group's members need, and the parts of the document those expressions read.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.mapping.document import parts_of
from service.mapping.rejections import NAME_FIELDS
from service.mapping.spec import NAME_ALIAS, MappingSpec, required_groups
from service.mapping.template import CompiledTemplate, Expr


@dataclass(frozen=True, slots=True)
class CheckPlan:
    """What ``Mapper.check`` evaluates."""

    failing: tuple[tuple[str, Expr], ...]
    """Extract expressions that can fail, in extract order: always evaluated."""
    fields: dict[str, tuple[int, Expr]]
    """Each field a required group needs: (its position in extract, its expression)."""
    groups: tuple[tuple[tuple[str, ...], tuple[tuple[str, ...], ...]], ...]
    """Each required group, and for each member the extracted fields it needs."""
    members: tuple[tuple[tuple[str, tuple[str, ...]], ...], ...]
    """``groups`` as (member, its fields) pairs, group by group."""
    document: tuple[str, ...] | None
    """The document's parts those expressions read (None: the whole document)."""


def check_plan(t: CompiledTemplate, spec: MappingSpec) -> CheckPlan | None:
    """What ``check`` evaluates; None when it must run the whole mapping (a template
    expression can fail)."""
    template = [expr for expr in (*t.lead.values(), *t.contact.values()) if expr is not None]
    template += [entry.expr for entry in (*t.custom, *t.contact_custom)]
    if not all(expr.cannot_fail for expr in template):
        return None
    position = {path: index for index, path in enumerate(t.extract)}
    names = tuple(name for name in NAME_FIELDS if name in position)
    groups = []
    for group in required_groups(spec):
        members = []
        for name in group:
            # full_name is derived from first and last name, and back: one unit.
            if name == NAME_ALIAS or name in NAME_FIELDS:
                members.append(names)
            else:
                members.append((name,) if name in position else ())
        groups.append((group, tuple(members)))
    needed = {path for _, members in groups for paths in members for path in paths}
    failing = tuple((p, e) for p, e in t.extract.items() if not e.cannot_fail)
    read = [e.reads for _, e in failing] + [t.extract[path].reads for path in needed]
    document = None
    if all(fields is not None for fields in read):
        document = parts_of(frozenset().union(*(f for f in read if f is not None)))
    return CheckPlan(
        failing=failing,
        fields={path: (position[path], t.extract[path]) for path in needed},
        groups=tuple(groups),
        members=tuple(tuple(zip(group, members, strict=True)) for group, members in groups),
        document=document,
    )
